"""The journal: a durable, bounded, append-only log of records with increasing offsets.

Storage: segment files, chosen by measurement. ``bench/bench_journal.py`` stores the same encoded
frames (batches of 1,000 samples) in segment files and as BLOB rows in SQLite (WAL, synchronous=NORMAL),
and also tries the obvious design, one SQLite row per sample. Per CPU-second on one pinned core
(2,000,000 samples, 2-core VM shared with other work, Python 3.11; docs/bench/journal.md has the run):

    design                 append/s   read/s   bytes/sample
    codec alone, in RAM    3.13 M     2.67 M   36.9
    segment files          3.11 M     1.90 M   36.9
    SQLite-WAL, BLOBs      2.67 M     2.01 M   37.4
    SQLite, row/sample     0.69 M     0.64 M   48.2

With batches of 10 samples instead of 1,000, segments append 0.87 M/s and read 0.96 M/s, SQLite BLOBs
0.56 M/s and 0.91 M/s.

A row per sample is out (3-5x slower, 30% bigger). Between segments and SQLite BLOBs the codec is most
of the cost: segments append 15-55% faster (one write(2), no B-tree, no WAL checkpoints) and read about
the same (within 10%, either way, from run to run). The choice rests on what matters when things go wrong: retention deletes a whole file with one
unlink (SQLite needs DELETE and then VACUUM or a growing free list before the disk space comes back,
and disk space is exactly what runs out when the journal overflows); recovery is a short, readable scan
with a CRC per frame instead of trusting a B-tree after a torn write; readers stream files with pread
and never hold a lock the writer waits on.

Durability. ``append`` returns once the frame is in the operating system's page cache: from then on
the records survive a crash or ``kill -9`` of this process. Power-loss safety needs ``fsync``, chosen
by ``sync``: ``"always"`` (fdatasync every append: slowest, nothing accepted is lost), ``"interval"``
(the default: at most ``sync_interval`` seconds of accepted records can be lost to a power cut; when
appends stop, a timer on the appending thread's event loop does the last sync, and without a loop the
next append or ``close`` does) or
``"none"`` (left to the kernel). Sealed segments are always fsynced when the journal rotates, on a
thread of their own: a writer that must keep up with a network (the diode's receiver) is not stopped
for the tens of milliseconds a 64 MiB fsync takes; ``flush`` and ``close`` wait for those syncs.

Bounds. ``max_size`` bounds the bytes on disk and ``max_age`` the age of the oldest segment. When
either is exceeded, the oldest segment is deleted even if a slow cursor has not read it: the records
each cursor lost are counted (persisted with the cursor) and an ``Event(kind="journal.overflow")`` is
appended saying which cursor lost how many. Memory never depends on how far behind a reader is: a
reader holds at most one decoded frame.

One process at a time may open a journal directory (an advisory ``flock`` enforces it).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from otseam.core.columns import SampleColumns
from otseam.core.records import Event, Record, Severity
from otseam.journal import codec, segments
from otseam.journal.state import CURSOR_NAME, CURSOR_SUFFIX, CursorState, JournalError, Meta, fsync_directory

if TYPE_CHECKING:
    from otseam.contract.models import Journal as JournalConfig
    from otseam.journal.cursor import Cursor

log = logging.getLogger("otseam.journal")

SyncPolicy = Literal["always", "interval", "none"]

#: Frames are capped so that a reader decodes bounded chunks however large the appended batch.
MAX_FRAME_RECORDS = 8192
#: Retention by age is checked at most this often (a stat of the oldest segment, not per record).
_AGE_CHECK_INTERVAL = 1.0


@dataclass(slots=True)
class Segment:
    base_offset: int
    path: Path
    #: The offset after the last record (exclusive).
    end_offset: int
    size: int
    #: When the last frame was appended (wall clock); for sealed segments read from the file's mtime.
    last_appended_at: float
    #: Built as the active segment is written, or on first use for a segment found on disk.
    index: segments.SparseIndex | None = None


@dataclass(slots=True)
class CursorMetrics:
    name: str
    committed: int
    #: Records appended but not yet committed by this cursor.
    depth: int
    #: Seconds since the oldest record this cursor has not committed was appended (None when caught up).
    oldest_unread_age: float | None
    #: Records retention removed before this cursor read them.
    dropped: int


@dataclass(slots=True)
class JournalMetrics:
    source: str
    first_offset: int
    last_offset: int
    bytes_on_disk: int
    segments: int
    cursors: list[CursorMetrics] = field(default_factory=list)


class Journal:
    """Implements :class:`otseam.core.plugins.JournalWriter`; ``reader(name)`` gives a ``JournalReader``."""

    def __init__(
        self,
        directory: Path,
        meta: Meta,
        lock_fd: int,
        *,
        max_size: int,
        max_age: float,
        segment_size: int,
        sync: SyncPolicy,
        sync_interval: float,
        clock: Callable[[], float],
    ) -> None:
        self.directory = directory
        self.source = meta.source
        self.max_size = max_size
        self.max_age = max_age
        self.segment_size = segment_size
        self.sync = sync
        self.sync_interval = sync_interval
        self._clock = clock
        self._meta = meta
        self._lock_fd = lock_fd
        self._lock = threading.RLock()
        self._segments: list[Segment] = []
        self._bases: list[int] = []
        self._fd = -1
        self._next = 1
        self._bytes = 0
        self._last_sync = time.monotonic()
        self._sync_pending = False
        self._last_age_check = 0.0
        self._cursors: dict[str, CursorState] = {}
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._closed = False
        #: Threads syncing and closing sealed segments (see _rotate).
        self._sealing: list[threading.Thread] = []
        #: Why the writer stopped (a failed fsync), or None. After a failed writeback the kernel marks the
        #: pages clean: the data may be gone from disk and cache alike, and a later fsync would succeed
        #: without writing it. Nothing more may be accepted as durable.
        self._failed: str | None = None
        #: Called after every write (see :meth:`observe`).
        self._observers: list[Callable[[int, Sequence[Record | SampleColumns]], None]] = []

    # --- opening -------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        max_size: int = 2 * 1024**3,
        max_age: float = 7 * 86400.0,
        source: str | None = None,
        segment_size: int | None = None,
        sync: SyncPolicy = "interval",
        sync_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> Journal:
        """Open (creating if needed) the journal in directory ``path``, repairing a torn tail.

        ``source`` is only needed to give a new journal a chosen id; an existing journal keeps its own.
        """
        if max_size < 64 * 1024:
            raise JournalError(f"journal max_size {max_size} bytes is too small: allow at least 64KiB")
        if max_age <= 0:
            raise JournalError("journal max_age must be positive")
        if sync not in ("always", "interval", "none"):
            raise JournalError(f"journal sync {sync!r} is not one of 'always', 'interval', 'none'")
        # A dropped segment must free a real share of the budget, and never more than a quarter of it.
        size = segment_size or max(16 * 1024, min(64 * 1024 * 1024, max_size // 16))
        if size > max_size // 4:
            raise JournalError(f"segment size {size} must be at most a quarter of max_size ({max_size})")
        directory = Path(path)
        try:
            (directory / "cursors").mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise JournalError(f"cannot use {directory} as a journal directory: {exc.strerror}") from None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock_fd)
            raise JournalError(
                f"the journal in {directory} is already open in another process (or another Journal object); "
                "stop that process or use another path"
            ) from None
        try:
            meta = Meta.load_or_create(directory / "journal.json", source)
            journal = cls(
                directory,
                meta,
                lock_fd,
                max_size=max_size,
                max_age=max_age,
                segment_size=size,
                sync=sync,
                sync_interval=sync_interval,
                clock=clock,
            )
            journal._load()
        except BaseException:
            os.close(lock_fd)
            raise
        return journal

    @classmethod
    def from_config(
        cls,
        config: JournalConfig,
        *,
        source: str | None = None,
        sync: SyncPolicy = "interval",
        sync_interval: float = 1.0,
    ) -> Journal:
        """Open the journal a contract's ``journal:`` section describes (``path`` as given: resolve it first)."""
        return cls.open(
            config.path,
            max_size=config.max_size,
            max_age=config.max_age,
            source=source,
            sync=sync,
            sync_interval=sync_interval,
        )

    def _load(self) -> None:
        for stray in self.directory.glob(".*.tmp"):
            stray.unlink(missing_ok=True)
        for path in sorted((self.directory / "cursors").glob(f"*{CURSOR_SUFFIX}")):
            state = CursorState.load(path)
            if state is None:
                log.error("cursor file %s is unreadable; that cursor starts again from the oldest record", path)
                continue
            self._cursors[state.name] = state
        found = sorted(
            (base, self.directory / name)
            for name in os.listdir(self.directory)
            if (base := segments.parse_segment_name(name)) is not None
        )
        for index, (base, path) in enumerate(found):
            stat = path.stat()
            end = found[index + 1][0] if index + 1 < len(found) else base
            self._segments.append(Segment(base, path, end, stat.st_size, stat.st_mtime))
        # Offsets never go back: not below the last rotation, nor below anything a cursor has committed.
        floor = max([self._meta.floor, *(c.committed + 1 for c in self._cursors.values())])
        self._check_format()
        if self._segments:
            self._recover_tail()
            active = self._segments[-1]
            if floor > active.end_offset:
                # Records a cursor had already delivered are not on disk (a power cut before the data
                # reached it, or a file damaged by hand). Reusing their offsets would make receivers
                # discard new records as repeats, so numbering resumes above them.
                log.warning(
                    "journal %s: offsets %d-%d were delivered before but are not on disk; new records start at %d",
                    self.directory,
                    active.end_offset,
                    floor - 1,
                    floor,
                )
                if active.size == 0:
                    active.path.unlink(missing_ok=True)
                    self._segments.pop()
                self._new_segment(floor)
        else:
            self._new_segment(floor)
        self._bases = [s.base_offset for s in self._segments]
        self._bytes = sum(s.size for s in self._segments)
        self._check_free_space()
        active = self._segments[-1]
        self._fd = os.open(active.path, os.O_WRONLY | os.O_APPEND)
        self._next = active.end_offset

    def _check_format(self) -> None:
        """Refuse segments this version cannot read, naming their format; upgrade an empty journal."""
        stored = self._meta.format
        if stored == codec.FORMAT:
            return
        if stored > codec.FORMAT:
            raise JournalError(
                f"the journal in {self.directory} is in on-disk format {stored}, written by a newer Seam; this "
                f"version reads format {codec.FORMAT}: run the newer version, or move the journal aside"
            )
        if any(segment.size for segment in self._segments):
            raise JournalError(
                f"the journal in {self.directory} is in on-disk format {stored} (records serialised with Python's "
                f"marshal, by Seam before format {codec.FORMAT}), which this version does not read: let the "
                "version that wrote it deliver its records, then move the directory aside and start again"
            )
        for segment in self._segments:  # empty files of the old format: nothing to convert
            segment.path.unlink()
        self._segments.clear()
        self._meta.format = codec.FORMAT
        self._meta.save(self.directory / "journal.json")

    def _check_free_space(self) -> None:
        """max_size is a promise only if the disk can hold it: a full disk makes appends fail instead of
        dropping the oldest records in order. Say so at start-up, while someone can still act."""
        try:
            stats = os.statvfs(self.directory)
        except OSError:
            return
        available = stats.f_bavail * stats.f_frsize
        if self._bytes + available < self.max_size:
            log.warning(
                "journal %s: max_size is %d bytes but the disk has only %d bytes free (plus %d in use by the "
                "journal): lower journal.max_size or free space, or appends will fail when the disk fills",
                self.directory,
                self.max_size,
                available,
                self._bytes,
            )

    def _recover_tail(self) -> None:
        active = self._segments[-1]
        active.index = segments.SparseIndex()
        result = segments.scan(active.path, active.base_offset, index=active.index)
        if result.torn:
            log.warning(
                "journal %s: truncating a torn tail of %d bytes in %s (a crash interrupted a write; every record "
                "append() had returned for is before it)",
                self.directory,
                result.file_size - result.valid_size,
                active.path.name,
            )
            segments.truncate(active.path, result.valid_size)
        for position, size, first, last in result.damaged:
            lost = f"offsets {first}-{last}" if first <= last else "no whole record"
            log.error(
                "journal %s: %d damaged bytes at position %d of %s (%s); the intact frames after it are kept "
                "and each reader skips the damage, counting it and reporting it with a journal.corrupt event",
                self.directory,
                size,
                position,
                active.path.name,
                lost,
            )
        active.end_offset = result.end_offset
        active.size = result.valid_size
        if result.last_appended_at is not None:
            active.last_appended_at = result.last_appended_at

    def _new_segment(self, base_offset: int) -> Segment:
        path = self.directory / segments.segment_name(base_offset)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.close(fd)
        fsync_directory(self.directory)
        segment = Segment(base_offset, path, base_offset, 0, self._clock(), segments.SparseIndex())
        self._segments.append(segment)
        self._bases.append(base_offset)
        return segment

    # --- writing -------------------------------------------------------------------------------------

    @property
    def first_offset(self) -> int:
        """The oldest offset still on disk (== next offset when the journal is empty)."""
        for segment in self._segments:
            if segment.end_offset > segment.base_offset:
                return segment.base_offset
        return self._next

    @property
    def last_offset(self) -> int:
        """The last offset appended (0 before the first append)."""
        return self._next - 1

    @property
    def bytes_on_disk(self) -> int:
        return self._bytes

    def append(self, records: Sequence[Record | SampleColumns]) -> int:
        """Append ``records`` in order; returns the offset given to the last one. A
        :class:`SampleColumns` (a run of samples already encoded) takes one offset per sample.

        When this returns, the records survive a crash of the process (see the module docstring for
        power loss). Raises :class:`JournalError` if the disk refuses the write; nothing is accepted then.
        """
        if self._closed:
            raise JournalError("the journal is closed")
        if self._failed is not None:
            raise JournalError(self._failed)
        if not records:
            return self._next - 1
        with self._lock:
            now = self._clock()
            last = self._write(records, now)
            self._enforce_retention(now)
        self._wake_readers()
        return last

    def _write(self, records: Sequence[Record | SampleColumns], now: float) -> int:
        # Headers and payloads go to the kernel as they are (writev): joining them first would copy
        # every byte once more, which at diode rates is a measurable share of the receiver's CPU.
        pieces: list[bytes] = []
        sizes: list[int] = []
        bases: list[int] = []
        offset = first = self._next
        pending = [
            (kind, run[start : start + MAX_FRAME_RECORDS])
            for kind, run in codec.split_runs(records)
            for start in range(0, len(run), MAX_FRAME_RECORDS)
        ]
        while pending:
            kind, chunk = pending.pop(0)
            frame_kind, payload = codec.encode(kind, chunk)
            if len(payload) > segments.MAX_PAYLOAD:
                # Huge text values: halve the frame until it fits (readers refuse larger frames as corrupt).
                if len(chunk) == 1:
                    raise ValueError(f"a record of {len(payload)} bytes is too large for the journal")
                middle = len(chunk) // 2
                pending[:0] = [(kind, chunk[:middle]), (kind, chunk[middle:])]
                continue
            count = codec.run_length(kind, chunk)
            pieces += (segments.frame_header(offset, count, frame_kind, now, payload), payload)
            sizes.append(segments.HEADER_SIZE + len(payload))
            bases.append(offset)
            offset += count
        total = sum(sizes)
        active = self._segments[-1]
        if active.size and active.size + total > self.segment_size:
            active = self._rotate()
        try:
            _write_all(self._fd, pieces, total)
        except OSError as exc:
            # Take back a partial frame so the file still ends on a frame boundary.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, active.size)
            raise JournalError(f"the journal could not write to {active.path}: {exc.strerror}") from None
        if active.index is not None:
            position = active.size
            for base, size in zip(bases, sizes, strict=True):
                active.index.note(base, position, now)
                position += size
        active.size += total
        active.end_offset = offset
        active.last_appended_at = now
        self._bytes += total
        self._next = offset
        self._maybe_sync()
        for observer in self._observers:
            observer(first, records)
        return offset - 1

    def observe(self, observer: Callable[[int, Sequence[Record | SampleColumns]], None]) -> Callable[[], None]:
        """Call ``observer(first offset, records)`` after every write, on the writing thread with the
        journal's lock held (so it must only take the batch and return), until the returned function is
        called. For a live view of what is appended without decoding it again from disk; a consumer that
        must not miss anything across restarts still reads a cursor."""
        self._observers.append(observer)

        def stop() -> None:
            if observer in self._observers:
                self._observers.remove(observer)

        return stop

    def _maybe_sync(self) -> None:
        if self.sync == "none":
            return
        if self.sync == "interval":
            moment = time.monotonic()
            wait = self.sync_interval - (moment - self._last_sync)
            if wait > 0:
                self._schedule_sync(wait)
                return
            self._last_sync = moment
        self._sync(os.fdatasync, self._fd, self._segments[-1].path.name)
        if self._failed is not None:
            raise JournalError(self._failed)

    def _sync(self, call: Callable[[int], None], fd: int, what: str) -> None:
        """fsync or fdatasync ``fd``; a failure stops the writer (see ``_failed``)."""
        try:
            call(fd)
        except OSError as exc:
            self._stop_on_sync_failure(what, exc)

    def _stop_on_sync_failure(self, what: str, exc: OSError) -> None:
        reason = (
            f"the journal in {self.directory} stopped: fsync failed on {what} ({exc.strerror or exc}); records "
            "appended since the last good sync may be lost. Check the disk and the kernel log, then restart"
        )
        if self._failed is None:
            self._failed = reason
            log.critical("%s", reason)

    def _schedule_sync(self, delay: float) -> None:
        """Make sure records appended just before the writers go quiet still reach the disk within the
        interval, instead of waiting for the next append (which may not come for hours)."""
        if self._sync_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop in this thread: the next append or close() syncs
        self._sync_pending = True
        loop.call_later(delay, self._deferred_sync)

    def _deferred_sync(self) -> None:
        with self._lock:
            self._sync_pending = False
            if self._fd >= 0 and not self._closed:
                self._last_sync = time.monotonic()
                self._sync(os.fdatasync, self._fd, self._segments[-1].path.name)

    def _rotate(self) -> Segment:
        sealed = self._fd
        self._fd = -1
        name = self._segments[-1].path.name
        syncer = threading.Thread(target=self._sync_and_close, args=(sealed, name), name="journal-seal", daemon=True)
        syncer.start()
        self._sealing = [thread for thread in self._sealing if thread.is_alive()] + [syncer]
        self._meta.floor = self._next
        self._meta.save(self.directory / "journal.json")
        segment = self._new_segment(self._next)
        self._fd = os.open(segment.path, os.O_WRONLY | os.O_APPEND)
        return segment

    def _seal_after_corruption(self) -> None:
        """A damaged active segment can no longer be walked past the damage: write new frames elsewhere."""
        with self._lock:
            if self._segments[-1].size:
                self._rotate()

    def flush(self) -> None:
        """Force everything appended so far to stable storage (for a clean shutdown or a checkpoint)."""
        with self._lock:
            self._wait_for_sealing()
            if self._fd >= 0:
                self._sync(os.fsync, self._fd, self._segments[-1].path.name)
                self._last_sync = time.monotonic()
            if self._failed is not None:
                raise JournalError(self._failed)

    def _sync_and_close(self, fd: int, name: str) -> None:
        try:
            self._sync(os.fsync, fd, name)
        finally:
            os.close(fd)

    def _wait_for_sealing(self) -> None:
        for thread in self._sealing:
            thread.join()
        self._sealing.clear()

    # --- retention -----------------------------------------------------------------------------------

    def _enforce_retention(self, now: float) -> None:
        losses: dict[str, tuple[int, int, int, str]] = {}
        while self._bytes > self.max_size and len(self._segments) > 1:
            self._drop_oldest("max_size", losses)
        if now - self._last_age_check >= _AGE_CHECK_INTERVAL:
            self._last_age_check = now
            while len(self._segments) > 1 and self._segments[0].last_appended_at < now - self.max_age:
                self._drop_oldest("max_age", losses)
        if losses:
            self._report_losses(losses, now)
            if self._bytes > self.max_size:
                # The report itself tipped the journal over: drop again (a segment frees far more than
                # a report takes, so this ends at once), and report that loss too.
                self._enforce_retention(now)

    def expire(self) -> None:
        """Apply retention by age now (``append`` also does it, at most once a second)."""
        with self._lock:
            self._last_age_check = 0.0
            self._enforce_retention(self._clock())

    def _drop_oldest(self, reason: str, losses: dict[str, tuple[int, int, int, str]]) -> None:
        segment = self._segments.pop(0)
        self._bases.pop(0)
        self._bytes -= segment.size
        for state in self._cursors.values():
            first_unread = max(segment.base_offset, state.committed + 1)
            lost = segment.end_offset - first_unread
            if lost > 0:
                state.dropped += lost
                state.committed = segment.end_offset - 1
                state.save()
                count, low, _, _ = losses.get(state.name, (0, first_unread, 0, reason))
                losses[state.name] = (count + lost, low, segment.end_offset - 1, reason)
        segment.path.unlink(missing_ok=True)
        log.warning(
            "journal %s: dropped segment %s (offsets %d-%d) because of %s",
            self.directory,
            segment.path.name,
            segment.base_offset,
            segment.end_offset - 1,
            reason,
        )

    def _report_losses(self, losses: dict[str, tuple[int, int, int, str]], now: float) -> None:
        events: list[Record] = []
        for name, (count, low, high, reason) in sorted(losses.items()):
            why = (
                f"the journal reached max_size ({self.max_size} bytes)"
                if reason == "max_size"
                else f"they were older than max_age ({self.max_age:g} s)"
            )
            message = (
                f"cursor {name!r} lost {count} records (offsets {low}-{high}): they were deleted before it read "
                f"them because {why}; the sink behind it is too slow or was down too long"
            )
            log.error("journal %s: %s", self.directory, message)
            # The running total matters: under sustained overflow older overflow events are dropped too,
            # and the newest one must still tell the whole story.
            total = self._cursors[name].dropped if name in self._cursors else count
            data = {
                "cursor": name,
                "lost": count,
                "total_lost": total,
                "first_offset": low,
                "last_offset": high,
                "reason": reason,
            }
            events.append(Event(now, "journal.overflow", f"journal/{name}", Severity.HIGH, message, data))
        self._write(events, now)

    # --- reading -------------------------------------------------------------------------------------

    def reader(self, name: str, *, start: Literal["earliest", "latest"] = "earliest") -> Cursor:
        """The named cursor (created on first use, at the oldest record or at the end)."""
        from otseam.journal.cursor import Cursor

        if not CURSOR_NAME.match(name):
            raise JournalError(f"cursor name {name!r} is not valid: use letters, digits, '.', '_' or '-' (at most 128)")
        with self._lock:
            state = self._cursors.get(name)
            if state is None:
                committed = self.first_offset - 1 if start == "earliest" else self._next - 1
                state = CursorState.create(self.directory / "cursors" / f"{name}{CURSOR_SUFFIX}", committed)
                self._cursors[name] = state
        return Cursor(self, state)

    def cursors(self) -> list[str]:
        return sorted(self._cursors)

    def remove_cursor(self, name: str) -> None:
        """Forget a cursor (a sink removed from the contract), so it no longer counts as behind."""
        with self._lock:
            state = self._cursors.pop(name, None)
            if state is not None:
                state.close()
                state.path.unlink(missing_ok=True)

    def segment_for(self, offset: int) -> Segment | None:
        """The segment holding ``offset``, if it is still on disk."""
        with self._lock:
            index = bisect.bisect_right(self._bases, offset) - 1
            if index < 0:
                return None
            segment = self._segments[index]
            return segment if offset < segment.end_offset else None

    def frame_near(self, segment: Segment, offset: int) -> tuple[int, int]:
        """``(file position, base offset)`` of a frame at or shortly before ``offset`` in ``segment``.

        Sealed segments found on disk get their index on first use (one pass over the file headers).
        """
        index = segment.index
        if index is None:
            index = segments.SparseIndex()
            try:
                result = segments.scan(segment.path, segment.base_offset, verify=False, index=index)
            except OSError:
                return 0, segment.base_offset
            segment.index = index
            if not result.torn:
                # A whole segment's true end; it is short of the next segment's start only where offsets
                # were skipped (see _load). A damaged one keeps the longer end so the damage is counted.
                segment.end_offset = result.end_offset
        position, base = index.floor(offset)
        return (position, base) if base >= 0 else (0, segment.base_offset)

    def resume_after(self, offset: int) -> int:
        """Where reading continues when ``offset`` is on no segment: the next segment's start, or the end."""
        with self._lock:
            index = bisect.bisect_right(self._bases, offset)
            following = self._bases[index] if index < len(self._bases) else self._next
            return max(following, self.first_offset, offset + 1)

    def next_offset(self) -> int:
        return self._next

    def _commit(self, state: CursorState, offset: int) -> None:
        with self._lock:
            if self._closed:
                raise JournalError("the journal is closed")
            if self._cursors.get(state.name) is not state:
                raise JournalError(f"cursor {state.name!r} was removed from the journal")
            if offset >= self._next:
                raise ValueError(f"cannot commit offset {offset}: the last offset appended is {self._next - 1}")
            if offset > state.committed:
                state.committed = offset
                state.save()

    async def wait_for_append(self, after: int, max_wait: float) -> bool:
        """Wait until an offset greater than or equal to ``after`` exists, at most ``max_wait`` seconds."""
        if self._next > after:
            return True
        if max_wait <= 0 or self._closed:
            return False
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        with self._lock:
            # Checked again under the lock: an append from another thread cannot slip in between the
            # check and the registration and leave this reader asleep for the whole max_wait.
            if self._next > after:
                return True
            self._waiters.append(entry)
        try:
            await asyncio.wait({future}, timeout=max_wait)
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)
            if not future.done():
                future.cancel()
        return self._next > after

    def _wake_readers(self) -> None:
        if not self._waiters:
            return
        with self._lock:
            waiters, self._waiters = self._waiters, []
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, future in waiters:
            if loop is running:
                if not future.done():
                    future.set_result(None)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, future)

    # --- metrics and shutdown ------------------------------------------------------------------------

    def metrics(self) -> JournalMetrics:
        """Numbers a supervisor exports: depth and lag per cursor, bytes on disk, dropped counts."""
        from otseam.journal.cursor import appended_at

        now = self._clock()
        with self._lock:
            result = JournalMetrics(self.source, self.first_offset, self._next - 1, self._bytes, len(self._segments))
            for name, state in sorted(self._cursors.items()):
                position = max(state.committed + 1, self.first_offset)
                depth = self._next - position
                age = None
                if depth > 0:
                    stamp = appended_at(self, position)
                    age = max(0.0, now - stamp) if stamp is not None else None
                result.cursors.append(CursorMetrics(name, state.committed, depth, age, state.dropped))
        return result

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Flush to disk and release the directory; readers waiting for records return empty."""
        if self._closed:
            return
        with self._lock:
            self._closed = True
            self._wait_for_sealing()
            if self._fd >= 0:
                self._sync(os.fsync, self._fd, self._segments[-1].path.name)
                os.close(self._fd)
                self._fd = -1
            for state in self._cursors.values():
                state.close()
            os.close(self._lock_fd)
        self._wake_readers()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


#: At most this many buffers per writev call (Linux's IOV_MAX is 1024).
_IOV_MAX = 1024


def _write_all(fd: int, pieces: list[bytes], total: int) -> None:
    """Write ``pieces`` (``total`` bytes) in order; a short write goes on from where it stopped."""
    written = 0
    index = 0
    while index < len(pieces):
        batch = pieces[index : index + _IOV_MAX]
        done = os.writev(fd, batch)
        size = sum(map(len, batch))
        written += done
        if done < size:  # rare (a full disk, a signal): finish this batch the simple way
            rest = b"".join(batch)[done:]
            while rest:
                rest = rest[os.write(fd, rest) :]
            written += size - done
        index += _IOV_MAX
    if written != total:
        raise OSError(0, f"wrote {written} bytes of {total}")


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
