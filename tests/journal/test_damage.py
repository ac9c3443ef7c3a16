"""Damage costs only the frames it touches: flipped bytes are skipped, counted and reported, the intact
frames after them are delivered, and only a torn tail is cut. Failed fsyncs stop the writer."""

from __future__ import annotations

import asyncio
import json
import marshal
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otseam.core.records import Event, Quality, Record, Sample, Severity
from otseam.journal import Journal, JournalError, segments

FRAMES = 30
PER_FRAME = 100


def samples(start: int, count: int) -> list[Record]:
    return [
        Sample("plc1/level", float(i), Quality.GOOD, 1_700_000_000.0 + i, 1_700_000_000.5 + i)
        for i in range(start, start + count)
    ]


def write_journal(path: Path, segment_size: int | None = None) -> None:
    with Journal.open(path, max_size=64 * 1024 * 1024, segment_size=segment_size) as journal:
        for frame in range(FRAMES):
            journal.append(samples(frame * PER_FRAME, PER_FRAME))


def frame_positions(segment: Path) -> list[tuple[int, int, int, int]]:
    """``(position, size, first offset, last offset)`` of each frame of an intact segment."""
    base = segments.parse_segment_name(segment.name)
    assert base is not None
    return [
        (position, header.size, header.base_offset, header.end_offset - 1)
        for position, header, ok in segments.iter_frames(segment, base)
        if ok
    ]


async def read_everything(journal: Journal, name: str = "a") -> tuple[list[int], list[Record], int]:
    cursor = journal.reader(name)
    offsets: list[int] = []
    records: list[Record] = []
    while batch := await cursor.next_batch(max_records=1000, max_wait=0):
        offsets.extend(batch.offsets)
        records.extend(batch.records)
        cursor.commit(batch.last_offset)
    return offsets, records, cursor.dropped


def corrupt_events(records: list[Record]) -> list[Event]:
    return [r for r in records if isinstance(r, Event) and r.kind == "journal.corrupt"]


@pytest.mark.parametrize(("where", "what"), [(40, "payload"), (12, "length"), (8, "crc"), (20, "kind")])
async def test_a_damaged_frame_in_the_newest_segment_costs_only_that_frame(
    tmp_path: Path, where: int, what: str
) -> None:
    path = tmp_path / "j"
    write_journal(path)
    (segment,) = path.glob("*.seg")
    frames = frame_positions(segment)
    position, _size, first, last = frames[10]
    data = bytearray(segment.read_bytes())
    data[position + where] ^= 0x5A  # the payload, or a header field: base offset, CRC, kind
    segment.write_bytes(bytes(data))
    with Journal.open(path) as journal:
        assert segment.stat().st_size == len(data), f"damaged {what}: nothing may be truncated"
        assert journal.last_offset == FRAMES * PER_FRAME
        journal.append(samples(FRAMES * PER_FRAME, 5))  # the writer goes on after the damage
        offsets, records, dropped = await read_everything(journal)
    delivered = [o for o, r in zip(offsets, records, strict=True) if isinstance(r, Sample)]
    expected = [o for o in range(1, FRAMES * PER_FRAME + 6) if not first <= o <= last]
    assert delivered == expected
    assert [r for r in records if isinstance(r, Sample)] == [
        s
        for o, s in zip(range(1, FRAMES * PER_FRAME + 6), samples(0, FRAMES * PER_FRAME + 5), strict=True)
        if not first <= o <= last
    ]
    assert dropped == PER_FRAME
    (event,) = corrupt_events(records)
    assert (event.data["first_offset"], event.data["last_offset"], event.data["lost"]) == (first, last, PER_FRAME)
    assert event.severity == Severity.HIGH and f"offsets {first}-{last}" in event.message


async def test_damage_in_a_sealed_segment_keeps_the_frames_after_it(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_journal(path, segment_size=64 * 1024)
    sealed = sorted(path.glob("*.seg"))[0]
    frames = frame_positions(sealed)
    assert len(frames) >= 3
    position, size, first, last = frames[1]
    data = bytearray(sealed.read_bytes())
    data[position + size // 2] ^= 0x01
    sealed.write_bytes(bytes(data))
    with Journal.open(path) as journal:
        offsets, records, dropped = await read_everything(journal)
    assert dropped == last - first + 1
    samples_at = [o for o, r in zip(offsets, records, strict=True) if isinstance(r, Sample)]
    assert samples_at == [o for o in range(1, FRAMES * PER_FRAME + 1) if not first <= o <= last]


async def test_a_torn_tail_is_still_cut_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_journal(path)
    (segment,) = path.glob("*.seg")
    frames = frame_positions(segment)
    position, size, first, _last = frames[-1]
    whole = segment.read_bytes()
    segment.write_bytes(whole[: position + size - 7])  # the last frame's write was interrupted
    with Journal.open(path) as journal:
        assert segment.stat().st_size == position
        assert journal.last_offset == first - 1
        offsets, records, dropped = await read_everything(journal)
    assert offsets == list(range(1, first)) and dropped == 0 and not corrupt_events(records)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_any_flipped_byte_costs_exactly_its_frame(data: st.DataObject) -> None:
    directory = Path(tempfile.mkdtemp(prefix="seam-journal-damage-"))
    try:
        path = directory / "j"
        with Journal.open(path) as journal:
            for frame in range(8):
                journal.append(samples(frame * 20, 20))
        (segment,) = path.glob("*.seg")
        frames = frame_positions(segment)
        content = bytearray(segment.read_bytes())
        at = data.draw(st.integers(0, len(content) - 1))
        content[at] ^= data.draw(st.integers(1, 255))
        segment.write_bytes(bytes(content))
        (hit,) = [f for f in frames if f[0] <= at < f[0] + f[1]]
        with Journal.open(path) as journal:
            offsets, records, _dropped = asyncio.run(read_everything(journal))
        delivered = [o for o, r in zip(offsets, records, strict=True) if isinstance(r, Sample)]
        assert delivered == [o for o in range(1, 161) if not hit[2] <= o <= hit[3]]
        if hit is not frames[-1]:  # the last frame is a torn tail: cut, as after a crash
            (event,) = corrupt_events(records)
            assert (event.data["first_offset"], event.data["last_offset"]) == (hit[2], hit[3])
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- the on-disk format ------------------------------------------------------------------------------


def format_1_journal(path: Path) -> None:
    """A journal as Seam wrote it before format 2: journal.json without "format" and a kind-1 frame
    whose payload is marshal (what that version stored for samples)."""
    path.mkdir(parents=True)
    (path / "cursors").mkdir()
    (path / "journal.json").write_text(json.dumps({"source": "old-host", "floor": 1}))
    payload = marshal.dumps((("plc1/level",), (1.5,), b"\x00", (1.0,), (1.0,)), 4)
    frame = segments.build_frame(1, 1, 1, 1_700_000_000.0, payload)
    (path / segments.segment_name(1)).write_bytes(frame)


def test_a_format_1_journal_is_refused_naming_its_format(tmp_path: Path) -> None:
    path = tmp_path / "j"
    format_1_journal(path)
    with pytest.raises(JournalError, match=r"on-disk format 1 .*marshal.*does not read"):
        Journal.open(path)
    assert (path / segments.segment_name(1)).stat().st_size > 0, "refused, never modified"


def test_an_empty_format_1_journal_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "j"
    format_1_journal(path)
    (path / segments.segment_name(1)).write_bytes(b"")
    with Journal.open(path) as journal:
        assert journal.append(samples(0, 3)) == 3
        assert journal.source == "old-host"
    assert json.loads((path / "journal.json").read_text())["format"] == 2


def test_a_newer_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j"
    Journal.open(path).close()
    meta = json.loads((path / "journal.json").read_text())
    assert meta["format"] == 2
    (path / "journal.json").write_text(json.dumps({**meta, "format": 3}))
    with pytest.raises(JournalError, match="format 3, written by a newer Seam"):
        Journal.open(path)


def test_frames_hold_no_marshal(tmp_path: Path) -> None:
    """Every frame of a new journal is kind 3 (sample columns) or 4 (events as JSON)."""
    path = tmp_path / "j"
    event = Event(1.0, "alert", "monitor", Severity.HIGH, "x\udc80y", {"nan": float("nan"), "list": [1, "é"]})
    with Journal.open(path) as journal:
        journal.append([*samples(0, 3), event, *samples(3, 2)])
    (segment,) = path.glob("*.seg")
    kinds = [header.kind for _p, header, ok in segments.iter_frames(segment, 1) if ok]
    assert kinds == [3, 4, 3]
    with Journal.open(path) as journal:
        _offsets, records, _dropped = asyncio.run(read_everything(journal))
    read_event = records[3]
    assert isinstance(read_event, Event) and read_event.message == "x\udc80y"
    assert read_event.data["list"] == [1, "é"] and read_event.data["nan"] != read_event.data["nan"]
    assert records[:3] + records[4:] == samples(0, 5)


# --- fsync failures ----------------------------------------------------------------------------------


def test_a_failed_fsync_stops_the_writer(tmp_path: Path) -> None:
    """The active segment is /dev/null: writes succeed, fdatasync fails with EINVAL, as a failing disk's
    writeback would make it fail with EIO. After that the page cache no longer holds the data for sure,
    so the journal refuses every further append instead of reporting success."""
    path = tmp_path / "j"
    Journal.open(path).close()
    (segment,) = path.glob("*.seg")
    segment.unlink()
    segment.symlink_to("/dev/null")
    with Journal.open(path, sync="always") as journal:
        with pytest.raises(JournalError, match=r"stopped: fsync failed"):
            journal.append(samples(0, 1))
        with pytest.raises(JournalError, match="stopped"):
            journal.append(samples(1, 1))


def python(program: str, path: Path) -> list[str]:
    return [sys.executable, "-c", program, str(path)]


def test_state_file_rename_is_followed_by_a_directory_fsync(tmp_path: Path) -> None:
    """strace watches a real save of journal.json: the rename, then an fsync of the directory's fd."""
    strace = shutil.which("strace")
    assert strace, "strace is needed for this test (apt-get install strace)"
    path = tmp_path / "j"
    path.mkdir()
    program = (
        "import sys; from pathlib import Path; from otseam.journal.state import Meta; "
        "Meta('host-1', 7).save(Path(sys.argv[1]) / 'journal.json')"
    )
    trace = tmp_path / "trace"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run(
        [strace, "-f", "-o", str(trace), "-e", "trace=openat,rename,renameat,renameat2,fsync", *python(program, path)],
        check=True,
        env=env,
        timeout=60,
    )
    calls = trace.read_text().splitlines()
    renamed = next(i for i, line in enumerate(calls) if "rename" in line and "journal.json" in line)
    opened = next(line for line in calls[renamed:] if "openat" in line and line.split('"')[1] == str(path))
    fd = opened.rsplit("=", 1)[1].strip()
    assert any(line.split("(", 1)[1].startswith(f"{fd})") for line in calls[renamed:] if "fsync(" in line), calls
    assert json.loads((path / "journal.json").read_text()) == {"source": "host-1", "floor": 7, "format": 2}


@pytest.mark.parametrize("quality", [9, 200, "good", None])
def test_a_quality_no_reader_knows_is_refused_before_anything_is_written(tmp_path: Path, quality: object) -> None:
    """A frame a reader could not decode must never be written: refused at append, nothing on disk."""
    path = tmp_path / "j"
    with Journal.open(path) as journal:
        journal.append(samples(0, 2))
        size = journal.bytes_on_disk
        bad = Sample("plc1/level", 1.0, quality, 1.0, 1.0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="quality must be an otseam Quality"):
            journal.append([*samples(2, 3), bad])
        assert journal.bytes_on_disk == size and journal.last_offset == 2
        offsets, _records, _dropped = asyncio.run(read_everything(journal))
    assert offsets == [1, 2]
