"""Reed-Solomon: any k of k + m fragments rebuild the block; fewer do not; the format is the documented one."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otseam.diode import wire
from otseam.diode.fec import FRAGMENT_HEADER, Fec, FecSettings

FEC = Fec(FecSettings(max_k=16, overhead=0.25, min_parity=2, fragment_size=400))
DEFAULT = Fec(FecSettings())
SPEEDUPS = wire.speedups(True)
assert SPEEDUPS is not None


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=16 * 396), st.randoms(use_true_random=False))
def test_any_k_fragments_rebuild_the_block(size: int, rng: object) -> None:
    block = os.urandom(size)
    k, m, fragments = FEC.encode(block)
    assert m == max(2, -(-k // 4)) and len(fragments) == k + m
    assert all(len(f) <= 400 for f in fragments)
    keep = rng.sample(range(k + m), k)  # type: ignore[attr-defined]
    assert FEC.decode(k, m, {i: fragments[i] for i in keep}) == block
    if k > 1:
        assert FEC.decode(k, m, {i: fragments[i] for i in keep[:-1]}) is None


@settings(max_examples=80, deadline=None)
@given(st.integers(min_value=1, max_value=64 * 1426), st.randoms(use_true_random=False))
def test_any_k_of_a_full_stripe_rebuild_it_twice_over(size: int, rng: object) -> None:
    """Default settings, any arrival pattern; the second time from the cached tables of that pattern."""
    block = os.urandom(size)
    k, m, fragments = DEFAULT.encode(block)
    keep = sorted(rng.sample(range(k + m), k))  # type: ignore[attr-defined]
    chosen = {i: fragments[i] for i in keep}
    assert DEFAULT.decode(k, m, chosen) == block
    assert DEFAULT.decode(k, m, chosen) == block
    assert DEFAULT.decode(k, m, dict(enumerate(fragments[:k]))) == block


# --- the format, computed independently: GF(2^8) with x^8 + x^4 + x^3 + x^2 + 1, Cauchy parity rows ---

_EXP = [0] * 512
_LOG = [0] * 256
_value = 1
for _power in range(255):
    _EXP[_power] = _value
    _LOG[_value] = _power
    _value <<= 1
    if _value & 0x100:
        _value ^= 0x11D
for _power in range(255, 512):
    _EXP[_power] = _EXP[_power - 255]


def _mul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else _EXP[_LOG[a] + _LOG[b]]


def _inverse(a: int) -> int:
    return _EXP[255 - _LOG[a]]


def _reference_fragments(block: bytes, k: int, m: int) -> list[bytes]:
    """docs/diode.md's description, in plain Python: k data fragments of ceil(L / k) bytes (zero padded);
    parity row i (i = k .. k+m-1) has coefficient 1 / (i XOR j) for data fragment j; each fragment
    behind the block length, u32 big-endian."""
    size = -(-len(block) // k)
    data = [block[j * size : (j + 1) * size].ljust(size, b"\x00") for j in range(k)]
    parity = []
    for i in range(k, k + m):
        row = [_inverse(i ^ j) for j in range(k)]
        parity.append(bytes(_xor_all(_mul(row[j], data[j][b]) for j in range(k)) for b in range(size)))
    header = len(block).to_bytes(FRAGMENT_HEADER, "big")
    return [header + f for f in data + parity]


def _xor_all(values: object) -> int:
    result = 0
    for v in values:  # type: ignore[attr-defined]
        result ^= v
    return result


@pytest.mark.parametrize("size", [1, 7, 395, 396, 397, 1000, 16 * 396])
def test_fragments_are_the_documented_cauchy_reed_solomon(size: int) -> None:
    block = os.urandom(size)
    k, m, fragments = FEC.encode(block)
    assert fragments == _reference_fragments(block, k, m)


# --- refusals ---------------------------------------------------------------------------------------


def test_a_wrong_fragment_does_not_decode_silently() -> None:
    block = os.urandom(2000)
    k, m, fragments = FEC.encode(block)
    mixed = {i: fragments[i] for i in range(k)}
    mixed[0] = b"\x00" * len(fragments[0])
    assert FEC.decode(k, m, mixed) != block


def test_fragments_that_do_not_fit_together_are_refused() -> None:
    k, m, fragments = DEFAULT.encode(os.urandom(20_000))
    chosen = {i: fragments[i] for i in range(1, k + 1)}
    chosen[k] = chosen[k][:-1]  # one fragment a byte short
    assert DEFAULT.decode(k, m, chosen) is None
    other_k, _, others = DEFAULT.encode(os.urandom(30_000))
    assert other_k != k
    mixed = {i: fragments[i] for i in range(1, k + 1)}
    mixed[1] = others[1]  # a fragment of another block, of another size
    assert DEFAULT.decode(k, m, mixed) is None
    _, _, longer = DEFAULT.encode(os.urandom(20_001))  # same k and fragment size, other block length
    other = {i: fragments[i] for i in range(1, k + 1)}
    other[3] = longer[3]
    assert len(longer[3]) == len(fragments[3]) and DEFAULT.decode(k, m, other) is None
    complete = dict(enumerate(fragments[:k]))
    complete[k - 1] = longer[k - 1]  # nothing lost, but one data fragment is of another block
    assert DEFAULT.decode(k, m, complete) is None


@pytest.mark.parametrize("claimed", [0, 1, 19_999 - 1426 * 14, 20_000 + 1426, 2**32 - 1])
def test_a_block_length_that_the_fragments_cannot_carry_is_refused(claimed: int) -> None:
    k, m, fragments = DEFAULT.encode(os.urandom(20_000))
    forged = [claimed.to_bytes(4, "big") + f[4:] for f in fragments]
    assert DEFAULT.decode(k, m, dict(enumerate(forged[:k]))) is None
    assert DEFAULT.decode(k, m, dict(enumerate(forged[1 : k + 1], start=1))) is None
    assert SPEEDUPS.join_fragments(b"".join(forged), len(forged[0]), k) is None


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=1, max_value=64 * 1426),
    st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=6), st.binary(min_size=1, max_size=4))
    ),
    st.integers(min_value=0, max_value=3),
)
def test_joining_complete_data_fragments_agrees_with_the_general_rebuild(
    size: int, edits: list[tuple[int, int, bytes]], parity: int
) -> None:
    """The receiver's shortcut for a block whose data fragments all arrived in one run: the same block,
    or the same refusal, as the general path, however the fragments' headers were altered."""
    block = os.urandom(size)
    k, m, fragments = DEFAULT.encode(block)
    edited = [bytearray(f) for f in fragments[:k]]
    for which, at, data in edits:  # overwrite bytes of the fragment header and the first data bytes
        fragment = edited[which % k]
        part = data[: max(0, len(fragment) - at)]  # the fragment's length does not change
        fragment[at : at + len(part)] = part
    joined = b"".join(edited) + b"".join(fragments[k : k + min(parity, m)])
    expected = DEFAULT.decode(k, m, {i: bytes(f) for i, f in enumerate(edited)})
    assert SPEEDUPS.join_fragments(joined, len(fragments[0]), k) == expected
    if not edits:
        assert expected == block


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=-3, max_value=300),
    st.lists(st.integers(min_value=-3, max_value=300), max_size=70),
    st.lists(st.binary(max_size=200), max_size=70),
    st.binary(max_size=300),
    st.lists(st.integers(min_value=-3, max_value=300), max_size=10),
)
def test_the_compiled_rebuild_refuses_any_inconsistent_arguments_without_crashing(
    k: int, used: list[int], chosen: list[bytes], tables: bytes, missing: list[int]
) -> None:
    coder = SPEEDUPS.Coder()
    try:
        result = coder.rebuild(k, tuple(used), chosen, tables, tuple(missing))
    except (ValueError, TypeError, OverflowError):
        return
    assert result is None or isinstance(result, bytes)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=-3, max_value=300),
    st.integers(min_value=-3, max_value=300),
    st.lists(st.integers(min_value=-3, max_value=300), max_size=70),
)
def test_decode_tables_refuse_inconsistent_arguments_without_crashing(k: int, m: int, used: list[int]) -> None:
    coder = SPEEDUPS.Coder()
    try:
        result = coder.decode_tables(k, m, tuple(used))
    except (ValueError, TypeError, OverflowError):
        return
    assert result is None or isinstance(result, bytes)


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_fragments_too_short_for_a_header_join_to_nothing(size: int) -> None:
    """Found by the fuzzer: a fragment shorter than its header was read past (4 bytes from a 1-4 byte one)."""
    assert SPEEDUPS.join_fragments(bytes(size) * 3, size, 3) is None
    assert SPEEDUPS.join_fragments(b"\x00\x00\x00\x01"[:size], size, 1) is None
