"""The local historian's SQLite schema, and writing batches into it.

Point keys and journal sources are stored once in small lookup tables and referenced by integer id:
a sample row is then a handful of numbers, about a third of the size it would be with the key text
repeated in every row, and the (point, ts) index that every query uses stays small.

``(source, offset)`` is the primary key of both data tables. A batch delivered twice (the sink crashed
after writing but before its cursor was committed) is ignored row by row with ``INSERT OR IGNORE``:
the historian is idempotent on its own, whatever happens upstream.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from otseam.core.records import Batch, Event, Sample

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS points (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS sources (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS samples (
    source INTEGER NOT NULL REFERENCES sources(id),
    "offset" INTEGER NOT NULL,
    point INTEGER NOT NULL REFERENCES points(id),
    ts REAL NOT NULL,            -- the source timestamp, seconds since the epoch (UTC)
    value,                       -- as the device gave it: integer, real, text or NULL (booleans as 0/1)
    quality INTEGER NOT NULL,    -- otseam Quality: 0 good, 1 stale, 2 uncertain, 3 bad-comm, ...
    gateway_ts REAL NOT NULL,
    PRIMARY KEY (source, "offset")
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS samples_by_point_time ON samples (point, ts);
CREATE TABLE IF NOT EXISTS events (
    source INTEGER NOT NULL REFERENCES sources(id),
    "offset" INTEGER NOT NULL,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    origin TEXT NOT NULL,        -- Event.source: the point, device or rule that raised it
    severity INTEGER NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL,          -- JSON
    PRIMARY KEY (source, "offset")
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_time ON events (ts);
"""


_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def safe_text(text: str) -> str:
    """SQLite stores UTF-8: an unpaired surrogate (from bytes decoded with surrogateescape, say) cannot be
    encoded and would make the whole batch fail again on every retry, stalling the sink. It becomes '?'."""
    if text.isascii():
        return text
    return text.encode("utf-8", "replace").decode("utf-8")


class HistorianStoreError(RuntimeError):
    pass


def connect(path: Path, *, create: bool) -> sqlite3.Connection:
    """Open the historian database (WAL mode: a reader such as ``seam query`` never blocks the writer)."""
    if not create and not path.exists():
        raise HistorianStoreError(f"no historian database at {path}")
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        db.execute("PRAGMA busy_timeout=30000")
        if create:
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a committed batch survives a process crash; a power cut may lose the
            # last transactions, which the journal redelivers because their cursor commit follows them.
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        else:
            db.execute("PRAGMA query_only=ON")
            found = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if found is None:
                raise HistorianStoreError(f"{path} is not a Seam historian database")
    except sqlite3.DatabaseError as exc:
        raise HistorianStoreError(f"{path} cannot be used as a historian database: {exc}") from None
    return db


class Writer:
    """Writes batches; used from one thread at a time (the sink's own worker thread)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self._points: dict[str, int] = dict((key, id_) for id_, key in db.execute("SELECT id, key FROM points"))
        self._sources: dict[str, int] = dict((name, id_) for id_, name in db.execute("SELECT id, name FROM sources"))

    def _id(self, table: str, column: str, cache: dict[str, int], name: str) -> int:
        found = cache.get(name)
        if found is None:
            self.db.execute(f"INSERT OR IGNORE INTO {table} ({column}) VALUES (?)", (name,))
            row = self.db.execute(f"SELECT id FROM {table} WHERE {column} = ?", (name,)).fetchone()
            found = cache[name] = int(row[0])
        return found

    def write(self, batch: Batch) -> int:
        """Store one batch in one transaction; returns how many rows were new."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            source = self._sources.get(batch.source)
            if source is None:
                source = self._sources[batch.source] = self._id("sources", "name", {}, safe_text(batch.source))
            points = self._points
            sample_rows = []
            event_rows = []
            for offset, record in zip(batch.offsets, batch.records, strict=True):
                if type(record) is Sample:
                    point = points.get(record.point)
                    if point is None:
                        point = points[record.point] = self._id("points", "key", {}, safe_text(record.point))
                    value = record.value
                    if type(value) is int and not _INT64_MIN <= value <= _INT64_MAX:
                        value = str(value)  # SQLite integers are 64-bit signed; keep a uint64 exact as text
                    elif type(value) is str:
                        value = safe_text(value)
                    sample_rows.append(
                        (source, offset, point, record.source_ts, value, int(record.quality), record.gateway_ts)
                    )
                elif isinstance(record, Event):
                    data = json.dumps(record.data, default=str, separators=(",", ":"))
                    event_rows.append(
                        (
                            source,
                            offset,
                            record.ts,
                            safe_text(record.kind),
                            safe_text(record.source),
                            int(record.severity),
                            safe_text(record.message),
                            data,
                        )
                    )
            before = db.total_changes
            if sample_rows:
                db.executemany("INSERT OR IGNORE INTO samples VALUES (?, ?, ?, ?, ?, ?, ?)", sample_rows)
            if event_rows:
                db.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", event_rows)
            added = db.total_changes - before
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return added

    def expire(self, before: float) -> int:
        """Delete samples and events older than ``before`` (epoch seconds); returns the rows removed."""
        db = self.db
        removed_before = db.total_changes
        db.execute("BEGIN IMMEDIATE")
        try:
            # Point by point, so that the (point, ts) index does the work instead of a full table scan.
            for (point,) in db.execute("SELECT id FROM points").fetchall():
                db.execute("DELETE FROM samples WHERE point = ? AND ts < ?", (point, before))
            db.execute("DELETE FROM events WHERE ts < ?", (before,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return db.total_changes - removed_before
