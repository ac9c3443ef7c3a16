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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from otseam.contract import plugin_options
from otseam.contract.models import SinkSpec
from otseam.core.records import Batch, Event, Quality, Record, Sample
from otseam.sinks.file.options import FileSinkConfigError, Options

__all__ = ["FileSink", "FileSinkConfigError", "LineEncoder", "record_to_json"]


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


class LineEncoder:
    """Samples to JSON lines without building a dict per record.

    After a sink outage the backlog goes through here at several times the ingest rate, and
    ``json.dumps`` of a dict per record was the slowest step. The line is assembled from pieces that
    are JSON already: point keys and sources are encoded once and cached, floats use ``repr`` (valid
    JSON for finite values), and anything unusual falls back to ``json.dumps``. A test checks that
    every line parses back to what :func:`record_to_json` gives.
    """

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}
        self._labels = {q: json.dumps(q.label) for q in Quality}
        self._middles: dict[str, str] = {}

    def _key(self, text: str) -> str:
        encoded = self._keys.get(text)
        if encoded is None:
            encoded = json.dumps(text)
            if len(self._keys) < 1_000_000:
                self._keys[text] = encoded
        return encoded

    def lines(self, source: str, offsets: Sequence[int], records: Sequence[Record], done: int) -> list[str]:
        head = f'{{"source":{self._key(source)},"offset":'
        labels = self._labels
        middles = self._middles
        out: list[str] = []
        append = out.append
        last_source = last_gateway = math.nan  # NaN equals nothing: the first sample sets both
        source_text = gateway_text = ""
        for offset, record in zip(offsets, records, strict=True):
            if offset <= done:
                continue
            if record.__class__ is not Sample:
                append(json.dumps(record_to_json(source, offset, record), separators=(",", ":"), default=str))
                continue
            point, value, quality, source_ts, gateway_ts = record
            middle = middles.get(point)
            if middle is None:
                middle = self._middle(point)
            cls = value.__class__
            if cls is float:
                # x - x is 0.0 for every finite float and NaN for NaN and the infinities.
                text = repr(value) if value - value == 0.0 else "null"  # type: ignore[operator]
            elif cls is int:
                text = str(value)
            elif value is None:
                text = "null"
            elif cls is bool:
                text = "true" if value else "false"
            else:
                text = json.dumps(value, default=str)
            # A driver stamps a whole poll with one time: consecutive samples usually share it.
            if source_ts != last_source:
                last_source, source_text = source_ts, repr(source_ts)
            if gateway_ts != last_gateway:
                last_gateway = gateway_ts
                gateway_text = source_text if gateway_ts == source_ts else repr(gateway_ts)
            append(
                f'{head}{offset}{middle}{text},"quality":{labels[quality]},'
                f'"source_ts":{source_text},"gateway_ts":{gateway_text}}}'
            )
        return out

    def _middle(self, point: str) -> str:
        middle = f',"type":"sample","point":{self._key(point)},"value":'
        if len(self._middles) < 1_000_000:
            self._middles[point] = middle
        return middle


class FileSink:
    #: Records per delivery the sink runner should offer. Each delivery ends with an fsync, which on a
    #: busy disk can take a few hundred milliseconds: large batches let a backlog drain at disk speed.
    max_batch = 50_000

    def __init__(self, spec: SinkSpec, data_dir: str) -> None:
        options = plugin_options.parse(Options, spec.options, f"sink {spec.id}", FileSinkConfigError)
        path = Path(options.path)
        self.path = path if path.is_absolute() else Path(data_dir) / path
        self.fsync = options.fsync
        self.id = spec.id
        #: Highest offset written, per journal source.
        self.written: dict[str, int] = {}
        self._good_size: int | None = None
        self._encoder = LineEncoder()

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
        lines = self._encoder.lines(batch.source, batch.offsets, batch.records, done)
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
