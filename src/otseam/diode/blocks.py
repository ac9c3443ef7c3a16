"""Records ⇄ block payloads: what one FEC stripe carries before it is split into fragments.

Two formats, chosen per run of records. A run of samples (the bulk of the traffic) is columnar,
format 3: the source and the table of distinct point keys as one compact JSON document, every other
column as a packed little-endian array, so that encoding and decoding run in C rather than once per
record:

    tag=3 | u32 count | u32 json length | u8 value kind
          | {"s": source, "p": [distinct point, ...], "v": [value, ...] or null}
          | point uint32[count] (index into "p") | offsets int64[count] | quality uint8[count]
          | source_ts float64[count] | gateway_ts float64[count]
          | values: kind 1 (all floats): float64[count]
                    kind 2 (all text): length in characters uint32[count], u32 n, UTF-8 text (n bytes)
                    kind 0 (anything else): none here, the values are "v" in the JSON document

The point table matters twice: a block carries each key once, and the decoded samples share one
string object per key, which the IT journal's encoder then writes once per frame. The text column
matters for long string values, which JSON would escape-scan character by character on both sides.

Anything else (events, or samples mixed with events) is format 1, one-byte tag then compact JSON:

    {"s": source, "o": [offset, ...], "r": [record, ...]}

with a sample as ``[0, point, value, quality, source_ts, gateway_ts]`` and an event as
``[1, ts, kind, source, severity, message, data]``. JSON because the C encoder in the standard library
is fast enough for the link rates we target (measured in bench/bench_diode.py), keeps ``True`` apart
from ``1``, and a decoder for it cannot be talked into executing anything. Blocks are authenticated
before they are decoded, but ``decode`` still checks every field: a bug on the sending side must give
a counted, reported block error, never a wrong value in a historian.
"""

from __future__ import annotations

import contextlib
import json
import struct
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from itertools import accumulate
from typing import Any

from otseam.core.records import Event, Quality, Record, Sample, Severity

FORMAT_JSON = 1
FORMAT_SAMPLES = 3
_COLUMNS = struct.Struct("<IIB")
_LENGTH = struct.Struct("<I")
VALUES_JSON, VALUES_FLOAT, VALUES_TEXT = 0, 1, 2
_QUALITIES = list(Quality)
_SCALARS = {bool, int, float, str, type(None)}
_SWAP = sys.byteorder != "little"
_new_sample = partial(tuple.__new__, Sample)

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=True)


class BlockError(ValueError):
    pass


@dataclass(slots=True)
class Block:
    source: str
    offsets: list[int]
    records: list[Record]
    #: The offsets are consecutive and increasing (lets the receiver deduplicate the run at once).
    consecutive: bool = False


def _record(record: Record) -> list[Any]:
    if isinstance(record, Sample):
        return [0, record.point, record.value, int(record.quality), record.source_ts, record.gateway_ts]
    return [1, record.ts, record.kind, record.source, int(record.severity), record.message, record.data]


def _packed(typecode: str, values: Sequence[float] | Sequence[int]) -> bytes:
    column = array(typecode, values)
    if _SWAP:
        column.byteswap()
    return column.tobytes()


def encode(source: str, offsets: Sequence[int], records: Sequence[Record]) -> bytes:
    if records and set(map(type, records)) == {Sample}:
        return _encode_samples(source, offsets, records)  # type: ignore[arg-type]
    body = {"s": source, "o": list(offsets), "r": [_record(r) for r in records]}
    return bytes([FORMAT_JSON]) + _encoder.encode(body).encode()


def _encode_samples(source: str, offsets: Sequence[int], samples: Sequence[Sample]) -> bytes:
    points, values, qualities, source_ts, gateway_ts = zip(*samples, strict=True)
    table = list(dict.fromkeys(points))
    position = {point: index for index, point in enumerate(table)}
    kinds = set(map(type, values))
    value_kind, value_columns = VALUES_JSON, []
    if kinds == {float}:
        value_kind, value_columns = VALUES_FLOAT, [_packed("d", values)]
    elif kinds == {str}:
        with contextlib.suppress(UnicodeEncodeError):  # a lone surrogate: JSON below carries it
            text = "".join(values).encode()
            value_kind = VALUES_TEXT
            value_columns = [_packed("I", list(map(len, values))), _LENGTH.pack(len(text)), text]
    meta = _encoder.encode({"s": source, "p": table, "v": values if value_kind == VALUES_JSON else None}).encode()
    parts = [
        bytes([FORMAT_SAMPLES]),
        _COLUMNS.pack(len(samples), len(meta), value_kind),
        meta,
        _packed("I", list(map(position.__getitem__, points))),
        _packed("q", offsets),
        bytes(qualities),
        _packed("d", source_ts),
        _packed("d", gateway_ts),
        *value_columns,
    ]
    return b"".join(parts)


def encode_split(source: str, offsets: Sequence[int], records: Sequence[Record], max_size: int) -> list[bytes]:
    """Encode, splitting into as many blocks as needed so that none exceeds ``max_size`` bytes.

    The chunk size comes from the encoded size of a small sample, so a large batch is encoded about
    once rather than once whole and again in pieces.
    """
    if len(offsets) != len(records):
        raise BlockError("offsets and records differ in length")
    count = len(records)
    if not count:
        return []
    probe = min(count, 128)
    per_record = len(encode(source, offsets[:probe], records[:probe])) / probe
    step = max(1, int(max_size * 0.9 / per_record))
    out: list[bytes] = []
    for start in range(0, count, step):
        chunk_offsets, chunk = offsets[start : start + step], records[start : start + step]
        encoded = encode(source, chunk_offsets, chunk)
        if len(encoded) <= max_size:
            out.append(encoded)
        elif len(chunk) == 1:
            # A record larger than a whole block cannot cross. Retrying would block the sink forever,
            # dropping it silently would lose it: an event takes its offset and says what happened.
            out.append(encode(source, chunk_offsets, [_too_large(chunk[0], len(encoded), max_size)]))
        else:
            half = len(chunk) // 2
            out.extend(encode_split(source, chunk_offsets[:half], chunk[:half], max_size))
            out.extend(encode_split(source, chunk_offsets[half:], chunk[half:], max_size))
    return out


def _too_large(record: Record, size: int, limit: int) -> Event:
    origin = record.point if isinstance(record, Sample) else record.source
    what = "sample" if isinstance(record, Sample) else f"{record.kind} event"
    return Event(
        record.gateway_ts if isinstance(record, Sample) else record.ts,
        "diode.record_too_large",
        origin[:200],
        Severity.HIGH,
        f"a {what} of {origin[:200]} encodes to {size} bytes, more than one diode block carries ({limit}); "
        "it was not sent. Raise k or datagram_size on both sides, or shrink the record at its source.",
        {"bytes": size, "limit": limit},
    )


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BlockError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise BlockError(f"expected a string, got {type(value).__name__}")
    return value


def _decode_record(item: Any) -> Record:
    if not isinstance(item, list) or not item:
        raise BlockError("a record is not a list")
    tag = item[0]
    if tag == 0 and len(item) == 6:
        _, point, value, quality, source_ts, gateway_ts = item
        if value is not None and not isinstance(value, bool | int | float | str):
            raise BlockError("a sample value is not a scalar")
        if not isinstance(quality, int) or isinstance(quality, bool) or quality not in Quality._value2member_map_:
            raise BlockError(f"unknown quality {quality!r}")
        return Sample(_text(point), value, Quality(quality), _number(source_ts), _number(gateway_ts))
    if tag == 1 and len(item) == 7:
        _, ts, kind, source, severity, message, data = item
        if not isinstance(severity, int) or isinstance(severity, bool) or severity not in Severity._value2member_map_:
            raise BlockError(f"unknown severity {severity!r}")
        if not isinstance(data, dict):
            raise BlockError("event data is not a mapping")
        return Event(_number(ts), _text(kind), _text(source), Severity(severity), _text(message), data)
    raise BlockError("a record has an unknown shape")


#: Column type codes of the block format by size; the array module's sizes are checked once, here.
_TYPECODES = {"u1": "B", "u4": "I", "i8": "q", "f8": "d"}
if array("I").itemsize != 4 or array("q").itemsize != 8 or array("d").itemsize != 8:
    raise ImportError("this platform's C types do not match the diode block format")


def _column(payload: bytes, start: int, count: int, kind: str) -> tuple[list[Any], int]:
    """A little-endian column of ``count`` values of ``kind`` at ``start``, as a list.

    The array module rather than numpy: a block holds tens to thousands of values, where numpy's
    fixed cost per call (microseconds) weighs more than the work itself.
    """
    column = array(_TYPECODES[kind])
    end = start + count * column.itemsize
    if end > len(payload):
        raise BlockError("block is shorter than its columns")
    column.frombytes(payload[start:end])
    if _SWAP:
        column.byteswap()
    return column.tolist(), end


def _text_column(payload: bytes, position: int, count: int) -> tuple[list[str], int]:
    lengths, position = _column(payload, position, count, "u4")
    if position + _LENGTH.size > len(payload):
        raise BlockError("block is shorter than its text column")
    (size,) = _LENGTH.unpack_from(payload, position)
    position += _LENGTH.size
    if position + size > len(payload):
        raise BlockError("block is shorter than its text column")
    try:
        text = payload[position : position + size].decode()
    except UnicodeDecodeError:
        raise BlockError("block text is not UTF-8") from None
    ends = list(accumulate(lengths))
    if ends[-1] != len(text):
        raise BlockError("block text lengths do not add up")
    # Slices of one decoded string, made in C: no Python frame per value.
    return list(map(text.__getitem__, map(slice, [0, *ends[:-1]], ends))), position + size


def _decode_samples(payload: bytes) -> Block:
    if len(payload) < 1 + _COLUMNS.size:
        raise BlockError("block is shorter than its header")
    count, meta_length, value_kind = _COLUMNS.unpack_from(payload, 1)
    start = 1 + _COLUMNS.size
    if count == 0 or start + meta_length > len(payload):
        raise BlockError("block header does not fit the block")
    try:
        meta = json.loads(payload[start : start + meta_length])
    except (ValueError, RecursionError) as exc:
        raise BlockError(f"block is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise BlockError("block is not a mapping")
    source, table, values = meta.get("s"), meta.get("p"), meta.get("v")
    if not isinstance(table, list) or not table or set(map(type, table)) != {str}:
        raise BlockError("block point table is not a list of keys")
    position = start + meta_length
    indexes, position = _column(payload, position, count, "u4")
    if max(indexes) >= len(table):
        raise BlockError("block point index beyond its table")
    offsets, position = _column(payload, position, count, "i8")
    qualities, position = _column(payload, position, count, "u1")
    source_ts, position = _column(payload, position, count, "f8")
    gateway_ts, position = _column(payload, position, count, "f8")
    if value_kind != VALUES_JSON and values is not None:
        raise BlockError("block values are in two places")
    if value_kind == VALUES_FLOAT:
        values, position = _column(payload, position, count, "f8")
    elif value_kind == VALUES_TEXT:
        values, position = _text_column(payload, position, count)
    elif value_kind != VALUES_JSON:
        raise BlockError(f"unknown value column kind {value_kind}")
    elif not isinstance(values, list) or len(values) != count or not set(map(type, values)) <= _SCALARS:
        raise BlockError("block values do not match its count")
    if position != len(payload):
        raise BlockError("block has trailing bytes")
    if min(offsets) < 0:
        raise BlockError("block offsets are not non-negative integers")
    first = offsets[0]
    consecutive = offsets[-1] - first == count - 1 and offsets == list(range(first, first + count))
    if max(qualities) >= len(_QUALITIES):
        raise BlockError(f"unknown quality {max(qualities)}")
    quality = map(_QUALITIES.__getitem__, qualities)
    points = map(table.__getitem__, indexes)
    # tuple.__new__ through map builds the NamedTuples in C, without a Python frame per sample.
    records: list[Record] = list(map(_new_sample, zip(points, values, quality, source_ts, gateway_ts, strict=True)))
    return Block(_text(source), offsets, records, consecutive)


def decode(payload: bytes) -> Block:
    if payload and payload[0] == FORMAT_SAMPLES:
        return _decode_samples(payload)
    if not payload or payload[0] != FORMAT_JSON:
        raise BlockError("unknown block format")
    try:
        body = json.loads(payload[1:])
    except (ValueError, RecursionError) as exc:
        raise BlockError(f"block is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BlockError("block is not a mapping")
    source, offsets, items = body.get("s"), body.get("o"), body.get("r")
    if not isinstance(offsets, list) or not isinstance(items, list) or len(offsets) != len(items):
        raise BlockError("block offsets and records do not match")
    if not all(isinstance(o, int) and not isinstance(o, bool) and 0 <= o < 2**63 for o in offsets):
        raise BlockError("block offsets are not non-negative integers")
    return Block(_text(source), offsets, [_decode_record(i) for i in items])
