"""The fleet's PostgreSQL tables: partitioned by day, written once per (source, offset).

``<prefix>samples`` and ``<prefix>events`` are plain PostgreSQL declarative partitioned tables
(``PARTITION BY RANGE``), one partition per UTC day named ``<table>_YYYYMMDD``, created on first use.
Samples are partitioned on ``gateway_ts`` (when the edge received the value: Seam's own clock, so a
device with a wrong clock cannot scatter rows into odd partitions, and a day's partition stops changing
once the day and its backlog are in), events on ``ts``. A unique key on a partitioned table must hold the
partition key, so the primary key is ``(source, "offset", gateway_ts)``; one journal record always has
the same gateway time, so a redelivered message still adds nothing.

Each fetch is one transaction: COPY into a temporary table, then ``INSERT ... SELECT ... ON CONFLICT DO
NOTHING``. The messages are acknowledged only after COMMIT returned.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from psycopg import AsyncConnection, sql

from otseam.core.records import Event, Sample
from otseam.sinks.nats.payload import Decoded
from otseam.sinks.postgres.schema import _json, _text, _ts, _value_columns

DAY = 86400.0


class FleetTables:
    def __init__(self, schema: str | None, prefix: str) -> None:
        self.schema_name = schema
        self.prefix = prefix
        self.samples = self._name("samples")
        self.events = self._name("events")
        self._known: set[tuple[str, date]] = set()

    def _name(self, table: str) -> sql.Identifier:
        full = f"{self.prefix}{table}"
        return sql.Identifier(self.schema_name, full) if self.schema_name else sql.Identifier(full)

    def create(self) -> list[sql.SQL | sql.Composed]:
        statements: list[sql.SQL | sql.Composed] = []
        if self.schema_name:
            statements.append(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema_name)))
        statements += [
            sql.SQL(
                """CREATE TABLE IF NOT EXISTS {} (
                    site text NOT NULL,
                    point text NOT NULL,
                    ts timestamptz NOT NULL,
                    value double precision,
                    value_text text,
                    quality smallint NOT NULL,
                    source text NOT NULL,
                    "offset" bigint NOT NULL,
                    gateway_ts timestamptz NOT NULL,
                    stored_ts timestamptz NOT NULL DEFAULT clock_timestamp(),
                    PRIMARY KEY (source, "offset", gateway_ts)
                ) PARTITION BY RANGE (gateway_ts)"""
            ).format(self.samples),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (site, point, ts)").format(
                sql.Identifier(f"{self.prefix}samples_by_point"), self.samples
            ),
            sql.SQL(
                """CREATE TABLE IF NOT EXISTS {} (
                    site text NOT NULL,
                    ts timestamptz NOT NULL,
                    kind text NOT NULL,
                    origin text NOT NULL,
                    severity smallint NOT NULL,
                    message text NOT NULL,
                    data jsonb NOT NULL,
                    source text NOT NULL,
                    "offset" bigint NOT NULL,
                    stored_ts timestamptz NOT NULL DEFAULT clock_timestamp(),
                    PRIMARY KEY (source, "offset", ts)
                ) PARTITION BY RANGE (ts)"""
            ).format(self.events),
            sql.SQL(
                """CREATE TEMP TABLE IF NOT EXISTS fleet_samples_in (
                    site text, point text, ts double precision, value double precision, value_text text,
                    quality smallint, source text, "offset" bigint, gateway_ts double precision
                ) ON COMMIT DELETE ROWS"""
            ),
            sql.SQL(
                """CREATE TEMP TABLE IF NOT EXISTS fleet_events_in (
                    site text, ts double precision, kind text, origin text, severity smallint, message text,
                    data text, source text, "offset" bigint
                ) ON COMMIT DELETE ROWS"""
            ),
        ]
        return statements

    async def ensure_partitions(
        self, connection: AsyncConnection[tuple[object, ...]], days: Iterable[tuple[str, date]]
    ) -> None:
        """Create the missing day partitions, each in its own short transaction. Processes sharing the
        consumer may race for the same day: an advisory lock serialises the creation."""
        for table, day in sorted(set(days) - self._known):
            parent = self.samples if table == "samples" else self.events
            name = f"{self.prefix}{table}_{day:%Y%m%d}"
            child = sql.Identifier(self.schema_name, name) if self.schema_name else sql.Identifier(name)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"seam-fleet-{name}",))
                await connection.execute(
                    sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                        child, parent, sql.Literal(start), sql.Literal(start + timedelta(days=1))
                    )
                )
            self._known.add((table, day))

    async def store(self, connection: AsyncConnection[tuple[object, ...]], decoded: list[Decoded]) -> int:
        """Store the records of ``decoded`` in one transaction; returns the rows added (duplicates add none)."""
        sample_rows: list[str] = []
        event_rows: list[str] = []
        days: set[tuple[str, date]] = set()
        for message in decoded:
            site = _text(message.site)
            source = _text(message.source)
            for offset, record in zip(message.offsets, message.records, strict=True):
                if type(record) is Sample:
                    gateway = _ts(record.gateway_ts)
                    days.add(("samples", _day(float(gateway))))
                    value, value_text = _value_columns(record.value)
                    sample_rows.append(
                        f"{site}\t{_text(record.point)}\t{_ts(record.source_ts)}\t{value}\t{value_text}\t"
                        f"{int(record.quality)}\t{source}\t{offset}\t{gateway}\n"
                    )
                elif isinstance(record, Event):
                    ts = _ts(record.ts)
                    days.add(("events", _day(float(ts))))
                    event_rows.append(
                        f"{site}\t{ts}\t{_text(record.kind)}\t{_text(record.source)}\t{int(record.severity)}\t"
                        f"{_text(record.message)}\t{_json(record.data)}\t{source}\t{offset}\n"
                    )
        await self.ensure_partitions(connection, days)
        added = 0
        async with connection.transaction(), connection.cursor() as cursor:
            if sample_rows:
                async with cursor.copy("COPY fleet_samples_in FROM STDIN") as copy:
                    await copy.write("".join(sample_rows).encode())
                await cursor.execute(
                    sql.SQL(
                        """INSERT INTO {} (site, point, ts, value, value_text, quality, source, "offset", gateway_ts)
                           SELECT site, point, to_timestamp(ts), value, value_text, quality, source, "offset",
                                  to_timestamp(gateway_ts)
                           FROM fleet_samples_in ON CONFLICT DO NOTHING"""
                    ).format(self.samples)
                )
                added += max(cursor.rowcount, 0)
            if event_rows:
                async with cursor.copy("COPY fleet_events_in FROM STDIN") as copy:
                    await copy.write("".join(event_rows).encode())
                await cursor.execute(
                    sql.SQL(
                        """INSERT INTO {} (site, ts, kind, origin, severity, message, data, source, "offset")
                           SELECT site, to_timestamp(ts), kind, origin, severity, message, data::jsonb, source,
                                  "offset"
                           FROM fleet_events_in ON CONFLICT DO NOTHING"""
                    ).format(self.events)
                )
                added += max(cursor.rowcount, 0)
        return added


def _day(seconds: float) -> date:
    return datetime.fromtimestamp(seconds, UTC).date()
