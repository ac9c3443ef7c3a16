"""Reed-Solomon: any k of k + m fragments rebuild the block; fewer do not."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otseam.diode import isal, wire
from otseam.diode.fec import FRAGMENT_HEADER, Fec, FecSettings

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


DEFAULT = Fec(FecSettings())
RECOVERY = isal.available()  # all in Python (ctypes for ISA-L's pass)
#: The same, with the header checks, ISA-L's pass and the joining in one C call (Coder.rebuild).
COMPILED_FEC = Fec(FecSettings())
SPEEDUPS = wire.speedups(True)
assert SPEEDUPS is not None and COMPILED_FEC.compile_recovery(SPEEDUPS)
COMPILED = COMPILED_FEC._recovery
BOTH = [pytest.param(RECOVERY, id="python"), pytest.param(COMPILED, id="compiled")]


def test_lost_data_fragments_are_rebuilt_with_isa_l_directly_here() -> None:
    # The pyeclib wheels bundle ISA-L; if this machine's build did not, the fast path would be off.
    assert RECOVERY is not None and DEFAULT.direct_recovery
    assert RECOVERY.rebuild is None and COMPILED is not None and COMPILED.rebuild is not None


@settings(max_examples=80, deadline=None)
@given(st.integers(min_value=1, max_value=64 * 1350), st.randoms(use_true_random=False))
def test_isa_l_rebuilds_exactly_what_pyeclib_rebuilds(size: int, rng: object) -> None:
    """For any block size and any k of the k + m fragments, both ways give the original block."""
    assert RECOVERY is not None and COMPILED is not None
    block = os.urandom(size)
    k, m, fragments = DEFAULT.encode(block)
    keep = sorted(rng.sample(range(k + m), k))  # type: ignore[attr-defined]
    chosen = {i: fragments[i] for i in keep}
    assert RECOVERY.decode(k, m, chosen) == block
    assert COMPILED.decode(k, m, chosen) == block
    assert COMPILED.decode(k, m, dict(enumerate(fragments[:k]))) == block
    assert DEFAULT._driver(k, m).decode([fragments[i] for i in keep]) == block
    assert DEFAULT.decode(k, m, chosen) == block
    # Twice: the second time from the cached tables of this arrival pattern.
    assert RECOVERY.decode(k, m, chosen) == block
    # No loss (the usual case, which no longer goes through pyeclib): the same bytes pyeclib gives.
    complete = dict(enumerate(fragments[:k]))
    assert RECOVERY.decode(k, m, complete) == DEFAULT._driver(k, m).decode(fragments[:k]) == block


@pytest.mark.parametrize("recovery", BOTH)
def test_fragments_that_do_not_fit_together_are_left_to_pyeclib(recovery: isal.Recovery) -> None:
    assert recovery is not None
    k, m, fragments = DEFAULT.encode(os.urandom(20_000))
    chosen = {i: fragments[i] for i in range(1, k + 1)}
    chosen[k] = chosen[k][:-1]  # one fragment a byte short
    assert recovery.decode(k, m, chosen) is None
    other_k, _, others = DEFAULT.encode(os.urandom(30_000))
    assert other_k != k
    mixed = {i: fragments[i] for i in range(1, k + 1)}
    mixed[1] = others[1]  # a fragment of another block, of another size
    assert recovery.decode(k, m, mixed) is None
    swapped = {i: fragments[i] for i in range(1, k + 1)}
    swapped[1], swapped[2] = swapped[2], swapped[1]  # the right bytes under the wrong index
    assert recovery.decode(k, m, swapped) is None
    _, _, longer = DEFAULT.encode(os.urandom(20_001))  # same k and fragment size, other block size
    other = {i: fragments[i] for i in range(1, k + 1)}
    other[3] = longer[3]
    assert len(longer[3]) == len(fragments[3]) and recovery.decode(k, m, other) is None
    complete = dict(enumerate(fragments[:k]))
    complete[k - 1] = longer[k - 1]  # nothing lost, but one data fragment is of another block
    assert recovery.decode(k, m, complete) is None and DEFAULT.decode(k, m, complete) is None


@pytest.mark.parametrize("size", [500, 3000])  # one data fragment, and three
@pytest.mark.parametrize("cut", [1, 2, 79, 80, 1000])
def test_a_fragment_shorter_than_its_header_claims_is_refused_not_read_past(size: int, cut: int) -> None:
    """pyeclib copies as many bytes as a fragment's header claims: the decoder must refuse the block
    rather than return what lies beyond the fragment in memory (found by the differential test). With
    one fragment the lengths all agree, so only the header check can catch it."""
    block = os.urandom(size)
    k, m, fragments = FEC.encode(block)
    short = dict(enumerate(fragments[:k]))
    short[0] = fragments[0][:-cut]
    assert FEC.decode(k, m, short) is None
    assert FEC.decode(k, m, dict(enumerate(fragments[:k]))) == block


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=1, max_value=64 * 1350),
    st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=24), st.binary(min_size=1, max_size=4))
    ),
    st.integers(min_value=0, max_value=3),
)
def test_joining_complete_data_fragments_in_c_agrees_with_isa_l_recovery(
    size: int, edits: list[tuple[int, int, bytes]], parity: int
) -> None:
    """The receiver's shortcut for a block whose data fragments all arrived in one run: the same block,
    or the same refusal, as the checked Python path, however the fragments' headers were altered."""
    speedups = wire.speedups(True)
    assert RECOVERY is not None and speedups is not None
    k, m, fragments = DEFAULT.encode(os.urandom(size))
    edited = [bytearray(f) for f in fragments[:k]]
    for which, at, data in edits:  # overwrite bytes of liberasurecode's header (index, sizes, original size)
        fragment = edited[which % k]
        fragment[at : at + len(data)] = data  # at most 28 bytes in: the length does not change
    joined = b"".join(edited) + b"".join(fragments[k : k + min(parity, m)])
    expected = RECOVERY.decode(k, m, {i: bytes(f) for i, f in enumerate(edited)})
    assert speedups.join_fragments(joined, len(fragments[0]), k, FRAGMENT_HEADER) == expected
    assert COMPILED is not None and COMPILED.decode(k, m, {i: bytes(f) for i, f in enumerate(edited)}) == expected
    if not edits:
        assert expected == DEFAULT._driver(k, m).decode(fragments[:k])


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=1, max_value=64 * 1350),
    st.randoms(use_true_random=False),
    st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=24), st.binary(min_size=1, max_size=4))
    ),
)
def test_rebuilding_in_c_agrees_with_python_however_the_headers_were_altered(
    size: int, rng: object, edits: list[tuple[int, int, bytes]]
) -> None:
    """Lost fragments as well as altered headers: the compiled rebuild gives the block, or refuses,
    exactly when the Python path does."""
    assert RECOVERY is not None and COMPILED is not None
    k, m, fragments = DEFAULT.encode(os.urandom(size))
    keep = sorted(rng.sample(range(k + m), k))  # type: ignore[attr-defined]
    chosen = {i: bytearray(fragments[i]) for i in keep}
    for which, at, data in edits:
        fragment = chosen[keep[which % k]]
        fragment[at : at + len(data)] = data
    frozen = {i: bytes(f) for i, f in chosen.items()}
    assert COMPILED.decode(k, m, frozen) == RECOVERY.decode(k, m, frozen)


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
    assert COMPILED is not None and COMPILED.rebuild is not None
    try:
        result = COMPILED.rebuild(k, tuple(used), chosen, tables, tuple(missing))
    except (ValueError, TypeError, OverflowError):
        return
    assert result is None or isinstance(result, bytes)
