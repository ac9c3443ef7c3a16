"""What one message carries, and reading it back (the fleet ingest decodes what this module encodes).

Three kinds, named in the ``Seam-Kind`` header:

``columns``  a run of one device's samples in the journal's column format (otseam.core.columns): the
             offsets, qualities and both timestamps as packed arrays, the point keys once each. About
             30 bytes a float sample, checked and decoded in bulk rather than field by field. This is
             the default because the cost of a NATS message in a Python client (about 27 µs of CPU for
             publish and acknowledgement, measured) is paid once per run instead of once per sample.
``sample``   one sample as compact JSON: ``{"p": point, "v": value, "q": quality, "t": source ts,
             "g": gateway ts, "s": journal, "o": offset}`` (timestamps in seconds since the epoch).
``event``    one event as JSON: ``{"s", "o", "ts", "kind", "origin", "severity", "message", "data"}``.

Every message also carries ``Nats-Msg-Id`` (the server drops a second message with the same id within
the stream's duplicate window) and ``Seam-Site`` (the site's ISA-95 path, ``/``-separated).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from otseam.core import columns
from otseam.core.records import Event, Quality, Record, Sample, Severity

KIND = "Seam-Kind"
SITE = "Seam-Site"
MSG_ID = "Nats-Msg-Id"
COLUMNS, SAMPLE, EVENT = "columns", "sample", "event"


class PayloadError(ValueError):
    """A message that is not one Seam wrote (or was damaged)."""


def message_id(source: str, first: int, last: int | None = None) -> str:
    """``<journal>:<offset>`` for one record, ``<journal>:<first>-<last>`` for a run of a device's samples.

    A run holds every sample of its device between its first and last offset (a delivery is a
    contiguous range of the journal), so the same id always names the same content, even when a restart
    cuts the journal into different deliveries."""
    return f"{source}:{first}" if last is None else f"{source}:{first}-{last}"


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def encode_sample(source: str, offset: int, sample: Sample) -> bytes:
    body = {"p": sample.point, "v": _finite(sample.value), "q": int(sample.quality), "t": sample.source_ts,
            "g": sample.gateway_ts, "s": source, "o": offset}  # fmt: skip
    return columns.json_bytes(body)


def encode_event(source: str, offset: int, event: Event) -> bytes:
    body = {"s": source, "o": offset, "ts": event.ts, "kind": event.kind, "origin": event.source,
            "severity": int(event.severity), "message": event.message, "data": event.data}  # fmt: skip
    try:
        return json.dumps(body, default=str, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:  # NaN in the details: JSON cannot hold it; keep the rest readable
        plain = json.loads(json.dumps(body, default=str), parse_constant=str)
        return json.dumps(plain, separators=(",", ":")).encode()


def encode_run(source: str, offsets: list[int], samples: list[Sample]) -> bytes:
    return columns.encode(source, offsets, samples)


@dataclass(slots=True)
class Decoded:
    site: str
    source: str
    offsets: list[int]
    records: list[Record]


def _number(document: dict[str, Any], key: str) -> float:
    value = document[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(f"{key!r} is not a number")
    return float(value)


def decode(headers: dict[str, str] | None, data: bytes) -> Decoded:
    """The records of one message; raises :class:`PayloadError` for anything malformed."""
    headers = headers or {}
    kind = headers.get(KIND)
    site = headers.get(SITE, "")
    try:
        if kind == COLUMNS:
            run = columns.decode(data)
            return Decoded(site, run.source, run.offsets, run.records)
        if kind not in (SAMPLE, EVENT):
            raise PayloadError(f"unknown {KIND} {kind!r}")
        document = json.loads(data)
        if not isinstance(document, dict):
            raise PayloadError("not a JSON object")
        source, offset = document["s"], document["o"]
        if not isinstance(source, str) or isinstance(offset, bool) or not isinstance(offset, int):
            raise PayloadError("'s' must be the journal id and 'o' its offset")
        record: Record
        if kind == SAMPLE:
            value = document["v"]
            if not isinstance(value, bool | int | float | str | type(None)):
                raise PayloadError("'v' must be a number, a boolean, text or null")
            point = document["p"]
            if not isinstance(point, str):
                raise PayloadError("'p' must be the point key")
            record = Sample(point, value, Quality(document["q"]), _number(document, "t"), _number(document, "g"))
        else:
            data_field = document["data"]
            if not isinstance(data_field, dict):
                raise PayloadError("'data' must be an object")
            record = Event(_number(document, "ts"), str(document["kind"]), str(document["origin"]),
                           Severity(document["severity"]), str(document["message"]), data_field)  # fmt: skip
        return Decoded(site, source, [offset], [record])
    except PayloadError:
        raise
    except (columns.ColumnsError, ValueError, KeyError, TypeError) as exc:
        raise PayloadError(f"{kind} message: {exc}") from None
