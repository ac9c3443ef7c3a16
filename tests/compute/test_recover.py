"""Finding the engine's last checkpoint in a real journal: newest first, across segments, past a damaged
frame, within a bounded amount of reading."""

from __future__ import annotations

from pathlib import Path

from otseam.compute.recover import last_checkpoint
from otseam.core.records import Event, Quality, Sample, Severity
from otseam.journal import Journal


def checkpoint(total: float, ts: float) -> Event:
    data = {"version": 1, "points": {"computed/v": {"fingerprint": "f", "state": {"total": total}}}}
    return Event(ts, "compute.state", "compute", Severity.INFO, "state", data)


def samples(count: int, ts: float) -> list[Sample]:
    return [Sample(f"plc1/p{i}", float(i), Quality.GOOD, ts, ts) for i in range(count)]


def total(event: Event | None) -> float:
    assert event is not None
    return float(event.data["points"]["computed/v"]["state"]["total"])


def test_the_newest_checkpoint_wins(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j") as journal:
        journal.append([*samples(10, 1.0), checkpoint(1.0, 1.0), *samples(10, 2.0)])
        journal.append([checkpoint(2.0, 2.0)])
        journal.append(samples(10, 3.0))
        journal.append([Event(3.0, "alarm", "x", Severity.HIGH, "other event", {})])
    assert total(last_checkpoint(tmp_path / "j")) == 2.0


def test_a_checkpoint_in_an_older_segment_is_found(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j", segment_size=64 * 1024) as journal:
        journal.append([checkpoint(7.0, 1.0)])
        for step in range(20):
            journal.append(samples(500, 2.0 + step))
    assert len(list((tmp_path / "j").glob("*.seg"))) > 2
    assert total(last_checkpoint(tmp_path / "j")) == 7.0
    # Bounded: with a tiny budget the search stops at the newest segment.
    assert last_checkpoint(tmp_path / "j", budget=1) is None


def test_a_damaged_checkpoint_frame_is_skipped_for_the_one_before(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j") as journal:
        journal.append([checkpoint(1.0, 1.0)])
        journal.append(samples(5, 2.0))
        journal.append([checkpoint(2.0, 2.0)])
    (segment,) = sorted((tmp_path / "j").glob("*.seg"))
    raw = bytearray(segment.read_bytes())
    raw[-5] ^= 0xFF  # inside the last frame's payload
    segment.write_bytes(bytes(raw))
    assert total(last_checkpoint(tmp_path / "j")) == 1.0


def test_no_journal_or_no_checkpoint(tmp_path: Path) -> None:
    assert last_checkpoint(tmp_path / "missing") is None
    with Journal.open(tmp_path / "j") as journal:
        journal.append(samples(5, 1.0))
    assert last_checkpoint(tmp_path / "j") is None


def test_damage_in_the_middle_does_not_hide_a_later_checkpoint(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j") as journal:
        journal.append([checkpoint(1.0, 1.0)])
        journal.append(samples(50, 2.0))
        journal.append([checkpoint(3.0, 3.0)])
    (segment,) = sorted((tmp_path / "j").glob("*.seg"))
    raw = bytearray(segment.read_bytes())
    first_frame = 32 + int.from_bytes(raw[0:4], "little")
    raw[first_frame + 20] = 0x7F  # the samples frame's kind: its header is no longer plausible
    segment.write_bytes(bytes(raw))
    assert total(last_checkpoint(tmp_path / "j")) == 3.0
