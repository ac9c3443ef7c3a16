"""The two kinds of record that flow drivers → pipeline → journal → sinks.

Both are NamedTuples on purpose: they are created hundreds of thousands of times a second, a tuple is
the cheapest immutable object Python has, and the journal can serialise them without per-field code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NamedTuple


class Quality(IntEnum):
    """How much a value can be trusted. A value is never reported as fresher than it is."""

    GOOD = 0
    #: The value is the last one known, but the source has not confirmed it in time (stale).
    STALE = 1
    #: The source answered, but something about the value is doubtful (e.g. clamped, sensor flag).
    UNCERTAIN = 2
    #: No answer from the device: connection lost, timeout, garbled response.
    BAD_COMM = 3
    #: The contract and the device disagree: illegal address, wrong type, decode impossible.
    BAD_CONFIG = 4
    #: The device answered with an error for this point (Modbus exception, OPC UA Bad status).
    BAD_DEVICE = 5

    @property
    def is_good(self) -> bool:
        return self is Quality.GOOD

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


class Severity(IntEnum):
    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()


Value = bool | int | float | str | None


class Sample(NamedTuple):
    """One value of one point.

    ``point`` is the contract's global point key, ``"<device id>/<point id>"``.
    Timestamps are seconds since the Unix epoch (UTC): ``source_ts`` is when the device produced or
    answered with the value, ``gateway_ts`` when Seam received it.
    """

    point: str
    value: Value
    quality: Quality
    source_ts: float
    gateway_ts: float


class Event(NamedTuple):
    """Something that happened: an alarm, a monitor alert, an audit record, a device state change.

    ``kind`` is a dotted category (``alarm``, ``alert``, ``audit``, ``device.state``,
    ``journal.overflow``, ...); ``source`` names what raised it (a point key, a device id, a rule id);
    ``data`` carries JSON-serialisable details.
    """

    ts: float
    kind: str
    source: str
    severity: Severity
    message: str
    data: dict[str, Any]


Record = Sample | Event


def device_state(device_id: str, state: str, severity: Severity, **details: Any) -> Event:
    """The event a driver emits when its device goes ``online`` or ``offline``.

    One shape for every driver, because sinks act on it (Sparkplug sends DBIRTH/DDEATH).
    """
    return Event(now(), "device.state", device_id, severity, f"{device_id} is {state}", {"state": state, **details})


def now() -> float:
    """Wall-clock time in seconds since the epoch, the timestamp unit used everywhere."""
    return time.time()


@dataclass(slots=True)
class Batch:
    """Records read from a journal, with their offsets.

    ``source`` identifies the journal that assigned the offsets (one per edge installation), so that
    receivers can deduplicate by ``(source, offset)``.
    """

    source: str
    offsets: list[int] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def last_offset(self) -> int:
        return self.offsets[-1]
