"""The SQLite historian sink on a real database file: storage, idempotence, retention, downsampling."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from otseam.contract.models import Contract, SinkSpec, Site
from otseam.core.plugins import PluginContext, Sink, create_sink
from otseam.core.records import Batch, Event, Quality, Record, Sample, Severity
from otseam.journal import Journal
from otseam.sinks.historian import HistorianConfigError, HistorianSink
from otseam.sinks.historian.query import QueryError, query

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z, a whole minute


def context(tmp_path: Path) -> PluginContext:
    return PluginContext(contract=Contract(site=Site(enterprise="acme", site="plant1")), data_dir=str(tmp_path))


def sink(tmp_path: Path, **options: object) -> HistorianSink:
    created = create_sink(SinkSpec(id="hist", type="historian", options=options), context(tmp_path))
    assert isinstance(created, HistorianSink) and isinstance(created, Sink)
    return created


def level(i: int, ts: float, quality: Quality = Quality.GOOD, value: float | None = None) -> Sample:
    return Sample("plc1/level", float(i) if value is None else value, quality, ts, ts + 0.1)


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


async def test_stores_samples_and_events_once_per_source_and_offset(tmp_path: Path) -> None:
    historian = sink(tmp_path)
    await historian.start()
    event = Event(T0 + 1, "alarm", "plc1/level", Severity.HIGH, "level high", {"limit": 90})
    batch = Batch("edge-a", [1, 2, 3], [level(1, T0), event, level(2, T0 + 2)])
    await historian.deliver(batch)
    await historian.deliver(batch)  # redelivered after a crash before the cursor commit
    await historian.deliver(Batch("edge-a", [3, 4], [level(2, T0 + 2), level(3, T0 + 3)]))
    await historian.deliver(Batch("edge-b", [1], [level(9, T0 + 4)]))  # same offset, other source: new
    await historian.close()
    database = tmp_path / "hist.db"
    assert historian.rows_written == 5
    assert rows(database, "SELECT COUNT(*) FROM samples") == [(4,)]
    assert rows(database, "SELECT kind, origin, severity, message, data FROM events") == [
        ("alarm", "plc1/level", 3, "level high", '{"limit":90}')
    ]
    result = query(database, "plc1/level", T0, T0 + 10)
    assert [(r.ts, r.value, r.quality) for r in result.rows] == [
        (T0, 1.0, Quality.GOOD),
        (T0 + 2, 2.0, Quality.GOOD),
        (T0 + 3, 3.0, Quality.GOOD),
        (T0 + 4, 9.0, Quality.GOOD),
    ]


async def test_values_of_every_type(tmp_path: Path) -> None:
    historian = sink(tmp_path, path="values.db")
    records: list[Record] = [
        Sample("d/flag", True, Quality.GOOD, T0, T0),
        Sample("d/count", 2**64 - 1, Quality.GOOD, T0, T0),
        Sample("d/count", -(2**63), Quality.GOOD, T0 + 1, T0),
        Sample("d/state", "running", Quality.GOOD, T0, T0),
        Sample("d/flow", None, Quality.BAD_COMM, T0, T0),
    ]
    await historian.deliver(Batch("s", list(range(1, 6)), records))
    await historian.close()
    database = tmp_path / "values.db"
    assert [r.value for r in query(database, "d/flag", T0, T0 + 1).rows] == [1]
    assert [r.value for r in query(database, "d/count", T0, T0 + 2).rows] == [str(2**64 - 1), -(2**63)]
    assert [r.value for r in query(database, "d/state", T0, T0 + 1).rows] == ["running"]
    assert [(r.value, r.quality) for r in query(database, "d/flow", T0, T0 + 1).rows] == [(None, Quality.BAD_COMM)]


async def test_buckets_aggregate_good_numbers_and_count_the_rest(tmp_path: Path) -> None:
    historian = sink(tmp_path)
    samples = [level(i, T0 + i * 10) for i in range(12)]  # two minutes, one sample every 10 s
    samples[3] = level(3, T0 + 30, Quality.STALE, value=1000.0)  # must not pull the average
    samples[8] = Sample("plc1/level", "sensor fault", Quality.GOOD, T0 + 80, T0 + 80)
    await historian.deliver(Batch("s", list(range(1, 13)), list(samples)))
    await historian.close()
    result = query(tmp_path / "hist.db", "plc1/level", T0 + 5, T0 + 120, bucket=60.0)
    assert [b.start for b in result.buckets] == [T0, T0 + 60]
    first, second = result.buckets
    # First minute from T0+5: samples 1, 2, (3 stale), 4, 5.
    assert (first.min, first.max, first.count, first.bad) == (1.0, 5.0, 4, 1)
    assert first.avg == pytest.approx((1 + 2 + 4 + 5) / 4)
    # Second minute: 6, 7, (8 is text), 9, 10, 11.
    assert (second.min, second.max, second.count, second.bad) == (6.0, 11.0, 5, 1)
    assert second.avg == pytest.approx((6 + 7 + 9 + 10 + 11) / 5)


async def test_query_errors_are_clear(tmp_path: Path) -> None:
    historian = sink(tmp_path)
    await historian.deliver(Batch("s", [1], [level(1, T0)]))
    await historian.close()
    database = tmp_path / "hist.db"
    with pytest.raises(QueryError, match=r"unknown point 'plc1/levl'.*did you mean plc1/level"):
        query(database, "plc1/levl", T0, T0 + 1)
    with pytest.raises(QueryError, match="is in the contract, but the historian holds no samples"):
        query(database, "plc1/flow", T0, T0 + 1, known_points=["plc1/flow"])
    with pytest.raises(QueryError, match=r"no samples of plc1/level between .* holds plc1/level from"):
        query(database, "plc1/level", T0 + 100, T0 + 200)
    with pytest.raises(QueryError, match="the range is empty"):
        query(database, "plc1/level", T0 + 1, T0)
    with pytest.raises(QueryError, match="no historian database"):
        query(tmp_path / "missing.db", "plc1/level", T0, T0 + 1)
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(QueryError, match="cannot be used as a historian database"):
        query(tmp_path / "junk.db", "plc1/level", T0, T0 + 1)


async def test_raw_rows_are_limited(tmp_path: Path) -> None:
    historian = sink(tmp_path)
    await historian.deliver(Batch("s", list(range(1, 101)), [level(i, T0 + i) for i in range(100)]))
    await historian.close()
    result = query(tmp_path / "hist.db", "plc1/level", T0, T0 + 1000, limit=30)
    assert len(result.rows) == 30 and result.truncated == 70
    assert result.rows[-1].ts == T0 + 29


async def test_retention_removes_old_rows(tmp_path: Path) -> None:
    historian = sink(tmp_path, retention="1h")
    now = time.time()
    old = [level(i, now - 7200 + i) for i in range(5)]
    recent = [level(i, now - 60 + i) for i in range(3)]
    event = Event(now - 7200, "alarm", "plc1/level", Severity.LOW, "old", {})
    await historian.deliver(Batch("s", [1, 2, 3], recent))
    # The first delivery applied retention already; what arrives later is expired on the next pass.
    await historian.deliver(Batch("s", list(range(4, 10)), [*old, event]))
    assert rows(tmp_path / "hist.db", "SELECT COUNT(*) FROM samples") == [(8,)]
    assert await historian.expire_now() == 6
    await historian.close()
    assert rows(tmp_path / "hist.db", "SELECT COUNT(*) FROM samples") == [(3,)]
    assert rows(tmp_path / "hist.db", "SELECT COUNT(*) FROM events") == [(0,)]


def test_option_mistakes_are_refused_before_start(tmp_path: Path) -> None:
    with pytest.raises(HistorianConfigError, match="unknown option 'retension'"):
        sink(tmp_path, retension="90d")
    with pytest.raises(HistorianConfigError, match="option retention"):
        sink(tmp_path, retention="90")
    with pytest.raises(HistorianConfigError, match="option path"):
        sink(tmp_path, path=5)
    assert not list(tmp_path.iterdir()), "create() must not touch the disk"


async def test_from_journal_to_historian_and_back(tmp_path: Path) -> None:
    """A cursor feeding the sink, with a crash between delivery and commit: nothing lost, nothing doubled."""
    with Journal.open(tmp_path / "journal") as journal:
        for start in range(0, 3000, 250):
            journal.append([level(i, T0 + i) for i in range(start, start + 250)])
        historian = sink(tmp_path)
        cursor = journal.reader("hist")
        batch = await cursor.next_batch(max_records=1000, max_wait=0)
        await historian.deliver(batch)
        # The process "dies" here: delivered, not committed. The same batch comes again.
        again = await cursor.next_batch(max_records=1000, max_wait=0)
        assert again.offsets == batch.offsets
        while batch := await cursor.next_batch(max_records=1000, max_wait=0):
            await historian.deliver(batch)
            cursor.commit(batch.last_offset)
        await historian.close()
    result = query(tmp_path / "hist.db", "plc1/level", T0, T0 + 3000, limit=5000)
    assert [r.value for r in result.rows] == [float(i) for i in range(3000)]
    assert rows(tmp_path / "hist.db", "SELECT COUNT(*) FROM samples") == [(3000,)]


async def test_text_sqlite_cannot_encode_is_replaced_not_retried_forever(tmp_path: Path) -> None:
    historian = sink(tmp_path)
    nasty = "bad \udcff byte, nul \x00 kept, ünïcode"
    records: list[Record] = [
        Sample("d/text", nasty, Quality.UNCERTAIN, T0, T0),
        Sample("d/\udcffpoint", 1.0, Quality.GOOD, T0, T0),
        Event(T0, "alert", "monitor/\udcff", Severity.MEDIUM, nasty, {"raw": nasty}),
    ]
    await historian.deliver(Batch("s", [1, 2, 3], records))
    await historian.close()
    (row,) = query(tmp_path / "hist.db", "d/text", T0, T0 + 1).rows
    assert row.value == "bad ? byte, nul \x00 kept, ünïcode"
    assert rows(tmp_path / "hist.db", "SELECT key FROM points ORDER BY id") == [("d/text",), ("d/?point",)]
    assert rows(tmp_path / "hist.db", "SELECT origin, message FROM events") == [
        ("monitor/?", "bad ? byte, nul \x00 kept, ünïcode")
    ]
