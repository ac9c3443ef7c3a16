"""Batch codec: a run of records to one payload and back, without per-field Python code.

A batch of samples is stored column-wise: ``zip(*samples)`` turns the NamedTuples into five tuples in
C, the qualities become one ``bytes`` object, and ``marshal`` (C, the format of ``.pyc`` files, stable
within a Python version and simple to reason about) serialises the lot. Decoding rebuilds the
NamedTuples with ``tuple.__new__`` mapped over ``zip`` so no Python frame runs per sample. This is what
makes 2-3 million samples/s possible in CPython; a per-record ``struct.pack`` loop manages about a tenth.

A run of samples that arrives already in the columnar format of :mod:`otseam.core.columns` (the IT
side of the diode) is stored as it is, one frame per run, and decoded by that module.

Events are rare (alarms, audit records): they are stored row-wise with ``data`` as JSON text, because
``data`` may hold anything JSON-serialisable and marshal must never meet an object it cannot write.

marshal is only ever fed by this module and read back after a CRC check (see segments.py), and a payload
that still fails to decode is reported as corrupt, never trusted blindly.
"""

from __future__ import annotations

import json
import marshal
from collections.abc import Sequence
from functools import partial
from typing import Any

from otseam.core import columns
from otseam.core.columns import SampleColumns
from otseam.core.records import Event, Quality, Record, Sample, Severity, Value

#: Frame kinds (one byte in the frame header).
KIND_SAMPLES = 1
KIND_EVENTS = 2
KIND_COLUMNS = 3
#: Every kind a frame header may carry (segments.plausible refuses the rest before reading a payload).
KINDS = (KIND_SAMPLES, KIND_EVENTS, KIND_COLUMNS)

#: marshal format version; 4 shares repeated string objects (point keys) by reference.
_MARSHAL_VERSION = 4

_QUALITIES = tuple(Quality)
_SEVERITIES = tuple(Severity)
_new_sample = partial(tuple.__new__, Sample)
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


def encode(kind: int, records: Sequence[Item]) -> bytes:
    """One run of records of one ``kind`` to a payload."""
    if kind == KIND_SAMPLES:
        return _encode_samples(records)  # type: ignore[arg-type]
    if kind == KIND_COLUMNS:
        (run,) = records
        return run.payload  # type: ignore[union-attr]
    return _encode_events(records)  # type: ignore[arg-type]


def _encode_samples(samples: Sequence[Sample]) -> bytes:
    points, values, qualities, source_ts, gateway_ts = zip(*samples, strict=True)
    quality_bytes = _quality_bytes(qualities)
    try:
        return marshal.dumps((points, values, quality_bytes, source_ts, gateway_ts), _MARSHAL_VERSION)
    except ValueError:
        # A subclass slipped in (numpy float, an IntEnum value, a str subclass): marshal only writes
        # exact built-in types. Normalise, then encode again. Rare, so the slow path is fine.
        return marshal.dumps(
            (
                tuple(map(str, points)),
                tuple(map(_plain_value, values)),
                quality_bytes,
                tuple(map(float, source_ts)),
                tuple(map(float, gateway_ts)),
            ),
            _MARSHAL_VERSION,
        )


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
    rows = tuple(
        (
            float(e.ts),
            str(e.kind),
            str(e.source),
            int(e.severity),
            str(e.message),
            json.dumps(e.data, default=str, separators=(",", ":")),
        )
        for e in events
    )
    return marshal.dumps(rows, _MARSHAL_VERSION)


def decode(kind: int, payload: bytes | memoryview, count: int) -> list[Record]:
    """A payload back to records; raises :class:`CorruptPayload` if it is not what the header says."""
    if kind == KIND_COLUMNS:
        try:
            decoded = columns.decode(payload).records
        except columns.ColumnsError as exc:
            raise CorruptPayload(f"payload does not decode: {exc}") from None
        if len(decoded) != count:
            raise CorruptPayload(f"payload holds {len(decoded)} records, header says {count}")
        return decoded
    try:
        data = marshal.loads(payload)
        if kind == KIND_SAMPLES:
            points, values, qualities, source_ts, gateway_ts = data
            records: list[Record] = list(
                map(
                    _new_sample,
                    zip(points, values, map(_QUALITIES.__getitem__, qualities), source_ts, gateway_ts, strict=True),
                )
            )
        elif kind == KIND_EVENTS:
            records = [
                _new_event((ts, k, source, _SEVERITIES[severity], message, json.loads(data_json)))
                for ts, k, source, severity, message, data_json in data
            ]
        else:
            raise CorruptPayload(f"unknown frame kind {kind}")
    except CorruptPayload:
        raise
    except (ValueError, TypeError, EOFError, IndexError, KeyError) as exc:
        raise CorruptPayload(f"payload does not decode: {exc}") from None
    if len(records) != count:
        raise CorruptPayload(f"payload holds {len(records)} records, header says {count}")
    return records
