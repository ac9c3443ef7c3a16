"""Segment files: frames on disk, how they are checked, found and repaired.

A segment is a file named after the offset of its first record (``00000000000000000001.seg``) holding
frames back to back. A frame is one run of records (normally one appended batch)::

    payload length  u32   ┐
    crc32           u32   │ little-endian, 32 bytes
    base offset     u64   │ the offset of the first record; the others follow by index
    record count    u32   │
    kind            u8    │ samples, events or sample columns (codec.py)
    (padding)       3 B   │
    appended at     f64   ┘ wall-clock seconds, for age-based retention and "oldest unread" metrics
    payload         ...

The CRC covers everything after the CRC field (the rest of the header and the payload), so a torn or
bit-rotten frame is detected and never decoded. A crash can only tear the tail of the segment being
written; opening the journal truncates the tail back to the last whole frame. Damage anywhere else
(a flipped bit, an overwritten block) costs only the frames it touches: :func:`next_valid_frame` finds
the first intact frame after it, so the records behind the damage are still read.
"""

from __future__ import annotations

import bisect
import os
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from otseam.journal.codec import KINDS

HEADER = struct.Struct("<IIQIB3xd")
HEADER_SIZE = HEADER.size
#: The part of the header the CRC covers starts after the length and the CRC.
CRC_FROM = 8
#: A frame larger than this is corrupt by definition (a batch is thousands of records, not millions).
MAX_PAYLOAD = 256 * 1024 * 1024
SUFFIX = ".seg"
_SCAN_CHUNK = 64 * 1024


def _fastest_crc32() -> Callable[..., int]:
    """CRC-32 (zlib's, so journals written either way read either way), from ISA-L where installed.

    zlib's runs at 2-3 GB/s here, which made checksums about 5% of a diode receiver's CPU at a
    gigabit and more; ISA-L's (folding with carry-less multiplication) runs at tens of GB/s. It must give zlib's
    values, checked once here, or zlib's is used.
    """
    try:
        from isal.isal_zlib import crc32
    except ImportError:
        return zlib.crc32
    probe = bytes(range(256)) * 17
    if all(crc32(probe[:n], seed) == zlib.crc32(probe[:n], seed) for n in (0, 1, 15, 64, 4352) for seed in (0, 7)):
        return crc32
    return zlib.crc32


crc32: Callable[..., int] = _fastest_crc32()


def segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}{SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    stem, dot, suffix = name.partition(".")
    if "." + suffix != SUFFIX or not dot or len(stem) != 20 or not stem.isdigit():
        return None
    return int(stem)


@dataclass(slots=True, frozen=True)
class FrameHeader:
    length: int
    crc: int
    base_offset: int
    count: int
    kind: int
    appended_at: float

    @property
    def size(self) -> int:
        return HEADER_SIZE + self.length

    @property
    def end_offset(self) -> int:
        """The offset after this frame's last record."""
        return self.base_offset + self.count


def frame_header(base_offset: int, count: int, kind: int, appended_at: float, payload: bytes) -> bytes:
    """The header of the frame that holds ``payload`` (written just before it)."""
    header = bytearray(HEADER.pack(len(payload), 0, base_offset, count, kind, appended_at))
    crc = crc32(payload, crc32(memoryview(header)[CRC_FROM:]))
    struct.pack_into("<I", header, 4, crc)
    return bytes(header)


def build_frame(base_offset: int, count: int, kind: int, appended_at: float, payload: bytes) -> bytes:
    return frame_header(base_offset, count, kind, appended_at, payload) + payload


def parse_header(buffer: bytes | bytearray | memoryview, position: int = 0) -> FrameHeader:
    return FrameHeader(*HEADER.unpack_from(buffer, position))


def frame_ok(header_bytes: bytes | memoryview, payload: bytes | memoryview, crc: int) -> bool:
    return crc32(payload, crc32(header_bytes[CRC_FROM:HEADER_SIZE])) == crc


def plausible(header: FrameHeader, expected_offset: int | None) -> bool:
    """A cheap sanity check before trusting a header's length (the CRC comes after reading the payload)."""
    if header.length > MAX_PAYLOAD or header.count == 0 or header.kind not in KINDS:
        return False
    return expected_offset is None or header.base_offset == expected_offset


#: One index entry per this many bytes of segment: bounded memory (8k entries for 2 GiB), and finding
#: any offset reads at most this much of a file.
INDEX_STRIDE = 256 * 1024


class SparseIndex:
    """Where some frames of a segment start: ``(base offset, file position, appended at)`` every ~256 KiB."""

    __slots__ = ("offsets", "positions", "times")

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.positions: list[int] = []
        self.times: list[float] = []

    def note(self, base_offset: int, position: int, appended_at: float) -> None:
        if not self.positions or position - self.positions[-1] >= INDEX_STRIDE:
            self.offsets.append(base_offset)
            self.positions.append(position)
            self.times.append(appended_at)

    def floor(self, offset: int) -> tuple[int, int]:
        """``(file position, base offset)`` of the last indexed frame starting at or before ``offset``."""
        index = bisect.bisect_right(self.offsets, offset) - 1
        if index < 0:
            return 0, -1
        return self.positions[index], self.offsets[index]


@dataclass(slots=True)
class ScanResult:
    """What walking a segment found: the whole frames, where they end, and the damage between them."""

    base_offset: int
    #: The offset after the last whole frame (== base_offset when the segment holds nothing valid).
    end_offset: int
    #: Bytes up to the end of the last whole, valid frame: what follows is a torn tail.
    valid_size: int
    file_size: int
    first_appended_at: float | None
    last_appended_at: float | None
    #: Damage with intact frames after it: ``(file position, size in bytes, first lost offset, last lost
    #: offset)``; the lost offsets are empty (first > last) when the damage held no whole record.
    damaged: list[tuple[int, int, int, int]]

    @property
    def torn(self) -> bool:
        return self.valid_size < self.file_size


def scan(path: Path, base_offset: int, *, verify: bool = True, index: SparseIndex | None = None) -> ScanResult:
    """Walk the frames of a segment, over damage to the intact frames behind it, up to a torn tail."""
    first_at: float | None = None
    last_at: float | None = None
    expected = base_offset
    valid = 0
    damaged: list[tuple[int, int, int, int]] = []
    for position, header, ok in iter_frames(path, base_offset, verify=verify, resync=True):
        if not ok:
            if header.length == DAMAGE:
                damaged.append((valid, position - valid, expected, header.base_offset - 1))
                continue
            break
        if first_at is None:
            first_at = header.appended_at
        last_at = header.appended_at
        if index is not None:
            index.note(header.base_offset, position, header.appended_at)
        expected = header.end_offset
        valid = position + header.size
    return ScanResult(base_offset, expected, valid, path.stat().st_size, first_at, last_at, damaged)


#: A frame header's kind byte and the three padding bytes after it: where resynchronisation looks.
_KIND_AT = 20
_CANDIDATE = re.compile(b"[" + bytes(KINDS) + b"]\x00\x00\x00")
_RESYNC_CHUNK = 1024 * 1024
#: ``length`` of the marker :func:`iter_frames` yields for damage it has stepped over.
DAMAGE = -1


def next_valid_frame(fd: int, start: int, end: int, min_offset: int) -> tuple[int, FrameHeader] | None:
    """The first whole frame with a good CRC at a file position in ``[start, end)``, ending by ``end``,
    whose records start at ``min_offset`` or later; None if there is none.

    Candidates are found by the header's kind and padding bytes (a regular expression, so in C), then
    checked like any frame: a plausible header and a CRC over header and payload. A false match would
    need a 32-bit CRC to agree by chance.
    """
    position = start
    while position + HEADER_SIZE <= end:
        chunk = os.pread(fd, min(_RESYNC_CHUNK, end - position), position)
        if len(chunk) < HEADER_SIZE:
            return None
        for match in _CANDIDATE.finditer(chunk, _KIND_AT):
            at = match.start() - _KIND_AT
            if at + HEADER_SIZE > len(chunk):
                break
            header = parse_header(chunk, at)
            frame_at = position + at
            if not plausible(header, None) or header.base_offset < min_offset or frame_at + header.size > end:
                continue
            frame = chunk[at : at + header.size]
            if len(frame) < header.size:
                frame = os.pread(fd, header.size, frame_at)
            if len(frame) == header.size and frame_ok(frame[:HEADER_SIZE], memoryview(frame)[HEADER_SIZE:], header.crc):
                return frame_at, header
        # Overlap by a header so that one straddling the chunk boundary is seen whole.
        position += max(1, len(chunk) - HEADER_SIZE + 1)
    return None


def iter_frames(
    path: Path,
    base_offset: int,
    *,
    verify: bool = True,
    start: int = 0,
    expected: int | None = None,
    resync: bool = False,
) -> Iterator[tuple[int, FrameHeader, bool]]:
    """Yield ``(file position, header, ok)`` per frame; the last one yielded may be ``ok=False``, then it stops.

    With ``resync``, damage followed by an intact frame does not stop the walk: it is yielded as
    ``ok=False`` with a header whose ``length`` is -1 and whose ``base_offset`` is the offset the walk
    continues at, at the position of the intact frame, which follows. The file is read in 64 KiB chunks
    (or one frame, if larger) so that memory stays flat whatever the segment size.
    """
    next_offset = base_offset if expected is None else expected
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        file.seek(start)
        position = start
        buffer = b""
        buffer_start = start
        while True:
            relative = position - buffer_start
            bad: FrameHeader | None = None
            header: FrameHeader | None = None
            if len(buffer) - relative < HEADER_SIZE:
                file.seek(position + len(buffer) - relative)
                buffer = buffer[relative:] + file.read(_SCAN_CHUNK)
                buffer_start = position
                relative = 0
                if len(buffer) < HEADER_SIZE:
                    if buffer:
                        yield position, FrameHeader(0, 0, next_offset, 0, 0, 0.0), False
                    return
            header = parse_header(buffer, relative)
            if not plausible(header, next_offset):
                bad = header
            else:
                if len(buffer) - relative < header.size:
                    need = header.size - (len(buffer) - relative)
                    file.seek(position + len(buffer) - relative)
                    buffer = buffer[relative:] + file.read(max(need, _SCAN_CHUNK))
                    buffer_start = position
                    relative = 0
                if len(buffer) - relative < header.size:
                    bad = header
                elif verify:
                    view = memoryview(buffer)
                    ok = frame_ok(
                        view[relative : relative + HEADER_SIZE],
                        view[relative + HEADER_SIZE : relative + header.size],
                        header.crc,
                    )
                    view.release()
                    if not ok:
                        bad = header
            if bad is not None:
                found = next_valid_frame(file.fileno(), position + 1, size, next_offset) if resync else None
                if found is None:
                    yield position, bad, False
                    return
                position, following = found
                yield position, FrameHeader(DAMAGE, 0, following.base_offset, 0, 0, 0.0), False
                next_offset = following.base_offset
                buffer = b""
                buffer_start = position
                continue
            yield position, header, True
            next_offset = header.end_offset
            position += header.size


def truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as file:
        file.truncate(size)
        file.flush()
        os.fsync(file.fileno())
