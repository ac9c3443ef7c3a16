"""HistoryRead (raw, with continuation points) served from the node's historian database.

asyncua's own history keeps values in memory or in its own SQLite tables, and its continuation point
is a timestamp, which repeats or skips samples that share one. Here the historian that Seam already
writes is read directly (read-only, on a worker thread so the event loop never waits on the disk), and
a continuation point is the exact position of the next row: (source timestamp, journal source,
offset), the order the rows are returned in.

OPC 10000-11 semantics kept: StartTime and EndTime bound the read; if only one is given the read runs
from it (forward from StartTime, backward from EndTime) and NumValuesPerNode must bound it; StartTime
after EndTime returns values newest first; bounds are inclusive of StartTime, exclusive of EndTime
(for a backward read, the other way round).
"""

from __future__ import annotations

import asyncio
import sqlite3
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua.server.history import HistoryManager

from otseam.core.records import Quality
from otseam.sinks.opcua_server._ua import ua

_CONTINUATION = struct.Struct("<Bdqq")  # version, ts, source id, offset
_VERSION = 1
_EPOCH_LIMIT = datetime(1601, 1, 2, tzinfo=UTC)


def _seconds(moment: datetime | None) -> float | None:
    """A DateTime as Unix seconds; None for the OPC UA "not given" (the minimum DateTime)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment <= _EPOCH_LIMIT:
        return None
    return moment.timestamp()


class HistorianReader:
    """Raw samples of one point from the historian's SQLite file, opened read-only per read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="opcua-history")

    def close(self) -> None:
        self._executor.shutdown(wait=False)

    async def read(
        self, point: str, start: float | None, end: float | None, limit: int, after: tuple[float, int, int] | None
    ) -> tuple[list[tuple[float, Any, int]], tuple[float, int, int] | None]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._read, point, start, end, limit, after)

    def _read(
        self, point: str, start: float | None, end: float | None, limit: int, after: tuple[float, int, int] | None
    ) -> tuple[list[tuple[float, Any, int]], tuple[float, int, int] | None]:
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5.0)
        except sqlite3.Error:
            return [], None
        try:
            found = db.execute("SELECT id FROM points WHERE key = ?", (point,)).fetchone()
            if found is None:
                return [], None
            backward = start is None or (end is not None and start > end)
            clauses = ["point = ?"]
            args: list[Any] = [found[0]]
            if backward:
                high, low = (end, start) if start is None else (start, end)
                if high is not None:
                    clauses.append("ts <= ?")
                    args.append(high)
                if low is not None:
                    clauses.append("ts > ?")
                    args.append(low)
                if after is not None:
                    clauses.append('(ts, source, "offset") < (?, ?, ?)')
                    args.extend(after)
                order = 'ts DESC, source DESC, "offset" DESC'
            else:
                if start is not None:
                    clauses.append("ts >= ?")
                    args.append(start)
                if end is not None:
                    clauses.append("ts < ?")
                    args.append(end)
                if after is not None:
                    clauses.append('(ts, source, "offset") > (?, ?, ?)')
                    args.extend(after)
                order = 'ts, source, "offset"'
            rows = db.execute(
                f'SELECT ts, value, quality, source, "offset" FROM samples WHERE {" AND ".join(clauses)} '
                f"ORDER BY {order} LIMIT ?",
                (*args, limit + 1),
            ).fetchall()
        except sqlite3.Error:
            return [], None
        finally:
            db.close()
        more = None
        if len(rows) > limit:
            last = rows[limit - 1]
            more = (float(last[0]), int(last[3]), int(last[4]))
            rows = rows[:limit]
        return [(float(ts), value, int(quality)) for ts, value, quality, _s, _o in rows], more


class SeamHistoryManager(HistoryManager):
    """Replaces asyncua's manager: raw reads from the historian, refusing everything else clearly."""

    def __init__(
        self,
        iserver: Any,
        reader: HistorianReader | None,
        points: dict[ua.NodeId, str],
        to_datavalue: Callable[[str, Any, Quality, float], ua.DataValue],
        max_values: int,
    ) -> None:
        super().__init__(iserver)
        self.reader = reader
        self.points = points
        self.to_datavalue = to_datavalue
        self.max_values = max_values
        self.reads = 0

    async def read_history(self, params: ua.HistoryReadParameters) -> list[ua.HistoryReadResult]:
        results = []
        for item in params.NodesToRead:
            if params.ReleaseContinuationPoints:
                # Stateless continuation points: nothing to release.
                results.append(ua.HistoryReadResult())
                continue
            results.append(await self._read_one(params.HistoryReadDetails, item))
        return results

    async def _read_one(self, details: Any, item: ua.HistoryReadValueId) -> ua.HistoryReadResult:
        result = ua.HistoryReadResult()
        point = self.points.get(item.NodeId)
        if not isinstance(details, ua.ReadRawModifiedDetails) or details.IsReadModified:
            result.StatusCode = ua.StatusCode(ua.StatusCodes.BadHistoryOperationUnsupported)
            return result
        if point is None or self.reader is None:
            result.StatusCode = ua.StatusCode(ua.StatusCodes.BadHistoryOperationUnsupported)
            return result
        start, end = _seconds(details.StartTime), _seconds(details.EndTime)
        wanted = int(details.NumValuesPerNode or 0)
        if start is None and end is None:
            result.StatusCode = ua.StatusCode(ua.StatusCodes.BadHistoryOperationInvalid)
            return result
        if (start is None or end is None) and wanted == 0:
            # Open-ended without a count: the specification asks for an error rather than everything.
            result.StatusCode = ua.StatusCode(ua.StatusCodes.BadHistoryOperationInvalid)
            return result
        after = None
        if item.ContinuationPoint:
            try:
                version, ts, source, offset = _CONTINUATION.unpack(item.ContinuationPoint)
            except struct.error:
                version = -1
            if version != _VERSION:
                result.StatusCode = ua.StatusCode(ua.StatusCodes.BadContinuationPointInvalid)
                return result
            after = (ts, source, offset)
        limit = min(wanted, self.max_values) if wanted else self.max_values
        rows, more = await self.reader.read(point, start, end, limit, after)
        self.reads += 1
        quality_of = {int(q): q for q in Quality}
        values = [self.to_datavalue(point, value, quality_of.get(q, Quality.BAD_CONFIG), ts) for ts, value, q in rows]
        result.HistoryData = ua.HistoryData()
        result.HistoryData.DataValues = values
        # More values in the range than returned (the client's count or our page): a continuation point.
        if more is not None:
            result.ContinuationPoint = _CONTINUATION.pack(_VERSION, *more)
        if not values:
            result.StatusCode = ua.StatusCode(ua.StatusCodes.GoodNoData)
        return result

    def update_history(self, params: ua.HistoryUpdateParameters) -> list[ua.HistoryUpdateResult]:
        # Unreachable through the network (the read-only ruleset refuses HistoryUpdate first); a second wall.
        return [ua.HistoryUpdateResult(StatusCode=ua.StatusCode(ua.StatusCodes.BadUserAccessDenied))]
