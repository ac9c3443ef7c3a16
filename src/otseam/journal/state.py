"""Small persisted files of a journal: its identity and each cursor's position.

``journal.json`` (identity) is replaced atomically: written to a temporary file, fsynced, renamed over
the old one, so a crash leaves the old or the new version, never half of one. Cursor positions change
on every commit and use a cheaper two-slot scheme (see :class:`CursorState`). Cursor writes are not
fsynced: a commit lost to a power cut only means records are delivered again, which receivers
deduplicate anyway.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CURSOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
SOURCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")


class JournalError(RuntimeError):
    """Something about the journal a user must act on (in use, unreadable, mismatched)."""


def write_json_atomically(path: Path, document: dict[str, Any], *, durable: bool = False) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    data = json.dumps(document, sort_keys=True).encode()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    if durable:
        # The rename itself is a change to the directory: without this a power cut can bring back the
        # old name (or no file at all) although the new content was on disk.
        fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: Path) -> dict[str, Any] | None:
    """The document, or None if the file is missing or unreadable (reported by the caller)."""
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def new_source_id() -> str:
    """A readable, unique journal id: the host name (useful when reading a historian) and random bits."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:48].strip("-.") or "seam"
    return f"{host}-{uuid.uuid4().hex[:12]}"


@dataclass(slots=True)
class Meta:
    """``journal.json``: the source id and the lowest offset a new segment may start at."""

    source: str
    #: Offsets never go backwards, even if every segment file were deleted by hand: receivers would
    #: otherwise discard new records as duplicates of old ones.
    floor: int = 1
    #: The on-disk format of the segments (codec.FORMAT for a journal this version creates). A journal
    #: written before formats were numbered says 1.
    format: int = 2

    @classmethod
    def load_or_create(cls, path: Path, source: str | None) -> Meta:
        if source is not None and not SOURCE_ID.match(source):
            raise JournalError(
                f"journal source id {source!r} is not valid: use letters, digits, '.', ':', '_' or '-' (at most 128)"
            )
        document = read_json(path)
        if document is None:
            if path.exists():
                raise JournalError(f"{path} is unreadable: restore it from a backup or move the journal aside")
            meta = cls(source or new_source_id())
            meta.save(path)
            return meta
        stored = document.get("source")
        floor = document.get("floor", 1)
        version = document.get("format", 1)
        if (
            not isinstance(stored, str)
            or not SOURCE_ID.match(stored)
            or not isinstance(floor, int)
            or type(version) is not int
        ):
            raise JournalError(f"{path} does not describe a journal: restore it or move the journal aside")
        if source is not None and source != stored:
            raise JournalError(
                f"the journal in {path.parent} belongs to source {stored!r}, not {source!r}: "
                "use another journal path or drop the explicit source"
            )
        return cls(stored, floor, version)

    def save(self, path: Path) -> None:
        document = {"source": self.source, "floor": self.floor, "format": self.format}
        write_json_atomically(path, document, durable=True)


#: One cursor slot: sequence number, committed offset, dropped count, CRC32 of the first 24 bytes.
_SLOT = struct.Struct("<QQQI4x")
CURSOR_SUFFIX = ".cursor"


@dataclass(slots=True)
class CursorState:
    """Where one named reader is: everything up to ``committed`` has been delivered.

    Stored in two fixed 32-byte slots written alternately in place with ``pwrite``. A commit is one small
    write with no rename (a rename over an existing file makes ext4 flush data, about a millisecond each,
    which at one commit per batch was a quarter of the read time). A torn or lost write can only damage
    the slot being written; the other still holds the previous commit, and the CRC tells them apart.
    """

    name: str
    path: Path
    committed: int
    #: Records this cursor never saw because retention (size or age) removed them first.
    dropped: int = 0
    _sequence: int = 0
    _fd: int = -1
    #: Damaged ranges already counted and reported in this process, so that reading them again (a sink
    #: that failed and asks again) neither counts them twice nor raises a second event.
    reported_damage: set[tuple[int, int]] = field(default_factory=set)

    @classmethod
    def create(cls, path: Path, committed: int) -> CursorState:
        state = cls(path.name.removesuffix(CURSOR_SUFFIX), path, committed)
        state._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        state.save()
        state.save()
        return state

    @classmethod
    def load(cls, path: Path) -> CursorState | None:
        """The state in ``path``, or None if neither slot is intact."""
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return None
        data = os.pread(fd, 2 * _SLOT.size, 0)
        best: tuple[int, int, int] | None = None
        for slot in range(len(data) // _SLOT.size):
            sequence, committed, dropped, crc = _SLOT.unpack_from(data, slot * _SLOT.size)
            body = data[slot * _SLOT.size : slot * _SLOT.size + 24]
            if zlib.crc32(body) == crc and (best is None or sequence > best[0]):
                best = (sequence, committed, dropped)
        if best is None:
            os.close(fd)
            return None
        state = cls(path.name.removesuffix(CURSOR_SUFFIX), path, best[1], best[2], best[0])
        state._fd = fd
        return state

    def save(self) -> None:
        self._sequence += 1
        body = struct.pack("<QQQ", self._sequence, self.committed, self.dropped)
        os.pwrite(
            self._fd,
            _SLOT.pack(self._sequence, self.committed, self.dropped, zlib.crc32(body)),
            (self._sequence % 2) * _SLOT.size,
        )

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
