"""A record a sink will never accept goes to the dead-letter file, is counted and announced, and the
records behind it are delivered: it is not retried until retention deletes it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from otseam.core.plugins import RecordsRejected
from otseam.core.records import Batch, Event, Quality, Sample
from otseam.journal import Journal
from otseam.runtime.deadletter import REJECTED_KIND, DeadLetters
from otseam.runtime.sinkrunner import Backoff, SinkStats, run_sink
from tests.support.wait import wait_until_async as wait_until


class NoNegatives:
    """A sink whose peer cannot represent a negative value (an unsigned register, say): it stores the
    rest of each batch and names the offsets it refuses."""

    def __init__(self) -> None:
        self.stored: list[float] = []
        self.events: list[Event] = []
        self.calls = 0

    async def start(self) -> None:
        return None

    async def deliver(self, batch: Batch) -> None:
        self.calls += 1
        refused = []
        for offset, record in zip(batch.offsets, batch.records, strict=True):
            if isinstance(record, Event):
                self.events.append(record)
            elif isinstance(record.value, float) and record.value < 0:
                refused.append(offset)
            elif isinstance(record.value, float):
                self.stored.append(record.value)
        if refused:
            raise RecordsRejected(refused, "negative values do not fit an unsigned register")

    async def close(self) -> None:
        return None


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(tmp_path / "journal") as j:
        yield j


async def test_rejected_records_go_to_the_dead_letter_file_and_the_rest_flows(journal: Journal, tmp_path: Path) -> None:
    values = [1.0, -2.0, 3.0, -4.0, 5.0]
    journal.append([Sample("plc1/a", v, Quality.GOOD, 100.0 + i, 100.0 + i) for i, v in enumerate(values)])
    sink, stats = NoNegatives(), SinkStats("unsigned")
    letters = DeadLetters("unsigned", tmp_path, journal.append)
    task = asyncio.create_task(run_sink(sink, journal.reader("unsigned"), stats=stats, dead_letters=letters))
    try:
        # The rejection's own event comes back through the journal to the same sink: wait for it too.
        await wait_until(lambda: any(e.kind == REJECTED_KIND for e in sink.events), "the rejection announced")
        await wait_until(lambda: stats.committed_offset == journal.last_offset, "everything committed")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sink.stored == [1.0, 3.0, 5.0]
    assert stats.rejected_records == 2 and stats.errors == 0
    lines = [json.loads(line) for line in letters.path.read_text().splitlines()]
    assert [(line["offset"], line["record"]["value"]) for line in lines] == [(2, -2.0), (4, -4.0)]
    assert {line["reason"] for line in lines} == {"negative values do not fit an unsigned register"}
    [event] = [e for e in sink.events if e.kind == REJECTED_KIND]
    assert event.data["first_offset"] == 2 and event.data["last_offset"] == 4 and event.data["count"] == 2
    assert event.data["file"] == str(letters.path)


async def test_without_a_dead_letter_box_a_rejection_is_retried_not_dropped(journal: Journal) -> None:
    journal.append([Sample("plc1/a", -1.0, Quality.GOOD, 1.0, 1.0)])
    sink, stats = NoNegatives(), SinkStats("unsigned")
    backoff = Backoff(base=0.01, cap=0.02)
    task = asyncio.create_task(run_sink(sink, journal.reader("unsigned"), stats=stats, backoff=backoff))
    try:
        await wait_until(lambda: sink.calls >= 3, "the batch offered again")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert stats.committed_offset == -1 and stats.rejected_records == 0 and stats.errors >= 2
