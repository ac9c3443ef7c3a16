"""Strict parsers for the small value languages of the contract.

Each parser raises ``ValueError`` with a message that says what was expected, so the loader can show
it next to the file position. Bare numbers are refused where a unit is needed: "500" could be
milliseconds or seconds, and guessing wrong on a plant floor is worse than asking.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d)\s*$")
_DURATION_FACTORS = {"ms": 0.001, "s": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: object) -> float:
    """``"500ms"``, ``"2s"``, ``"5min"``, ``"1h"``, ``"7d"`` → seconds. ``0`` is accepted bare."""
    if isinstance(text, bool):
        raise ValueError("expected a duration such as '500ms', '2s', '5min', '1h' or '7d', not a boolean")
    if isinstance(text, int | float) and text == 0:
        return 0.0
    if not isinstance(text, str):
        raise ValueError(f"expected a duration with a unit such as '500ms', '2s', '5min', '1h' or '7d', got {text!r}")
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration: write a number and a unit (ms, s, min, h, d), e.g. '500ms'")
    return float(match.group(1)) * _DURATION_FACTORS[match.group(2)]


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|min|h|d)\s*$")
_RATE_DIVISORS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_rate(text: object) -> float:
    """``"20/s"``, ``"1/min"``, ``"10/h"`` → events per second."""
    if not isinstance(text, str) or isinstance(text, bool):
        raise ValueError(f"expected a rate such as '20/s', '6/min' or '10/h', got {text!r}")
    match = _RATE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a rate: write a count, a slash and a unit (s, min, h, d), e.g. '20/s'")
    return float(match.group(1)) / _RATE_DIVISORS[match.group(2)]


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$")
_SIZE_FACTORS = {
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}


def parse_size(text: object) -> int:
    """``"2GiB"``, ``"500MB"``, ``"64KiB"`` → bytes."""
    if not isinstance(text, str) or isinstance(text, bool):
        raise ValueError(f"expected a size such as '512MiB' or '2GiB', got {text!r}")
    match = _SIZE.match(text)
    if not match:
        raise ValueError(
            f"{text!r} is not a size: write a number and a unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. '2GiB'"
        )
    return int(float(match.group(1)) * _SIZE_FACTORS[match.group(2)])


def format_duration(seconds: float) -> str:
    if seconds and seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}min"
    return f"{seconds:g}s"


# --- Modbus addresses ------------------------------------------------------------------------------

ModbusTable = Literal["co", "di", "hr", "ir"]
MODBUS_TABLES: dict[str, str] = {
    "co": "coil",
    "di": "discrete input",
    "hr": "holding register",
    "ir": "input register",
}
_MODBUS = re.compile(r"^(co|di|hr|ir):(\d{1,5})(?:\.(\d{1,2}))?\Z")


@dataclass(frozen=True, slots=True)
class ModbusAddress:
    """A zero-based protocol address in one of the four tables, optionally a bit of a register."""

    table: ModbusTable
    address: int
    bit: int | None = None

    def __str__(self) -> str:
        return f"{self.table}:{self.address}" + (f".{self.bit}" if self.bit is not None else "")

    @property
    def is_bit_table(self) -> bool:
        return self.table in ("co", "di")


def parse_modbus_address(text: object) -> ModbusAddress:
    """``"hr:100"``, ``"ir:0"``, ``"co:5"``, ``"di:12"``, ``"hr:100.3"`` (bit 3 of a register).

    Addresses are the zero-based numbers on the wire, not the 4xxxx "register numbers" of old manuals.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a Modbus address such as 'hr:100' or 'co:5', got {text!r}")
    match = _MODBUS.match(text.strip())
    if not match:
        raise ValueError(
            f"{text!r} is not a Modbus address: write table:address with table one of co, di, hr, ir "
            "and a zero-based address, e.g. 'hr:100', or 'hr:100.3' for bit 3 of a register"
        )
    table, address, bit = match.group(1), int(match.group(2)), match.group(3)
    if address > 65535:
        raise ValueError(f"{text!r}: Modbus addresses run from 0 to 65535")
    if bit is not None:
        if table not in ("hr", "ir"):
            raise ValueError(f"{text!r}: a bit index only makes sense in a register table (hr, ir)")
        if int(bit) > 15:
            raise ValueError(f"{text!r}: a register has bits 0 to 15")
    return ModbusAddress(table, address, int(bit) if bit is not None else None)  # type: ignore[arg-type]


# --- OPC UA node ids --------------------------------------------------------------------------------

_NODEID = re.compile(r"^(?:ns=(\d{1,5});)?(i|s|g|b)=(.+)$", re.DOTALL)
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")


@dataclass(frozen=True, slots=True)
class NodeId:
    namespace: int
    kind: Literal["i", "s", "g", "b"]
    identifier: str

    def __str__(self) -> str:
        prefix = f"ns={self.namespace};" if self.namespace else ""
        return f"{prefix}{self.kind}={self.identifier}"


def parse_node_id(text: object) -> NodeId:
    """``"ns=2;s=Tank.Level"``, ``"ns=3;i=1001"``, ``"i=2258"`` (the standard string form)."""
    if not isinstance(text, str):
        raise ValueError(f"expected an OPC UA node id such as 'ns=2;s=Tank.Level', got {text!r}")
    match = _NODEID.match(text.strip())
    if not match:
        raise ValueError(
            f"{text!r} is not an OPC UA node id: write 'ns=<index>;<i|s|g|b>=<identifier>', "
            "e.g. 'ns=2;s=Tank.Level' or 'ns=3;i=1001'"
        )
    ns, kind, ident = int(match.group(1) or 0), match.group(2), match.group(3)
    if ns > 65535:
        raise ValueError(f"{text!r}: namespace indexes run from 0 to 65535")
    if kind == "i" and (not ident.isdigit() or int(ident) > 0xFFFFFFFF):
        raise ValueError(f"{text!r}: a numeric identifier (i=) must be a whole number from 0 to 4294967295")
    if kind == "g" and not _GUID.match(ident):
        raise ValueError(f"{text!r}: a GUID identifier (g=) looks like 09087e75-8e5e-499b-954f-f2a9603db28a")
    return NodeId(ns, kind, ident)  # type: ignore[arg-type]


# --- command windows --------------------------------------------------------------------------------

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME_RANGE = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\Z")
_DAY_LIST = re.compile(r"^[A-Za-z]{3}(?:\s*-\s*[A-Za-z]{3})?(?:\s*,\s*[A-Za-z]{3}(?:\s*-\s*[A-Za-z]{3})?)*\Z")


@dataclass(frozen=True, slots=True)
class WindowPart:
    #: Days the part applies to, 0 = Monday.
    days: frozenset[int]
    #: Minutes since midnight; ``end`` may be 1440 (24:00). ``end < start`` runs past midnight.
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Window:
    """When a command may run: ``"Mon-Fri 06:00-18:00; Sat 08:00-12:00"``. Empty means any time."""

    parts: tuple[WindowPart, ...]

    def allows(self, weekday: int, minute: int) -> bool:
        """Whether a moment (weekday 0 = Monday, minute of the day) falls inside the window."""
        if not self.parts:
            return True
        for part in self.parts:
            if part.start <= part.end:
                if weekday in part.days and part.start <= minute < part.end:
                    return True
            elif (weekday in part.days and minute >= part.start) or (
                (weekday - 1) % 7 in part.days and minute < part.end
            ):
                return True
        return False


def _parse_days(text: str, whole: str) -> frozenset[int]:
    if not _DAY_LIST.match(text):
        raise ValueError(f"{whole!r}: {text!r} is not a list of days; write e.g. 'Mon-Fri' or 'Sat,Sun'")
    days: set[int] = set()
    for item in text.split(","):
        first, _, last = (s.strip().lower() for s in item.partition("-"))
        for name in (first, last or first):
            if name not in DAYS:
                raise ValueError(f"{whole!r}: {name!r} is not a day; use Mon, Tue, Wed, Thu, Fri, Sat, Sun")
        a, b = DAYS.index(first), DAYS.index(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(days)


def _parse_minutes(hours: str, minutes: str, whole: str) -> int:
    h, m = int(hours), int(minutes)
    if m > 59 or h > 24 or (h == 24 and m):
        raise ValueError(f"{whole!r}: {hours}:{minutes} is not a time of day (00:00 to 24:00)")
    return h * 60 + m


def parse_window(text: object) -> Window:
    """``"Mon-Fri 06:00-18:00"``, ``"Sat,Sun 08:00-12:00; Mon-Fri 22:00-06:00"``, ``"Mon-Fri"``, ``""``.

    A time range whose end is before its start runs past midnight into the next day.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a window such as 'Mon-Fri 06:00-18:00', got {text!r}")
    parts: list[WindowPart] = []
    for raw in text.split(";"):
        chunk = raw.strip()
        if not chunk:
            if text.strip():
                raise ValueError(f"{text!r}: an empty part between ';' separators")
            continue
        days_text, _, time_text = chunk.rpartition(" ")
        match = _TIME_RANGE.match(time_text.strip())
        if match is None and any(c.isdigit() for c in time_text):
            raise ValueError(
                f"{text!r}: {time_text.strip()!r} is not a time range; write HH:MM-HH:MM, e.g. 06:00-18:00"
            )
        if match is None:
            # No time range: the whole part is days, all day long.
            days_text, start, end = chunk, 0, 24 * 60
        else:
            start = _parse_minutes(match.group(1), match.group(2), text)
            end = _parse_minutes(match.group(3), match.group(4), text)
            if start == end:
                raise ValueError(f"{text!r}: a window from {time_text.split('-')[0]} to the same time is empty")
        days = _parse_days(days_text.strip(), text) if days_text.strip() else frozenset(range(7))
        parts.append(WindowPart(days, start, end))
    return Window(tuple(parts))
