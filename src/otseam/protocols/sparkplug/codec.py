"""Sparkplug B payloads: a lean hand-written encoder for what an edge node publishes, and a decoder.

Why hand-written: an edge node publishes hundreds of thousands of metrics a second, and building
protobuf message objects field by field costs several times more than joining pre-computed bytes.
Everything that does not change between samples (the metric's name or alias and its datatype, the
Quality property for each quality) is encoded once; a sample costs one timestamp varint, one value
and one join. The wire format is plain protobuf with the field numbers of ``sparkplug_b.proto``; the
tests decode our output with the generated module and with Eclipse Tahu's JavaScript codec.

Decoding (host side, and anything arriving from the network) uses the generated module: it is
strict, fast (upb) and never trusts lengths it has not checked.
"""

from __future__ import annotations

import dataclasses
import importlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from otseam.core.records import Quality, Value

#: The generated module (protoc output, untyped): its classes are built at import time from the schema.
pb: Any = importlib.import_module("otseam.protocols.sparkplug.sparkplug_b_pb2")

# Sparkplug datatype codes (the DataType enum of the schema).
INT8, INT16, INT32, INT64 = 1, 2, 3, 4
UINT8, UINT16, UINT32, UINT64 = 5, 6, 7, 8
FLOAT, DOUBLE, BOOLEAN, STRING, DATETIME, TEXT = 9, 10, 11, 12, 13, 14

#: Contract point type -> Sparkplug datatype.
DATATYPES: dict[str, int] = {
    "bool": BOOLEAN,
    "int16": INT16,
    "uint16": UINT16,
    "int32": INT32,
    "uint32": UINT32,
    "int64": INT64,
    "uint64": UINT64,
    "float32": FLOAT,
    "float64": DOUBLE,
    "string": STRING,
}
DATATYPE_NAMES = {value: key for key, value in pb.DataType.items()}

#: The metric property "Quality" (Int32) as Sparkplug B 3.0 defines it: 0 bad, 192 good, 500 stale.
#: Seam's ``uncertain`` (a value the driver could not confirm) is stale too: the specification has no
#: other code, and a host must not take it for good.
QUALITY_GOOD, QUALITY_STALE, QUALITY_BAD = 192, 500, 0
SPARKPLUG_QUALITY: dict[Quality, int] = {
    Quality.GOOD: QUALITY_GOOD,
    Quality.STALE: QUALITY_STALE,
    Quality.UNCERTAIN: QUALITY_STALE,
    Quality.BAD_COMM: QUALITY_BAD,
    Quality.BAD_CONFIG: QUALITY_BAD,
    Quality.BAD_DEVICE: QUALITY_BAD,
}
#: The OPC DA codes some older hosts expect (64 uncertain for stale): a deviation, chosen with
#: ``quality_codes: opc`` in the sink's options.
QUALITY_OPC_UNCERTAIN = 64
OPC_QUALITY: dict[Quality, int] = {
    **SPARKPLUG_QUALITY,
    Quality.STALE: QUALITY_OPC_UNCERTAIN,
    Quality.UNCERTAIN: QUALITY_OPC_UNCERTAIN,
}
QUALITY_CODES: dict[str, dict[Quality, int]] = {"sparkplug": SPARKPLUG_QUALITY, "opc": OPC_QUALITY}

_DOUBLE = struct.Struct("<d").pack
_FLOAT = struct.Struct("<f").pack


_ONE_BYTE = [bytes((n,)) for n in range(128)]


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer below 2**64.

    Unrolled for the lengths that dominate: one byte (lengths, small numbers) and six bytes
    (millisecond timestamps between 2004 and 2109), because this runs once or twice per metric.
    """
    if value < 0x80:
        return _ONE_BYTE[value]
    if 0x800000000 <= value < 0x40000000000:
        return bytes(
            (
                (value & 0x7F) | 0x80,
                ((value >> 7) & 0x7F) | 0x80,
                ((value >> 14) & 0x7F) | 0x80,
                ((value >> 21) & 0x7F) | 0x80,
                ((value >> 28) & 0x7F) | 0x80,
                value >> 35,
            )
        )
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field_bytes(number: int, data: bytes) -> bytes:
    """A length-delimited field."""
    return varint(number << 3 | 2) + varint(len(data)) + data


def _quality_property(code: int) -> bytes:
    # PropertySet { keys: ["Quality"], values: [PropertyValue { type: Int32, int_value: code }] }
    value = b"\x08" + varint(INT32) + b"\x18" + varint(code)
    property_set = _field_bytes(1, b"Quality") + _field_bytes(2, value)
    return _field_bytes(9, property_set)


#: The encoded ``properties`` field of a metric for each Seam quality, per code table.
QUALITY_PROPERTY_TABLES: dict[str, dict[Quality, bytes]] = {
    name: {q: _quality_property(code) for q, code in table.items()} for name, table in QUALITY_CODES.items()
}
QUALITY_PROPERTIES: dict[Quality, bytes] = QUALITY_PROPERTY_TABLES["sparkplug"]
_NULL = b"\x38\x01"  # is_null = true


class ValueMismatch(ValueError):
    """A value that cannot be encoded as the metric's datatype (the contract and the data disagree)."""


def _encode_bool(value: Value) -> bytes:
    if isinstance(value, bool | int):
        return b"\x70\x01" if value else b"\x70\x00"
    raise ValueMismatch(f"{value!r} is not a boolean")


def _integral(value: Value) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueMismatch(f"{value!r} is not a whole number")


def _int_encoder(low: int, high: int, tag: bytes, mask: int) -> Callable[[Value], bytes]:
    def encode(value: Value) -> bytes:
        number = _integral(value)
        if not low <= number <= high:
            raise ValueMismatch(f"{number} is out of range {low}..{high}")
        return tag + varint(number & mask)

    return encode


def _encode_float(value: Value) -> bytes:
    if type(value) is float or (isinstance(value, int) and not isinstance(value, bool)):
        try:
            return b"\x65" + _FLOAT(value)
        except OverflowError:
            raise ValueMismatch(f"{value!r} does not fit a 32-bit float") from None
    raise ValueMismatch(f"{value!r} is not a number")


def _encode_double(value: Value) -> bytes:
    if type(value) is float:  # the common case first: one type check, no isinstance chain
        return b"\x69" + _DOUBLE(value)
    if isinstance(value, float | int) and not isinstance(value, bool):
        return b"\x69" + _DOUBLE(float(value))
    raise ValueMismatch(f"{value!r} is not a number")


def _encode_string(value: Value) -> bytes:
    if isinstance(value, str):
        return _field_bytes(15, value.encode("utf-8"))
    raise ValueMismatch(f"{value!r} is not a string")


#: Signed integers travel as two's complement in the unsigned fields (Sparkplug B 3.0, 6.4.16):
#: 8/16/32-bit types and UInt32 in int_value (field 10), 64-bit types in long_value (field 11).
VALUE_ENCODERS: dict[int, Callable[[Value], bytes]] = {
    BOOLEAN: _encode_bool,
    INT8: _int_encoder(-(2**7), 2**7 - 1, b"\x50", 0xFFFFFFFF),
    INT16: _int_encoder(-(2**15), 2**15 - 1, b"\x50", 0xFFFFFFFF),
    INT32: _int_encoder(-(2**31), 2**31 - 1, b"\x50", 0xFFFFFFFF),
    UINT8: _int_encoder(0, 2**8 - 1, b"\x50", 0xFFFFFFFF),
    UINT16: _int_encoder(0, 2**16 - 1, b"\x50", 0xFFFFFFFF),
    UINT32: _int_encoder(0, 2**32 - 1, b"\x50", 0xFFFFFFFF),
    INT64: _int_encoder(-(2**63), 2**63 - 1, b"\x58", 0xFFFFFFFFFFFFFFFF),
    UINT64: _int_encoder(0, 2**64 - 1, b"\x58", 0xFFFFFFFFFFFFFFFF),
    DATETIME: _int_encoder(0, 2**64 - 1, b"\x58", 0xFFFFFFFFFFFFFFFF),
    FLOAT: _encode_float,
    DOUBLE: _encode_double,
    STRING: _encode_string,
    TEXT: _encode_string,
}


@dataclass(slots=True)
class MetricCodec:
    """Everything about one metric that does not change between samples, encoded once."""

    name: str
    datatype: int
    alias: int | None
    #: name + alias + datatype fields, as sent in a birth.
    birth_head: bytes
    #: the alias alone (or the name without aliases), as sent in data messages: Sparkplug 3.0 says the
    #: datatype SHOULD NOT be repeated there (payloads-metric-datatype-not-req).
    data_head: bytes
    encode_value: Callable[[Value], bytes]
    #: the encoded Quality property for each Seam quality.
    qualities: dict[Quality, bytes] = dataclasses.field(default_factory=lambda: QUALITY_PROPERTIES)

    @classmethod
    def build(
        cls,
        name: str,
        datatype: int,
        alias: int | None,
        use_alias_in_data: bool = True,
        *,
        datatype_in_data: bool = False,
        quality_codes: str = "sparkplug",
    ) -> MetricCodec:
        name_field = _field_bytes(1, name.encode("utf-8"))
        alias_field = b"\x10" + varint(alias) if alias is not None else b""
        type_field = b"\x20" + varint(datatype)
        data_head = alias_field if alias is not None and use_alias_in_data else name_field
        if datatype_in_data:
            data_head += type_field
        return cls(
            name,
            datatype,
            alias,
            name_field + alias_field + type_field,
            data_head,
            VALUE_ENCODERS[datatype],
            QUALITY_PROPERTY_TABLES[quality_codes],
        )

    def encode(self, head: bytes, value: Value, quality: Quality, ts_ms: int) -> bytes:
        """One complete ``metrics`` entry of a Payload (field 2, length-delimited)."""
        body = b"".join(
            (
                head,
                b"\x18",
                varint(ts_ms),
                _NULL if value is None else self.encode_value(value),
                self.qualities[quality],
            )
        )
        size = len(body)
        return (b"\x12" + _ONE_BYTE[size] if size < 0x80 else b"\x12" + varint(size)) + body


def encode_plain_metric(name: str, datatype: int, value: Value, ts_ms: int) -> bytes:
    """A node metric without quality (bdSeq, Node Control/Rebirth)."""
    body = _field_bytes(1, name.encode("utf-8")) + b"\x18" + varint(ts_ms) + b"\x20" + varint(datatype)
    body += VALUE_ENCODERS[datatype](value)
    return b"\x12" + varint(len(body)) + body


def encode_payload(ts_ms: int, metrics: list[bytes], seq: int | None) -> bytes:
    """A Payload from already encoded metrics. ``seq`` is None only for NDEATH."""
    head = b"\x08" + varint(ts_ms)
    tail = b"" if seq is None else b"\x18" + varint(seq)
    return head + b"".join(metrics) + tail


# --- decoding ------------------------------------------------------------------------------------


class PayloadError(ValueError):
    """Bytes that are not a Sparkplug B payload."""


def decode_payload(data: bytes) -> Any:
    """Parse a Payload with the generated module (strict; hostile input raises PayloadError)."""
    payload = pb.Payload()
    try:
        payload.ParseFromString(data)
    except Exception as exc:  # google.protobuf's DecodeError and friends: the bytes are not ours to trust
        raise PayloadError(f"not a Sparkplug B payload: {exc}") from None
    return payload


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def metric_value(metric: Any, datatype: int | None = None) -> Value:
    """The Python value of a decoded Metric, signed types sign-extended. None when is_null or no value."""
    if metric.is_null:
        return None
    kind = metric.WhichOneof("value")
    dtype = datatype if datatype is not None else metric.datatype
    if kind is None:
        return None
    if kind == "int_value":
        raw = int(metric.int_value)
        if dtype == INT8:
            return _signed(raw, 8)
        if dtype == INT16:
            return _signed(raw, 16)
        if dtype == INT32:
            return _signed(raw, 32)
        return raw
    if kind == "long_value":
        raw = int(metric.long_value)
        if dtype in (INT64, INT8, INT16, INT32):
            return _signed(raw, 64 if dtype == INT64 else {INT8: 8, INT16: 16, INT32: 32}[dtype])
        return raw
    if kind == "float_value":
        return float(metric.float_value)
    if kind == "double_value":
        return float(metric.double_value)
    if kind == "boolean_value":
        return bool(metric.boolean_value)
    if kind == "string_value":
        return str(metric.string_value)
    if kind == "bytes_value":
        return bytes(metric.bytes_value).hex()
    # DataSet, Template and extensions are not stored as scalar values.
    return None


_QUALITY_CACHE: dict[bytes, int | None] = {}


def metric_quality(metric: Any) -> int | None:
    """The OPC-style "Quality" property of a metric, if present.

    Reading a property set through the protobuf runtime builds several wrapper objects per metric;
    the serialised set is one short byte string, and a plant has only a handful of distinct ones, so
    the answer is cached per byte string (bounded: unusual sets are decoded every time).
    """
    if not metric.HasField("properties"):
        return None
    key = metric.properties.SerializeToString()
    try:
        return _QUALITY_CACHE[key]
    except KeyError:
        pass
    code = _read_quality(metric.properties)
    if len(_QUALITY_CACHE) < 1024:
        _QUALITY_CACHE[key] = code
    return code


def _read_quality(props: Any) -> int | None:
    for key, value in zip(props.keys, props.values, strict=False):
        kind = value.WhichOneof("value")
        if key == "Quality" and kind in ("int_value", "long_value"):
            return int(getattr(value, kind))
    return None
