"""From an OPC UA DataValue to a value and quality of the contract's type.

The server decides the Variant type; the contract decides what the point is. When they disagree the
sample says so (BAD_CONFIG, no value) instead of passing on something of the wrong kind. Pure
functions, no I/O: fuzzed in the tests with arbitrary values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from otseam.contract.models import INTEGER_RANGES
from otseam.core.records import Quality, Value
from otseam.drivers.opcua._ua import ua

#: Status codes that mean "the contract names something this server does not have or will not give".
CONFIG_STATUSES = frozenset(
    {
        ua.StatusCodes.BadNodeIdUnknown,
        ua.StatusCodes.BadNodeIdInvalid,
        ua.StatusCodes.BadAttributeIdInvalid,
        ua.StatusCodes.BadNotReadable,
        ua.StatusCodes.BadUserAccessDenied,
        ua.StatusCodes.BadIndexRangeInvalid,
        ua.StatusCodes.BadDataEncodingInvalid,
        ua.StatusCodes.BadDataEncodingUnsupported,
        ua.StatusCodes.BadTypeMismatch,
        ua.StatusCodes.BadMonitoredItemFilterUnsupported,
        ua.StatusCodes.BadFilterNotAllowed,
        ua.StatusCodes.BadDeadbandFilterInvalid,
        ua.StatusCodes.BadNotSupported,
    }
)
#: The server says its own source (a PLC behind it) does not answer: no answer, like a lost link.
COMM_STATUSES = frozenset(
    {
        ua.StatusCodes.BadNoCommunication,
        ua.StatusCodes.BadCommunicationError,
        ua.StatusCodes.BadNotConnected,
        ua.StatusCodes.BadServerNotConnected,
        ua.StatusCodes.BadDeviceFailure,
        ua.StatusCodes.BadWaitingForInitialData,
    }
)

_SEVERITY_MASK = 0xC0000000
_UNCERTAIN_BITS = 0x40000000
_STATUS_MASK = 0xFFFF0000
#: Timestamps before this are "not set" (DateTime 0 decodes to 1601-01-01).
_EARLIEST = 86400.0


_WRONG = object()
#: What a converter returns for a value it cannot take.
WRONG = _WRONG


def status_quality(code: int) -> Quality:
    """GOOD, UNCERTAIN, or the kind of Bad (config, comm, device) a status code stands for."""
    severity = code & _SEVERITY_MASK
    if severity == 0:
        return Quality.GOOD
    if severity == _UNCERTAIN_BITS:
        return Quality.UNCERTAIN
    base = code & _STATUS_MASK
    if base in CONFIG_STATUSES:
        return Quality.BAD_CONFIG
    if base in COMM_STATUSES:
        return Quality.BAD_COMM
    return Quality.BAD_DEVICE


def status_name(code: int) -> str:
    try:
        return str(ua.StatusCode(code & _STATUS_MASK).name)
    except Exception:  # an unknown code from a hostile or newer server
        return f"0x{code:08X}"


def _as_bool(value: Any) -> object:
    if value is True or value is False:
        return value
    if isinstance(value, int):  # a PLC's 0/1 in an integer node
        return value != 0
    return _WRONG


def _as_float(value: Any) -> object:
    if value.__class__ is float:  # the common case first: this runs once per value received
        return value
    if value is True or value is False or not isinstance(value, int | float):
        return _WRONG
    return float(value)


def _make_int(low: int, high: int) -> Callable[[Any], object]:
    def convert(value: Any) -> object:
        if value is True or value is False:
            return _WRONG
        if isinstance(value, float):
            if not math.isfinite(value) or not value.is_integer():
                return _WRONG
            value = int(value)
        if not isinstance(value, int) or not low <= value <= high:
            return _WRONG
        return value

    return convert


def _make_string(length: int | None) -> Callable[[Any], object]:
    def convert(value: Any) -> object:
        if isinstance(value, ua.LocalizedText):
            value = value.Text
        if not isinstance(value, str):
            return _WRONG
        return value[:length] if length else value

    return convert


def converter(kind: str, length: int | None = None) -> Callable[[Any], object]:
    """A function from a Variant's Python value to the contract type, returning ``_WRONG`` if impossible."""
    if kind == "bool":
        return _as_bool
    if kind in ("float32", "float64"):
        return _as_float
    if kind == "string":
        return _make_string(length)
    low, high = INTEGER_RANGES[kind]
    return _make_int(low, high)


def is_wrong(value: object) -> bool:
    return value is _WRONG


def timestamp(value: datetime | None) -> float | None:
    """Seconds since the epoch, or None for a missing or unset (year 1601) timestamp."""
    if value is None:
        return None
    try:
        seconds = value.timestamp()
    except (OverflowError, OSError, ValueError):
        return None
    return seconds if seconds > _EARLIEST else None


def decode(
    data: ua.DataValue | None, convert: Callable[[Any], object], received: float
) -> tuple[Value, Quality, float]:
    """(value, quality, source timestamp) of one DataValue for a point whose converter is ``convert``."""
    if data is None:
        return None, Quality.BAD_DEVICE, received
    status = data.StatusCode
    code = status.value if status is not None else 0
    ts = timestamp(data.SourceTimestamp) or timestamp(data.ServerTimestamp) or received
    quality = status_quality(code)
    if quality > Quality.UNCERTAIN:
        return None, quality, ts
    variant = data.Value
    raw = variant.Value if variant is not None else None
    if raw is None:
        # Good status but no value: the server has nothing usable for us.
        return None, Quality.BAD_DEVICE, ts
    value = convert(raw)
    if value is _WRONG:
        return None, Quality.BAD_CONFIG, ts
    return value, quality, ts  # type: ignore[return-value]
