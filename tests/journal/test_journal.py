"""The journal on a real disk: offsets, cursors, restart, torn tails, retention and overflow."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from otseam.core.plugins import JournalReader, JournalWriter
from otseam.core.records import Event, Quality, Record, Sample, Severity
from otseam.journal import Journal, JournalError
from tests.support.wait import wait_until_async


def samples(start: int, count: int, point: str = "plc1/level") -> list[Record]:
    return [
        Sample(point, float(i), Quality.GOOD, 1_700_000_000.0 + i, 1_700_000_000.5 + i)
        for i in range(start, start + count)
    ]


def test_implements_the_core_protocols(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j") as journal:
        assert isinstance(journal, JournalWriter)
        assert isinstance(journal.reader("sink"), JournalReader)


async def test_offsets_increase_and_records_round_trip(tmp_path: Path) -> None:
    event = Event(1.5, "alarm", "plc1/level", Severity.HIGH, "level high", {"limit": 90, "tags": ["a"]})
    mixed: list[Record] = [*samples(0, 3), event, *samples(3, 2)]
    with Journal.open(tmp_path / "j") as journal:
        assert journal.last_offset == 0
        assert journal.append(mixed) == 6
        assert journal.append(samples(5, 4)) == 10
        assert journal.append([]) == 10
        batch = await journal.reader("a").next_batch(max_records=100, max_wait=0)
    assert batch.source == journal.source
    assert batch.offsets == list(range(1, 11))
    assert batch.records[:6] == mixed
    assert batch.records[3] == event and isinstance(batch.records[3], Event)
    assert batch.records[0].quality is Quality.GOOD
    assert batch.records[6:] == samples(5, 4)


async def test_values_of_every_type_and_subclass_survive(tmp_path: Path) -> None:
    class Level(float):
        pass

    records: list[Record] = [
        Sample("d/b", True, Quality.STALE, 1.0, 2.0),
        Sample("d/i", 2**40, Quality.BAD_COMM, 1, 2),
        Sample("d/s", "running", Quality.UNCERTAIN, 1.0, 2.0),
        Sample("d/n", None, Quality.BAD_DEVICE, 1.0, 2.0),
        Sample("d/f", Level(4.25), Quality.GOOD, 1.0, 2.0),
    ]
    with Journal.open(tmp_path / "j") as journal:
        journal.append(records)
        batch = await journal.reader("a").next_batch(max_wait=0)
    assert [r.value for r in batch.records] == [True, 2**40, "running", None, 4.25]  # type: ignore[union-attr]
    assert [type(r.value) for r in batch.records] == [bool, int, str, type(None), float]  # type: ignore[union-attr]
    assert [r.quality for r in batch.records] == [r.quality for r in records]  # type: ignore[union-attr]


def test_refuses_what_it_cannot_store(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j") as journal:
        with pytest.raises(ValueError, match="value must be"):
            journal.append([Sample("d/x", object(), Quality.GOOD, 1.0, 1.0)])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="quality"):
            journal.append([Sample("d/x", 1.0, 42, 1.0, 1.0)])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="Sample and Event"):
            journal.append([("not", "a", "record")])  # type: ignore[list-item]
        assert journal.last_offset == 0


async def test_cursor_resumes_after_commit_and_redelivers_uncommitted(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal.open(path) as journal:
        journal.append(samples(0, 10))
        cursor = journal.reader("historian")
        first = await cursor.next_batch(max_records=4, max_wait=0)
        assert first.offsets == [1, 2, 3, 4]
        again = await cursor.next_batch(max_records=4, max_wait=0)
        assert again.offsets == [1, 2, 3, 4], "an uncommitted batch is offered again"
        cursor.commit(first.last_offset)
        assert (await cursor.next_batch(max_records=4, max_wait=0)).offsets == [5, 6, 7, 8]
        cursor.commit(6)
        with pytest.raises(ValueError, match="last offset appended is 10"):
            cursor.commit(11)
    with Journal.open(path) as journal:
        cursor = journal.reader("historian")
        assert cursor.committed == 6
        batch = await cursor.next_batch(max_wait=0)
        assert batch.offsets == [7, 8, 9, 10]
        assert batch.records == samples(6, 4)
        other = await journal.reader("mqtt").next_batch(max_wait=0)
        assert other.offsets[0] == 1, "a new cursor starts at the oldest record"
        late = journal.reader("late", start="latest")
        assert (await late.next_batch(max_wait=0)).records == []


async def test_reader_wakes_up_on_append(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j") as journal:
        cursor = journal.reader("a")
        waiting = asyncio.create_task(cursor.next_batch(max_wait=30))
        await wait_until_async(lambda: journal._waiters, "the reader to wait for an append")
        assert not waiting.done()
        journal.append(samples(0, 2))
        batch = await asyncio.wait_for(waiting, 5)
        assert batch.offsets == [1, 2]
        empty = await cursor.next_batch(max_wait=0.01)
        assert empty.offsets == [1, 2], "not committed yet"
        cursor.commit(2)
        assert len(await cursor.next_batch(max_wait=0.01)) == 0


async def test_append_from_another_thread_wakes_the_reader(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j") as journal:
        cursor = journal.reader("a")
        waiting = asyncio.create_task(cursor.next_batch(max_wait=30))
        await wait_until_async(lambda: journal._waiters, "the reader to wait for an append")
        await asyncio.to_thread(journal.append, samples(0, 1))
        assert (await asyncio.wait_for(waiting, 5)).offsets == [1]


async def test_reads_across_segments_and_frames_larger_than_the_batch(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j", max_size=1024 * 1024, segment_size=32 * 1024) as journal:
        for start in range(0, 20_000, 2_000):
            journal.append(samples(start, 2_000, point=f"plc/p{start}"))
        assert len(list((tmp_path / "j").glob("*.seg"))) > 3
        cursor = journal.reader("a")
        seen: list[Record] = []
        while True:
            batch = await cursor.next_batch(max_records=777, max_wait=0)
            if not batch:
                break
            assert batch.offsets == list(range(batch.offsets[0], batch.offsets[0] + len(batch)))
            seen.extend(batch.records)
            cursor.commit(batch.last_offset)
    assert len(seen) == 20_000
    assert [r.value for r in seen] == [float(i) for i in range(20_000)]  # type: ignore[union-attr]


def test_source_id_is_persisted_and_checked(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "a") as journal:
        generated = journal.source
    with Journal.open(tmp_path / "a") as journal:
        assert journal.source == generated
    with Journal.open(tmp_path / "b", source="edge-7") as journal:
        assert journal.source == "edge-7"
    with pytest.raises(JournalError, match="belongs to source 'edge-7'"):
        Journal.open(tmp_path / "b", source="edge-8")
    with pytest.raises(JournalError, match="not valid"):
        Journal.open(tmp_path / "c", source="../etc")


def test_one_process_at_a_time(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j"), pytest.raises(JournalError, match="already open"):
        Journal.open(tmp_path / "j")
    Journal.open(tmp_path / "j").close()


def test_clear_errors_for_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="too small"):
        Journal.open(tmp_path / "j", max_size=1000)
    with pytest.raises(JournalError, match="quarter"):
        Journal.open(tmp_path / "j", max_size=1024 * 1024, segment_size=512 * 1024)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(JournalError, match="cannot use"):
        Journal.open(blocker / "j")
    with Journal.open(tmp_path / "k") as journal, pytest.raises(JournalError, match="cursor name"):
        journal.reader("../../etc/passwd")


async def test_torn_tail_is_truncated_on_open(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal.open(path) as journal:
        journal.append(samples(0, 5))
        journal.append(samples(5, 5))
    segment = next(path.glob("*.seg"))
    whole = segment.read_bytes()
    for cut in (1, 17, 40, len(whole) // 2 - 1):
        segment.write_bytes(whole[:-cut])
        with Journal.open(path) as journal:
            assert journal.last_offset == 5
            assert segment.stat().st_size == len(whole) // 2
            batch = await journal.reader("a").next_batch(max_wait=0)
            assert batch.records == samples(0, 5)
        segment.write_bytes(whole)


async def test_a_flipped_bit_is_detected_and_never_crashes(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal.open(path, max_size=1024 * 1024, segment_size=16 * 1024) as journal:
        for start in range(0, 3000, 100):
            journal.append(samples(start, 100))
    segment_files = sorted(path.glob("*.seg"))
    assert len(segment_files) >= 3
    damaged = segment_files[0]
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x40
    damaged.write_bytes(bytes(data))
    with Journal.open(path) as journal:
        cursor = journal.reader("a")
        offsets: list[int] = []
        records: list[Record] = []
        while batch := await cursor.next_batch(max_wait=0):
            offsets.extend(batch.offsets)
            records.extend(batch.records)
            cursor.commit(batch.last_offset)
        assert cursor.dropped > 0
        lost = set(range(1, 3001)) - set(offsets)
        assert len(lost) == cursor.dropped
        assert offsets == sorted(offsets)
        corrupt = [r for r in records if isinstance(r, Event) and r.kind == "journal.corrupt"]
        assert corrupt and corrupt[0].data["lost"] == cursor.dropped
        # Reading the damage again (a fresh cursor object, as after a sink restart) counts it once only.
        again = journal.reader("b")
        while batch := await again.next_batch(max_wait=0):
            again.commit(batch.last_offset)
        dropped_once = again.dropped
        journal.remove_cursor("b")
        third = journal.reader("c")
        first = await third.next_batch(max_records=100_000, max_wait=0)
        last = journal.last_offset
        repeat = await journal.reader("c").next_batch(max_records=100_000, max_wait=0)
        assert journal.last_offset == last, "no second event for the same damage"
        assert repeat.offsets == [*first.offsets, last] and third.dropped == dropped_once
        corrupt_events = [r for r in repeat.records if isinstance(r, Event) and r.data.get("cursor") == "c"]
        assert len(corrupt_events) == 1


def test_garbage_files_in_the_directory_never_crash_open(tmp_path: Path) -> None:
    path = tmp_path / "j"
    Journal.open(path).close()
    (path / "00000000000000000001.seg").write_bytes(os.urandom(5000))
    (path / "notes.txt").write_text("hello")
    (path / "cursors" / "x.cursor").write_text("{broken")
    with Journal.open(path) as journal:
        assert journal.last_offset == 0
        assert journal.append(samples(0, 1)) == 1


def test_offsets_never_go_back_even_if_segments_are_deleted(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal.open(path, max_size=1024 * 1024, segment_size=16 * 1024) as journal:
        for start in range(0, 3000, 100):
            journal.append(samples(start, 100))
        journal.reader("a").commit(3000)
    for segment in path.glob("*.seg"):
        segment.unlink()
    with Journal.open(path) as journal:
        assert journal.append(samples(0, 1)) > 3000


async def test_overflow_drops_oldest_counts_and_tells(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal.open(path, max_size=256 * 1024, segment_size=32 * 1024) as journal:
        slow = journal.reader("slow")
        fast = journal.reader("fast")
        for start in range(0, 40_000, 500):
            journal.append(samples(start, 500))
            while batch := await fast.next_batch(max_wait=0):
                fast.commit(batch.last_offset)
            assert journal.bytes_on_disk <= 256 * 1024
        disk = sum(p.stat().st_size for p in path.glob("*.seg"))
        assert disk == journal.bytes_on_disk <= 256 * 1024
        metrics = journal.metrics()
        by_name = {c.name: c for c in metrics.cursors}
        assert by_name["fast"].dropped == 0
        assert by_name["slow"].dropped > 0
        assert by_name["slow"].depth == journal.last_offset - journal.first_offset + 1
        assert by_name["slow"].oldest_unread_age is not None
        remaining: list[Record] = []
        while batch := await slow.next_batch(max_records=10_000, max_wait=0):
            remaining.extend(batch.records)
            slow.commit(batch.last_offset)
        overflow = [r for r in remaining if isinstance(r, Event) and r.kind == "journal.overflow"]
        newest = [e for e in overflow if e.data["cursor"] == "slow"][-1]
        assert newest.data["total_lost"] == slow.dropped
        assert newest.data["reason"] == "max_size" and "reached max_size" in newest.message
        assert len(remaining) + slow.dropped == journal.last_offset, "every record is delivered or counted as lost"
        assert all(e.data["cursor"] != "fast" for e in overflow)
    with Journal.open(path, max_size=256 * 1024, segment_size=32 * 1024) as journal:
        assert journal.reader("slow").dropped == slow.dropped, "loss counts persist"


async def test_retention_by_age(tmp_path: Path) -> None:
    clock = [1_000_000.0]
    path = tmp_path / "j"
    with Journal.open(path, max_age=3600, segment_size=16 * 1024, clock=lambda: clock[0]) as journal:
        cursor = journal.reader("a")
        for start in range(0, 2000, 100):
            journal.append(samples(start, 100))
        segments_before = len(list(path.glob("*.seg")))
        assert segments_before > 2
        # Sealed segments are aged by their mtime, the active one by its last append.
        old = clock[0] - 7200
        for segment in sorted(path.glob("*.seg"))[:-1]:
            os.utime(segment, (old, old))
        journal._segments[0].last_appended_at = old
        for s in journal._segments[:-1]:
            s.last_appended_at = old
        clock[0] += 10
        journal.expire()
        assert len(list(path.glob("*.seg"))) == 1
        assert cursor.dropped > 0
        batch = await cursor.next_batch(max_records=5000, max_wait=0)
        assert batch.offsets[0] == journal.first_offset
        events = [r for r in batch.records if isinstance(r, Event)]
        assert events and events[0].kind == "journal.overflow" and events[0].data["lost"] == cursor.dropped
        assert events[0].data["reason"] == "max_age" and "older than max_age" in events[0].message


def test_metrics(tmp_path: Path) -> None:
    clock = [1000.0]
    with Journal.open(tmp_path / "j", clock=lambda: clock[0]) as journal:
        journal.reader("a")
        journal.append(samples(0, 10))
        clock[0] = 1012.0
        journal.append(samples(10, 5))
        metrics = journal.metrics()
        assert (metrics.first_offset, metrics.last_offset, metrics.segments) == (1, 15, 1)
        assert metrics.bytes_on_disk == sum(p.stat().st_size for p in (tmp_path / "j").glob("*.seg"))
        (cursor,) = metrics.cursors
        assert (cursor.name, cursor.committed, cursor.depth, cursor.dropped) == ("a", 0, 15, 0)
        assert cursor.oldest_unread_age == 12.0
        journal.reader("a").commit(12)
        (cursor,) = journal.metrics().cursors
        assert (cursor.depth, cursor.oldest_unread_age) == (3, 0.0)


async def test_closed_journal(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j")
    cursor = journal.reader("a")
    waiting = asyncio.create_task(cursor.next_batch(max_wait=30))
    await wait_until_async(lambda: journal._waiters, "the reader to wait for an append")
    journal.close()
    assert len(await asyncio.wait_for(waiting, 5)) == 0
    with pytest.raises(JournalError, match="closed"):
        journal.append(samples(0, 1))


async def test_resuming_anywhere_in_a_large_segment(tmp_path: Path) -> None:
    """Finding an offset uses the sparse index (one entry per 256 KiB), built on open for old segments."""
    path = tmp_path / "j"
    clock = [5000.0]
    with Journal.open(
        path, max_size=256 * 1024 * 1024, segment_size=8 * 1024 * 1024, clock=lambda: clock[0]
    ) as journal:
        for start in range(0, 200_000, 100):
            clock[0] = 5000.0 + start
            journal.append(samples(start, 100))
        journal.append(samples(200_000, 10))  # rotates nothing, but the file is several index strides long
    assert (path / "00000000000000000001.seg").stat().st_size > 4 * 256 * 1024
    for committed in (0, 1, 99, 100, 12_345, 150_001, 199_999):
        with Journal.open(path, clock=lambda: 300_000.0) as journal:
            cursor = journal.reader(f"c{committed}")
            if committed:
                cursor.commit(committed)
            batch = await cursor.next_batch(max_records=3, max_wait=0)
            assert batch.offsets == [committed + 1, committed + 2, committed + 3]
            assert [r.value for r in batch.records] == [float(committed), float(committed + 1), float(committed + 2)]  # type: ignore[union-attr]
            (metric,) = [c for c in journal.metrics().cursors if c.name == f"c{committed}"]
            appended = 5000.0 + (committed // 100) * 100
            assert metric.oldest_unread_age == 300_000.0 - appended


async def test_memory_stays_flat_however_far_behind_the_reader_is(tmp_path: Path) -> None:
    import tracemalloc

    with Journal.open(tmp_path / "j", max_size=256 * 1024 * 1024, segment_size=2 * 1024 * 1024) as journal:
        for start in range(0, 300_000, 1000):
            journal.append(samples(start, 1000, point=f"plc/p{start % 7}"))
        assert journal.bytes_on_disk > 8 * 1024 * 1024
        cursor = journal.reader("behind")
        tracemalloc.start()
        try:
            count = 0
            while batch := await cursor.next_batch(max_records=1000, max_wait=0):
                count += len(batch)
                cursor.commit(batch.last_offset)
                del batch
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert count == 300_000
    # One decoded frame and one batch at a time: well under a megabyte, against 8+ MB of backlog.
    assert peak < 1024 * 1024, peak


async def test_oversized_batches_are_split_into_frames_readers_accept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from otseam.journal import segments

    monkeypatch.setattr(segments, "MAX_PAYLOAD", 4096)
    records: list[Record] = [Sample("d/text", "x" * 100 + str(i), Quality.GOOD, 1.0, 1.0) for i in range(200)]
    with Journal.open(tmp_path / "j") as journal:
        assert journal.append(records) == 200
        with pytest.raises(ValueError, match="too large for the journal"):
            journal.append([Sample("d/text", "y" * 5000, Quality.GOOD, 1.0, 1.0)])
        batch = await journal.reader("a").next_batch(max_records=1000, max_wait=0)
    assert batch.records == records
    frames = list(segments.iter_frames(next((tmp_path / "j").glob("*.seg")), 1))
    assert len(frames) > 5 and all(ok and header.length <= 4096 for _, header, ok in frames)


async def test_offsets_never_reuse_what_a_cursor_committed_even_if_the_data_is_gone(tmp_path: Path) -> None:
    """After a power cut the cursor file may be newer than the segment: new records must not reuse offsets."""
    path = tmp_path / "j"
    with Journal.open(path) as journal:
        journal.append(samples(0, 50))
        journal.append(samples(50, 50))
        cursor = journal.reader("hist")
        cursor.commit(100)
    segment = next(path.glob("*.seg"))
    segment.write_bytes(segment.read_bytes()[: segment.stat().st_size // 2])  # the second frame never reached disk
    with Journal.open(path) as journal:
        assert journal.append(samples(100, 3)) == 103
        batch = await journal.reader("hist").next_batch(max_wait=0)
        assert batch.offsets == [101, 102, 103]
        replay = journal.reader("new")
        seen: list[int] = []
        while more := await replay.next_batch(max_wait=0):
            seen.extend(more.offsets)
            replay.commit(more.last_offset)
        assert seen[:50] == list(range(1, 51)) and seen[-3:] == [101, 102, 103]
        assert not set(seen) & set(range(51, 101))
        assert replay.dropped == 0, "offsets that were never written are not a loss"
    with Journal.open(path) as journal:
        replay = journal.reader("again")
        seen = []
        while more := await replay.next_batch(max_wait=0):
            seen.extend(more.offsets)
            replay.commit(more.last_offset)
        assert seen == [*range(1, 51), 101, 102, 103] and replay.dropped == 0


async def test_a_cursor_before_skipped_offsets_waits_instead_of_spinning(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal.open(path) as journal:
        journal.append(samples(0, 25))
        journal.append(samples(25, 25))
        journal.reader("hist").commit(50)
    segment = next(path.glob("*.seg"))
    segment.write_bytes(segment.read_bytes()[: segment.stat().st_size // 2])
    with Journal.open(path) as journal:
        cursor = journal.reader("late")
        assert (await cursor.next_batch(max_wait=0)).offsets == list(range(1, 26))
        cursor.commit(25)
        waiting = asyncio.create_task(cursor.next_batch(max_wait=30))
        # If next_batch spun without awaiting, this wait would never return and the test would time out.
        await wait_until_async(lambda: journal._waiters, "the reader to wait for an append")

        assert not waiting.done()
        journal.append(samples(50, 1))
        assert (await asyncio.wait_for(waiting, 10)).offsets == [51]


def test_opened_from_the_contract_section(tmp_path: Path) -> None:
    from otseam.contract.models import Journal as JournalConfig

    config = JournalConfig.model_validate({"path": str(tmp_path / "j"), "max_size": "64MiB", "max_age": "2d"})
    with Journal.from_config(config, source="edge-1") as journal:
        assert (journal.max_size, journal.max_age, journal.source) == (64 * 1024**2, 2 * 86400.0, "edge-1")
        assert journal.segment_size == 4 * 1024**2
        assert journal.append(samples(0, 2)) == 2


async def test_removed_cursor_and_closed_journal_refuse_commits(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j")
    journal.append(samples(0, 3))
    cursor = journal.reader("gone")
    journal.remove_cursor("gone")
    with pytest.raises(JournalError, match="was removed"):
        cursor.commit(1)
    assert journal.cursors() == []
    again = journal.reader("gone")
    assert again.committed == 0, "a removed cursor comes back from the start"
    journal.close()
    with pytest.raises(JournalError, match="closed"):
        again.commit(1)


def test_warns_when_the_disk_cannot_hold_max_size(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="otseam.journal"), Journal.open(tmp_path / "j", max_size=2**60):
        pass
    assert any("lower journal.max_size or free space" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="otseam.journal"), Journal.open(tmp_path / "k", max_size=1024 * 1024):
        pass
    assert not caplog.records


async def test_sealed_segments_are_synced_off_the_writer_and_closed(tmp_path: Path) -> None:
    """Rotation hands the sealed segment to a thread that fsyncs and closes it: after close() no
    descriptor is left open and every segment reads back whole."""
    before = set(os.listdir("/proc/self/fd"))
    with Journal.open(tmp_path / "j", segment_size=64 * 1024) as journal:
        for start in range(0, 6000, 500):
            journal.append(samples(start, 500))
        assert len(list((tmp_path / "j").glob("*.seg"))) > 3
        journal.flush()  # waits for the sealing threads
        assert not journal._sealing
    assert set(os.listdir("/proc/self/fd")) <= before
    with Journal.open(tmp_path / "j") as reopened:
        batch = await reopened.reader("a").next_batch(max_records=10_000, max_wait=0)
    assert batch.records == samples(0, 6000)


def test_an_observer_sees_each_write_with_its_first_offset_until_it_stops(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    with Journal.open(tmp_path / "j") as journal:
        stop = journal.observe(lambda first, records: seen.append((first, len(records))))
        journal.append(samples(0, 3))
        journal.append(samples(3, 2))
        stop()
        journal.append(samples(5, 1))
        stop()  # a second stop is harmless
    assert seen == [(1, 3), (4, 2)]
