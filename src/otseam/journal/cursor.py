"""Named cursors: a sink's position in the journal, read in batches and committed after delivery.

``next_batch`` always starts right after the committed offset. A sink that failed to deliver and asks
again gets the same records again; a sink that committed gets the next ones. The reader streams frames
from the segment files with ``pread`` and keeps at most one decoded frame in memory, so a cursor that is
days behind costs disk reads, never RAM.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from otseam.core.records import Batch, Event, Record, Severity
from otseam.journal import codec, segments
from otseam.journal.state import CursorState, JournalError

if TYPE_CHECKING:
    from otseam.journal.journal import Journal, Segment

log = logging.getLogger("otseam.journal")

#: Frames are read in chunks of at least this size, so that small frames cost one pread per many.
_READ_AHEAD = 64 * 1024


@dataclass(slots=True)
class _Frame:
    base_offset: int
    #: The offset after the frame's last record.
    end_offset: int
    records: list[Record]
    appended_at: float


class Cursor:
    """Implements :class:`otseam.core.plugins.JournalReader`."""

    def __init__(self, journal: Journal, state: CursorState) -> None:
        self.name = state.name
        self._journal = journal
        self._state = state
        self._segment: Segment | None = None
        self._fd = -1
        #: File position of the next frame in the open segment, and the offset that frame starts at.
        self._position = 0
        self._position_offset = -1
        self._frame: _Frame | None = None
        self._buffer = b""
        self._buffer_start = 0

    @property
    def committed(self) -> int:
        """Everything up to and including this offset has been delivered (or was lost and counted)."""
        return self._state.committed

    @property
    def dropped(self) -> int:
        return self._state.dropped

    def commit(self, offset: int) -> None:
        """Everything up to and including ``offset`` has been delivered; persisted before returning."""
        self._journal._commit(self._state, offset)

    def _start(self) -> int:
        return max(self._state.committed + 1, self._journal.first_offset)

    async def next_batch(self, max_records: int = 5000, max_wait: float = 1.0) -> Batch:
        """Up to ``max_records`` records after the committed offset; empty if none arrive within ``max_wait`` s."""
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        if self._journal.closed:
            raise JournalError("the journal is closed")
        journal = self._journal
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        while True:
            start = self._start()
            end = journal.next_offset()
            if start < end:
                batch = self._read(start, max_records)
                if batch.records:
                    return batch
                # Only offsets that can no longer be read lay before the end: wait for new ones.
                start = end
            remaining = deadline - loop.time()
            if remaining <= 0 or journal.closed:
                return Batch(journal.source)
            await journal.wait_for_append(start, remaining)
            if journal.closed:
                return Batch(journal.source)

    def _read(self, start: int, limit: int) -> Batch:
        records: list[Record] = []
        offsets: list[int] = []
        end = self._journal.next_offset()
        position = start
        while position < end:
            room = limit - len(records)
            if room <= 0:
                break
            frame = self._frame
            if frame is None or not frame.base_offset <= position < frame.end_offset:
                loaded = self._load(position)
                if isinstance(loaded, int):
                    # Records from ``position`` to ``loaded`` are gone (retention or corruption, both
                    # counted); the batch continues after the gap so the cursor can commit past it.
                    position = max(loaded, self._journal.first_offset)
                    continue
                frame = self._frame = loaded
            take = min(room, frame.end_offset - position)
            index = position - frame.base_offset
            if index == 0 and take == len(frame.records):
                records.extend(frame.records)
            else:
                records.extend(frame.records[index : index + take])
            offsets.extend(range(position, position + take))
            position += take
        return Batch(self._journal.source, offsets, records)

    def _load(self, offset: int) -> _Frame | int:
        """The frame holding ``offset``, or the offset to continue at when it cannot be read."""
        segment = self._segment
        moved_on = segment is not None and offset >= segment.end_offset and segment is not self._journal._segments[-1]
        if self._position_offset != offset or segment is None or moved_on:
            located = self._locate(offset)
            if located is not None:
                return located
        return self._read_frame(offset)

    def _locate(self, offset: int) -> int | None:
        """Position the reader on the frame holding ``offset``; an int is where to continue if it is gone."""
        journal = self._journal
        segment = journal.segment_for(offset)
        if segment is None:
            return journal.resume_after(offset)
        self._close_file()
        try:
            self._fd = os.open(segment.path, os.O_RDONLY)
        except FileNotFoundError:
            return journal.resume_after(offset)
        self._segment = segment
        start, expected = journal.frame_near(segment, offset)
        if offset >= segment.end_offset:
            return journal.resume_after(offset)  # offsets that were skipped, never written
        frames = segments.iter_frames(
            segment.path, segment.base_offset, verify=False, start=start, expected=expected, resync=True
        )
        for position, header, ok in frames:
            if not ok:
                if header.length == segments.DAMAGE:
                    continue  # the intact frame after the damage comes next
                break
            if header.end_offset > offset:
                self._position = position
                self._position_offset = header.base_offset
                if header.base_offset > offset:
                    return self._report(offset, header.base_offset, segment, "a frame header is corrupt")
                return None
        return self._lose(offset, segment, "its frame index is unreadable")

    def _fill(self, segment: Segment, position: int, need: int) -> int:
        """Make the read-ahead buffer hold ``need`` bytes at ``position``; returns their index in it, or -1.

        Reads never go past ``segment.size``, the bytes the writer has completed: the buffer never holds
        the remains of a failed write that the writer has since cut off and written again.
        """
        relative = position - self._buffer_start
        if relative >= 0 and relative + need <= len(self._buffer):
            return relative
        size = min(max(need, _READ_AHEAD), segment.size - position)
        if size < need:
            return -1
        self._buffer = os.pread(self._fd, size, position)
        self._buffer_start = position
        return 0 if len(self._buffer) >= need else -1

    def _read_frame(self, offset: int) -> _Frame | int:
        # The hot path of every reader: kept flat, one buffer, no intermediate objects per frame.
        segment = self._segment
        assert segment is not None
        at = self._fill(segment, self._position, segments.HEADER_SIZE)
        if at < 0:
            return self._lose(offset, segment, "it ends in the middle of a frame header")
        length, crc, base, count, kind, appended_at = segments.HEADER.unpack_from(self._buffer, at)
        if length > segments.MAX_PAYLOAD or count == 0 or base != self._position_offset:
            return self._skip_damage(offset, segment, "a frame header is corrupt")
        size = segments.HEADER_SIZE + length
        at = self._fill(segment, self._position, size)
        if at < 0:
            return self._skip_damage(offset, segment, "it ends in the middle of a frame")
        view = memoryview(self._buffer)
        # CRC32 is incremental: one pass over header-after-the-CRC and payload equals the writer's two.
        if segments.crc32(view[at + segments.CRC_FROM : at + size]) != crc:
            return self._skip_damage(offset, segment, "a frame fails its checksum")
        try:
            records = codec.decode(kind, view[at + segments.HEADER_SIZE : at + size], count)
        except codec.CorruptPayload as exc:
            return self._skip_damage(offset, segment, str(exc))
        self._position += size
        self._position_offset = base + count
        return _Frame(base, base + count, records, appended_at)

    def _skip_damage(self, offset: int, segment: Segment, why: str) -> int:
        """Skip a damaged frame to the next intact one in ``segment``: the records in between are lost
        (counted and reported), the ones after are read. Without an intact frame after it, the rest of
        the segment is lost (see :meth:`_lose`)."""
        found = segments.next_valid_frame(self._fd, self._position + 1, segment.size, self._position_offset)
        if found is None:
            return self._lose(offset, segment, why)
        self._position, header = found
        self._position_offset = header.base_offset
        self._buffer = b""
        self._buffer_start = 0
        return self._report(offset, header.base_offset, segment, why)

    def _lose(self, offset: int, segment: Segment, why: str) -> int:
        """Skip the unreadable rest of ``segment``: count it, say it, and carry on with the next one."""
        journal = self._journal
        if segment is journal._segments[-1]:
            journal._seal_after_corruption()
        resume = max(segment.end_offset, offset + 1)
        self._close_file()
        return self._report(offset, resume, segment, why)

    def _report(self, offset: int, resume: int, segment: Segment, why: str) -> int:
        """Count offsets ``offset`` to ``resume - 1`` as lost to damage and say so, once per cursor."""
        journal = self._journal
        lost = resume - offset
        if lost <= 0 or (offset, resume) in self._state.reported_damage:
            return resume
        self._state.reported_damage.add((offset, resume))
        self._state.dropped += lost
        self._state.save()
        message = (
            f"journal segment {segment.path.name} is damaged ({why}): cursor {self.name!r} skips {lost} records "
            f"(offsets {offset}-{resume - 1})"
        )
        log.error("journal %s: %s", journal.directory, message)
        data = {"cursor": self.name, "lost": lost, "first_offset": offset, "last_offset": resume - 1}
        journal.append(
            [Event(journal._clock(), "journal.corrupt", f"journal/{self.name}", Severity.HIGH, message, data)]
        )
        return resume

    def _close_file(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = -1
        self._segment = None
        self._position_offset = -1
        self._buffer = b""
        self._buffer_start = 0

    def close(self) -> None:
        self._close_file()
        self._frame = None

    def __del__(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)


def appended_at(journal: Journal, offset: int) -> float | None:
    """When the frame holding ``offset`` was appended (for the "oldest unread" metric)."""
    segment = journal.segment_for(offset)
    if segment is None:
        return None
    start, expected = journal.frame_near(segment, offset)
    try:
        for _, header, ok in segments.iter_frames(
            segment.path, segment.base_offset, verify=False, start=start, expected=expected
        ):
            if not ok:
                return None
            if header.end_offset > offset:
                return header.appended_at
    except OSError:
        return None
    return None
