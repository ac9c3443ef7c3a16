"""A run of samples as columns: the diode's sample block and, as it arrives, an IT journal frame.

One format for both so that the IT side of the diode can store a block exactly as it was sent, after
checking it, instead of rebuilding every sample as a Python object only to serialise it again (that
round trip was more than half of the receiver's CPU). Readers of the journal decode it like any frame.

    tag=3 | u32 count | u32 json length | u8 value kind
          | {"s": source, "p": [distinct point, ...], "v": [value, ...] or null}
          | point uint32[count] (index into "p") | offsets int64[count] | quality uint8[count]
          | source_ts float64[count] | gateway_ts float64[count]
          | values: kind 1 (all floats): float64[count]
                    kind 2 (all text): length in characters uint32[count], u32 n, UTF-8 text (n bytes)
                    kind 0 (anything else): none here, the values are "v" in the JSON document

``offsets`` are the sender's journal offsets (the receiver deduplicates by them); the point table
carries each key once and makes the decoded samples share one string object per key. Every column but
the JSON document is a packed little-endian array, so encoding and decoding run in C rather than once
per sample, and long text values are not escape-scanned character by character.

:func:`inspect` checks everything :func:`decode` checks without building a single sample; a payload
passes one exactly when it passes the other (tested), so a frame stored after :func:`inspect` always
decodes for the journal's readers.
"""

from __future__ import annotations

import contextlib
import json
import struct
import sys
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import accumulate
from typing import Any

from otseam.core.records import Quality, Record, Sample

TAG = 3
_HEAD = struct.Struct("<BIIB")
_LENGTH = struct.Struct("<I")
_FLOAT = struct.Struct("<d")
VALUES_JSON, VALUES_FLOAT, VALUES_TEXT = 0, 1, 2
_QUALITIES = list(Quality)
_SCALARS = {bool, int, float, str, type(None)}
_SWAP = sys.byteorder != "little"
_new_sample = partial(tuple.__new__, Sample)
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=True)
_ascii_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=True)


def json_bytes(document: object) -> bytes:
    """Compact JSON as UTF-8. A string holding a lone surrogate (text a device sent that was never valid
    Unicode) has no UTF-8 form: then the whole document is written with \\u escapes, which JSON
    decodes back to the same string, instead of failing the batch for ever."""
    try:
        return _encoder.encode(document).encode()
    except UnicodeEncodeError:
        return _ascii_encoder.encode(document).encode()


_decoder = json.JSONDecoder()
_VALID_QUALITIES = bytes(range(len(_QUALITIES)))

#: Column type codes by size; the array module's sizes are checked once, here.
_TYPECODES = {"u1": "B", "u4": "I", "i8": "q", "f8": "d"}
if array("I").itemsize != 4 or array("q").itemsize != 8 or array("d").itemsize != 8:
    raise ImportError("this platform's C types do not match the columnar sample format")


class ColumnsError(ValueError):
    """A payload that is not a well-formed run of samples."""


@dataclass(frozen=True, slots=True)
class SampleColumns:
    """Samples already in this format, handed to the journal to be stored as they are (check them with
    :func:`inspect` first: a journal reader that cannot decode a frame skips the rest of its segment)."""

    payload: bytes
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or len(self.payload) < _HEAD.size or _HEAD.unpack_from(self.payload)[:2] != (TAG, self.count):
            raise ColumnsError("the payload's header does not hold that many samples")


@dataclass(slots=True)
class Decoded:
    source: str
    offsets: list[int]
    records: list[Record]
    #: The offsets are consecutive and increasing (lets the receiver deduplicate the run at once).
    consecutive: bool


@dataclass(frozen=True, slots=True)
class Summary:
    """What :func:`inspect` learns of a payload without decoding its samples."""

    source: str
    count: int
    first_offset: int
    last_offset: int
    consecutive: bool
    last_gateway_ts: float
    first_gateway_ts: float


def _packed(typecode: str, values: Sequence[float] | Sequence[int]) -> bytes:
    column = array(typecode, values)
    if _SWAP:
        column.byteswap()
    return column.tobytes()


#: A faster encoder for the common runs, handed over by the diode when its compiled module loads (the
#: format is the core's; the C code lives with its one user at speed, and the core imports nothing of
#: the diode): byte for byte this module's output, or None where this module must decide.
_COMPILED: Callable[[str, Sequence[int], Sequence[Sample]], bytes | None] | None = None


def use_compiled_encoder(encoder: Callable[[str, Sequence[int], Sequence[Sample]], bytes | None] | None) -> None:
    global _COMPILED
    _COMPILED = encoder


def encode(source: str, offsets: Sequence[int], samples: Sequence[Sample], compiled: bool = True) -> bytes:
    """The payload for these samples. ``compiled``: let the C encoder write it where it can (all-float or
    all-str values, the bulk of the traffic), byte for byte what this function's Python gives; False
    forces the Python, which is the reference and does every other case."""
    if compiled and _COMPILED is not None:
        payload = _COMPILED(source, offsets, samples)
        if payload is not None:
            return payload
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
    meta = json_bytes({"s": source, "p": table, "v": values if value_kind == VALUES_JSON else None})
    parts = [
        _HEAD.pack(TAG, len(samples), len(meta), value_kind),
        meta,
        _packed("I", list(map(position.__getitem__, points))),
        _packed("q", offsets),
        bytes(qualities),
        _packed("d", source_ts),
        _packed("d", gateway_ts),
        *value_columns,
    ]
    return b"".join(parts)


def _column(payload: bytes | memoryview, start: int, count: int, kind: str) -> tuple[array[Any], int]:
    """A little-endian column of ``count`` values of ``kind`` at ``start``.

    The array module rather than numpy: a run holds tens to thousands of values, where numpy's fixed
    cost per call (microseconds) weighs more than the work itself.
    """
    column = array(_TYPECODES[kind])
    end = start + count * column.itemsize
    if end > len(payload):
        raise ColumnsError("payload is shorter than its columns")
    column.frombytes(payload[start:end])
    if _SWAP:
        column.byteswap()
    return column, end


def _skip(payload: bytes | memoryview, start: int, count: int, size: int) -> int:
    end = start + count * size
    if end > len(payload):
        raise ColumnsError("payload is shorter than its columns")
    return end


def _text(payload: bytes | memoryview, position: int, count: int) -> tuple[str, array[Any], int]:
    """The text column: all values as one decoded string, their lengths in characters, the end."""
    lengths, position = _column(payload, position, count, "u4")
    if position + _LENGTH.size > len(payload):
        raise ColumnsError("payload is shorter than its text column")
    (size,) = _LENGTH.unpack_from(payload, position)
    position += _LENGTH.size
    if position + size > len(payload):
        raise ColumnsError("payload is shorter than its text column")
    raw = bytes(payload[position : position + size])
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise ColumnsError("text column is not UTF-8") from None
    if sum(lengths) != len(text):
        raise ColumnsError("text lengths do not add up")
    return text, lengths, position + size


def _text_is_valid(payload: bytes | memoryview, position: int, count: int) -> int:
    """What :func:`_text` checks, without building the string when the text is ASCII (one character
    per byte: the lengths must add up to the size); returns the end of the column."""
    lengths, position = _column(payload, position, count, "u4")
    if position + _LENGTH.size <= len(payload):
        size: int = _LENGTH.unpack_from(payload, position)[0]
        end = position + _LENGTH.size + size
        if end <= len(payload) and bytes(payload[position + _LENGTH.size : end]).isascii():
            if sum(lengths) != size:
                raise ColumnsError("text lengths do not add up")
            return end
    return _text(payload, position - count * 4, count)[2]


@dataclass(slots=True)
class _Layout:
    """A checked payload: its document and where each column starts."""

    source: str
    count: int
    table: list[str]
    values: list[Any] | None
    value_kind: int
    points: array[Any]
    offsets: array[Any]
    qualities: int
    source_ts: int
    gateway_ts: int
    value_column: int
    consecutive: bool
    #: The text column decoded (value kind 2): one string, and each value's length in characters.
    text: str
    lengths: array[Any] | None


def _layout(payload: bytes | memoryview, with_text: bool) -> _Layout:
    """Every check of the format, and the positions of the columns that are only copied; the text
    column decoded only ``with_text``."""
    if len(payload) < _HEAD.size or payload[0] != TAG:
        raise ColumnsError("not a columnar sample payload")
    _, count, meta_length, value_kind = _HEAD.unpack_from(payload, 0)
    start = _HEAD.size
    if count == 0 or start + meta_length > len(payload):
        raise ColumnsError("header does not fit the payload")
    try:
        meta = _decoder.decode(bytes(payload[start : start + meta_length]).decode())
    except (ValueError, RecursionError) as exc:
        raise ColumnsError(f"document is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ColumnsError("document is not a mapping")
    source, table, values = meta.get("s"), meta.get("p"), meta.get("v")
    if not isinstance(source, str):
        raise ColumnsError("source is not a string")
    if not isinstance(table, list) or not table or set(map(type, table)) != {str}:
        raise ColumnsError("point table is not a list of keys")
    points, position = _column(payload, start + meta_length, count, "u4")
    if max(points) >= len(table):
        raise ColumnsError("point index beyond its table")
    offsets, qualities = _column(payload, position, count, "i8")
    source_ts = _skip(payload, qualities, count, 1)
    # Deleting every valid quality byte leaves nothing, in C (max() would make an int per sample).
    if bytes(payload[qualities:source_ts]).translate(None, _VALID_QUALITIES):
        raise ColumnsError(f"unknown quality {max(payload[qualities:source_ts])}")
    gateway_ts = _skip(payload, source_ts, count, 8)
    value_column = _skip(payload, gateway_ts, count, 8)
    if value_kind != VALUES_JSON and values is not None:
        raise ColumnsError("values are in two places")
    text, lengths = "", None
    if value_kind == VALUES_FLOAT:
        end = _skip(payload, value_column, count, 8)
    elif value_kind == VALUES_TEXT and with_text:
        text, lengths, end = _text(payload, value_column, count)
    elif value_kind == VALUES_TEXT:
        end = _text_is_valid(payload, value_column, count)
    elif value_kind != VALUES_JSON:
        raise ColumnsError(f"unknown value column kind {value_kind}")
    elif not isinstance(values, list) or len(values) != count or not set(map(type, values)) <= _SCALARS:
        raise ColumnsError("values do not match the count")
    else:
        end = value_column
    if end != len(payload):
        raise ColumnsError("payload has trailing bytes")
    if min(offsets) < 0:
        raise ColumnsError("offsets are not non-negative integers")
    first = offsets[0]
    # Lists compare in C; an array built from a range converts every value on the way (4x slower).
    consecutive = offsets[-1] - first == count - 1 and offsets.tolist() == list(range(first, first + count))
    return _Layout(
        source,
        count,
        table,
        values,
        value_kind,
        points,
        offsets,
        qualities,
        source_ts,
        gateway_ts,
        value_column,
        consecutive,
        text,
        lengths,
    )


def inspect(payload: bytes | memoryview) -> Summary:
    """Check ``payload`` as :func:`decode` would, without decoding a sample; raises :class:`ColumnsError`."""
    layout = _layout(payload, with_text=False)
    offsets = layout.offsets
    (last_gateway_ts,) = _FLOAT.unpack_from(payload, layout.value_column - _FLOAT.size)
    (first_gateway_ts,) = _FLOAT.unpack_from(payload, layout.gateway_ts)
    return Summary(
        layout.source, layout.count, offsets[0], offsets[-1], layout.consecutive, last_gateway_ts, first_gateway_ts
    )


def decode(payload: bytes | memoryview) -> Decoded:
    """The samples of ``payload``, with their offsets; raises :class:`ColumnsError`."""
    layout = _layout(payload, with_text=True)
    count = layout.count
    source_ts, _ = _column(payload, layout.source_ts, count, "f8")
    gateway_ts, _ = _column(payload, layout.gateway_ts, count, "f8")
    values: Any
    if layout.value_kind == VALUES_FLOAT:
        values, _ = _column(payload, layout.value_column, count, "f8")
    elif layout.lengths is not None:
        ends = list(accumulate(layout.lengths))
        # Slices of one decoded string, made in C: no Python frame per value.
        values = map(layout.text.__getitem__, map(slice, [0, *ends[:-1]], ends))
    else:
        values = layout.values
    quality = map(_QUALITIES.__getitem__, payload[layout.qualities : layout.source_ts])
    points = map(layout.table.__getitem__, layout.points)
    # tuple.__new__ through map builds the NamedTuples in C, without a Python frame per sample.
    records: list[Record] = list(map(_new_sample, zip(points, values, quality, source_ts, gateway_ts, strict=True)))
    return Decoded(layout.source, layout.offsets.tolist(), records, layout.consecutive)
