"""The PostgreSQL historian sink: batched COPY, idempotent on (source, offset), reconnecting.

One connection, one transaction per batch: COPY into the staging tables, move into the real tables with
ON CONFLICT DO NOTHING, commit. If anything fails, the transaction rolls back, ``deliver`` raises, the
sink runner offers the same batch again later, and the next attempt starts from a fresh connection if
the old one broke. The DSN may carry a password, so it is never printed: messages name only the host,
port, database and user.
"""

from __future__ import annotations

import contextlib
import logging
import os

import psycopg
from psycopg.conninfo import conninfo_to_dict

from otseam.contract import plugin_options
from otseam.contract.models import SinkSpec
from otseam.core.records import Batch
from otseam.sinks.postgres.options import Options, PostgresConfigError
from otseam.sinks.postgres.schema import Tables, event_lines, sample_lines

log = logging.getLogger(__name__)


class PostgresSinkError(RuntimeError):
    """A delivery that did not happen; the message is safe to log (no password)."""


class PostgresSink:
    """Implements :class:`otseam.core.plugins.Sink`."""

    def __init__(self, spec: SinkSpec) -> None:
        options = plugin_options.parse(Options, spec.options, f"sink {spec.id}", PostgresConfigError)
        self.sink_id = spec.id
        self._dsn = options.dsn
        self._dsn_env = options.dsn_env
        if options.dsn:
            self.where = _describe(spec.id, options.dsn)
        else:
            self.where = f"the server named by ${options.dsn_env}"
        self.tables = Tables(options.schema_, options.table_prefix)
        self.connect_timeout = options.connect_timeout
        self._connection: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._schema_ready = False
        #: Rows actually inserted (repeats of stored (source, offset) pairs are not counted).
        self.rows_written = 0

    def _resolve_dsn(self) -> str:
        if self._dsn:
            return self._dsn
        assert self._dsn_env is not None
        value = os.environ.get(self._dsn_env)
        if not value:
            raise PostgresSinkError(f"sink {self.sink_id}: the environment variable {self._dsn_env} is not set")
        self.where = _describe(self.sink_id, value)
        return value

    async def start(self) -> None:
        await self._connect()

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        dsn = self._resolve_dsn()
        try:
            connection = await psycopg.AsyncConnection.connect(dsn, connect_timeout=self.connect_timeout)
        except psycopg.Error as exc:
            raise PostgresSinkError(f"sink {self.sink_id}: cannot connect to {self.where}: {_reason(exc)}") from None
        try:
            async with connection.transaction():
                if not self._schema_ready:
                    for statement in self.tables.create():
                        await connection.execute(statement)
                for statement in self.tables.create_staging():
                    await connection.execute(statement)
        except psycopg.Error as exc:
            await connection.close()
            raise PostgresSinkError(
                f"sink {self.sink_id}: cannot prepare the tables on {self.where}: {_reason(exc)}"
            ) from None
        self._schema_ready = True
        self._connection = connection
        return connection

    async def deliver(self, batch: Batch) -> None:
        connection = await self._connect()
        samples = "".join(sample_lines(batch))
        events = "".join(event_lines(batch))
        try:
            async with connection.transaction(), connection.cursor() as cursor:
                added = 0
                if samples:
                    async with cursor.copy(self.tables.copy_samples()) as copy:
                        await copy.write(samples.encode())
                    await cursor.execute(self.tables.move_samples())
                    added += max(cursor.rowcount, 0)
                if events:
                    async with cursor.copy(self.tables.copy_events()) as copy:
                        await copy.write(events.encode())
                    await cursor.execute(self.tables.move_events())
                    added += max(cursor.rowcount, 0)
        except psycopg.Error as exc:
            if connection.closed or isinstance(exc, psycopg.OperationalError):
                await self._drop_connection()
            raise PostgresSinkError(
                f"sink {self.sink_id}: batch {batch.offsets[0]}-{batch.last_offset} not stored on {self.where}: "
                f"{_reason(exc)}"
            ) from None
        self.rows_written += added

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def close(self) -> None:
        await self._drop_connection()


def _describe(sink_id: str, dsn: str) -> str:
    """host:port/database as user, from a DSN, without the password."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        raise PostgresConfigError(
            f"sink {sink_id}: the dsn is not a valid PostgreSQL connection string or URI"
        ) from None
    host = parts.get("host") or parts.get("hostaddr") or "localhost"
    port = parts.get("port") or "5432"
    database = parts.get("dbname") or parts.get("user") or "?"
    user = parts.get("user") or "(default user)"
    return f"PostgreSQL {host}:{port}/{database} as {user}"


def _reason(exc: psycopg.Error) -> str:
    """The server's or libpq's own words, first line only (the rest is context and hints)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
