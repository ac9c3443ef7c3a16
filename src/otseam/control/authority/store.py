"""Requests as files: one JSON file per request under ``<authority dir>/requests/``.

A request file holds the signed document and what happened to it (approvals, a rejection, the OT
node's report). Every change is a read-modify-write under the store's lock, so two approvers acting at
the same moment both land, one after the other.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otseam.audit.files import atomic_write, locked
from otseam.control.authority.document import CommandRequest

_ID = re.compile(r"^[0-9a-f]{16}\Z")
log = logging.getLogger("otseam.control.authority")


class NotFound(LookupError):
    pass


@dataclass(slots=True)
class Signature:
    person: str
    fingerprint: str
    signature: str
    #: Milliseconds since the epoch when this node received it.
    at: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"person": self.person, "fingerprint": self.fingerprint, "signature": self.signature, "at": self.at}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Signature:
        return cls(str(raw["person"]), str(raw["fingerprint"]), str(raw["signature"]), int(raw.get("at", 0)))


@dataclass(slots=True)
class Entry:
    document: CommandRequest
    requester_signature: Signature | None = None
    approvals: list[Signature] = field(default_factory=list)
    #: When the last approval needed came in (ms), or None.
    approved_at: int | None = None
    rejection: dict[str, Any] | None = None
    #: The OT node's report: status (executed, refused, failed, drift, readback-mismatch), details.
    outcome: dict[str, Any] | None = None

    def state(self, now_ms: int) -> str:
        if self.rejection is not None:
            return "rejected"
        if self.outcome is not None:
            return str(self.outcome.get("status", "failed"))
        if self.approved_at is not None:
            return "approved" if now_ms < self.document.execute_by else "expired"
        return "pending" if now_ms < self.document.approve_by else "expired"

    def as_dict(self) -> dict[str, Any]:
        return {
            "document": self.document.body(),
            "digest": self.document.digest,
            "requester_signature": self.requester_signature.as_dict() if self.requester_signature else None,
            "approvals": [a.as_dict() for a in self.approvals],
            "approved_at": self.approved_at,
            "rejection": self.rejection,
            "outcome": self.outcome,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Entry:
        signature = raw.get("requester_signature")
        return cls(
            CommandRequest.from_body(raw["document"]),
            Signature.from_dict(signature) if signature else None,
            [Signature.from_dict(a) for a in raw.get("approvals", [])],
            raw.get("approved_at"),
            raw.get("rejection"),
            raw.get("outcome"),
        )


class Store:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory) / "requests"
        self._lock = Path(directory) / "requests.lock"

    def _path(self, request_id: str) -> Path:
        if not _ID.match(request_id):
            raise NotFound(f"'{request_id}' is not a request id (16 hexadecimal digits)")
        return self.directory / f"{request_id}.json"

    def get(self, request_id: str) -> Entry:
        try:
            return Entry.from_dict(json.loads(self._path(request_id).read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise NotFound(f"no request {request_id} on this node") from None

    def put(self, entry: Entry) -> None:
        atomic_write(self._path(entry.document.id), json.dumps(entry.as_dict(), indent=1).encode())

    @contextmanager
    def changing(self, request_id: str) -> Iterator[Entry]:
        """The entry, locked; written back when the block ends without an exception."""
        with locked(self._lock):
            entry = self.get(request_id)
            yield entry
            self.put(entry)

    def create(self, entry: Entry, before: Callable[[], object] | None = None) -> None:
        with locked(self._lock):
            path = self._path(entry.document.id)
            if path.exists():
                raise ValueError(f"request {entry.document.id} exists already")
            if before is not None:
                before()
            self.put(entry)

    def all(self) -> list[Entry]:
        if not self.directory.is_dir():
            return []
        entries = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                entries.append(Entry.from_dict(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                # Never silently: a request file nobody can read is a request nobody sees.
                log.error("request file %s cannot be read (%s); it is left out of every list", path, exc)
                continue
        return sorted(entries, key=lambda e: e.document.created)
