"""The sink runner against the real journal and the real file sink."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otseam.contract.models import SinkSpec
from otseam.core.records import Event, Quality, Sample, Severity
from otseam.journal import Journal
from otseam.runtime.http import HttpAddressError, parse_address
from otseam.runtime.sinkrunner import Backoff, RecordFilter, SinkStats, run_sink
from otseam.sinks.file import FileSink
from tests.support.wait import wait_until_async as wait_until


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(tmp_path / "journal", max_size=64 * 1024 * 1024) as j:
        yield j


def samples(n: int, start: int = 0, point: str = "plc1/a") -> list[Sample]:
    return [Sample(point, float(i), Quality.GOOD, 1000.0 + i, 1000.0 + i) for i in range(start, start + n)]


def file_sink(tmp_path: Path, **spec: object) -> FileSink:
    options = {"path": str(tmp_path / "out" / "archive.jsonl")}
    return FileSink(
        SinkSpec.model_validate({"id": "archive", "type": "file", "options": options, **spec}), str(tmp_path)
    )


def written(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "out" / "archive.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def fast_backoff() -> Backoff:
    return Backoff(base=0.02, cap=0.1)


async def test_delivers_everything_in_order_and_commits(journal: Journal, tmp_path: Path) -> None:
    for chunk in range(6):
        journal.append(samples(2000, start=chunk * 2000))
    stats = SinkStats("archive")
    reader = journal.reader("archive")
    task = asyncio.create_task(run_sink(file_sink(tmp_path), reader, stats=stats, max_records=1500))
    await wait_until(lambda: stats.committed_offset == journal.last_offset)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    lines = written(tmp_path)
    assert [line["offset"] for line in lines] == list(range(1, 12001))
    assert [line["value"] for line in lines] == [float(i) for i in range(12000)]
    assert reader.committed == 12000 and stats.delivered_records == 12000 and stats.errors == 0
    assert stats.lag(journal.last_offset) == 0


async def test_failed_deliveries_are_retried_without_loss_duplicates_or_reordering(
    journal: Journal, tmp_path: Path
) -> None:
    stats = SinkStats("archive")
    task = asyncio.create_task(
        run_sink(file_sink(tmp_path), journal.reader("archive"), stats=stats, backoff=fast_backoff(), max_wait=0.05)
    )
    journal.append(samples(500))
    await wait_until(lambda: stats.committed_offset == 500)

    # The file system under the sink goes away: its directory becomes a plain file.
    out = tmp_path / "out"
    out.rename(tmp_path / "out.saved")
    out.write_text("not a directory")
    journal.append(samples(700, start=500))
    await wait_until(lambda: stats.errors >= 3)
    assert stats.state == "retrying" and stats.committed_offset == 500
    assert "NotADirectoryError" in stats.last_error
    journal.append(samples(300, start=1200))

    out.unlink()
    (tmp_path / "out.saved").rename(out)
    await wait_until(lambda: stats.committed_offset == 1500)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [line["offset"] for line in written(tmp_path)] == list(range(1, 1501))
    assert stats.consecutive_failures == 0


async def test_a_new_runner_resumes_after_the_last_commit(journal: Journal, tmp_path: Path) -> None:
    journal.append(samples(3000))
    first = SinkStats("archive")
    task = asyncio.create_task(run_sink(file_sink(tmp_path), journal.reader("archive"), stats=first, max_records=100))
    await wait_until(lambda: first.committed_offset >= 1000)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    journal.append(samples(1000, start=3000))

    second = SinkStats("archive")
    task = asyncio.create_task(run_sink(file_sink(tmp_path), journal.reader("archive"), stats=second))
    await wait_until(lambda: second.committed_offset == 4000)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    # A batch written but not committed when the first runner was cancelled is offered again; the file
    # sink skips it by offset, so the file holds each record once.
    assert [line["offset"] for line in written(tmp_path)] == list(range(1, 4001))


async def test_stop_drains_what_the_journal_holds(journal: Journal, tmp_path: Path) -> None:
    journal.append(samples(5000))
    stop = asyncio.Event()
    stop.set()
    stats = SinkStats("archive")
    await asyncio.wait_for(run_sink(file_sink(tmp_path), journal.reader("archive"), stats=stats, stop=stop), 20)
    assert stats.state == "stopped" and stats.committed_offset == 5000
    assert len(written(tmp_path)) == 5000


async def test_filter_by_points_and_events_commits_past_skipped_records(journal: Journal, tmp_path: Path) -> None:
    alarm = Event(5.0, "alarm", "plc1/a1", Severity.HIGH, "high", {"state": "raised"})
    journal.append([*samples(3, point="plc1/a1"), *samples(3, point="plc1/b"), alarm, *samples(2, point="plc2/a1")])
    stats = SinkStats("archive")
    sink = file_sink(tmp_path, points=["plc1/a*"], events=False)
    task = asyncio.create_task(
        run_sink(sink, journal.reader("archive"), stats=stats, record_filter=RecordFilter(["plc1/a*"], events=False))
    )
    await wait_until(lambda: stats.committed_offset == journal.last_offset)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [(line["point"], line["offset"]) for line in written(tmp_path)] == [
        ("plc1/a1", 1),
        ("plc1/a1", 2),
        ("plc1/a1", 3),
    ]
    assert stats.skipped_records == 6


async def test_a_sink_that_cannot_start_is_retried(journal: Journal, tmp_path: Path) -> None:
    (tmp_path / "out").write_text("in the way")  # the sink cannot create its directory
    stats = SinkStats("archive")
    journal.append(samples(10))
    task = asyncio.create_task(
        run_sink(file_sink(tmp_path), journal.reader("archive"), stats=stats, backoff=fast_backoff())
    )
    await wait_until(lambda: stats.errors >= 2)
    assert stats.state == "retrying"
    (tmp_path / "out").unlink()
    await wait_until(lambda: stats.committed_offset == 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert len(written(tmp_path)) == 10


async def test_file_sink_cuts_a_partial_last_line_before_appending(journal: Journal, tmp_path: Path) -> None:
    journal.append(samples(3))
    stats = SinkStats("archive")
    stop = asyncio.Event()
    stop.set()
    await run_sink(file_sink(tmp_path), journal.reader("archive"), stats=stats, stop=stop)
    path = tmp_path / "out" / "archive.jsonl"
    with path.open("a") as handle:
        handle.write('{"source": "torn')  # a crash in the middle of a write
    journal.append(samples(2, start=3))
    await run_sink(file_sink(tmp_path), journal.reader("archive"), stats=SinkStats("archive"), stop=stop)
    assert [line["offset"] for line in written(tmp_path)] == [1, 2, 3, 4, 5]
    shutil.rmtree(tmp_path / "out")


def test_record_filter_matches_exact_keys_and_globs() -> None:
    f = RecordFilter(["plc1/level", "plc2/*", "plc3/t?"])
    assert [f.wants_point(k) for k in ("plc1/level", "plc1/flow", "plc2/x", "plc3/t1", "plc3/t12")] == [
        True,
        False,
        True,
        True,
        False,
    ]
    assert RecordFilter().wants_point("anything/at-all")


@given(st.floats(0.001, 5), st.floats(1, 100), st.integers(0, 60))
def test_backoff_stays_within_its_bounds(base: float, cap: float, attempts: int) -> None:
    backoff = Backoff(base=base, cap=cap)
    for n in range(attempts):
        delay = backoff.next_delay()
        assert base <= delay <= max(base, min(cap, base * 2**n))
    backoff.reset()
    assert backoff.next_delay() == pytest.approx(base)


@given(st.text(max_size=40))
def test_http_address_parser_only_raises_its_own_error(text: str) -> None:
    try:
        host, port = parse_address(text)
    except HttpAddressError:
        return
    assert 0 <= port <= 65535 and host
