"""Records ⇄ block payloads: what one FEC stripe carries before it is split into fragments.

Two formats, chosen per run of records. A run of samples (the bulk of the traffic) is the columnar
format of :mod:`otseam.core.columns` (tag 3), which the IT side can store in its journal as it arrives.
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

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from otseam.core import columns
from otseam.core.records import Event, Quality, Record, Sample, Severity

FORMAT_JSON = 1
FORMAT_SAMPLES = columns.TAG
VALUES_JSON, VALUES_FLOAT, VALUES_TEXT = columns.VALUES_JSON, columns.VALUES_FLOAT, columns.VALUES_TEXT


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


def encode(source: str, offsets: Sequence[int], records: Sequence[Record]) -> bytes:
    if records and set(map(type, records)) == {Sample}:
        return columns.encode(source, offsets, records)  # type: ignore[arg-type]
    body = {"s": source, "o": list(offsets), "r": [_record(r) for r in records]}
    return bytes([FORMAT_JSON]) + columns.json_bytes(body)


def encode_split(source: str, offsets: Sequence[int], records: Sequence[Record], max_size: int) -> list[bytes]:
    """Encode, splitting into as many blocks as needed so that none exceeds ``max_size`` bytes."""
    return list(iter_split(source, offsets, records, max_size))


def iter_split(source: str, offsets: Sequence[int], records: Sequence[Record], max_size: int) -> Iterator[bytes]:
    """:func:`encode_split` one block at a time. A sender that sends each block before it encodes the
    next reuses the same memory for all of them; a list of a whole batch's blocks (megabytes) is fresh
    memory every time, which the C library hands back to the system after each batch, and faulting it
    in again cost more than the encoding itself.

    The chunk size comes from the encoded size of a small sample, so a large batch is encoded about
    once rather than once whole and again in pieces.
    """
    if len(offsets) != len(records):
        raise BlockError("offsets and records differ in length")
    count = len(records)
    if not count:
        return
    probe = min(count, 128)
    per_record = len(encode(source, offsets[:probe], records[:probe])) / probe
    step = max(1, int(max_size * 0.9 / per_record))
    for start in range(0, count, step):
        chunk_offsets, chunk = offsets[start : start + step], records[start : start + step]
        encoded = encode(source, chunk_offsets, chunk)
        if len(encoded) <= max_size:
            yield encoded
        elif len(chunk) == 1:
            # A record larger than a whole block cannot cross. Retrying would block the sink forever,
            # dropping it silently would lose it: an event takes its offset and says what happened.
            yield encode(source, chunk_offsets, [_too_large(chunk[0], len(encoded), max_size)])
        else:
            half = len(chunk) // 2
            yield from iter_split(source, chunk_offsets[:half], chunk[:half], max_size)
            yield from iter_split(source, chunk_offsets[half:], chunk[half:], max_size)


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


def decode(payload: bytes) -> Block:
    if payload and payload[0] == FORMAT_SAMPLES:
        try:
            decoded = columns.decode(payload)
        except columns.ColumnsError as exc:
            raise BlockError(f"block: {exc}") from None
        return Block(decoded.source, decoded.offsets, decoded.records, decoded.consecutive)
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
