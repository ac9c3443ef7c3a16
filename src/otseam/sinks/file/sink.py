"""A sink that appends records to a JSON-lines file, one object per line, exactly once.

Each line carries the journal ``source`` and ``offset``. On start the sink reads the end of the file to
learn the last offset it wrote, and skips anything at or below it when the same records are offered
again (after a restart, or a delivery that failed after writing). A write that failed half-way leaves a
partial line; before the next write the file is cut back to the last complete line, so the file is
always valid JSON lines.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from pathlib import Path
from typing import Any

from otseam.contract.models import SinkSpec
from otseam.core.records import Batch, Event, Record

_OPTIONS = {"path", "fsync"}


class FileSinkConfigError(ValueError):
    pass


def record_to_json(source: str, offset: int, record: Record) -> dict[str, Any]:
    if isinstance(record, Event):
        return {
            "source": source,
            "offset": offset,
            "type": "event",
            "ts": record.ts,
            "kind": record.kind,
            "from": record.source,
            "severity": record.severity.label,
            "message": record.message,
            "data": record.data,
        }
    value = record.value
    if isinstance(value, float) and not math.isfinite(value):
        value = None  # JSON has no NaN; the pipeline never lets one through with a good quality anyway
    return {
        "source": source,
        "offset": offset,
        "type": "sample",
        "point": record.point,
        "value": value,
        "quality": record.quality.label,
        "source_ts": record.source_ts,
        "gateway_ts": record.gateway_ts,
    }


class FileSink:
    def __init__(self, spec: SinkSpec, data_dir: str) -> None:
        unknown = set(spec.options) - _OPTIONS
        if unknown:
            raise FileSinkConfigError(
                f"sink {spec.id}: unknown option(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_OPTIONS))}"
            )
        raw_path = spec.options.get("path")
        if not isinstance(raw_path, str) or not raw_path.strip():
            raise FileSinkConfigError(f"sink {spec.id}: add 'options: {{path: <file>}}', the file to append to")
        path = Path(raw_path)
        self.path = path if path.is_absolute() else Path(data_dir) / path
        self.fsync = bool(spec.options.get("fsync", True))
        self.id = spec.id
        #: Highest offset written, per journal source.
        self.written: dict[str, int] = {}
        self._good_size: int | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self._start)

    def _start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.written = {}
        self._good_size = None
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            data = handle.read()
        end = data.rfind(b"\n") + 1
        self._good_size = end
        for line in data[:end].splitlines():
            try:
                item = json.loads(line)
                source, offset = str(item["source"]), int(item["offset"])
            except (ValueError, KeyError, TypeError):
                continue  # not ours, or damaged: it is kept, never rewritten
            if offset > self.written.get(source, -1):
                self.written[source] = offset

    async def deliver(self, batch: Batch) -> None:
        if not batch.records:
            return
        done = self.written.get(batch.source, -1)
        lines = [
            json.dumps(record_to_json(batch.source, offset, record), separators=(",", ":"), default=str)
            for offset, record in zip(batch.offsets, batch.records, strict=True)
            if offset > done
        ]
        if not lines:
            return
        await asyncio.to_thread(self._write, ("\n".join(lines) + "\n").encode())
        self.written[batch.source] = batch.last_offset

    def _write(self, data: bytes) -> None:
        with self.path.open("ab") as handle:
            size = handle.tell()
            if self._good_size is not None and size > self._good_size:
                # A previous write failed half-way: drop its partial line (append mode writes at the end).
                handle.truncate(self._good_size)
                size = self._good_size
            try:
                handle.write(data)
                handle.flush()
                if self.fsync:
                    os.fsync(handle.fileno())
            except OSError:
                self._good_size = size
                raise
            self._good_size = handle.tell()

    async def close(self) -> None:
        return None
