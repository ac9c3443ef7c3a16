"""Receiver-side deduplication by ``(source, offset)``.

Delivery from a journal is at least once: a sink that crashes after delivering but before committing
delivers the same batch again. Offsets from one source only ever increase, so remembering the highest
offset seen per source is enough to drop the repeats. The state is a small JSON file replaced
atomically; ``advance`` it only after the records are safely stored on the receiving side.
"""

from __future__ import annotations

from pathlib import Path

from otseam.core.records import Batch
from otseam.journal.state import JournalError, read_json, write_json_atomically


class Deduplicator:
    def __init__(self, path: str | Path | None = None) -> None:
        """``path`` persists the state; ``None`` keeps it in memory (for a receiver with its own unique key)."""
        self.path = Path(path) if path is not None else None
        self._highest: dict[str, int] = {}
        if self.path is not None and self.path.exists():
            document = read_json(self.path)
            if document is None or not all(isinstance(v, int) for v in document.values()):
                raise JournalError(f"{self.path} is not a deduplication state file: move it aside to start afresh")
            self._highest = {str(k): int(v) for k, v in document.items()}

    def highest(self, source: str) -> int:
        """The highest offset already accepted from ``source`` (0 if none)."""
        return self._highest.get(source, 0)

    def filter(self, batch: Batch) -> Batch:
        """The part of ``batch`` not seen before (the batch itself when nothing is a repeat)."""
        floor = self._highest.get(batch.source, 0)
        if not batch.offsets or batch.offsets[0] > floor:
            return batch
        fresh = Batch(batch.source)
        for offset, record in zip(batch.offsets, batch.records, strict=True):
            if offset > floor:
                fresh.offsets.append(offset)
                fresh.records.append(record)
        return fresh

    def advance(self, batch: Batch) -> None:
        """Remember ``batch`` as stored; call after the receiver has it safely."""
        if batch.offsets:
            self.mark(batch.source, batch.offsets[-1])

    def mark(self, source: str, offset: int) -> None:
        if offset > self._highest.get(source, 0):
            self._highest[source] = offset
            if self.path is not None:
                write_json_atomically(self.path, dict(self._highest))
