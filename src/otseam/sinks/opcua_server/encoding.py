"""OPC UA binary encoding of a DataValue, precompiled for the shapes this server writes.

asyncua encodes a DataValue by walking its dataclass fields in Python, about 10 µs each; the sink's
values are almost always a scalar of one of the point types with a StatusCode and two timestamps, which
one precompiled ``struct`` call encodes. Anything else (arrays, picoseconds, other types) goes through
asyncua's own encoder, so the bytes are always the ones asyncua would send (the tests compare them).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import datetime
from typing import Any

from asyncua.ua.ua_binary import create_type_serializer

from otseam.sinks.opcua_server._ua import ua

#: DataValue encoding mask (OPC 10000-6, 5.2.2.17): Value, StatusCode, SourceTimestamp, ServerTimestamp.
_FULL_MASK = 0x01 | 0x02 | 0x04 | 0x08

_SCALARS: dict[Any, str] = {
    ua.VariantType.Boolean: "?",
    ua.VariantType.SByte: "b",
    ua.VariantType.Byte: "B",
    ua.VariantType.Int16: "h",
    ua.VariantType.UInt16: "H",
    ua.VariantType.Int32: "i",
    ua.VariantType.UInt32: "I",
    ua.VariantType.Int64: "q",
    ua.VariantType.UInt64: "Q",
    ua.VariantType.Float: "f",
    ua.VariantType.Double: "d",
}
#: mask, variant type byte, value, status code, source and server timestamps (100 ns since 1601).
_FULL: dict[Any, struct.Struct] = {vt: struct.Struct(f"<BB{fmt}Iqq") for vt, fmt in _SCALARS.items()}
#: A value that is not there (a bad quality): a Null variant, the status, both timestamps.
_NULL = struct.Struct("<BBIqq")
_STRING_HEAD = struct.Struct("<BBi")
_STATUS_TIMES = struct.Struct("<Iqq")

_generic: Callable[[Any], bytes] = create_type_serializer(ua.DataValue)
_ticks: Callable[[datetime], int] = ua.datetime_to_win_epoch
#: The server timestamp is one datetime for a whole batch: its ticks are computed once.
_server_ticks: list[Any] = [None, 0]


def _server(server: datetime) -> int:
    if _server_ticks[0] is not server:
        _server_ticks[:] = [server, _ticks(server)]
    ticks: int = _server_ticks[1]
    return ticks


def encode_datavalue(dv: Any) -> bytes:
    """The DataValue as asyncua would put it on the wire."""
    variant = dv.Value
    status = dv.StatusCode
    source = dv.SourceTimestamp
    server = dv.ServerTimestamp
    if (
        variant is None
        or status is None
        or source is None
        or server is None
        or dv.SourcePicoseconds is not None
        or dv.ServerPicoseconds is not None
        or variant.is_array
        or variant.Dimensions is not None
    ):
        return _generic(dv)
    vtype = variant.VariantType
    value = variant.Value
    full = _FULL.get(vtype)
    if full is not None and value is not None and type(value) is not list and type(value) is not tuple:
        return full.pack(_FULL_MASK, vtype.value, value, status.value, _ticks(source), _server(server))
    if vtype is ua.VariantType.Null and value is None:
        return _NULL.pack(_FULL_MASK, 0, status.value, _ticks(source), _server(server))
    if vtype is ua.VariantType.String and type(value) is str:
        text = value.encode("utf-8")
        return b"".join(
            (
                _STRING_HEAD.pack(_FULL_MASK, vtype.value, len(text)),
                text,
                _STATUS_TIMES.pack(status.value, _ticks(source), _server(server)),
            )
        )
    return _generic(dv)
