"""Live updates for the console: one reader of the journal, fanned out to every open event stream.

The hub reads the node's journal with its own cursor (``console``), committed after each batch so it
never holds records back. Each batch becomes at most two messages, encoded once and shared by every
subscriber that watches everything: the latest value of each point that changed, and the events. A
subscriber watching a few points gets its own, filtered copy.

Never silent: every second each stream gets a ``tick`` (the page declares the stream lost when ticks
stop). A subscriber too slow to keep up (more than two seconds behind, or 16 MiB waiting) is not dropped
quietly: its backlog is cleared and it is sent a ``resync`` message saying how many messages it missed,
followed by a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from otseam.control.events import EventStore
from otseam.control.view import LiveValue, NodeView
from otseam.core.records import Event, Sample
from otseam.journal import JournalError

log = logging.getLogger("otseam.control.live")

CURSOR = "console"
#: How far behind a stream may fall, and how much it may hold, before it is told to resynchronise.
MAX_AGE = 2.0
MAX_BYTES = 16 * 1024 * 1024
#: The shortest interval between two values messages of a stream, in seconds.
FLUSH = 0.05
#: Put in a subscriber's queue to end its stream (the server is stopping).
CLOSE = b"\x00close"


def _number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def value_row(point: str, value: Any, quality: int, source_ts: float, report_ts: float) -> list[Any]:
    return [point, _number(value), quality, round(source_ts, 3), round(report_ts, 6)]


def sse(kind: str, data: Any, ident: int | None = None) -> bytes:
    head = f"id: {ident}\n" if ident is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


@dataclass(slots=True, eq=False)
class Subscriber:
    """One open stream's messages not yet written. Bounded by age and size rather than by count: a
    client that falls more than MAX_AGE behind, or holds more than MAX_BYTES, is told to resynchronise
    (one snapshot replaces the backlog), so neither its lag nor the node's memory can grow without end."""

    points: frozenset[str] | None
    events: bool = True
    pending: deque[tuple[float, bytes]] = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    size: int = 0
    missed: int = 0

    def offer(self, message: bytes) -> None:
        now = time.monotonic()
        if self.pending and (now - self.pending[0][0] > MAX_AGE or self.size + len(message) > MAX_BYTES):
            self.missed += len(self.pending) + 1
            self.pending.clear()
            self.size = 0
            self.pending.append((now, b""))  # the handler turns an empty message into resync + snapshot
        else:
            self.pending.append((now, message))
            self.size += len(message)
        self.ready.set()

    def close(self) -> None:
        self.pending.clear()
        self.size = 0
        self.pending.append((0.0, CLOSE))
        self.ready.set()

    async def get(self, idle: float) -> bytes | None:
        """The next message, or None when nothing came within ``idle`` seconds."""
        if not self.pending:
            self.ready.clear()
            try:
                await asyncio.wait_for(self.ready.wait(), idle)
            except TimeoutError:
                return None
        _, message = self.pending.popleft()
        self.size -= len(message)
        return message


class LiveHub:
    def __init__(self, view: NodeView, events: EventStore, clock: Callable[[], float] = time.time) -> None:
        self.view = view
        self.events = events
        self.clock = clock
        self.subscribers: set[Subscriber] = set()
        self.offset = 0
        #: Counters shown in /api/v1/live/stats and by the benchmark.
        self.batches = 0
        self.messages = 0
        self.resyncs = 0
        self.error = ""
        self._event_listeners: list[Callable[[list[tuple[int, Event]]], None]] = []

    def subscribe(self, points: frozenset[str] | None, events: bool = True) -> Subscriber:
        subscriber = Subscriber(points, events)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def snapshot(self, points: frozenset[str] | None) -> list[list[Any]]:
        values: list[LiveValue] = self.view.live_values()
        return [
            value_row(v.point, v.value, int(v.quality), v.source_ts, v.report_ts)
            for v in values
            if points is None or v.point in points
        ]

    async def run(self) -> None:
        """Until cancelled. A journal that cannot be read is reported on every stream, and retried."""
        while True:
            journal = self.view.journal()
            if journal is None or journal.closed:
                await asyncio.sleep(0.5)
                continue
            try:
                cursor = journal.reader(CURSOR)
            except JournalError as exc:
                self._fail(str(exc))
                await asyncio.sleep(1.0)
                continue
            try:
                await self._follow(cursor)
            except JournalError as exc:
                if journal.closed:
                    return
                self._fail(str(exc))
                await asyncio.sleep(1.0)
            finally:
                cursor.close()

    def _fail(self, message: str) -> None:
        self.error = message
        log.error("console live updates: %s", message)
        self._broadcast(sse("error", {"message": f"live updates stopped: {message}"}), None)

    async def _follow(self, cursor: Any) -> None:
        next_tick = 0.0
        latest: dict[str, list[Any]] = {}
        last_sent = 0.0
        while True:
            # Values are sent at most every FLUSH seconds: a node whose drivers append a hundred times a
            # second sends each stream a few large messages rather than a hundred small ones (each
            # point's latest value wins), at the cost of at most FLUSH of latency. Events go at once.
            now = time.monotonic()
            wait = 0.25 if not latest else max(0.0, last_sent + FLUSH - now)
            batch = await cursor.next_batch(max_records=20_000, max_wait=wait)
            if batch.records:
                self._collect(batch.offsets, batch.records, latest)
                cursor.commit(batch.last_offset)
                self.offset = batch.last_offset
                self.error = ""
            now = time.monotonic()
            if latest and now - last_sent >= FLUSH:
                self._send_values(latest)
                latest = {}
                last_sent = now
            if now >= next_tick:
                next_tick = now + 1.0
                self._broadcast(sse("tick", {"ts": self.clock(), "offset": self.offset}), None)

    def _collect(self, offsets: list[int], records: list[Any], latest: dict[str, list[Any]]) -> None:
        events: list[tuple[int, Event]] = []
        for offset, record in zip(offsets, records, strict=True):
            if record.__class__ is Sample:
                latest[record[0]] = value_row(record[0], record[1], int(record[2]), record[3], record[4])
            elif isinstance(record, Event):
                events.append((offset, record))
        self.batches += 1
        if events:
            self.events.add(events)
            for listener in self._event_listeners:
                listener(events)
            self._send_events(events)
        if not self.subscribers:
            latest.clear()  # nobody is watching: the next stream starts from a snapshot anyway

    def _send_values(self, latest: dict[str, list[Any]]) -> None:
        if not self.subscribers:
            return
        rows = list(latest.values())
        shared = sse("values", rows, self.offset)
        for subscriber in list(self.subscribers):
            if subscriber.points is None:
                subscriber.offer(shared)
            else:
                mine = [r for r in rows if r[0] in subscriber.points]
                if mine:
                    subscriber.offer(sse("values", mine, self.offset))
        self.messages += 1

    def _send_events(self, events: list[tuple[int, Event]]) -> None:
        if not self.subscribers:
            return
        message = sse(
            "events",
            [
                {
                    "offset": o,
                    "ts": e.ts,
                    "kind": e.kind,
                    "source": e.source,
                    "severity": e.severity.label,
                    "message": e.message,
                }
                for o, e in events
            ],
            events[-1][0],
        )
        for subscriber in list(self.subscribers):
            if subscriber.events:
                subscriber.offer(message)

    def _broadcast(self, message: bytes, points: frozenset[str] | None) -> None:
        del points
        for subscriber in list(self.subscribers):
            subscriber.offer(message)

    def on_events(self, listener: Callable[[list[tuple[int, Event]]], None]) -> None:
        self._event_listeners.append(listener)


async def cancel(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
