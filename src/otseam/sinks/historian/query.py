"""Reading the local historian: raw rows of one point, or min/max/avg per time bucket.

Times are UTC everywhere: given as ISO-8601 (``2026-11-26T06:00:00Z``; without an offset, UTC is
meant), as an age relative to now (``-1h``, ``-15min``, ``-7d``), as ``now``, or as Unix seconds.
A range is half-open, ``[from, to)``, so consecutive ranges never count a sample twice.

Buckets aggregate good-quality numeric values only: a stale or bad value is not a measurement and must
not pull an average. Each bucket still says how many non-good samples it held (``bad``), so a gap in
the data is visible rather than silently smoothed over.
"""

from __future__ import annotations

import difflib
import math
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from otseam.contract.units import parse_duration
from otseam.core.records import Quality, Value
from otseam.sinks.historian import store

_QUALITIES = {int(q): q for q in Quality}


class QueryError(ValueError):
    """A query that cannot be answered; the message says why and what to try."""


@dataclass(slots=True, frozen=True)
class Row:
    ts: float
    value: Value
    quality: Quality


@dataclass(slots=True, frozen=True)
class Bucket:
    start: float
    min: float | None
    max: float | None
    avg: float | None
    #: Good-quality numeric samples aggregated.
    count: int
    #: Samples in the bucket whose quality was not good (or whose value was not a number).
    bad: int


@dataclass(slots=True)
class Result:
    point: str
    start: float
    end: float
    rows: list[Row]
    buckets: list[Bucket]
    bucket_seconds: float | None
    #: Rows in the range beyond ``limit`` that were not returned.
    truncated: int = 0


def parse_time(text: str, now: float | None = None) -> float:
    """A time given on the command line, as Unix seconds (UTC)."""
    moment = time.time() if now is None else now
    value = text.strip()
    if not value:
        raise QueryError("a time is empty: give ISO-8601 (2026-11-26T06:00Z), '-1h', 'now' or Unix seconds")
    if value.lower() == "now":
        return moment
    if value[0] in "-+" and not _is_number(value):
        sign = -1.0 if value[0] == "-" else 1.0
        try:
            return moment + sign * parse_duration(value[1:])
        except ValueError:
            raise QueryError(
                f"{text!r} is not a relative time: write a sign, a number and a unit, e.g. '-1h', '-15min', '-7d'"
            ) from None
    if _is_number(value):
        number = float(value)
        if not math.isfinite(number):
            raise QueryError(f"{text!r} is not a time")
        return number
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise QueryError(
            f"{text!r} is not a time: give ISO-8601 (2026-11-26T06:00:00Z), an age such as '-1h', 'now', "
            "or Unix seconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def format_time(ts: float) -> str:
    """ISO-8601 in UTC with milliseconds, the way every Seam tool prints a time."""
    try:
        moment = datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        return repr(ts)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_bucket(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise QueryError(f"--bucket: {exc}") from None
    if seconds <= 0:
        raise QueryError("--bucket must be longer than zero, e.g. '1min'")
    return seconds


def query(
    database: Path,
    point: str,
    start: float,
    end: float,
    *,
    bucket: float | None = None,
    limit: int = 10_000,
    known_points: list[str] | None = None,
) -> Result:
    """Samples of ``point`` in ``[start, end)``; ``known_points`` (from a contract) sharpens the error messages."""
    if end <= start:
        raise QueryError(f"the range is empty: --from {format_time(start)} is not before --to {format_time(end)}")
    try:
        db = store.connect(database, create=False)
    except store.HistorianStoreError as exc:
        raise QueryError(str(exc)) from None
    try:
        return _query(db, point, start, end, bucket, limit, known_points)
    except sqlite3.DatabaseError as exc:
        raise QueryError(f"{database} cannot be read: {exc}") from None
    finally:
        db.close()


def _query(
    db: sqlite3.Connection,
    point: str,
    start: float,
    end: float,
    bucket: float | None,
    limit: int,
    known_points: list[str] | None,
) -> Result:
    found = db.execute("SELECT id FROM points WHERE key = ?", (point,)).fetchone()
    if found is None:
        stored = [key for (key,) in db.execute("SELECT key FROM points ORDER BY key")]
        if known_points is not None and point in known_points:
            raise QueryError(f"point {point!r} is in the contract, but the historian holds no samples of it yet")
        candidates = sorted(set(stored) | set(known_points or []))
        close = difflib.get_close_matches(point, candidates, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        if not candidates:
            hint = "; the historian holds no samples at all yet"
        raise QueryError(f"unknown point {point!r} (points are written <device>/<point>){hint}")
    point_id = int(found[0])
    result = Result(point, start, end, [], [], bucket)
    if bucket is None:
        rows = db.execute(
            "SELECT ts, value, quality FROM samples WHERE point = ? AND ts >= ? AND ts < ? ORDER BY ts LIMIT ?",
            (point_id, start, end, limit + 1),
        ).fetchall()
        if len(rows) > limit:
            total = db.execute(
                "SELECT COUNT(*) FROM samples WHERE point = ? AND ts >= ? AND ts < ?", (point_id, start, end)
            ).fetchone()[0]
            result.truncated = int(total) - limit
            rows = rows[:limit]
        result.rows = [Row(ts, value, _QUALITIES.get(quality, Quality.BAD_CONFIG)) for ts, value, quality in rows]
    else:
        origin = math.floor(start / bucket) * bucket
        numeric = "quality = 0 AND typeof(value) IN ('integer', 'real')"
        rows = db.execute(
            f"""SELECT CAST((ts - :origin) / :bucket AS INTEGER) AS k,
                       MIN(CASE WHEN {numeric} THEN value END),
                       MAX(CASE WHEN {numeric} THEN value END),
                       AVG(CASE WHEN {numeric} THEN value END),
                       COUNT(CASE WHEN {numeric} THEN 1 END),
                       COUNT(*) - COUNT(CASE WHEN {numeric} THEN 1 END)
                FROM samples WHERE point = :point AND ts >= :start AND ts < :end
                GROUP BY k ORDER BY k""",
            {"origin": origin, "bucket": bucket, "point": point_id, "start": start, "end": end},
        ).fetchall()
        result.buckets = [
            Bucket(origin + k * bucket, low, high, mean, int(count), int(bad))
            for k, low, high, mean, count, bad in rows
        ]
    if not result.rows and not result.buckets:
        first, last = db.execute("SELECT MIN(ts), MAX(ts) FROM samples WHERE point = ?", (point_id,)).fetchone()
        held = (
            f"; the historian holds {point} from {format_time(first)} to {format_time(last)}"
            if first is not None
            else "; the historian holds no samples of it (retention may have removed them)"
        )
        raise QueryError(f"no samples of {point} between {format_time(start)} and {format_time(end)}{held}")
    return result
