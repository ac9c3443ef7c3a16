"""Crash safety: kill -9 the writer and the reader at random moments, then prove nothing accepted is lost.

Every offset the writer printed (``append`` had returned it) must be delivered, in order, and after
deduplication by (source, offset) exactly once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from otseam.core.records import Batch, Quality, Sample
from otseam.journal import Deduplicator, Journal
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]


class Worker:
    """A worker subprocess whose stdout lines are collected by a thread until it dies."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.journal.crash_worker", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.endswith("\n"):
                self.lines.append(line.strip())

    def wait_for_lines(self, count: int, timeout: float = 60.0) -> None:
        wait_until(
            lambda: len(self.lines) >= count or self.process.poll() is not None,
            f"{count} lines from the worker",
            timeout,
            interval=0.002,  # fine-grained: the kill should land at a random point of the writer's work
        )

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.finish()

    def finish(self) -> int:
        code = self.process.wait(30)
        self._thread.join(10)
        assert self.process.stderr is not None
        errors = self.process.stderr.read()
        self.process.stderr.close()
        assert "Traceback" not in errors, errors
        return code


def test_kill_9_loses_nothing_accepted(tmp_path: Path) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    journal_path = str(tmp_path / "journal")
    accepted: set[int] = set()

    for _ in range(8):
        writer = Worker("write", journal_path)
        writer.wait_for_lines(rng.randint(1, 40))
        time.sleep(rng.uniform(0.0, 0.25))  # the behaviour under test: a kill at a random moment of the writing
        writer.kill()
        assert writer.lines, f"seed {seed}: the writer never accepted anything"
        accepted.update(int(line) for line in writer.lines)

    output = tmp_path / "delivered.txt"
    kills = 0
    for _ in range(5):
        # A pause between delivering and committing makes the kill land in that window most of the time.
        reader = Worker("read", journal_path, str(output), "0.05")
        reader.wait_for_lines(rng.randint(1, 10))
        if reader.lines and reader.lines[-1] == "done":
            reader.finish()
            break
        reader.kill()
        kills += 1
    reader = Worker("read", journal_path, str(output))
    assert reader.finish() == 0
    assert reader.lines[-1] == "done"
    assert kills > 0, f"seed {seed}: the reader was never killed mid-delivery"

    # Receiver side: parse what was delivered (including repeats after the reader's deaths) and dedup.
    dedup = Deduplicator(tmp_path / "dedup.json")
    delivered = 0
    kept: list[int] = []
    sources: set[str] = set()
    for block in output.read_text().split("end\n"):
        rows = [line.split() for line in block.splitlines()]
        if not rows:
            continue
        sources.update(source for source, _, _ in rows)
        offsets = [int(offset) for _, offset, _ in rows]
        for _, offset, value in rows:
            assert value == offset, f"seed {seed}: offset {offset} carries the sample written for offset {value}"
        batch = Batch(rows[0][0], offsets, [Sample("crash/p", o, Quality.GOOD, 0.0, 0.0) for o in offsets])
        fresh = dedup.filter(batch)
        kept.extend(fresh.offsets)
        dedup.advance(fresh)
        delivered += len(offsets)
    assert len(sources) == 1

    assert len(kept) == len(set(kept)), f"seed {seed}: duplicates survived deduplication"
    assert kept == sorted(kept), f"seed {seed}: delivery out of order"
    missing = accepted - set(kept)
    assert not missing, f"seed {seed}: accepted offsets never delivered: {sorted(missing)[:10]}"
    assert kept == list(range(1, kept[-1] + 1)), f"seed {seed}: gaps in the delivered offsets"
    with Journal.open(journal_path) as journal:
        assert kept[-1] == journal.last_offset
        assert journal.reader("sink").committed == journal.last_offset
    # The scenario really exercised redelivery: a reader died between delivering and committing.
    assert delivered > len(kept), f"seed {seed}: no batch was ever delivered twice"


def test_deduplicator_persists_and_filters(tmp_path: Path) -> None:
    sample = Sample("d/p", 1.0, Quality.GOOD, 0.0, 0.0)
    dedup = Deduplicator(tmp_path / "state.json")
    first = Batch("edge-a", [1, 2, 3], [sample] * 3)
    assert dedup.filter(first) is first
    dedup.advance(first)
    again = Deduplicator(tmp_path / "state.json")
    assert again.highest("edge-a") == 3
    overlap = again.filter(Batch("edge-a", [2, 3, 4, 5], [sample] * 4))
    assert overlap.offsets == [4, 5] and len(overlap.records) == 2
    assert again.filter(Batch("edge-b", [1], [sample])).offsets == [1], "sources are independent"
    (tmp_path / "bad.json").write_text("[1, 2]")
    try:
        Deduplicator(tmp_path / "bad.json")
    except Exception as exc:
        assert "not a deduplication state file" in str(exc)
    else:
        raise AssertionError("a broken state file must be refused")
