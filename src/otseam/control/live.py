"""Live updates for the console: what the node appends to its journal, fanned out to every open stream.

The hub takes each batch as the journal writes it (:meth:`Journal.observe`: the batch's list, no copy of
its records, no decoding from disk) and, every ``FLUSH`` seconds, turns what arrived into at most two
messages: the latest value of each point that changed (one JSON encoding of the samples themselves, no
Python work per sample beyond a dict update) and the events. Every stream watching everything is handed
the same bytes; a stream watching a few points gets a copy filtered from its own points. Polling comes
first: when the event loop wakes the hub late (the process is short of CPU), the hub sends less often,
each point's latest value winning meanwhile, so the streams' share of the CPU shrinks.

Events are also indexed for the alerts pages (``EventStore``). That index must not miss an event across
a crash, so the hub keeps a journal cursor (``console``): at start it reads what the index may lack, and
afterwards it only moves the cursor on past what it has indexed.

Never silent: every second each stream gets a ``tick`` (the page declares the stream lost when ticks
stop). A stream that falls behind (its unwritten messages older than ``MAX_AGE`` or larger than
``MAX_BYTES``) is not dropped quietly and does not queue without end: its backlog is discarded, and
what it is sent next is ``resync`` (how many messages it missed) and a fresh snapshot, the latest value
of every point, which is all a page shows. The page says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any

from otseam.control.events import EventStore
from otseam.control.view import NodeView
from otseam.core.columns import SampleColumns
from otseam.core.columns import decode as decode_columns
from otseam.core.records import Event, Record, Sample
from otseam.journal import Journal, JournalError

log = logging.getLogger("otseam.control.live")

CURSOR = "console"
#: How far behind a stream may fall, and how much it may hold, before it is told to resynchronise.
MAX_AGE = 2.0
MAX_BYTES = 16 * 1024 * 1024
#: How often what the journal took is sent on, in seconds (each point's latest value wins meanwhile).
FLUSH = 0.05
#: When the event loop is this late waking the hub (the process is short of CPU), the interval doubles,
#: up to SLOWEST: the streams then send each point's latest value less often and the polling keeps the
#: CPU. It comes back down when the loop is on time again.
LATE = 0.02
SLOWEST = 0.8
#: The index's cursor is committed at most this often, in seconds.
COMMIT_EVERY = 1.0

_point_of = itemgetter(0)
_value_of = itemgetter(1)
_group_key = itemgetter(2, 3, 4)
_compact = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=str).encode
_lenient = json.JSONEncoder(separators=(",", ":"), default=str).encode


def _number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def sse(kind: str, data: Any, ident: int | None = None) -> bytes:
    head = f"id: {ident}\n" if ident is not None else ""
    return f"{head}event: {kind}\ndata: {_lenient(data)}\n\n".encode()


def values_message(kind: str, samples: Sequence[Sample], ident: int) -> bytes:
    """The ``values`` (or ``snapshot``) message of ``samples``: a list of groups
    ``[quality, source_ts, report_ts, [point, ...], [value, ...]]``, one per run of samples sharing
    quality and timestamps (a driver's poll is one run). A group is built with C-level calls over its
    samples and encoded by the json module's C encoder: no Python work per sample, and each timestamp
    is written once per group rather than twice per value (timestamps are most of the encoding's CPU
    and bytes). A non-finite number, which JSON cannot carry, is sent as null."""
    groups = []
    for (quality, source_ts, report_ts), grouped in groupby(samples, _group_key):
        run = list(grouped)
        groups.append([quality, source_ts, report_ts, list(map(_point_of, run)), list(map(_value_of, run))])
    try:
        data = _compact(groups)
    except ValueError:
        for group in groups:
            group[4] = [_number(v) for v in group[4]]
        data = _lenient(groups)
    return f"id: {ident}\nevent: {kind}\ndata: {data}\n\n".encode()


class Subscriber:
    """One open stream's messages not yet written, bounded by age and size (see the module docstring)."""

    __slots__ = ("behind", "closed", "events", "missed", "pending", "points", "ready", "since", "size")

    def __init__(self, points: frozenset[str] | None, events: bool = True) -> None:
        self.points = points
        self.events = events
        self.pending: list[bytes] = []
        self.size = 0
        #: When the oldest message waiting was offered (monotonic seconds).
        self.since = 0.0
        #: The backlog was discarded: the next thing written is resync + snapshot.
        self.behind = False
        self.missed = 0
        self.closed = False
        self.ready = asyncio.Event()

    def offer(self, message: bytes, now: float) -> None:
        if self.closed:
            return
        if self.behind:
            self.missed += 1
            return
        if self.pending and (now - self.since > MAX_AGE or self.size + len(message) > MAX_BYTES):
            self.missed += len(self.pending) + 1
            self.pending.clear()
            self.size = 0
            self.behind = True
        else:
            if not self.pending:
                self.since = now
            self.pending.append(message)
            self.size += len(message)
        self.ready.set()

    def close(self) -> None:
        self.pending.clear()
        self.size = 0
        self.closed = True
        self.ready.set()

    async def wait(self, idle: float) -> bool:
        """Until there is something to write (True), or ``idle`` seconds passed with nothing (False)."""
        if not (self.pending or self.behind or self.closed):
            self.ready.clear()
            try:
                await asyncio.wait_for(self.ready.wait(), idle)
            except TimeoutError:
                return False
        return True

    def take(self) -> bytes:
        """Everything waiting, as one write."""
        message = b"".join(self.pending)
        self.pending.clear()
        self.size = 0
        return message

    def take_missed(self) -> int:
        missed, self.missed, self.behind = self.missed, 0, False
        self.pending.clear()
        self.size = 0
        return missed


class LiveHub:
    def __init__(self, view: NodeView, events: EventStore, clock: Callable[[], float] = time.time) -> None:
        self.view = view
        self.events = events
        self.clock = clock
        self.subscribers: set[Subscriber] = set()
        #: The last journal offset sent on.
        self.offset = 0
        #: Counters shown by /api/v1/health (and so by the benchmark).
        self.batches = 0
        self.messages = 0
        #: Samples read out of batches for the streams; none while no stream is open (a node whose
        #: console nobody watches spends nothing on values, only on indexing events).
        self.samples = 0
        self.resyncs = 0
        #: CPU-seconds of the event loop's thread spent on live updates: taking and encoding batches, and
        #: (added by the stream handlers) writing them. Shown by /api/v1/health, read by the benchmark.
        self.cpu = 0.0
        #: The interval between two sends now, in seconds (see LATE).
        self.interval = FLUSH
        self.error = ""
        self._event_listeners: list[Callable[[list[tuple[int, Event]]], None]] = []
        #: Batches as the journal wrote them: (first offset, records). Appended on the writing thread.
        self._inbox: deque[tuple[int, Sequence[Record | SampleColumns]]] = deque()
        #: Events up to this offset are in the index.
        self._indexed = 0
        self._snapshot: tuple[int, bytes] = (-1, b"")

    def subscribe(self, points: frozenset[str] | None, events: bool = True) -> Subscriber:
        subscriber = Subscriber(points, events)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def snapshot(self, points: frozenset[str] | None) -> bytes:
        """The ``snapshot`` message: the last reported value of every point (of ``points``). The full
        one is encoded once per offset, however many streams start or resynchronise at that moment."""
        if points is None and self._snapshot[0] == self.offset:
            return self._snapshot[1]
        values = [
            Sample(v.point, v.value, v.quality, v.source_ts, v.report_ts)
            for v in self.view.live_values()
            if points is None or v.point in points
        ]
        message = values_message("snapshot", values, self.offset)
        if points is None:
            self._snapshot = (self.offset, message)
        return message

    def resync(self, subscriber: Subscriber, points: frozenset[str] | None) -> bytes:
        """What a stream that fell behind is sent instead of its backlog."""
        self.resyncs += 1
        return sse("resync", {"missed": subscriber.take_missed()}) + self.snapshot(points)

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
            stop: Callable[[], None] | None = None
            try:
                # A long backlog is indexed before batches are taken as written (they would pile up
                # meanwhile); then only the stretch appended during that is read before following.
                await self._index_backlog(cursor, journal.last_offset)
                self._inbox.clear()
                stop = journal.observe(self._take)
                await self._index_backlog(cursor, journal.last_offset)
                await self._follow(journal, cursor)
            except JournalError as exc:
                if journal.closed:
                    return
                self._fail(str(exc))
                await asyncio.sleep(1.0)
            finally:
                if stop is not None:
                    stop()
                cursor.close()

    def _take(self, first: int, records: Sequence[Record | SampleColumns]) -> None:
        # On the journal's writing thread, with its lock held: only keep the batch (deque.append is
        # atomic). Callers hand the journal a list they do not touch afterwards.
        self._inbox.append((first, records))

    def _fail(self, message: str) -> None:
        self.error = message
        log.error("console live updates: %s", message)
        self._broadcast(sse("error", {"message": f"live updates stopped: {message}"}))

    async def _index_backlog(self, cursor: Any, end: int) -> None:
        """Index the events the journal took before this hub was watching (after a restart, or a crash
        before the cursor moved on)."""
        while cursor.committed < end:
            batch = await cursor.next_batch(max_records=20_000, max_wait=0)
            if not batch.records:
                break
            self._index([(o, r) for o, r in zip(batch.offsets, batch.records, strict=True) if isinstance(r, Event)])
            cursor.commit(batch.last_offset)
        self._indexed = max(self._indexed, end)
        self.offset = max(self.offset, end)

    async def _follow(self, journal: Journal, cursor: Any) -> None:
        next_tick = 0.0
        next_commit = 0.0
        while not journal.closed:
            due = time.monotonic() + self.interval
            await asyncio.sleep(self.interval)
            late = time.monotonic() - due
            if late > LATE:
                self.interval = min(SLOWEST, self.interval * 2)
            elif self.interval > FLUSH:
                self.interval = max(FLUSH, self.interval * 0.8)
            began = time.thread_time()
            self._drain()
            self.cpu += time.thread_time() - began
            now = time.monotonic()
            if now >= next_commit and self.offset > cursor.committed:
                next_commit = now + COMMIT_EVERY
                cursor.commit(self.offset)
            if now >= next_tick:
                next_tick = now + 1.0
                self._broadcast(sse("tick", {"ts": self.clock(), "offset": self.offset}))
        raise JournalError("the journal was closed")

    def _drain(self) -> None:
        """Everything the journal took since the last call: values to the streams, events to the index
        and the streams."""
        inbox = self._inbox
        if not inbox:
            return
        # A stream opened later starts from the view's snapshot, not from these values.
        latest: dict[str, Sample] | None = {} if self.subscribers else None
        events: list[tuple[int, Event]] = []
        last = self.offset
        while inbox:
            first, records = inbox.popleft()
            self.batches += 1
            if set(map(type, records)) == {Sample}:
                # The common case, a driver's batch: no Python work per sample.
                if latest is not None:
                    latest.update(zip(map(_point_of, records), records, strict=True))  # type: ignore[arg-type]
                last = first + len(records) - 1
            else:
                last = self._sort(first, records, latest, events)
        self.offset = last
        if events:
            fresh = [(o, e) for o, e in events if o > self._indexed]
            self._index(fresh)
            self._send_events(fresh)
        if latest and self.subscribers:
            self.samples += len(latest)
            self._send_values(latest)

    @staticmethod
    def _sort(
        first: int,
        records: Sequence[Record | SampleColumns],
        latest: dict[str, Sample] | None,
        events: list[tuple[int, Event]],
    ) -> int:
        """A batch of mixed records into latest values (unless None: no stream wants them) and events;
        returns its last offset."""
        offset = first
        for record in records:
            if isinstance(record, SampleColumns):
                if latest is not None:
                    for sample in decode_columns(record.payload).records:
                        if isinstance(sample, Sample):
                            latest[sample[0]] = sample
                offset += record.count
                continue
            if record.__class__ is Sample:
                if latest is not None:
                    latest[record[0]] = record
            elif isinstance(record, Event):
                events.append((offset, record))
            offset += 1
        return offset - 1

    def _index(self, events: list[tuple[int, Event]]) -> None:
        if not events:
            return
        self.events.add(events)
        self._indexed = max(self._indexed, events[-1][0])
        for listener in self._event_listeners:
            listener(events)

    def _send_values(self, latest: dict[str, Sample]) -> None:
        now = time.monotonic()
        shared = b""
        for subscriber in list(self.subscribers):
            if subscriber.points is None:
                if not shared:
                    shared = values_message("values", list(latest.values()), self.offset)
                subscriber.offer(shared, now)
            else:
                mine = [latest[p] for p in subscriber.points if p in latest]
                if mine:
                    subscriber.offer(values_message("values", mine, self.offset), now)
        self.messages += 1

    def _send_events(self, events: list[tuple[int, Event]]) -> None:
        if not events or not self.subscribers:
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
        now = time.monotonic()
        for subscriber in list(self.subscribers):
            if subscriber.events:
                subscriber.offer(message, now)

    def _broadcast(self, message: bytes) -> None:
        now = time.monotonic()
        for subscriber in list(self.subscribers):
            subscriber.offer(message, now)

    def on_events(self, listener: Callable[[list[tuple[int, Event]]], None]) -> None:
        self._event_listeners.append(listener)


async def cancel(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
