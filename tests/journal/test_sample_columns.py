"""Runs of samples appended already encoded (the diode receiver's way) read back like any other."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from otseam.core import columns
from otseam.core.columns import SampleColumns
from otseam.core.records import Event, Quality, Record, Sample, Severity
from otseam.journal import Journal, segments


def run(start: int, count: int, text: bool = False) -> tuple[list[Record], SampleColumns]:
    records: list[Record] = [
        Sample(f"plc/p{i % 5}", f"v{i}" * 3 if text else i * 0.5, Quality(i % 3), float(i), i + 0.25)
        for i in range(start, start + count)
    ]
    payload = columns.encode("ot-edge", list(range(start, start + count)), records)  # type: ignore[arg-type]
    return records, SampleColumns(payload, count)


async def test_encoded_runs_take_one_offset_per_sample_and_keep_their_order(tmp_path: Path) -> None:
    first, first_run = run(100, 7)
    second, second_run = run(107, 3, text=True)
    event = Event(5.0, "diode.gap", "diode-receive", Severity.HIGH, "lost", {"blocks": 1})
    plain: list[Record] = [Sample("plc/q", True, Quality.GOOD, 1.0, 2.0)]
    with Journal.open(tmp_path / "j") as journal:
        assert journal.append([first_run, event, *plain, second_run]) == 12
        assert journal.append(plain) == 13
        batch = await journal.reader("sink").next_batch(max_records=100, max_wait=0)
    assert batch.offsets == list(range(1, 14))
    assert batch.records == [*first, event, *plain, *second, *plain]


async def test_more_frames_than_one_system_call_takes(tmp_path: Path) -> None:
    """Over 1,024 buffers (a header and a payload per frame) go to the kernel in several writev calls."""
    expected: list[Record] = []
    runs: list[Record | SampleColumns] = []
    for i in range(700):
        records, encoded = run(i * 2, 2)
        expected += records
        runs.append(encoded)
    with Journal.open(tmp_path / "j") as journal:
        assert journal.append(runs) == 1400
        batch = await journal.reader("sink").next_batch(max_records=5000, max_wait=0)
    assert batch.records == expected
    with Journal.open(tmp_path / "j") as reopened:  # the file ends on a frame boundary
        assert reopened.last_offset == 1400


def test_an_encoded_run_must_hold_what_it_claims() -> None:
    _, encoded = run(0, 4)
    with pytest.raises(columns.ColumnsError):
        SampleColumns(encoded.payload, 5)
    with pytest.raises(columns.ColumnsError):
        SampleColumns(b"\x01" + encoded.payload[1:], 4)
    with pytest.raises(columns.ColumnsError):
        SampleColumns(b"", 0)


def test_frame_checksums_are_zlibs_crc32() -> None:
    """Journals written before the faster checksum (or without it installed) must still read."""
    payload = bytes(range(256)) * 300
    frame = segments.build_frame(7, 3, 1, 1.5, payload)
    crc = int.from_bytes(frame[4:8], "little")
    assert crc == zlib.crc32(frame[segments.CRC_FROM :])
    assert segments.crc32(memoryview(payload)[5:], 99) == zlib.crc32(payload[5:], 99)
