"""Small persisted files of a journal: its identity and each cursor's position.

Both are tiny JSON documents replaced atomically (write a temporary file, then rename over the old one),
so a crash leaves either the old or the new version, never half of one. Cursor files are not fsynced: a
commit lost to a power cut only means records are delivered again, which receivers deduplicate anyway.
"""

from __future__ import annotations

import json
import os
import re
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CURSOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
SOURCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


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
        if not isinstance(stored, str) or not SOURCE_ID.match(stored) or not isinstance(floor, int):
            raise JournalError(f"{path} does not describe a journal: restore it or move the journal aside")
        if source is not None and source != stored:
            raise JournalError(
                f"the journal in {path.parent} belongs to source {stored!r}, not {source!r}: "
                "use another journal path or drop the explicit source"
            )
        return cls(stored, floor)

    def save(self, path: Path) -> None:
        write_json_atomically(path, {"source": self.source, "floor": self.floor, "format": 1}, durable=True)


@dataclass(slots=True)
class CursorState:
    """Where one named reader is: everything up to ``committed`` has been delivered."""

    name: str
    path: Path
    committed: int
    #: Records this cursor never saw because retention (size or age) removed them first.
    dropped: int = 0

    @classmethod
    def load(cls, path: Path) -> CursorState | None:
        document = read_json(path)
        name = path.name.removesuffix(".json")
        if document is None:
            return None
        committed = document.get("committed")
        dropped = document.get("dropped", 0)
        if not isinstance(committed, int) or not isinstance(dropped, int) or committed < 0:
            return None
        return cls(name, path, committed, dropped)

    def save(self) -> None:
        write_json_atomically(self.path, {"committed": self.committed, "dropped": self.dropped})
