"""The IT side of the diode: datagrams in, deduplicated records and diode events into the IT journal.

The receiver never sends: its socket is only read. It trusts nothing before the MAC is checked,
decodes nothing from a sender whose configuration fingerprint differs from its own, releases blocks
in sequence order, and counts every block it could not rebuild, exactly, as a ``diode.gap`` event.
Current values lost in a gap come back with the sender's next periodic snapshot; the snapshot's
records carry their original journal offsets, so values already written are not written again.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hmac
import json
import logging
import math
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from otseam.core import columns
from otseam.core.columns import SampleColumns
from otseam.core.memory import keep_freed_memory
from otseam.core.plugins import JournalWriter
from otseam.core.records import Event, Quality, Record, Sample, Severity
from otseam.diode import blocks, mmsg, wire
from otseam.diode.config import DiodeSettings
from otseam.diode.dedup import OffsetSet
from otseam.diode.fec import FRAGMENT_HEADER, Fec
from otseam.diode.metrics import ReceiverStats

log = logging.getLogger(__name__)

#: How many quality values a sample may carry (the C inspector's bound).
_QUALITIES = len(Quality)

RECEIVE_BUFFER = 64 * 1024 * 1024
#: Blocks held (incomplete, or complete behind an incomplete one) per session; beyond this the earliest is
#: declared lost. 4,096 full blocks are about 370 MB, and more than half a second of data at 5 Gbit/s:
#: a link that keeps up never comes near it, a sender gone wrong cannot make the receiver grow further.
MAX_PENDING = 4096
#: Datagrams handled per wake-up before yielding to the rest of the event loop.
DRAIN_LIMIT = 2048
#: Datagrams read per system call (recvmmsg), or per pass of recv_into where that is missing.
BATCH = 64
#: Records are written to the IT journal in batches of at least this many, or FLUSH_INTERVAL after the
#: previous write while datagrams keep coming, or FLUSH_IDLE after the socket ran dry (each journal
#: append has a fixed cost: a frame, a checksum, a write; a receiver that keeps up wakes up often).
FLUSH_RECORDS = 20_000
#: ... or as soon as the blocks behind the pending records add up to this many bytes. Measured: with
#: 1,000-byte values, writing 20 MB at a time cost the receiver twice the CPU of 1-2 MB at a time, the
#: difference being fresh memory for the large transient buffers (page faults), not the work itself.
FLUSH_BYTES = 1 << 20
FLUSH_INTERVAL = 0.05
FLUSH_IDLE = 0.005
#: After a wake-up that found datagrams and emptied the socket, the receiver stops watching the socket for
#: up to this long, then reads what came meanwhile and writes the journal in the same wake-up: fewer,
#: larger bursts per system call, per batch check and per journal write, and no wake-up of its own for
#: the idle flush (measured: a quarter less user CPU at 400 Mbit/s, docs/bench/diode.md). Loss checks
#: drain the socket first, so nothing queued in it is given up for lost.
RECEIVE_PAUSE = 0.02
#: The pause never lasts longer than a link this fast takes to fill a quarter of the socket's buffer (at
#: 1,472 bytes a datagram the kernel charges the buffer about three times the bytes): with the 64 MB
#: asked for, 20 ms; with a buffer capped by net.core.rmem_max, less, and none below PAUSE_MIN.
FASTEST_LINK = 10e9 / 8
PAUSE_MIN = 0.001
TICK = 0.1
#: Blocks given up, remembered per session so that a fragment arriving for one afterwards is recognised.
GIVEN_UP_MEMORY = 1024
#: A beacon of a session this receiver does not know is refused if its sender clock is older than the
#: newest sender clock seen by more than this: a recorded beacon replayed, or an OT clock stepped back.
STALE_SESSION = 60.0
#: Sessions remembered across restarts (their next block and last beacon number), newest first.
REMEMBERED_SESSIONS = 64
#: A gap whose upper journal offset is still unknown (nothing released after it) is reported anyway
#: after this long, with the upper bound left open.
GAP_BOUND_WAIT = 5.0
#: Missing ranges kept for /health.
MISSING_SHOWN = 20
#: At most one log line per this many seconds for datagrams that fail the MAC or carry another version.
LOG_EVERY = 60.0
#: How long close() keeps reading a socket that keeps filling (SIGTERM must end the process promptly).
CLOSE_DRAIN = 1.0
_SO_RCVBUFFORCE = 33 if sys.platform == "linux" else None
EVENT_SOURCE = "diode-receive"
_DATA, _PARITY, _BEACON = int(wire.Kind.DATA), int(wire.Kind.PARITY), int(wire.Kind.BEACON)
_SHORT, _MAGIC, _VERSION, _MAC, _MALFORMED = (
    wire.Rejected.SHORT,
    wire.Rejected.MAGIC,
    wire.Rejected.VERSION,
    wire.Rejected.MAC,
    wire.Rejected.MALFORMED,
)
#: The order of the counts the C checker returns, and the kinds of items it returns.
_REASONS = (_SHORT, _MAGIC, _VERSION, _MAC, _MALFORMED)
_ITEM_RUN, _ITEM_BEACON, _ITEM_BLOCK = wire.ITEM_RUN, wire.ITEM_BEACON, wire.ITEM_BLOCK
_NOT_HISTORY = wire.FLAG_SNAPSHOT | wire.FLAG_REPLAY


def _first(mark: tuple[int, float]) -> int:
    return mark[0]


def _time_of(record: Record) -> float:
    return record.gateway_ts if isinstance(record, Sample) else record.ts


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


_COLUMNS_TAG = bytes([blocks.FORMAT_SAMPLES])


@dataclass(slots=True)
class Assembly:
    k: int
    m: int
    flags: int
    #: By fragment index, k data then m parity; None until that fragment arrives.
    fragments: list[bytes | None]
    count: int = 0
    last_time: float = 0.0


@dataclass(slots=True)
class Session:
    id: int
    matched: bool
    next_sequence: int = 0
    #: Every sequence below this has been sent (from beacons and from the fragments seen).
    known_sent: int = 0
    #: (known_sent, when it was learnt), increasing: the evidence that a block was sent, and when.
    marks: deque[tuple[int, float]] = field(default_factory=deque)
    #: Every block below this has been sent whole: a fragment of a later block or a beacon's count has
    #: arrived (the sender sends a block's datagrams together, blocks in order, beacons between blocks).
    whole_below: int = 0
    #: (whole_below, when it was learnt), increasing.
    whole_marks: deque[tuple[int, float]] = field(default_factory=deque)
    last_heard: float = 0.0
    pending: dict[int, Assembly] = field(default_factory=dict)
    done: dict[int, tuple[int, bytes | None]] = field(default_factory=dict)
    #: The latest blocks given up (oldest first), at most GIVEN_UP_MEMORY of them; True once a late
    #: fragment of the block has widened the reorder window.
    given_up: dict[int, bool] = field(default_factory=dict)
    #: The highest beacon number acted upon: a beacon must carry a higher one (a replay does not).
    beacon_number: int = -1
    #: Blocks below this were sent before this receiver synchronised with the session (it was not
    #: running, or restarting): those never received are reported as such.
    synced_at: int = 0
    #: The sender clock of the latest beacon acted upon.
    sent_at: float = 0.0


@dataclass(slots=True)
class Gap:
    """Blocks given up, waiting for the journal offset and time of the first record after them."""

    session: int
    first: int
    last: int
    reason: str
    declared: float
    #: (source, offset, gateway time) of the last record released before the gap, if any.
    after: tuple[str, int, float] | None


class DiodeReceiver:
    def __init__(
        self,
        listen: tuple[str, int],
        key: bytes,
        settings: DiodeSettings,
        journal: JournalWriter,
        state_path: Path | None = None,
        batched: bool | None = None,
        compiled: bool | None = None,
    ) -> None:
        """``batched``: read with recvmmsg (None: wherever it is available; False: recv_into, one
        datagram per call, the portable path). ``compiled``: check datagrams (and call recvmmsg) with
        the C speedups (None: wherever they were built; False: the pure-Python reference)."""
        self.listen = listen
        self.settings = settings
        self.journal = journal
        self.stats = ReceiverStats()
        self._key = key
        self._mac = wire.Mac(key)
        self._compiled = compiled
        speedups = wire.speedups(compiled)
        self._speedups = speedups
        self._checker = speedups.Mac(key) if speedups is not None else None
        self._batched = mmsg.available() if batched is None else batched
        self._batch: mmsg.BatchReceiver | None = None
        #: One byte more than a datagram of ours can be, so that a longer one shows as too long.
        self._slot = settings.datagram_size + 1
        self._fec = Fec(settings.fec)
        self._join = self._fec.join
        self._fingerprint = settings.fingerprint(key)
        #: The parity a block of k data fragments must have, by k: anything else is not our configuration.
        self._parity = [settings.fec.parity_for(k) for k in range(settings.fec.max_k + 1)]
        self._max_k = settings.fec.max_k
        self._state_path = state_path
        self.seen = OffsetSet.load(state_path) if state_path else OffsetSet()
        self._state_dirty = False
        self.sessions: dict[int, Session] = {}
        self._sock: socket.socket | None = None
        self.receive_buffer = 0
        self._tick: asyncio.Task[None] | None = None
        self._out: list[Record | SampleColumns] = []
        self._out_bytes = 0
        self._last_flush = 0.0
        self._idle_flush: asyncio.TimerHandle | None = None
        self._paused: asyncio.TimerHandle | None = None
        self._pause = 0.0
        self._buffer = bytearray(self._slot * BATCH)
        self._starts = list(range(0, self._slot * BATCH, self._slot))
        self._sizes = [0] * BATCH
        self._link_up = False
        self._last_beacon = 0.0
        self._mismatch_reported: dict[bytes, float] = {}
        self._version_reported = float("-inf")
        self._mac_reported = float("-inf")
        self._mac_failures = 0
        self._stale_reported = float("-inf")
        #: Sessions seen before (also by an earlier run of this receiver): next block, last beacon number.
        self._sessions_path = state_path.with_name(state_path.name + ".sessions") if state_path else None
        self._remembered: dict[int, tuple[int, int, float]] = {}
        self._newest_sent_at = float("-inf")
        #: (source, offset, gateway time) of the last record of history released; gaps not yet bounded.
        self._last_written: tuple[str, int, float] | None = None
        if self._sessions_path is not None:
            self._load_sessions(self._sessions_path)
        self._open_gaps: list[Gap] = []
        #: The latest missing ranges, for /health.
        self.missing: deque[dict[str, object]] = deque(maxlen=MISSING_SHOWN)
        #: How long a block sent whole may still wait for a fragment; widened if the link reorders more.
        self.reorder_window = settings.reorder_window
        self.stats.reorder_window = settings.reorder_window
        self._loss_timer: asyncio.TimerHandle | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        keep_freed_memory()  # block-sized buffers without a page fault each time (core/memory.py)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        # Most loss on a diode is this buffer overflowing. SO_RCVBUFFORCE (Linux, needs CAP_NET_ADMIN)
        # goes past net.core.rmem_max; otherwise the kernel silently caps SO_RCVBUF at it.
        for option in (getattr(socket, "SO_RCVBUFFORCE", _SO_RCVBUFFORCE), socket.SO_RCVBUF):
            if option is None:
                continue
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER)
                break
            except OSError:
                continue
        self.receive_buffer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self._pause = min(RECEIVE_PAUSE, self.receive_buffer / 4 / FASTEST_LINK)
        if self._pause < PAUSE_MIN:
            self._pause = 0.0
        if self.receive_buffer < RECEIVE_BUFFER:
            log.warning(
                "diode receive buffer is %d bytes, not the %d asked for: raise net.core.rmem_max "
                "or run with CAP_NET_ADMIN, or bursts will be lost",
                self.receive_buffer,
                RECEIVE_BUFFER,
            )
        sock.bind(self.listen)
        self.listen = sock.getsockname()
        if self._batched:
            self._batch = mmsg.BatchReceiver(
                sock, self._slot, BATCH, compiled=self._compiled, coalesce=self.settings.offload
            )
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._drain)
        self._tick = asyncio.create_task(self._tick_loop(), name="diode-receive-tick")

    async def close(self) -> None:
        if self._loss_timer is not None:
            self._loss_timer.cancel()
            self._loss_timer = None
        if self._tick:
            self._tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._read_queued(CLOSE_DRAIN)  # a socket that keeps filling must not hold SIGTERM up
            if self._paused is not None:  # the drain above may have paused the (no longer watched) socket
                self._paused.cancel()
                self._paused = None
            self._sock.close()
            self._sock = None
            self._batch = None
        # Whatever is still incomplete will never complete: count it, and release what waited behind it.
        now = time.monotonic()
        for session in self.sessions.values():
            if session.matched:
                self._declare_lost(session, now, up_to=session.known_sent)
        self._bound_gaps(None)
        self._flush()
        self._save_state()

    # --- the hot path: one wake-up drains the socket ---------------------------------------------

    def _drain(self) -> int:
        """Handle the queued datagrams, up to about DRAIN_LIMIT; returns how many were read."""
        sock = self._sock
        if sock is None:
            return 0
        count = 0
        now = time.monotonic()
        batch = self._batch
        while count < DRAIN_LIMIT:
            try:
                if batch is not None:
                    got = batch.receive()
                    view, starts, sizes = batch.view, batch.starts, batch.sizes
                else:
                    got = self._receive_one_by_one(sock)
                    view, starts, sizes = memoryview(self._buffer), self._starts, self._sizes
            except OSError as exc:  # never fatal: a receiver must outlive whatever it is sent
                log.warning("diode receive error: %s", exc)
                break
            if not got:
                break
            count += got
            self._handle(view, starts, sizes, got, now)
        if count < DRAIN_LIMIT:  # the socket ran dry: whatever is missing now is not waiting in it
            self._check_losses(time.monotonic())
        if count and count < DRAIN_LIMIT and self._pause and self._paused is None:
            loop = asyncio.get_running_loop()
            loop.remove_reader(sock.fileno())
            self._paused = loop.call_later(self._pause, self._resume)
        if len(self._out) >= FLUSH_RECORDS or now - self._last_flush >= FLUSH_INTERVAL:
            self._flush()
        elif self._out and count < DRAIN_LIMIT and self._idle_flush is None and self._paused is None:
            self._idle_flush = asyncio.get_running_loop().call_later(FLUSH_IDLE, self._flush)
        return count

    def _read_queued(self, within: float) -> bool:
        """Read what is queued in the socket, for ``within`` seconds at most; whether it ran dry. Bounded:
        a socket that refills faster than it is read (a sender above what this receiver sustains, or a
        flood) must not hold the event loop, and with it SIGTERM, the state saves and every other task,
        for as long as that lasts."""
        until = time.monotonic() + within
        while self._drain() >= DRAIN_LIMIT:
            if time.monotonic() >= until:
                return False
        return True

    def _resume(self) -> None:
        """The end of a pause (RECEIVE_PAUSE): read what came meanwhile, write what is pending, and watch the
        socket again (unless this read paused once more)."""
        self._paused = None
        sock = self._sock
        if sock is None:
            return
        try:
            self._drain()
            if self._out:
                self._flush()
        except Exception:  # a bug here must be seen, but must not stop the receiver
            log.exception("diode receiver read failed")
        finally:
            if self._paused is None and self._sock is not None:
                asyncio.get_running_loop().add_reader(self._sock.fileno(), self._drain)

    def _receive_one_by_one(self, sock: socket.socket) -> int:
        """recv_into, one datagram per call, into the same layout recvmmsg fills."""
        view, slot, sizes = memoryview(self._buffer), self._slot, self._sizes
        got = 0
        while got < BATCH:
            try:
                sizes[got] = sock.recv_into(view[got * slot : (got + 1) * slot], slot)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                if got:  # handle what was read; the error comes back on the next call
                    break
                raise
            got += 1
        return got

    def datagram(self, data: memoryview, now: float) -> None:
        """One datagram, through the same checks as a batch (used for single datagrams and fuzzing)."""
        self._handle(data, [0], [len(data)], 1, now)

    def _handle(self, view: memoryview, starts: Sequence[int], sizes: Sequence[int], count: int, now: float) -> None:
        """The hot path: datagram ``i`` is ``view[starts[i] : starts[i] + sizes[i]]``."""
        if self._checker is None:
            self._handle_python(view, starts, sizes, count, now)
            return
        received, rejected_counts, items = self._checker.parse_batch(view, starts, sizes, count, self._slot - 1)
        stats = self.stats
        for reason, rejected in zip(_REASONS, rejected_counts, strict=True):
            if rejected:
                stats.rejected[reason] += rejected
        if rejected_counts[2] and now - self._version_reported >= LOG_EVERY:
            self._report_version(view, starts, sizes, count, now)
        if rejected_counts[3]:
            self._mac_failed(rejected_counts[3], None, now)
        for item in items:
            tag = item[0]
            if tag == _ITEM_BLOCK:
                self._block(*item[1:], now=now)  # type: ignore[misc]
            elif tag == _ITEM_RUN:
                self._run(*item[1:], now=now)  # type: ignore[misc]
            elif tag == _ITEM_BEACON:
                self._beacon(item[1], item[2], item[3], now)
            else:  # a beacon that failed the MAC (already counted): named in the log line, nothing else
                self._mac_failed(0, item[1], now)
        stats.datagrams += count
        stats.bytes += received

    def _mac_failed(self, count: int, claimed: bytes | None, now: float) -> None:
        """Datagrams that failed the MAC: counted (by the caller), never acted upon, never an event in the
        journal (anyone can send them); one log line a minute at most, naming a fingerprint one of them
        claimed, which helps to tell a sender with another key from noise."""
        self._mac_failures += count
        self.stats.foreign_beacons += claimed is not None
        if now - self._mac_reported < LOG_EVERY or not self._mac_failures:
            return
        self._mac_reported = now
        log.warning(
            "%d diode datagram(s) failed authentication since the last report and were dropped%s; a sender "
            "with another key, damaged datagrams, or forged ones (this receiver expects fingerprint %s)",
            self._mac_failures,
            f" (one claims fingerprint {claimed.hex()})" if claimed is not None else "",
            self._fingerprint.hex(),
        )
        self._mac_failures = 0

    def _report_version(
        self, view: memoryview, starts: Sequence[int], sizes: Sequence[int], count: int, now: float
    ) -> None:
        """Datagrams of another wire version were refused: say which, and what to do (at most once a minute;
        the count is in the ``version`` counter). Nothing in them is acted upon."""
        for i in range(count):
            start, size = starts[i], sizes[i]
            if size >= wire.OVERHEAD and view[start : start + 2] == wire.MAGIC and view[start + 2] != wire.VERSION:
                version = view[start + 2]
                break
        else:
            return
        self._version_reported = now
        known = wire.RETIRED_VERSIONS.get(version)
        log.warning(
            "a diode sender speaks wire version %d (%s); this receiver speaks version %d and refuses it: "
            "upgrade %s so that both sides run the same Seam release",
            version,
            known or "unknown to this release",
            wire.VERSION,
            "the OT side" if known else "this receiver",
        )

    def _fragments_of(self, session_id: int, k: int, m: int, count: int, now: float) -> Session | None:
        """The synchronised session ``count`` authentic fragments of a k + m block belong to, or None when
        they are not to be used (counted as unsynchronised, or as malformed for a shape this receiver's
        configuration does not make)."""
        session = self.sessions.get(session_id)
        if session is None or not session.matched:
            self.stats.unsynchronised += count
            return None
        session.last_heard = now
        if k > self._max_k or m != self._parity[k]:
            self.stats.rejected[_MALFORMED] += count
            return None
        return session

    def _run(
        self,
        session_id: int,
        sequence: int,
        flags: int,
        k: int,
        m: int,
        first: int,
        size: int,
        joined: bytes,
        now: float,
    ) -> None:
        """Authentic fragments ``first``, ``first + 1``, ... of one block, ``size`` bytes each, that arrived
        one after the other (the C checker groups them and joins their payloads): the same decisions
        :meth:`_handle_python` takes per datagram. A run that holds a whole block comes as the block
        (:meth:`_block`); one that reaches here does not, or its fragment headers disagree."""
        count = len(joined) // size
        session = self._fragments_of(session_id, k, m, count, now)
        if session is None:
            return
        if self._finished(session, sequence, count):  # the parity after a whole block, usually: no copies
            return
        payloads = [joined[i : i + size] for i in range(0, len(joined), size)]
        self._add(session, sequence, flags, k, m, first, payloads, now)

    def _block(
        self, session_id: int, sequence: int, flags: int, k: int, m: int, count: int, block: bytes, now: float
    ) -> None:
        """A run of ``count`` authentic fragments that held every data fragment of block ``sequence``,
        handed over by the C checker as the block itself (the usual case): the decisions :meth:`_run`
        takes for the same fragments, without their payloads."""
        session = self._fragments_of(session_id, k, m, count, now)
        if session is None or self._finished(session, sequence, count):
            return
        stats = self.stats
        assembly = session.pending.get(sequence)
        if assembly is not None:
            if assembly.k != k or assembly.flags != flags:  # what _add concludes of the whole run
                stats.rejected[_MALFORMED] += count
                return
            # Part of it came in an earlier read (a block split between two reads, or a fragment lost):
            # the general path completes the assembly with the data fragments, as the sender cut them
            # (the last one padded with zeros). The run's parity after them would not be used.
            data = -(-len(block) // k)
            header = len(block).to_bytes(FRAGMENT_HEADER, "big")
            fragments = [header + block[i * data : (i + 1) * data].ljust(data, b"\0") for i in range(k)]
            stats.surplus += count - k
            self._add(session, sequence, flags, k, m, 0, fragments, now)
            return
        self._whole_block(session, sequence, flags, block, count - k, now)

    def _whole_block(self, session: Session, sequence: int, flags: int, block: bytes, surplus: int, now: float) -> None:
        """Block ``sequence``, neither released nor done nor pending, arrived whole: held, then released
        with whatever is now in order."""
        if sequence >= session.known_sent:
            self._sent_up_to(session, sequence + 1, now)
        if sequence > session.whole_below:
            self._sent_whole_below(session, sequence, now)
        self.stats.surplus += surplus
        self.stats.direct += 1
        session.done[sequence] = (flags, block)
        self._release(session, now)
        if len(session.pending) + len(session.done) > MAX_PENDING:
            self._bound_held(session, now)

    def _finished(self, session: Session, sequence: int, count: int) -> bool:
        """Whether block ``sequence`` is released, done or given up already; then the ``count`` fragments
        that came for it are surplus, or late for a block given up, and counted as such."""
        if sequence >= session.next_sequence and sequence not in session.done:
            return False
        if sequence in session.given_up:
            self._late(session, sequence, count)
        else:
            self.stats.surplus += count
        return True

    def _add(
        self, session: Session, sequence: int, flags: int, k: int, m: int, first: int, payloads: list[bytes], now: float
    ) -> Assembly | None:
        """Authentic fragments ``first``, ``first + 1``, ... of block ``sequence`` of a synchronised
        session, checked against the configuration; returns the block's assembly while it still waits
        for fragments, None once it is complete or not wanted (already done, given up, inconsistent)."""
        stats = self.stats
        count = len(payloads)
        if self._finished(session, sequence, count):
            return None
        if sequence >= session.known_sent:
            self._sent_up_to(session, sequence + 1, now)
        if sequence > session.whole_below:
            self._sent_whole_below(session, sequence, now)
        pending = session.pending
        assembly = pending.get(sequence)
        if assembly is None:
            assembly = pending[sequence] = Assembly(k, m, flags, [None] * (k + m))
            if len(pending) + len(session.done) > MAX_PENDING:
                self._bound_held(session, now)
                if sequence not in pending:  # given up at once: what came for it is now surplus
                    stats.surplus += count
                    return None
        elif assembly.k != k or assembly.flags != flags:  # m follows from k
            stats.rejected[_MALFORMED] += count
            return None
        fragments = assembly.fragments
        assembly.last_time = now
        end = first + count
        if fragments[first:end].count(None) == count:  # none of them seen before: the usual case, no loop
            needed = k - assembly.count
            if count < needed:
                fragments[first:end] = payloads
                assembly.count += count
                return assembly
            fragments[first : first + needed] = payloads[:needed]  # the rest of the run is not needed
            assembly.count = k
            stats.surplus += count - needed
            self._complete(session, sequence, assembly, now)
            return None
        for position, payload in enumerate(payloads):
            index = first + position
            if fragments[index] is not None:
                stats.surplus += 1
                continue
            fragments[index] = payload
            assembly.count += 1
            if assembly.count >= k:  # complete: the rest of the run is not needed
                stats.surplus += count - position - 1
                self._complete(session, sequence, assembly, now)
                return None
        return assembly

    def _handle_python(
        self, view: memoryview, starts: Sequence[int], sizes: Sequence[int], count: int, now: float
    ) -> None:
        """The reference implementation of the hot path, for where the C speedups are not built.

        Everything a datagram needs is inline here (no header object, no call per datagram while
        fragments of one block follow each other), because this runs 85,000 times a second at a
        gigabit. The checks and their order are the ones documented in docs/diode.md: length, magic,
        version, exact size, MAC, then consistency; nothing is trusted before the MAC.
        """
        stats = self.stats
        rejected = stats.rejected
        unpack = wire.HEADER.unpack_from
        mac, equal = self._mac, hmac.compare_digest
        header_size, mac_size, limit = wire.HEADER_SIZE, wire.MAC_SIZE, self._slot - 1
        magic_ours, version_ours, data_kind, parity_kind = wire.MAGIC, wire.VERSION, _DATA, _PARITY
        parity, max_k = self._parity, self._max_k
        # The block being filled: consecutive fragments of one block skip the lookups.
        current: Assembly | None = None
        current_session: Session | None = None
        current_id = current_sequence = -1
        received = surplus = 0
        for i in range(count):
            size = sizes[i]
            if size < wire.OVERHEAD or size > limit:
                rejected[_SHORT] += 1
                continue
            received += size
            start = starts[i]
            magic, version, kind, flags, k, m, index, session_id, sequence, length = unpack(view, start)
            if magic != magic_ours:
                rejected[_MAGIC] += 1
                continue
            if version != version_ours:
                rejected[_VERSION] += 1
                if now - self._version_reported >= LOG_EVERY:
                    self._report_version(view, [start], [size], 1, now)
                continue
            end = start + header_size + length
            if end + mac_size != start + size:
                rejected[_SHORT] += 1
                continue
            if not equal(mac(view[start:end]), view[end : end + mac_size]):
                rejected[_MAC] += 1
                self._mac_failed(1, wire.peek_beacon_fingerprint(view[start : start + size]), now)
                continue
            if kind != data_kind and kind != parity_kind:
                if kind == _BEACON and not (k or m or index):
                    self._beacon(session_id, sequence, bytes(view[start + header_size : end]), now)
                else:
                    rejected[_MALFORMED] += 1
                continue
            if k < 1 or m < 1 or index >= k + m or (kind == data_kind) != (index < k) or length == 0:
                rejected[_MALFORMED] += 1
                continue
            if sequence == current_sequence and session_id == current_id and current is not None:
                if k != current.k or m != current.m or flags != current.flags:
                    rejected[_MALFORMED] += 1
                    continue
                fragments = current.fragments
                if fragments[index] is not None:
                    surplus += 1
                    continue
                fragments[index] = bytes(view[start + header_size : end])
                current.count += 1
                if current.count >= k:
                    current.last_time = now
                    self._complete(current_session, sequence, current, now)  # type: ignore[arg-type]
                    current = None
                continue
            current = None
            session = self.sessions.get(session_id)
            if session is None or not session.matched:
                stats.unsynchronised += 1
                continue
            session.last_heard = now
            if k > max_k or m != parity[k]:
                rejected[_MALFORMED] += 1
                continue
            payload = bytes(view[start + header_size : end])
            assembly = self._add(session, sequence, flags, k, m, index, [payload], now)
            if assembly is not None:
                current, current_session, current_id, current_sequence = assembly, session, session_id, sequence
        stats.datagrams += count
        stats.bytes += received
        stats.surplus += surplus

    def _complete(self, session: Session, sequence: int, assembly: Assembly, now: float) -> None:
        """k fragments are in: rebuild the block, then release whatever is now in order."""
        del session.pending[sequence]
        k, m, fragments = assembly.k, assembly.m, assembly.fragments
        data = fragments[:k]
        missing_data = data.count(None)
        block = None
        if not missing_data:
            # Every data fragment, from runs the C checker could not hand over whole (a block split
            # between two reads): one join and the C header checks, not a Python loop over fragments.
            present = cast(list[bytes], data)
            if len(set(map(len, present))) == 1:
                block = self._join(b"".join(present), len(present[0]), k)
        if block is None:
            block = self._fec.decode(k, m, {i: f for i, f in enumerate(fragments) if f is not None})
        if block is None:
            self.stats.undecodable += 1
        elif missing_data:
            self.stats.recovered += 1
            self.stats.margin_used.append(missing_data / m)
        else:
            self.stats.direct += 1
        session.done[sequence] = (assembly.flags, block)
        self._release(session, now)
        if len(session.pending) + len(session.done) > MAX_PENDING:
            self._bound_held(session, now)

    def _beacon(self, session_id: int, sequence: int, payload: bytes, now: float) -> None:
        """An authentic beacon. Acted upon only if fresh: a number above any seen from its session, and,
        for a session not seen before, a sender clock no older than STALE_SESSION behind the newest seen.
        A recorded beacon replayed can then neither keep the link up nor open a session again."""
        stats = self.stats
        beacon = wire.parse_beacon(payload)
        if beacon is None or beacon.blocks_sent != sequence or not math.isfinite(beacon.sent_at):
            stats.rejected[wire.Rejected.MALFORMED] += 1
            return
        session = self.sessions.get(session_id)
        if session is not None:
            if beacon.number <= session.beacon_number:
                stats.replayed_beacons += 1
                return
        else:
            remembered = self._remembered.get(session_id)
            if remembered is not None and beacon.number <= remembered[1]:
                stats.replayed_beacons += 1
                return
            if remembered is None and beacon.sent_at < self._newest_sent_at - STALE_SESSION:
                stats.stale_beacons += 1
                if now - self._stale_reported >= LOG_EVERY:
                    self._stale_reported = now
                    log.warning(
                        "refused a beacon of an unknown diode session %016x: its sender clock is %.0f s older "
                        "than beacons already seen. A recorded beacon replayed, or the OT clock went back; if "
                        "the clock went back, move the receiver's state file aside to accept the sender",
                        session_id,
                        self._newest_sent_at - beacon.sent_at,
                    )
                return
            session = self._open_session(session_id, beacon, remembered, now)
        stats.beacons += 1
        session.beacon_number = beacon.number
        session.sent_at = beacon.sent_at
        session.last_heard = now
        self._newest_sent_at = max(self._newest_sent_at, beacon.sent_at)
        if not session.matched:
            return
        self._last_beacon = now
        stats.lag_seconds = max(0.0, time.time() - beacon.sent_at)
        self._sent_up_to(session, beacon.blocks_sent, now)
        self._sent_whole_below(session, beacon.blocks_sent, now)

    def _open_session(
        self, session_id: int, beacon: wire.Beacon, remembered: tuple[int, int, float] | None, now: float
    ) -> Session:
        """The first fresh beacon of a session. Its blocks are expected from where this receiver left it
        (a restart), or from 0 (a session it never saw): every block sent while it was not listening is
        then counted, and reported, as missed."""
        matched = beacon.fingerprint == self._fingerprint
        start = min(remembered[0], beacon.blocks_sent) if remembered is not None else 0
        session = Session(session_id, matched, start, start, last_heard=now, whole_below=start)
        session.synced_at = beacon.blocks_sent
        self.sessions[session_id] = session
        if not matched:
            self._report_mismatch(beacon.fingerprint, now)
            return session
        self.stats.sessions += 1
        missed = beacon.blocks_sent - start
        self._event(
            "diode.session",
            Severity.INFO if not missed else Severity.MEDIUM,
            f"diode sender session {session_id:016x} synchronised at block {beacon.blocks_sent}"
            + (
                f"; {missed} block(s) from block {start} were sent while this receiver was not listening "
                "and are reported as missing"
                if missed
                else ""
            ),
            {"session": f"{session_id:016x}", "block": beacon.blocks_sent, "missed_from": start, "missed": missed},
        )
        return session

    def _sent_up_to(self, session: Session, sent: int, now: float) -> None:
        if sent > session.known_sent:
            session.known_sent = sent
            session.marks.append((sent, now))  # from now on, blocks below ``sent`` are overdue

    def _sent_whole_below(self, session: Session, below: int, now: float) -> None:
        if below > session.whole_below:
            session.whole_below = below
            session.whole_marks.append((below, now))

    def _release(self, session: Session, now: float) -> None:
        while session.next_sequence in session.done:
            flags, block = session.done.pop(session.next_sequence)
            session.next_sequence += 1
            if block is None:
                self._gap(session, session.next_sequence - 1, session.next_sequence - 1, "undecodable")
            else:
                self.stats.block_bytes += len(block)
                self._records(block, flags)

    def _records(self, payload: bytes, flags: int) -> None:
        snapshot = bool(flags & wire.FLAG_SNAPSHOT)
        if payload[:1] == _COLUMNS_TAG and self._store_as_is(payload, flags):
            return
        try:
            block = blocks.decode(payload)
        except blocks.BlockError as exc:
            self.stats.bad_blocks += 1
            self._event("diode.bad_block", Severity.HIGH, f"a diode block could not be decoded: {exc}", {})
            return
        seen = self.seen
        source = block.source
        records = block.records
        if block.consecutive and seen.add_run(source, block.offsets[0], block.offsets[-1]):
            accepted = len(records)  # the usual case: the next run of offsets, all new
            self._out.extend(records)
        else:
            accepted = 0
            for offset, record in zip(block.offsets, records, strict=True):
                if seen.add(source, offset):
                    self._out.append(record)
                    accepted += 1
        self.stats.records += accepted
        self.stats.duplicates += len(records) - accepted
        if snapshot:
            self.stats.snapshots += 1
            self.stats.healed += accepted
        elif flags & wire.FLAG_REPLAY:
            self.stats.replayed_records += accepted
        elif records:
            self._history(source, block.offsets[0], _time_of(records[0]), block.offsets[-1], _time_of(records[-1]))
        if accepted:
            self._state_dirty = True
            self._out_bytes += len(payload)
            if self._out_bytes >= FLUSH_BYTES:
                self._flush()
        newest = records[-1] if records else None
        if isinstance(newest, Sample):
            self.stats.record_lag_seconds = max(0.0, time.time() - newest.gateway_ts)

    def _inspect(self, payload: bytes) -> columns.Summary:
        """columns.inspect, by the C module for the runs a sender makes (it returns None for anything
        else, which the reference then decides); raises ColumnsError."""
        if self._speedups is not None:
            fields = self._speedups.inspect_columns(payload, _QUALITIES)
            if fields is not None:
                return columns.Summary(*fields)
        return columns.inspect(payload)

    def _store_as_is(self, payload: bytes, flags: int) -> bool:
        """The usual case, a run of samples whose offsets are all new: checked, and handed to the journal
        as it arrived, without a Python object per sample. False when the run has to be deduplicated
        sample by sample (a snapshot, a repeat after a restart), or is malformed (reported by the caller)."""
        try:
            run = self._inspect(payload)
        except columns.ColumnsError:
            return False
        if not (run.consecutive and self.seen.add_run(run.source, run.first_offset, run.last_offset)):
            return False
        stats = self.stats
        stats.records += run.count
        if flags & wire.FLAG_SNAPSHOT:
            stats.snapshots += 1
            stats.healed += run.count
        elif flags & wire.FLAG_REPLAY:
            stats.replayed_records += run.count
        else:
            self._history(run.source, run.first_offset, run.first_gateway_ts, run.last_offset, run.last_gateway_ts)
        self._state_dirty = True
        self._out.append(SampleColumns(payload, run.count))
        self._out_bytes += len(payload)
        if self._out_bytes >= FLUSH_BYTES:
            self._flush()
        stats.record_lag_seconds = max(0.0, time.time() - run.last_gateway_ts)
        return True

    def _history(self, source: str, first: int, first_ts: float, last: int, last_ts: float) -> None:
        """A block of journal history (not a snapshot, not a replay) was released: it bounds the gaps
        declared before it, and the next gaps start after it."""
        if self._open_gaps:
            self._bound_gaps((source, first, first_ts))
        self._last_written = (source, last, last_ts)

    def _bound_gaps(self, before: tuple[str, int, float] | None) -> None:
        """Report the open gaps, with ``before`` the first record released after them (None: unknown yet)."""
        gaps, self._open_gaps = self._open_gaps, []
        for gap in gaps:
            self._report_gap(gap, before)

    def _report_gap(self, gap: Gap, before: tuple[str, int, float] | None) -> None:
        count = gap.last - gap.first + 1
        after = gap.after
        source = (before or after or ("", 0, 0.0))[0]
        first_offset = after[1] + 1 if after is not None else None
        last_offset = before[1] - 1 if before is not None else None
        span_from = after[2] if after is not None else None
        span_to = before[2] if before is not None else None
        offsets = f"journal offsets {first_offset if first_offset is not None else 'from the start'}..{last_offset if last_offset is not None else '(not yet known)'}"
        times = (
            f"source time {_iso(span_from) if span_from is not None else 'before the first record received'} to "
            f"{_iso(span_to) if span_to is not None else '(not yet known)'}"
        )
        replay = ""
        if first_offset is not None and last_offset is not None and first_offset <= last_offset:
            replay = f"; to backfill, on the OT side: seam diode replay --from-offset {first_offset} --to-offset {last_offset}"
        data: dict[str, object] = {
            "session": f"{gap.session:016x}",
            "first": gap.first,
            "last": gap.last,
            "blocks": count,
            "reason": gap.reason,
            "source": source,
            "first_offset": first_offset,
            "last_offset": last_offset,
            "from_ts": span_from,
            "to_ts": span_to,
        }
        self.missing.append(data)
        self._event(
            "diode.gap",
            Severity.MEDIUM,
            f"{count} diode block(s) missing ({gap.reason}): blocks {gap.first}..{gap.last} of session "
            f"{gap.session:016x}, {offsets} of {source or 'the OT journal'}, {times}{replay}",
            data,
        )

    # --- time-driven decisions ------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        saved = time.monotonic()
        while True:
            await asyncio.sleep(TICK)
            try:
                # Datagrams still queued in the socket are not lost: read them all before any
                # block is given up for lost (a busy event loop must never look like a lossy link).
                emptied = self._read_queued(TICK)
                now = time.monotonic()
                self.tick(now, check_losses=emptied)
                if now - saved >= 1.0:
                    self._save_state()
                    saved = now
            except Exception:  # a bug here must be seen, but must not stop the receiver
                log.exception("diode receiver tick failed")

    def tick(self, now: float, check_losses: bool = True) -> None:
        """The time-driven decisions. ``check_losses`` is False while the socket still holds datagrams
        this tick could not read: blocks are not given up for lost while their fragments may be queued."""
        if check_losses:
            self._check_losses(now)
        if self._open_gaps and time.monotonic() - self._open_gaps[0].declared >= GAP_BOUND_WAIT:
            self._bound_gaps(None)  # nothing has followed them yet: reported with the upper bound open
        for session in list(self.sessions.values()):
            silent = now - session.last_heard
            if silent > max(10.0, 5 * self.settings.beacon_interval) and len(self.sessions) > 1:
                # A newer sender has taken over; whatever the old one never completed is lost.
                if session.matched:
                    self._declare_lost(session, now, force=True, up_to=session.known_sent)
                del self.sessions[session.id]
        link_up = now - self._last_beacon < 3 * self.settings.beacon_interval and self._last_beacon > 0
        if link_up != self._link_up:
            self._link_up = link_up
            self.stats.link_up = link_up
            self._event(
                "diode.link",
                Severity.INFO if link_up else Severity.HIGH,
                "diode link up: beacons are arriving"
                if link_up
                else f"diode link down: no beacon for {3 * self.settings.beacon_interval:g}s; replicas are stale",
                {"state": "up" if link_up else "down"},
            )
        self._flush()

    def _check_losses(self, now: float) -> None:
        """Give up on whatever is overdue, and be woken when the next waiting block falls due (a block is
        given up when its time comes, not at the next tick: everything behind it waits for it)."""
        due: float | None = None
        for session in self.sessions.values():
            if session.matched:
                deadline = self._declare_lost(session, now)
                if deadline is not None and (due is None or deadline < due):
                    due = deadline
        if due is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven by hand (tests, fuzzing): the caller decides when time passes
            return
        at = loop.time() + max(0.0, due - now)
        timer = self._loss_timer
        if timer is not None:
            if timer.when() <= at:
                return
            timer.cancel()
        self._loss_timer = loop.call_at(at, self._loss_due)

    def _loss_due(self) -> None:
        self._loss_timer = None
        try:
            # What is queued in the socket is not lost: read it first (_drain then checks, once dry;
            # a socket still full after a tick is checked by a later tick or read, once it is not).
            self._read_queued(TICK)
            if self._out:
                self._flush()
        except Exception:  # a bug here must be seen, but must not stop the receiver
            log.exception("diode receiver loss check failed")

    def _deadline(self, session: Session, sequence: int, now: float) -> float:
        """When block ``sequence``, still incomplete, is given up: ``block_timeout`` after the first
        evidence that it was sent and after its own last fragment, or, sooner, the reorder window after
        the first evidence that all of it was sent."""
        marks = session.marks
        while marks and marks[0][0] <= sequence:
            marks.popleft()
        evidence = marks[0][1] if marks else now
        waiting = session.pending.get(sequence)
        deadline = max(evidence, waiting.last_time if waiting else 0.0) + self.settings.block_timeout
        whole = session.whole_marks
        while whole and whole[0][0] <= sequence:
            whole.popleft()
        if whole:
            deadline = min(deadline, whole[0][1] + self.reorder_window)
        return deadline

    def _declare_lost(
        self, session: Session, now: float, force: bool = False, up_to: int | None = None
    ) -> float | None:
        """Give up on blocks that can no longer complete, counting each one, and release what follows;
        returns when the block now at the head is due to be given up (None: nothing waits).

        See :meth:`_deadline`; ``force`` gives up on the next block now (too many pending), ``up_to`` on
        everything below it. A run of blocks of which nothing arrived (a restart, a burst of loss, a
        beacon counting 2^40 blocks) is given up in one step, whatever its length.
        """
        while True:
            first = sequence = session.next_sequence
            due: float | None = None
            while sequence < session.known_sent and sequence not in session.done:
                forced = (up_to is not None and sequence < up_to) or (force and sequence == first)
                if sequence in session.pending:
                    due = self._deadline(session, sequence, now)
                    timed_out = now >= due
                    if not (timed_out or forced):
                        break
                    due = None
                    del session.pending[sequence]
                    if timed_out:  # a fragment of it may yet turn up, late: see _late
                        self._remember_given_up(session, sequence)
                    sequence += 1
                    continue
                end = self._next_heard(session, sequence)
                cut = self._first_not_due(session, sequence, end, now)
                timed_out_end = cut
                if up_to is not None:
                    cut = max(cut, min(end, up_to))
                if force and sequence == first:
                    cut = max(cut, sequence + 1)
                if cut == sequence:
                    due = self._deadline(session, sequence, now)
                    break
                for given_up in range(max(sequence, timed_out_end - GIVEN_UP_MEMORY), timed_out_end):
                    self._remember_given_up(session, given_up)
                sequence = cut
            if sequence == first:
                return due
            session.next_sequence = sequence
            if first < session.synced_at:
                split = min(sequence, session.synced_at)
                self._gap(session, first, split - 1, "sent while this receiver was not listening")
                first = split
            if first < sequence:
                self._gap(session, first, sequence - 1, "beyond FEC repair")
            self._release(session, now)
            force = False  # forced: only the one block

    def _bound_held(self, session: Session, now: float) -> None:
        """Give up the earliest blocks until at most MAX_PENDING are held."""
        while len(session.pending) + len(session.done) > MAX_PENDING:
            head = session.next_sequence
            self._declare_lost(session, now, force=True)
            if session.next_sequence == head:  # nothing could be given up (cannot happen): never spin
                break

    @staticmethod
    def _next_heard(session: Session, sequence: int) -> int:
        """The first block after ``sequence`` of which something arrived, or the count of blocks sent."""
        end = session.known_sent
        for heard in session.pending:
            if sequence < heard < end:
                end = heard
        for heard in session.done:
            if sequence < heard < end:
                end = heard
        return end

    def _first_not_due(self, session: Session, low: int, high: int, now: float) -> int:
        """The first block in [low, high), none of which has a fragment here, still within its deadline
        (``high`` if all are due). Deadlines do not decrease along the sequence (the evidence arrives in
        order), so this is a binary search."""
        marks, whole = session.marks, session.whole_marks
        timeout, window = self.settings.block_timeout, self.reorder_window

        def due(sequence: int) -> bool:
            i = bisect.bisect_right(marks, sequence, key=_first)
            deadline = (marks[i][1] if i < len(marks) else now) + timeout
            j = bisect.bisect_right(whole, sequence, key=_first)
            if j < len(whole):
                deadline = min(deadline, whole[j][1] + window)
            return now >= deadline

        while low < high:
            middle = (low + high) // 2
            if due(middle):
                low = middle + 1
            else:
                high = middle
        return low

    @staticmethod
    def _remember_given_up(session: Session, sequence: int) -> None:
        given_up = session.given_up
        given_up[sequence] = False
        if len(given_up) > GIVEN_UP_MEMORY:
            del given_up[next(iter(given_up))]

    def _late(self, session: Session, sequence: int, count: int) -> None:
        """Fragments of a block already given up: the link held them back longer than the reorder
        window. Wait longer from now on (at most block_timeout), and say so once for the block."""
        self.stats.late += count
        if session.given_up[sequence]:
            return  # one widening per block, however many of its fragments are late
        session.given_up[sequence] = True
        widened = min(self.settings.block_timeout, 2 * self.reorder_window)
        if widened <= self.reorder_window:
            return
        self.reorder_window = widened
        self.stats.reorder_window = widened
        self._event(
            "diode.reorder",
            Severity.LOW,
            f"a fragment of diode block {sequence} arrived after the block was given up: the link delays "
            f"or reorders datagrams; waiting up to {widened * 1000:g} ms for a block sent whole from now on "
            "(set reorder_window to at least this to keep it from the start)",
            {"session": f"{session.id:016x}", "block": sequence, "reorder_window_seconds": widened},
        )

    def _gap(self, session: Session, first: int, last: int, why: str) -> None:
        """Blocks given up: counted now, reported once the first record after them is known (or after
        GAP_BOUND_WAIT), with the journal offsets and source time span they covered."""
        count = last - first + 1
        self.stats.lost += count
        self.stats.gaps += 1
        if why != "beyond FEC repair" and why != "undecodable":
            self.stats.missed_offline += count
        self._open_gaps.append(Gap(session.id, first, last, why, time.monotonic(), self._last_written))

    def _report_mismatch(self, claimed: bytes, now: float) -> None:
        """An authentic beacon (same key) with another configuration: reported once a minute per
        fingerprint. Only a holder of the key can cause this, and the table is bounded all the same."""
        self.stats.mismatches += 1
        last = self._mismatch_reported.get(claimed)
        if last is not None and now - last < LOG_EVERY:
            return
        if len(self._mismatch_reported) >= 64:
            self._mismatch_reported.clear()
        self._mismatch_reported[claimed] = now
        self._event(
            "diode.config_mismatch",
            Severity.HIGH,
            "a diode sender with the same key but a different configuration is transmitting (fingerprint "
            f"{claimed.hex()}, this receiver expects {self._fingerprint.hex()}); nothing it sends is decoded. "
            "Give both sides the same FEC settings.",
            {"claimed": claimed.hex(), "expected": self._fingerprint.hex(), "same_key": True},
        )

    # --- what /health shows -----------------------------------------------------------------------

    def health(self) -> dict[str, object]:
        """The link, the missing ranges and the counters; "degraded" while the link is down or blocks
        were missed that have not all been reported yet."""
        stats = self.stats
        problems = []
        if not stats.link_up:
            problems.append("diode link down: no fresh beacon" if self._last_beacon else "no sender heard yet")
        if self._open_gaps:
            problems.append(f"{len(self._open_gaps)} missing range(s) awaiting their journal offsets")
        return {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "link_up": stats.link_up,
            "records": stats.records,
            "lost_blocks": stats.lost,
            "missed_while_not_listening": stats.missed_offline,
            "missing": list(self.missing),
            "receiver": stats.as_dict(),
        }

    # --- output ---------------------------------------------------------------------------------

    def _event(self, kind: str, severity: Severity, message: str, data: dict[str, object]) -> None:
        log.log(logging.WARNING if severity >= Severity.MEDIUM else logging.INFO, "%s", message)
        self._out.append(Event(time.time(), kind, EVENT_SOURCE, severity, message, dict(data)))

    def _flush(self) -> None:
        if self._idle_flush is not None:
            self._idle_flush.cancel()
            self._idle_flush = None
        self._last_flush = time.monotonic()
        self._out_bytes = 0
        if self._out:
            out, self._out = self._out, []
            self.journal.append(out)
            self.stats.last_write = time.time()
            if not self.stats.first_write:
                self.stats.first_write = self.stats.last_write

    def _save_state(self) -> None:
        if self._state_path is not None and self._state_dirty:
            self.seen.save(self._state_path)
            self._state_dirty = False
        if self._sessions_path is not None:
            self._save_sessions(self._sessions_path)

    def _save_sessions(self, path: Path) -> None:
        """Where each session stands (next block, last beacon number, sender clock), for a restart to
        count what it missed and to refuse old beacons; the newest REMEMBERED_SESSIONS, replaced atomically."""
        for session in self.sessions.values():
            if session.matched:
                self._remembered[session.id] = (session.next_sequence, session.beacon_number, session.sent_at)
        newest = sorted(self._remembered.items(), key=lambda item: item[1][2], reverse=True)[:REMEMBERED_SESSIONS]
        self._remembered = dict(newest)
        data = {
            "newest_sent_at": self._newest_sent_at if math.isfinite(self._newest_sent_at) else None,
            "last_written": list(self._last_written) if self._last_written is not None else None,
            "sessions": {f"{sid:016x}": list(state) for sid, state in newest},
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)

    def _load_sessions(self, path: Path) -> None:
        if not path.exists():
            return
        try:
            data = json.loads(path.read_text())
            newest = data.get("newest_sent_at")
            self._newest_sent_at = float(newest) if newest is not None else float("-inf")
            last = data.get("last_written")
            if last is not None:
                self._last_written = (str(last[0]), int(last[1]), float(last[2]))
            for sid, (next_sequence, number, sent_at) in data["sessions"].items():
                self._remembered[int(sid, 16)] = (int(next_sequence), int(number), float(sent_at))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(
                f"the receiver's session file {path} is damaged ({exc}); move it aside to start afresh "
                "(blocks sent while the receiver was down are then not counted)"
            ) from None
