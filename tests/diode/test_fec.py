"""Reed-Solomon: any k of k + m fragments rebuild the block; fewer do not."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from otseam.diode.fec import Fec, FecSettings

FEC = Fec(FecSettings(max_k=16, overhead=0.25, min_parity=2, fragment_size=400))


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=16 * 320), st.randoms(use_true_random=False))
def test_any_k_fragments_rebuild_the_block(size: int, rng: object) -> None:
    block = os.urandom(size)
    k, m, fragments = FEC.encode(block)
    assert m == max(2, -(-k // 4)) and len(fragments) == k + m
    assert all(len(f) <= 400 for f in fragments)
    keep = rng.sample(range(k + m), k)  # type: ignore[attr-defined]
    assert FEC.decode(k, m, {i: fragments[i] for i in keep}) == block
    if k > 1:
        assert FEC.decode(k, m, {i: fragments[i] for i in keep[:-1]}) is None


def test_a_wrong_fragment_does_not_decode_silently() -> None:
    block = os.urandom(2000)
    k, m, fragments = FEC.encode(block)
    mixed = {i: fragments[i] for i in range(k)}
    mixed[0] = b"\x00" * len(fragments[0])
    assert FEC.decode(k, m, mixed) != block
