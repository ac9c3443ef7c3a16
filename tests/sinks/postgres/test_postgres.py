"""The PostgreSQL historian against a real server the tests start (tests/support/servers.py)."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otseam.contract.models import Contract, SinkSpec, Site
from otseam.core.plugins import PluginContext, Sink, create_sink
from otseam.core.records import Batch, Event, Quality, Record, Sample, Severity
from otseam.journal import Journal
from otseam.sinks.postgres import PostgresConfigError, PostgresSink, PostgresSinkError
from tests.support.servers import Postgres, free_port

T0 = 1_800_000_000.0


@pytest.fixture
def prefix() -> str:
    """Each test gets its own tables on the shared server."""
    return f"t{uuid.uuid4().hex[:10]}_"


@pytest.fixture
def db(pg_server: Postgres) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(pg_server.dsn, autocommit=True) as connection:
        yield connection


def make(options: dict[str, object]) -> PostgresSink:
    context = PluginContext(contract=Contract(site=Site(enterprise="acme", site="p")), data_dir="/nonexistent")
    sink = create_sink(SinkSpec(id="pg", type="postgres", options=options), context)
    assert isinstance(sink, PostgresSink) and isinstance(sink, Sink)
    return sink


def level(i: int) -> Sample:
    return Sample("plc1/level", float(i), Quality.GOOD, T0 + i, T0 + i + 0.25)


async def test_batches_are_stored_once(
    pg_server: Postgres, db: psycopg.Connection[tuple[object, ...]], prefix: str
) -> None:
    sink = make({"dsn": pg_server.dsn, "table_prefix": prefix})
    await sink.start()
    event = Event(T0, "alarm", "plc1/level", Severity.CRITICAL, "level high high", {"limit": 95.5, "ack": False})
    batch = Batch("edge-a", [1, 2, 3, 4], [level(1), event, level(2), level(3)])
    await sink.deliver(batch)
    await sink.deliver(batch)
    await sink.deliver(Batch("edge-a", [4, 5], [level(3), level(4)]))
    await sink.deliver(Batch("edge-b", [1], [level(9)]))
    await sink.close()
    assert sink.rows_written == 6
    rows = db.execute(
        f'SELECT source, "offset", point, extract(epoch from ts)::float8, value, quality, '
        f'extract(epoch from gateway_ts)::float8 FROM {prefix}samples ORDER BY source, "offset"'
    ).fetchall()
    assert rows == [
        ("edge-a", 1, "plc1/level", T0 + 1, 1.0, 0, T0 + 1.25),
        ("edge-a", 3, "plc1/level", T0 + 2, 2.0, 0, T0 + 2.25),
        ("edge-a", 4, "plc1/level", T0 + 3, 3.0, 0, T0 + 3.25),
        ("edge-a", 5, "plc1/level", T0 + 4, 4.0, 0, T0 + 4.25),
        ("edge-b", 1, "plc1/level", T0 + 9, 9.0, 0, T0 + 9.25),
    ]
    events = db.execute(f'SELECT "offset", kind, origin, severity, message, data FROM {prefix}events').fetchall()
    assert events == [(2, "alarm", "plc1/level", 4, "level high high", {"limit": 95.5, "ack": False})]


async def test_awkward_values_and_text(
    pg_server: Postgres, db: psycopg.Connection[tuple[object, ...]], prefix: str
) -> None:
    sink = make({"dsn": pg_server.dsn, "table_prefix": prefix})
    nasty = "tab\tnew\nline\\back\rslash \x00 nul \ud800 surrogate, ünïcode"
    records: list[Record] = [
        Sample("d/flag", True, Quality.GOOD, T0, T0),
        Sample("d/big", 2**64 - 1, Quality.GOOD, T0, T0),
        Sample("d/text", nasty, Quality.UNCERTAIN, T0, T0),
        Sample("d/none", None, Quality.BAD_COMM, T0, T0),
        Sample("d/nan", math.nan, Quality.BAD_DEVICE, T0, T0),
        Sample("d/inf", -math.inf, Quality.GOOD, math.nan, 1e300),
        Event(
            T0, "audit", "op\tor", Severity.INFO, nasty, {"text": nasty, "nan": math.nan, "nested": [1, {"a": None}]}
        ),
    ]
    await sink.deliver(Batch("s", list(range(1, 8)), records))
    await sink.close()
    rows = dict(
        (point, (value, text, quality))
        for point, value, text, quality in db.execute(f"SELECT point, value, value_text, quality FROM {prefix}samples")
    )
    assert rows["d/flag"] == (1.0, None, 0)
    assert rows["d/big"] == (float(2**64 - 1), str(2**64 - 1), 0)
    stored_text = rows["d/text"][1]
    assert isinstance(stored_text, str)
    assert (
        stored_text.startswith("tab\tnew\nline\\back\rslash ")
        and "\x00" not in stored_text
        and "ünïcode" in stored_text
    )
    assert rows["d/none"] == (None, None, 3)
    assert math.isnan(rows["d/nan"][0])  # type: ignore[arg-type]
    assert rows["d/inf"][0] == -math.inf
    (message, data, origin) = db.execute(f"SELECT message, data, origin FROM {prefix}events").fetchone()  # type: ignore[misc]
    assert origin == "op\tor" and message.startswith("tab\tnew\nline")
    assert data["nested"] == [1, {"a": None}] and data["nan"] == "NaN"


async def test_large_batches_and_journal_end_to_end(
    tmp_path: Path, pg_server: Postgres, db: psycopg.Connection[tuple[object, ...]], prefix: str
) -> None:
    sink = make({"dsn": pg_server.dsn, "table_prefix": prefix, "schema": "plant"})
    with Journal.open(tmp_path / "journal") as journal:
        for start in range(0, 30_000, 5_000):
            journal.append([level(i) for i in range(start, start + 5_000)])
        cursor = journal.reader("pg")
        first = await cursor.next_batch(max_records=7_000, max_wait=0)
        await sink.deliver(first)  # then a crash: delivered, never committed
        while batch := await cursor.next_batch(max_records=7_000, max_wait=0):
            await sink.deliver(batch)
            cursor.commit(batch.last_offset)
        await sink.close()
        source = journal.source
    count, low, high, total = db.execute(
        f'SELECT count(*), min("offset"), max("offset"), sum(value) FROM plant.{prefix}samples WHERE source = %s',
        (source,),
    ).fetchone()  # type: ignore[misc]
    assert (count, low, high, total) == (30_000, 1, 30_000, float(sum(range(30_000))))


async def test_reconnects_after_the_server_drops_the_connection(
    pg_server: Postgres, db: psycopg.Connection[tuple[object, ...]], prefix: str
) -> None:
    sink = make({"dsn": pg_server.dsn, "table_prefix": prefix})
    await sink.start()
    await sink.deliver(Batch("s", [1], [level(1)]))
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = current_database() "
        "AND backend_type = 'client backend'"
    )
    with pytest.raises(PostgresSinkError, match="batch 2-3 not stored"):
        await sink.deliver(Batch("s", [2, 3], [level(2), level(3)]))
    await sink.deliver(Batch("s", [2, 3], [level(2), level(3)]))  # the runner's retry, on a new connection
    await sink.close()
    assert db.execute(f"SELECT count(*) FROM {prefix}samples").fetchone() == (3,)


async def test_unreachable_server_is_a_clear_error_without_the_password() -> None:
    port = free_port()
    sink = make({"dsn": f"postgresql://historian:s3cret-pw@127.0.0.1:{port}/plant", "connect_timeout": 2})
    with pytest.raises(PostgresSinkError) as caught:
        await sink.start()
    message = str(caught.value)
    assert f"cannot connect to PostgreSQL 127.0.0.1:{port}/plant as historian" in message
    assert "s3cret" not in message and "s3cret" not in repr(caught.value)


async def test_dsn_from_the_environment(pg_server: Postgres, monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    sink = make({"dsn_env": "SEAM_TEST_HISTORIAN_DSN", "table_prefix": prefix})
    with pytest.raises(PostgresSinkError, match="SEAM_TEST_HISTORIAN_DSN is not set"):
        await sink.start()
    monkeypatch.setenv("SEAM_TEST_HISTORIAN_DSN", pg_server.dsn)
    await sink.start()
    await sink.deliver(Batch("s", [1], [level(1)]))
    await sink.close()
    assert sink.rows_written == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one of 'dsn' or 'dsn_env'"),
        ({"dsn": "postgresql://x", "dsn_env": "X"}, "exactly one of"),
        ({"dsn": "host=a port=5432 bogus_key=1"}, "not a valid PostgreSQL connection string"),
        ({"dsn": "postgresql://x", "table_prefix": "Robert'); DROP TABLE"}, "option table_prefix"),
        ({"dsn": "postgresql://x", "schema": "a-b"}, "option schema"),
        ({"dsn": "postgresql://x", "tabel_prefix": "x_"}, "unknown option 'tabel_prefix'"),
        ({"dsn": "postgresql://x", "connect_timeout": "soon"}, "connect_timeout"),
    ],
)
def test_option_mistakes(options: dict[str, object], message: str) -> None:
    with pytest.raises(PostgresConfigError, match=message):
        make(options)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(max_size=30), min_size=1, max_size=8))
def test_any_text_round_trips_through_copy(pg_server: Postgres, texts: list[str]) -> None:
    prefix = "fuzz_"
    sink = make({"dsn": pg_server.dsn, "table_prefix": prefix})
    source = f"fuzz-{uuid.uuid4().hex[:8]}"
    records: list[Record] = [Sample(f"d/{i}", text, Quality.GOOD, T0, T0) for i, text in enumerate(texts)]

    async def deliver() -> None:
        await sink.deliver(Batch(source, list(range(1, len(records) + 1)), records))
        await sink.close()

    asyncio.run(deliver())
    with psycopg.connect(pg_server.dsn) as connection:
        stored = connection.execute(
            f'SELECT value_text FROM {prefix}samples WHERE source = %s ORDER BY "offset"', (source,)
        ).fetchall()
    expected = [t.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd") for t in texts]
    assert [row[0] for row in stored] == expected
