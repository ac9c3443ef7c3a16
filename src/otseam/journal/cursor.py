"""Named cursors: a sink's position in the journal, read in batches and committed after delivery.

``next_batch`` always starts right after the committed offset. A sink that failed to deliver and asks
again gets the same records again; a sink that committed gets the next ones. The reader streams frames
from the segment files with ``pread`` and keeps at most one decoded frame in memory, so a cursor that is
days behind costs disk reads, never RAM.
"""

from __future__ import annotations

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


@dataclass(slots=True)
class _Frame:
    base_offset: int
    records: list[Record]
    appended_at: float

    @property
    def end_offset(self) -> int:
        return self.base_offset + len(self.records)


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
        start = self._start()
        if start >= self._journal.next_offset():
            await self._journal.wait_for_append(start, max_wait)
            if self._journal.closed:
                return Batch(self._journal.source)
            start = self._start()
        return self._read(start, max_records)

    def _read(self, start: int, limit: int) -> Batch:
        batch = Batch(self._journal.source)
        end = self._journal.next_offset()
        position = start
        while len(batch.records) < limit and position < end:
            frame = self._frame
            if frame is None or not frame.base_offset <= position < frame.end_offset:
                loaded = self._load(position)
                if isinstance(loaded, int):
                    # Records from ``position`` to ``loaded`` are gone (retention or corruption, both
                    # counted); the batch continues after the gap so the cursor can commit past it.
                    position = max(loaded, self._journal.first_offset)
                    continue
                frame = self._frame = loaded
            take = min(limit - len(batch.records), frame.end_offset - position)
            index = position - frame.base_offset
            if index == 0 and take == len(frame.records):
                batch.records.extend(frame.records)
            else:
                batch.records.extend(frame.records[index : index + take])
            batch.offsets.extend(range(position, position + take))
            position += take
        return batch

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
        segment = self._journal.segment_for(offset)
        if segment is None:
            return max(offset + 1, self._journal.first_offset)
        self._close_file()
        try:
            self._fd = os.open(segment.path, os.O_RDONLY)
        except FileNotFoundError:
            return max(offset + 1, self._journal.first_offset)
        self._segment = segment
        start, expected = self._journal.frame_near(segment, offset)
        frames = segments.iter_frames(segment.path, segment.base_offset, verify=False, start=start, expected=expected)
        for position, header, ok in frames:
            if not ok:
                break
            if header.end_offset > offset:
                self._position = position
                self._position_offset = header.base_offset
                return None
        return self._lose(offset, segment, "its frame index is unreadable")

    def _read_frame(self, offset: int) -> _Frame | int:
        segment = self._segment
        assert segment is not None
        raw_header = os.pread(self._fd, segments.HEADER_SIZE, self._position)
        if len(raw_header) < segments.HEADER_SIZE:
            return self._lose(offset, segment, "it ends in the middle of a frame header")
        header = segments.parse_header(raw_header)
        if not segments.plausible(header, self._position_offset):
            return self._lose(offset, segment, "a frame header is corrupt")
        payload = os.pread(self._fd, header.length, self._position + segments.HEADER_SIZE)
        if len(payload) < header.length or not segments.frame_ok(raw_header, payload, header.crc):
            return self._lose(offset, segment, "a frame fails its checksum")
        try:
            records = codec.decode(header.kind, payload, header.count)
        except codec.CorruptPayload as exc:
            return self._lose(offset, segment, str(exc))
        self._position += header.size
        self._position_offset = header.end_offset
        return _Frame(header.base_offset, records, header.appended_at)

    def _lose(self, offset: int, segment: Segment, why: str) -> int:
        """Skip the unreadable rest of ``segment``: count it, say it, and carry on with the next one."""
        journal = self._journal
        if segment is journal._segments[-1]:
            journal._seal_after_corruption()
        resume = max(segment.end_offset, offset + 1)
        lost = resume - offset
        self._state.dropped += lost
        self._state.save()
        self._close_file()
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
