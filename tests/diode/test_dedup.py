"""The receiver's memory of which (source, offset) pairs it wrote."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otseam.diode.dedup import OffsetSet


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(min_value=0, max_value=300)), max_size=400))
def test_behaves_like_a_set(items: list[tuple[str, int]]) -> None:
    model: set[tuple[str, int]] = set()
    seen = OffsetSet()
    for source, offset in items:
        assert seen.add(source, offset) == ((source, offset) not in model)
        model.add((source, offset))
    for source in ("a", "b"):
        for offset in range(0, 302):
            assert seen.contains(source, offset) == ((source, offset) in model)


def test_old_holes_are_forgotten_when_too_many(tmp_path: Path) -> None:
    seen = OffsetSet(max_intervals=3)
    for offset in (1, 3, 5, 7, 9):
        seen.add("a", offset)
    assert seen.holes("a") == 2
    assert not seen.add("a", 2)  # the oldest hole now counts as seen
    assert seen.add("a", 8)


def test_save_and_load(tmp_path: Path) -> None:
    seen = OffsetSet()
    for offset in (1, 2, 3, 10, 11):
        seen.add("edge", offset)
    seen.save(tmp_path / "state.json")
    again = OffsetSet.load(tmp_path / "state.json")
    assert again.contains("edge", 2) and not again.contains("edge", 5) and again.contains("edge", 11)


def test_a_damaged_state_file_gives_a_remedy(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(ValueError, match="move it aside"):
        OffsetSet.load(tmp_path / "state.json")


@given(
    st.lists(st.tuples(st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=20)), max_size=60)
)
def test_runs_agree_with_single_offsets(runs: list[tuple[int, int]]) -> None:
    model: set[int] = set()
    seen = OffsetSet()
    for first, length in runs:
        last = first + length
        if seen.add_run("a", first, last):
            assert not model & set(range(first, last + 1))  # only ever taken when all of it is new
            model |= set(range(first, last + 1))
        else:
            for offset in range(first, last + 1):
                assert seen.add("a", offset) == (offset not in model)
                model.add(offset)
    assert all(seen.contains("a", o) == (o in model) for o in range(0, 222))
