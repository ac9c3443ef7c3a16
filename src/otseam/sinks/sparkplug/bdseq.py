"""The birth/death sequence number, persisted so that it keeps counting across restarts.

A host application matches an NDEATH to the session it ends by ``bdSeq``. If a restarted edge node
started again at 0, a late NDEATH (the Will of the previous session, sent by the broker after the
keepalive expired) could carry the same number as the new NBIRTH and declare the new session dead.
"""

from __future__ import annotations

import os
from pathlib import Path


class BdSeqStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> int | None:
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        # A damaged file must not stop the edge node: start a fresh sequence (and say so in the birth).
        return int(text) % 256 if text.isdigit() else None

    def next(self) -> int:
        """The bdSeq for a new session: one more than the last one used (0 the very first time).

        Written (and fsynced) before the connection that uses it, so a crash right after connecting
        cannot reuse the number.
        """
        last = self._read()
        value = 0 if last is None else (last + 1) % 256
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        with open(temporary, "w", encoding="ascii") as handle:
            handle.write(f"{value}\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        return value
