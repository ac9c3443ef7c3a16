"""Property tests: any sample round-trips; any damage to a segment file is survived without a crash."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otseam.core.records import Event, Quality, Record, Sample, Severity
from otseam.journal import Journal

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64),
    st.floats(allow_nan=False),
    st.text(max_size=40),
)
sample_strategy = st.builds(
    Sample,
    st.text(min_size=1, max_size=30),
    values,
    st.sampled_from(list(Quality)),
    st.floats(min_value=0, max_value=4e9),
    st.floats(min_value=0, max_value=4e9),
)
event_strategy = st.builds(
    Event,
    st.floats(min_value=0, max_value=4e9),
    st.sampled_from(["alarm", "alert", "audit", "device.state"]),
    st.text(max_size=20),
    st.sampled_from(list(Severity)),
    st.text(max_size=60),
    st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=8), st.none()), max_size=4),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.one_of(sample_strategy, event_strategy), min_size=1, max_size=30), max_size=5))
def test_any_records_round_trip(batches: list[list[Record]]) -> None:
    directory = Path(tempfile.mkdtemp(prefix="seam-journal-fuzz-"))
    try:
        with Journal.open(directory / "j") as journal:
            for batch in batches:
                journal.append(batch)
        with Journal.open(directory / "j") as journal:
            read = asyncio.run(journal.reader("a").next_batch(max_records=10_000, max_wait=0))
        assert read.records == [record for batch in batches for record in batch]
        assert read.offsets == list(range(1, len(read.records) + 1))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _original(directory: Path) -> tuple[bytes, list[Record]]:
    records: list[Record] = [Sample(f"d/p{i % 3}", float(i), Quality.GOOD, float(i), float(i)) for i in range(200)]
    with Journal.open(directory) as journal:
        for start in range(0, 200, 20):
            journal.append(records[start : start + 20])
    return next(directory.glob("*.seg")).read_bytes(), records


@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_damaged_segment_never_crashes_and_yields_only_true_records(data: st.DataObject) -> None:
    directory = Path(tempfile.mkdtemp(prefix="seam-journal-fuzz-"))
    try:
        original, records = _original(directory / "j")
        damaged = bytearray(original)
        action = data.draw(st.sampled_from(["truncate", "flip", "overwrite", "append"]))
        if action == "truncate":
            damaged = damaged[: data.draw(st.integers(0, len(damaged)))]
        elif action == "flip":
            for _ in range(data.draw(st.integers(1, 5))):
                position = data.draw(st.integers(0, len(damaged) - 1))
                damaged[position] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "overwrite":
            start = data.draw(st.integers(0, len(damaged) - 1))
            garbage = data.draw(st.binary(min_size=1, max_size=200))
            damaged[start : start + len(garbage)] = garbage
        else:
            damaged += data.draw(st.binary(min_size=1, max_size=200))
        next((directory / "j").glob("*.seg")).write_bytes(bytes(damaged))

        async def read_all(journal: Journal) -> list[tuple[int, Record]]:
            cursor = journal.reader("a")
            seen: list[tuple[int, Record]] = []
            while batch := await cursor.next_batch(max_wait=0):
                seen.extend(zip(batch.offsets, batch.records, strict=True))
                cursor.commit(batch.last_offset)
            return seen

        with Journal.open(directory / "j") as journal:
            seen = asyncio.run(read_all(journal))
            journal.append(records[:1])
        for offset, record in seen:
            if isinstance(record, Sample):
                assert record == records[offset - 1], "a damaged frame must never yield a wrong record"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["cursor", "meta"]))
def test_garbage_state_files_are_refused_or_ignored_never_crash(garbage: bytes, which: str) -> None:
    from otseam.journal import JournalError

    directory = Path(tempfile.mkdtemp(prefix="seam-journal-fuzz-"))
    try:
        with Journal.open(directory / "j") as journal:
            journal.append([Sample("d/p", 1.0, Quality.GOOD, 1.0, 1.0)])
            journal.reader("sink").commit(1)
        target = directory / "j" / ("cursors/sink.cursor" if which == "cursor" else "journal.json")
        target.write_bytes(garbage)
        try:
            journal = Journal.open(directory / "j")
        except JournalError as exc:
            assert which == "meta" and "journal" in str(exc)
            return
        with journal:
            cursor = journal.reader("sink")
            assert cursor.committed in (0, 1)  # garbage is either refused (start over) or was a valid slot
            assert journal.append([Sample("d/p", 2.0, Quality.GOOD, 1.0, 1.0)]) == 2
    finally:
        shutil.rmtree(directory, ignore_errors=True)
