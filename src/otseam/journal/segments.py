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
written; opening the journal truncates the tail back to the last whole frame.
"""

from __future__ import annotations

import bisect
import os
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
    """What walking a segment found: the whole frames, and where they end."""

    base_offset: int
    #: The offset after the last whole frame (== base_offset when the segment holds nothing valid).
    end_offset: int
    #: Bytes of whole, valid frames from the start of the file.
    valid_size: int
    file_size: int
    first_appended_at: float | None
    last_appended_at: float | None

    @property
    def torn(self) -> bool:
        return self.valid_size < self.file_size


def scan(path: Path, base_offset: int, *, verify: bool = True, index: SparseIndex | None = None) -> ScanResult:
    """Walk the frames of a segment, stopping at the first frame that is torn, corrupt or out of sequence."""
    first_at: float | None = None
    last_at: float | None = None
    expected = base_offset
    valid = 0
    for position, header, ok in iter_frames(path, base_offset, verify=verify):
        if not ok:
            break
        if first_at is None:
            first_at = header.appended_at
        last_at = header.appended_at
        if index is not None:
            index.note(header.base_offset, position, header.appended_at)
        expected = header.end_offset
        valid = position + header.size
    return ScanResult(base_offset, expected, valid, path.stat().st_size, first_at, last_at)


def iter_frames(
    path: Path, base_offset: int, *, verify: bool = True, start: int = 0, expected: int | None = None
) -> Iterator[tuple[int, FrameHeader, bool]]:
    """Yield ``(file position, header, ok)`` per frame; the last one yielded may be ``ok=False``, then it stops.

    The file is read in 64 KiB chunks (or one frame, if larger) so that memory stays flat whatever the segment size.
    """
    next_offset = base_offset if expected is None else expected
    with open(path, "rb") as file:
        file.seek(start)
        position = start
        buffer = b""
        buffer_start = start
        while True:
            relative = position - buffer_start
            if len(buffer) - relative < HEADER_SIZE:
                buffer = buffer[relative:] + file.read(_SCAN_CHUNK)
                buffer_start = position
                relative = 0
                if len(buffer) < HEADER_SIZE:
                    if buffer:
                        yield position, FrameHeader(0, 0, next_offset, 0, 0, 0.0), False
                    return
            header = parse_header(buffer, relative)
            if not plausible(header, next_offset):
                yield position, header, False
                return
            if len(buffer) - relative < header.size:
                need = header.size - (len(buffer) - relative)
                buffer = buffer[relative:] + file.read(max(need, _SCAN_CHUNK))
                buffer_start = position
                relative = 0
                if len(buffer) < header.size:
                    yield position, header, False
                    return
            if verify:
                view = memoryview(buffer)
                ok = frame_ok(
                    view[relative : relative + HEADER_SIZE],
                    view[relative + HEADER_SIZE : relative + header.size],
                    header.crc,
                )
                view.release()
                if not ok:
                    yield position, header, False
                    return
            yield position, header, True
            next_offset = header.end_offset
            position += header.size


def truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as file:
        file.truncate(size)
        file.flush()
        os.fsync(file.fileno())


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
