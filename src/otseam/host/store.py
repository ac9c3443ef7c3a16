"""Where `seam host` keeps what it ingests: SQLite (one file) or PostgreSQL.

Storage is idempotent. A metric value is identified by ``(group, edge node, device, metric,
timestamp)``: the same value arriving twice (an MQTT re-delivery, an edge node replaying its journal
after a crash or an outage, a birth repeating the last values, two hosts in a shared subscription
both seeing a birth) is stored once. bdSeq and seq are kept as columns for tracing, but are not part
of the key on purpose: a replay after a crash comes in a new session with a new bdSeq and new seq
numbers, and must still be recognised as the same value. The one thing this key cannot tell apart is
two different values of one metric with the same millisecond timestamp; the first one is kept.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, Protocol


class MetricRow(NamedTuple):
    group_id: str
    edge_node: str
    #: '' for node-level metrics.
    device: str
    metric: str
    ts_ms: int
    #: Numbers and booleans (1/0); None for strings and nulls.
    value: float | None
    #: Strings (and bytes as hex); None otherwise.
    text: str | None
    datatype: int
    #: OPC-style quality from the metric's "Quality" property (192 good, 64 uncertain, 0 bad), if sent.
    quality: int | None
    is_null: bool
    bdseq: int | None
    seq: int | None
    received_ms: int


class StateRow(NamedTuple):
    group_id: str
    edge_node: str
    device: str
    online: bool
    bdseq: int | None
    changed_ms: int


class Store(Protocol):
    async def write(self, rows: Sequence[MetricRow]) -> int:
        """Insert rows not stored yet; returns how many were new."""
        ...

    async def set_state(self, row: StateRow) -> None: ...

    async def save_session(self, group_id: str, edge_node: str, snapshot: str) -> None:
        """Keep what a restarted host needs to read a node's data without a new birth (JSON)."""
        ...

    async def load_sessions(self) -> list[tuple[str, str, str]]: ...

    async def close(self) -> None: ...


_COLUMNS = (
    "group_id, edge_node, device, metric, ts_ms, value, text, datatype, quality, is_null, bdseq, seq, received_ms"
)
_METRICS_DDL = """
CREATE TABLE IF NOT EXISTS sparkplug_metrics (
    group_id TEXT NOT NULL,
    edge_node TEXT NOT NULL,
    device TEXT NOT NULL,
    metric TEXT NOT NULL,
    ts_ms BIGINT NOT NULL,
    value DOUBLE PRECISION,
    text TEXT,
    datatype INTEGER NOT NULL,
    quality INTEGER,
    is_null BOOLEAN NOT NULL,
    bdseq INTEGER,
    seq INTEGER,
    received_ms BIGINT NOT NULL,
    PRIMARY KEY (group_id, edge_node, device, metric, ts_ms)
)"""
_SESSIONS_DDL = """
CREATE TABLE IF NOT EXISTS sparkplug_sessions (
    group_id TEXT NOT NULL,
    edge_node TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    PRIMARY KEY (group_id, edge_node)
)"""
_SAVE_SESSION = (
    "INSERT INTO sparkplug_sessions (group_id, edge_node, snapshot) VALUES ({p},{p},{p}) "
    "ON CONFLICT (group_id, edge_node) DO UPDATE SET snapshot=excluded.snapshot"
)
_STATE_DDL = """
CREATE TABLE IF NOT EXISTS sparkplug_state (
    group_id TEXT NOT NULL,
    edge_node TEXT NOT NULL,
    device TEXT NOT NULL,
    online BOOLEAN NOT NULL,
    bdseq INTEGER,
    changed_ms BIGINT NOT NULL,
    PRIMARY KEY (group_id, edge_node, device)
)"""


class SqliteStore:
    """One SQLite file in WAL mode; several `seam host` processes may share it (writes serialise)."""

    def __init__(self, path: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # Clustered on the idempotency key: one B-tree instead of a table plus an index, about twice as fast.
        self._db.execute(_METRICS_DDL + " WITHOUT ROWID")
        self._db.execute(_STATE_DDL)
        self._db.execute(_SESSIONS_DDL)
        self._lock = asyncio.Lock()

    def _write(self, rows: Sequence[MetricRow]) -> int:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            before = db.total_changes
            db.executemany(
                f"INSERT OR IGNORE INTO sparkplug_metrics ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return db.total_changes - before

    async def write(self, rows: Sequence[MetricRow]) -> int:
        if not rows:
            return 0
        async with self._lock:
            # In a thread: a large batch or a busy file (another host writing) must not stall MQTT keepalives.
            return await asyncio.to_thread(self._write, rows)

    def _set_state(self, row: StateRow) -> None:
        self._db.execute(
            "INSERT INTO sparkplug_state (group_id, edge_node, device, online, bdseq, changed_ms) VALUES (?,?,?,?,?,?)"
            " ON CONFLICT (group_id, edge_node, device) DO UPDATE SET online=excluded.online, bdseq=excluded.bdseq,"
            " changed_ms=excluded.changed_ms",
            row,
        )

    async def set_state(self, row: StateRow) -> None:
        async with self._lock:
            await asyncio.to_thread(self._set_state, row)

    async def save_session(self, group_id: str, edge_node: str, snapshot: str) -> None:
        async with self._lock:
            sql = _SAVE_SESSION.format(p="?")
            await asyncio.to_thread(self._db.execute, sql, (group_id, edge_node, snapshot))

    async def load_sessions(self) -> list[tuple[str, str, str]]:
        async with self._lock:
            cursor = await asyncio.to_thread(
                self._db.execute, "SELECT group_id, edge_node, snapshot FROM sparkplug_sessions"
            )
            return [(str(g), str(n), str(s)) for g, n, s in cursor.fetchall()]

    async def close(self) -> None:
        async with self._lock:
            self._db.close()


class PostgresStore:
    """PostgreSQL through psycopg 3; ``INSERT ... ON CONFLICT DO NOTHING`` keeps it idempotent."""

    def __init__(self, connection: object) -> None:
        import psycopg

        assert isinstance(connection, psycopg.AsyncConnection)
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] = connection
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, dsn: str) -> PostgresStore:
        import psycopg

        connection = await psycopg.AsyncConnection.connect(dsn, autocommit=False)
        async with connection.cursor() as cursor:
            # Two hosts starting together may both create the tables; one waits for the other.
            await cursor.execute("SELECT pg_advisory_xact_lock(5727)")
            await cursor.execute(_METRICS_DDL)
            await cursor.execute(_STATE_DDL)
            await cursor.execute(_SESSIONS_DDL)
        await connection.commit()
        return cls(connection)

    async def write(self, rows: Sequence[MetricRow]) -> int:
        if not rows:
            return 0
        async with self._lock:
            async with self._conn.cursor() as cursor:
                await cursor.executemany(
                    f"INSERT INTO sparkplug_metrics ({_COLUMNS}) VALUES "
                    "(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                    rows,
                    returning=False,
                )
                new = cursor.rowcount
            await self._conn.commit()
            return max(0, new)

    async def set_state(self, row: StateRow) -> None:
        async with self._lock:
            async with self._conn.cursor() as cursor:
                await cursor.execute(
                    "INSERT INTO sparkplug_state (group_id, edge_node, device, online, bdseq, changed_ms) "
                    "VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (group_id, edge_node, device) DO UPDATE SET "
                    "online=excluded.online, bdseq=excluded.bdseq, changed_ms=excluded.changed_ms",
                    row,
                )
            await self._conn.commit()

    async def save_session(self, group_id: str, edge_node: str, snapshot: str) -> None:
        async with self._lock:
            async with self._conn.cursor() as cursor:
                await cursor.execute(_SAVE_SESSION.format(p="%s"), (group_id, edge_node, snapshot))
            await self._conn.commit()

    async def load_sessions(self) -> list[tuple[str, str, str]]:
        async with self._lock:
            async with self._conn.cursor() as cursor:
                await cursor.execute("SELECT group_id, edge_node, snapshot FROM sparkplug_sessions")
                rows = await cursor.fetchall()
            await self._conn.commit()
            return [(str(g), str(n), str(s)) for g, n, s in rows]

    async def close(self) -> None:
        async with self._lock:
            await self._conn.close()


async def open_store(db: str | None, dsn: str | None) -> Store:
    if (db is None) == (dsn is None):
        raise ValueError("give exactly one of --db (a SQLite file) or --dsn (a PostgreSQL connection string)")
    if dsn is not None:
        return await PostgresStore.open(dsn)
    assert db is not None
    return SqliteStore(db)
