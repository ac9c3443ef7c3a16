"""Moving records from the journal to one sink: read, filter, deliver, then commit.

The order of those steps is the whole delivery guarantee. A cursor is committed only after
``Sink.deliver`` has returned, so a crash, a cancellation or a failed delivery leaves the records
uncommitted and they are offered again: at-least-once, never lost. A failed batch is retried as the
same batch (same records, same offsets, same order) after an exponential backoff with jitter, and
nothing newer is read until it has gone through, so nothing is reordered either.

The runner never owns the journal or decides when to stop the sink for good: the supervisor does.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from otseam.core.plugins import JournalReader, RecordsRejected, Sink
from otseam.core.records import Batch, Event, Record, Sample
from otseam.runtime.deadletter import DeadLetters

log = logging.getLogger(__name__)

#: Records per delivery unless the sink says otherwise (``max_batch`` attribute) or the caller does.
DEFAULT_MAX_BATCH = 5000


class RecordFilter:
    """Which records a sink wants, from the ``points`` patterns and ``events`` flag of its spec.

    Point keys are matched against shell-style patterns (``plc1/*``); the answer for each key is
    cached, because a plant has thousands of points but each one is asked about millions of times.
    """

    __slots__ = ("_cache", "_everything", "_exact", "_patterns", "events")

    def __init__(self, points: Sequence[str] = (), events: bool = True) -> None:
        self.events = events
        self._everything = not points
        self._exact = {p for p in points if not _is_glob(p)}
        globs = [p for p in points if _is_glob(p)]
        self._patterns = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in globs)) if globs else None
        self._cache: dict[str, bool] = {}

    def wants_point(self, key: str) -> bool:
        if self._everything:
            return True
        cached = self._cache.get(key)
        if cached is None:
            cached = key in self._exact or (self._patterns is not None and self._patterns.match(key) is not None)
            self._cache[key] = cached
        return cached

    def apply(self, batch: Batch) -> Batch:
        """The records of ``batch`` this sink wants, with their offsets, in journal order."""
        if self._everything and self.events:
            return batch
        offsets: list[int] = []
        records: list[Record] = []
        wants_point = self.wants_point
        events = self.events
        for offset, record in zip(batch.offsets, batch.records, strict=True):
            if isinstance(record, Event):
                if not events:
                    continue
            elif not wants_point(record.point):
                continue
            offsets.append(offset)
            records.append(record)
        return Batch(batch.source, offsets, records)


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with full jitter: the n-th wait is uniform in [base, min(cap, base * 2**n)].

    Jitter keeps many sinks (or many edges) that failed together from retrying in lock-step against a
    broker that has just come back.
    """

    base: float = 0.5
    #: A sink that comes back waits at most this long for the next attempt: with a backlog building at
    #: 10,000 samples/s, every second of waiting is 10,000 more records to catch up.
    cap: float = 10.0
    attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        return random.uniform(self.base, max(self.base, ceiling))

    def reset(self) -> None:
        self.attempt = 0


@dataclass(slots=True)
class SinkStats:
    """What a person (and Prometheus) needs to know about one sink. Written only by its runner."""

    sink_id: str
    state: str = "starting"  # starting | running | retrying | draining | stopped
    delivered_records: int = 0
    delivered_batches: int = 0
    #: Records read but not for this sink (filtered out); committed without delivery.
    skipped_records: int = 0
    errors: int = 0
    consecutive_failures: int = 0
    #: When the current streak of failures began (wall clock); 0 while delivering.
    failing_since: float = 0.0
    last_error: str = ""
    #: The highest journal offset committed for this sink; -1 before the first commit in this process.
    committed_offset: int = -1
    last_delivery_ts: float = 0.0
    #: Seconds between the newest delivered sample's gateway timestamp and its delivery.
    last_delivery_delay: float = 0.0
    #: Records the sink said it will never accept, written to the dead-letter file instead.
    rejected_records: int = 0

    def lag(self, head_offset: int) -> int:
        """Records appended to the journal but not yet committed by this sink."""
        if head_offset < 0:
            return 0
        return max(0, head_offset - self.committed_offset)


async def run_sink(
    sink: Sink,
    reader: JournalReader,
    *,
    stats: SinkStats,
    record_filter: RecordFilter | None = None,
    stop: asyncio.Event | None = None,
    max_records: int | None = None,
    max_wait: float = 0.5,
    backoff: Backoff | None = None,
    clock: Callable[[], float] = time.time,
    dead_letters: DeadLetters | None = None,
) -> None:
    """Deliver everything from ``reader`` to ``sink`` until cancelled or ``stop`` is set.

    Records the sink rejects for good (:class:`RecordsRejected`) go to ``dead_letters`` and are
    committed; without a dead-letter box they are retried like any failed delivery.

    ``max_records`` bounds a batch; by default it is the sink's own ``max_batch`` attribute if it has one
    (a sink whose delivery ends in an fsync or a transaction wants large batches to catch up after an
    outage), else :data:`DEFAULT_MAX_BATCH`.

    When ``stop`` is set the runner drains: it keeps delivering until the journal has nothing more for
    this cursor, then closes the sink and returns. Cancelling instead returns at once; whatever was being
    delivered is not committed and will be offered again next time (sinks deduplicate by offset).
    """
    backoff = backoff or Backoff()
    if max_records is None:
        preferred = getattr(sink, "max_batch", None)
        max_records = preferred if isinstance(preferred, int) and preferred > 0 else DEFAULT_MAX_BATCH
    record_filter = record_filter or RecordFilter()
    stop = stop or asyncio.Event()
    stats.state = "starting"
    try:
        if not await _start(sink, stats, backoff, stop):
            return
        stats.state = "running"
        while True:
            draining = stop.is_set()
            if draining:
                stats.state = "draining"
            batch = await reader.next_batch(max_records=max_records, max_wait=0.0 if draining else max_wait)
            if not batch.records:
                if draining:
                    return
                continue
            wanted = record_filter.apply(batch)
            if wanted.records:
                await _deliver_until_done(sink, wanted, stats, backoff, stop, clock, dead_letters)
            stats.skipped_records += len(batch) - len(wanted)
            reader.commit(batch.last_offset)
            stats.committed_offset = batch.last_offset
    finally:
        stats.state = "stopped"
        # Closing must not be skipped by a cancellation, but must not hang a shutdown either.
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(asyncio.wait_for(sink.close(), timeout=10.0))


async def _start(sink: Sink, stats: SinkStats, backoff: Backoff, stop: asyncio.Event) -> bool:
    """Start the sink, retrying with backoff: a broker that is down at boot is an outage, not a crash.
    False if asked to stop before the sink could be started."""
    while True:
        try:
            await sink.start()
            backoff.reset()
            stats.consecutive_failures = 0
            stats.failing_since = 0.0
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stats.errors += 1
            if not stats.consecutive_failures:
                stats.failing_since = time.time()
            stats.consecutive_failures += 1
            stats.last_error = _describe(exc)
            stats.state = "retrying"
            delay = backoff.next_delay()
            log.warning("sink %s: cannot start (%s); retrying in %.1fs", stats.sink_id, stats.last_error, delay)
            if await _wait_or_stop(stop, delay):
                return False


async def _deliver_until_done(
    sink: Sink,
    batch: Batch,
    stats: SinkStats,
    backoff: Backoff,
    stop: asyncio.Event,
    clock: Callable[[], float],
    dead_letters: DeadLetters | None = None,
) -> None:
    """Deliver one batch, retrying the very same batch until it goes through or the task is cancelled.

    A stop request does not abandon a failing batch here: draining means "deliver what you can"; the
    supervisor bounds the drain with a timeout and cancels, which leaves the batch uncommitted.
    """
    while True:
        rejected = 0
        try:
            await sink.deliver(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, RecordsRejected) and dead_letters is not None:
                # The rest of the batch went through; these never will: kept aside, not retried.
                rejected = dead_letters.put(batch, exc)
                stats.rejected_records += rejected
            else:
                stats.errors += 1
                if not stats.consecutive_failures:
                    stats.failing_since = time.time()
                stats.consecutive_failures += 1
                stats.last_error = _describe(exc)
                stats.state = "retrying"
                delay = backoff.next_delay()
                # One line per failure streak and then every tenth, so an hour-long outage does not flood the log.
                if stats.consecutive_failures == 1 or stats.consecutive_failures % 10 == 0:
                    log.warning(
                        "sink %s: delivery of %d records failed (%s); attempt %d, retrying in %.1fs",
                        stats.sink_id,
                        len(batch),
                        stats.last_error,
                        stats.consecutive_failures,
                        delay,
                    )
                await asyncio.sleep(delay)
                continue
        if stats.consecutive_failures:
            log.info("sink %s: delivering again after %d failed attempts", stats.sink_id, stats.consecutive_failures)
        backoff.reset()
        stats.consecutive_failures = 0
        stats.failing_since = 0.0
        stats.state = "draining" if stop.is_set() else "running"
        stats.delivered_records += len(batch) - rejected
        stats.delivered_batches += 1
        delivered_at = clock()
        stats.last_delivery_ts = delivered_at
        newest = _newest_gateway_ts(batch.records)
        if newest is not None:
            stats.last_delivery_delay = max(0.0, delivered_at - newest)
        return


def _newest_gateway_ts(records: Sequence[Record]) -> float | None:
    for record in reversed(records):
        if isinstance(record, Sample):
            return record.gateway_ts
    return None


async def _wait_or_stop(stop: asyncio.Event, delay: float) -> bool:
    """Sleep ``delay`` seconds; True if ``stop`` was set meanwhile."""
    # asyncio.timeout rather than wait_for: on Python 3.11, wait_for can drop a cancellation that lands
    # in the same loop turn as the wait completes, and a supervisor's stop would then be lost.
    try:
        async with asyncio.timeout(delay):
            await stop.wait()
    except TimeoutError:
        return False
    return True


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
