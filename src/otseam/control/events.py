"""The events the console lists (alerts, alarms, inventory changes, link gaps, audit), with their
acknowledgements, in ``<data dir>/control/events.db``.

The journal stays the record of what happened; this is an index of its events (never of its samples)
that answers "the unacknowledged high alerts, newest first, 50 per page" without reading the journal,
and remembers who acknowledged what. Rows are keyed by journal offset, so reading a stretch of the
journal twice (after a crash before the console's cursor was committed) stores each event once.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otseam.core.records import Event, Severity

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    offset INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    severity INTEGER NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL,
    ack_user TEXT,
    ack_ts REAL,
    ack_comment TEXT
);
CREATE INDEX IF NOT EXISTS events_kind ON events (kind, offset);
"""

#: Kinds shown on the alerts page: monitor alerts and process alarms.
ALERT_KINDS = ("alert", "alarm")


@dataclass(slots=True, frozen=True)
class Page:
    items: list[dict[str, Any]]
    #: Pass as ``before`` to get the next (older) page; None on the last page.
    next: int | None


class EventStore:
    def __init__(self, data_dir: Path) -> None:
        directory = data_dir / "control"
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = directory / "events.db"
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def add(self, rows: list[tuple[int, Event]]) -> None:
        if not rows:
            return
        self._db.execute("BEGIN")
        self._db.executemany(
            "INSERT OR IGNORE INTO events (offset, ts, kind, source, severity, message, data) VALUES (?,?,?,?,?,?,?)",
            [
                (offset, e.ts, e.kind, e.source, int(e.severity), e.message, json.dumps(e.data, default=str))
                for offset, e in rows
            ],
        )
        self._db.execute("COMMIT")

    def list(
        self,
        *,
        kinds: tuple[str, ...] | None = None,
        prefix: str | None = None,
        min_severity: int = 0,
        unacknowledged: bool = False,
        source: str | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> Page:
        where = ["severity >= ?"]
        args: list[Any] = [min_severity]
        if kinds:
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            args.extend(kinds)
        if prefix:
            where.append("substr(kind, 1, ?) = ?")
            args.extend([len(prefix), prefix])
        if unacknowledged:
            where.append("ack_ts IS NULL")
        if source:
            where.append("source = ?")
            args.append(source)
        if before is not None:
            where.append("offset < ?")
            args.append(before)
        rows = self._db.execute(
            f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY offset DESC LIMIT ?", (*args, limit + 1)
        ).fetchall()
        items = [_row(r) for r in rows[:limit]]
        return Page(items, items[-1]["offset"] if len(rows) > limit else None)

    def get(self, offset: int) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM events WHERE offset = ?", (offset,)).fetchone()
        return _row(row) if row else None

    def acknowledge(self, offset: int, user: str, comment: str, ts: float) -> dict[str, Any] | None:
        """Acknowledge once; a second acknowledgement keeps the first (who and why stay as they were)."""
        self._db.execute(
            "UPDATE events SET ack_user = ?, ack_ts = ?, ack_comment = ? WHERE offset = ? AND ack_ts IS NULL",
            (user, ts, comment, offset),
        )
        return self.get(offset)

    def close(self) -> None:
        self._db.close()


def _row(row: tuple[Any, ...]) -> dict[str, Any]:
    offset, ts, kind, source, severity, message, data, ack_user, ack_ts, ack_comment = row
    return {
        "offset": offset,
        "ts": ts,
        "kind": kind,
        "source": source,
        "severity": Severity(severity).label,
        "message": message,
        "data": json.loads(data),
        "acknowledged": None if ack_ts is None else {"user": ack_user, "ts": ack_ts, "comment": ack_comment},
    }
