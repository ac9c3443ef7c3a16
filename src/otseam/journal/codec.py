"""Batch codec: a run of records to one frame payload and back (on-disk format 2).

Format 2 has two frame kinds, both documented byte for byte and independent of the Python version:

* kind 3, samples: the columnar format of :mod:`otseam.core.columns` (the diode's sample block). Runs of
  :class:`Sample` are encoded into it here; a run that arrives already encoded (the IT side of the
  diode) is stored as it is. Columns are packed little-endian arrays, so encoding and decoding run in C
  rather than once per sample.
* kind 4, events: a UTF-8 JSON array of ``[ts, kind, source, severity, message, data]`` rows. Events are
  rare (alarms, audit records, alerts); ``data`` may hold anything JSON can carry.

Format 1 (Seam before this version) stored samples (kind 1) and event rows (kind 2) with ``marshal``,
which is stable only within one Python version: it is no longer written nor read (see journal.py for
what opening such a journal says). A payload that passed its checksum but still fails to decode is
reported as corrupt, never trusted blindly.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from functools import partial
from typing import Any

from otseam.core import columns
from otseam.core.columns import SampleColumns
from otseam.core.records import Event, Quality, Record, Sample, Severity, Value

#: The on-disk format this module writes and reads (journal.json's "format").
FORMAT = 2
#: Kinds of runs of records, as split_runs cuts a batch.
KIND_SAMPLES = 1
KIND_EVENTS = 2
KIND_COLUMNS = 3
#: Frame kinds (one byte in the frame header) of format 2.
FRAME_COLUMNS = 3
FRAME_EVENTS = 4
#: Every kind a frame header may carry (segments.plausible refuses the rest before reading a payload).
KINDS = (FRAME_COLUMNS, FRAME_EVENTS)
#: Frame kinds only format 1 wrote (marshal).
FORMAT_1_KINDS = (1, 2)

_QUALITIES = tuple(Quality)
_SEVERITIES = tuple(Severity)
_new_event = partial(tuple.__new__, Event)


class CorruptPayload(ValueError):
    """A payload that passed its checksum but does not decode into records."""


Item = Record | SampleColumns


def split_runs(records: Sequence[Item]) -> list[tuple[int, Sequence[Item]]]:
    """Cut a batch into consecutive runs of one kind; order is preserved (offsets follow it). Each
    :class:`SampleColumns` is a run of its own."""
    kinds = set(map(type, records))
    if kinds == {Sample}:
        return [(KIND_SAMPLES, records)]
    if kinds == {Event}:
        return [(KIND_EVENTS, records)]
    runs: list[tuple[int, Sequence[Item]]] = []
    start = 0
    current = 0
    for index, record in enumerate(records):
        kind = _kind_of(record)
        if (kind != current or kind == KIND_COLUMNS) and index > start:
            runs.append((current, records[start:index]))
            start = index
        current = kind
    if start < len(records):
        runs.append((current, records[start:]))
    return runs


def _kind_of(record: object) -> int:
    if isinstance(record, Sample):
        return KIND_SAMPLES
    if isinstance(record, Event):
        return KIND_EVENTS
    if isinstance(record, SampleColumns):
        return KIND_COLUMNS
    raise TypeError(f"the journal stores Sample and Event records, not {type(record).__name__}")


def run_length(kind: int, records: Sequence[Item]) -> int:
    """How many records (and so offsets) a run of ``kind`` holds."""
    if kind == KIND_COLUMNS:
        return sum(run.count for run in records if isinstance(run, SampleColumns))
    return len(records)


def encode(kind: int, records: Sequence[Item]) -> tuple[int, bytes]:
    """One run of records of one ``kind`` to ``(frame kind, payload)``."""
    if kind == KIND_SAMPLES:
        return FRAME_COLUMNS, _encode_samples(records)  # type: ignore[arg-type]
    if kind == KIND_COLUMNS:
        (run,) = records
        return FRAME_COLUMNS, run.payload  # type: ignore[union-attr]
    return FRAME_EVENTS, _encode_events(records)  # type: ignore[arg-type]


def _encode_samples(samples: Sequence[Sample]) -> bytes:
    # The frame header carries the offsets; the column of offsets inside counts from 0.
    try:
        payload = columns.encode("", range(len(samples)), samples)
    except (TypeError, ValueError):
        # A type JSON cannot write slipped in (a numpy integer, say), or a quality that is no byte:
        # normalise, then encode again. Rare, so the slow path is fine.
        _quality_bytes(tuple(s[2] for s in samples))
        plain = [
            tuple.__new__(Sample, (str(s[0]), _plain_value(s[1]), s[2], float(s[3]), float(s[4]))) for s in samples
        ]
        payload = columns.encode("", range(len(plain)), plain)
    # Every quality must be one a reader knows, or the frame would not decode: checked on the encoded
    # column (after the 10-byte head, the JSON table, 4-byte point indexes and 8-byte offsets), in C.
    count, table_length = _COLUMNS_HEAD.unpack_from(payload, 1)
    start = _COLUMNS_HEAD_SIZE + table_length + 12 * count
    if payload[start : start + count].translate(None, _VALID_QUALITY_BYTES):
        raise ValueError(f"a sample's quality must be an otseam Quality (0..{len(_QUALITIES) - 1})")
    return payload


_COLUMNS_HEAD = struct.Struct("<II")  # count and JSON table length, after the tag byte
_COLUMNS_HEAD_SIZE = 10  # tag u8, count u32, JSON length u32, value kind u8
_VALID_QUALITY_BYTES = bytes(range(len(_QUALITIES)))


def _quality_bytes(qualities: tuple[Any, ...]) -> bytes:
    try:
        encoded = bytes(qualities)
    except (TypeError, ValueError):
        raise ValueError("a sample's quality must be an otseam Quality") from None
    if encoded and max(encoded) >= len(_QUALITIES):
        raise ValueError(f"a sample's quality must be an otseam Quality (0..{len(_QUALITIES) - 1})")
    return encoded


def _plain_value(value: object) -> Value:
    if value is None or type(value) in (bool, int, float, str):
        return value  # type: ignore[return-value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    # numpy scalars and the like: they know how to become a plain number.
    item = getattr(value, "item", None)
    if callable(item):
        plain = item()
        if plain is None or type(plain) in (bool, int, float, str):
            return plain  # type: ignore[no-any-return]
    raise ValueError(f"a sample's value must be a bool, int, float, str or None, not {type(value).__name__}")


def _encode_events(events: Sequence[Event]) -> bytes:
    rows = [[float(e.ts), str(e.kind), str(e.source), int(e.severity), str(e.message), e.data] for e in events]
    # ensure_ascii: lone surrogates and control characters travel as escapes, the file stays ASCII.
    return json.dumps(rows, default=str, separators=(",", ":"), ensure_ascii=True).encode()


def decode(kind: int, payload: bytes | memoryview, count: int) -> list[Record]:
    """A payload back to records; raises :class:`CorruptPayload` if it is not what the header says."""
    if kind == FRAME_COLUMNS:
        try:
            decoded = columns.decode(payload).records
        except columns.ColumnsError as exc:
            raise CorruptPayload(f"payload does not decode: {exc}") from None
        if len(decoded) != count:
            raise CorruptPayload(f"payload holds {len(decoded)} records, header says {count}")
        return decoded
    if kind in FORMAT_1_KINDS:
        raise CorruptPayload(f"frame kind {kind} belongs to journal format 1 (marshal), which is no longer read")
    if kind != FRAME_EVENTS:
        raise CorruptPayload(f"unknown frame kind {kind}")
    try:
        rows = json.loads(bytes(payload))
        if type(rows) is not list:
            raise ValueError("not a list of events")
        records: list[Record] = [
            _new_event((_number(ts), _text(k), _text(source), _severity(severity), _text(message), data))
            for ts, k, source, severity, message, data in rows
        ]
    except (ValueError, TypeError, RecursionError) as exc:
        raise CorruptPayload(f"payload does not decode: {exc}") from None
    if len(records) != count:
        raise CorruptPayload(f"payload holds {len(records)} records, header says {count}")
    return records


def _text(value: object) -> str:
    if type(value) is not str:
        raise ValueError(f"{value!r} is not text")
    return value


def _severity(value: object) -> Severity:
    if type(value) is not int or not 0 <= value < len(_SEVERITIES):
        raise ValueError(f"{value!r} is not a severity")
    return _SEVERITIES[value]


def _number(value: object) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):  # type: ignore[arg-type]
        raise ValueError(f"event time {value!r} is not a number")
    return float(value)  # type: ignore[arg-type]
