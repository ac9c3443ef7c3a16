"""The contract, `seam.yaml`, as pydantic models.

Every model forbids unknown keys: a misspelt key in a plant's contract must be an error, never a
silently ignored setting. Sections that belong to later plugins (``options``) stay open mappings so
that a new driver or sink needs no change here.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

from otseam.contract.units import format_duration, parse_duration, parse_rate, parse_size, parse_window

_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}\Z")


def _check_id(value: str) -> str:
    if not _ID.match(value):
        raise ValueError(
            f"{value!r} is not a valid id: start with a letter, then letters, digits, '-' or '_' (at most 64)"
        )
    return value


Id = Annotated[str, AfterValidator(_check_id)]
#: Seconds, written in the file as "500ms", "2s", "5min", ...
Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]
#: Events per second, written as "20/s", "6/min".
Rate = Annotated[float, BeforeValidator(parse_rate)]
#: Bytes, written as "2GiB", "500MB".
Size = Annotated[int, BeforeValidator(parse_size)]


class Side(StrEnum):
    OT = "ot"
    IT = "it"
    SEAM = "seam"


class Strict(BaseModel):
    # allow_inf_nan: a NaN limit compares false with everything (an alarm that never fires, a range that
    # contains nothing yet passes its low < high check); infinity is no engineering value either.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=False, allow_inf_nan=False)


# --- site and people --------------------------------------------------------------------------------


class Site(Strict):
    """The ISA-95 path that roots every topic and browse path."""

    enterprise: Id
    site: Id
    area: Id | None = None
    line: Id | None = None
    description: str = ""

    @property
    def path(self) -> list[str]:
        return [p for p in (self.enterprise, self.site, self.area, self.line) if p]


class Person(Strict):
    id: Id
    name: str
    side: Side
    role: str
    contact: str = ""


# --- zones and conduits -----------------------------------------------------------------------------

PURDUE_LEVELS = (0, 1, 2, 3, 3.5, 4, 5)


def _purdue_level(value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a Purdue level: use 0, 1, 2, 3, 3.5 (the DMZ), 4 or 5") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or value not in PURDUE_LEVELS:
        raise ValueError(f"{value!r} is not a Purdue level: use 0, 1, 2, 3, 3.5 (the DMZ), 4 or 5")
    return float(value)


#: 0 process, 1 basic control, 2 supervisory, 3 site operations, 3.5 the IT/OT DMZ, 4-5 enterprise.
PurdueLevel = Annotated[float, BeforeValidator(_purdue_level)]


class Zone(Strict):
    id: Id
    name: str = ""
    level: PurdueLevel
    #: IEC 62443 target security level, 1 to 4.
    security_level: Annotated[int, Field(ge=1, le=4)] = Field(alias="sl")
    owner: Id | None = None
    description: str = ""

    @property
    def side(self) -> Side:
        if self.level == 3.5:
            return Side.SEAM
        return Side.OT if self.level <= 3 else Side.IT


class Direction(StrEnum):
    ONE_WAY = "one-way"
    TWO_WAY = "two-way"


class Conduit(Strict):
    id: Id
    from_zone: Id = Field(alias="from")
    to_zone: Id = Field(alias="to")
    direction: Direction
    #: How bytes cross: "tcp", "tls", "serial", "diode" (a one-way UDP link), "mqtt", ...
    transport: str = "tcp"
    protocols: list[str] = Field(default_factory=list)
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(default_factory=list)
    owner: Id | None = None
    #: Required by rule ZONE-SL-TWO-WAY when a high-SL zone talks both ways to a lower one.
    justification: str = ""
    description: str = ""


# --- devices and points -----------------------------------------------------------------------------


class RestartTolerance(StrEnum):
    NONE = "none"  # must never be restarted outside an outage
    PLANNED = "planned"  # only in a planned window
    ANY = "any"


class Constraints(Strict):
    """What OT says about the equipment: Seam must live within these, not the other way round."""

    max_request_rate: Rate | None = None
    pause_between_requests: Duration = 0.0
    pause_after_connect: Duration = 0.0
    timeout: Duration = 2.0
    max_connections: Annotated[int, Field(ge=1)] = 1
    restart_tolerance: RestartTolerance = RestartTolerance.PLANNED
    patch_window: str = ""
    notes: str = ""


DataType = Literal["bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"]

#: The value range of each integer data type, for checks wherever a value meets a declared type.
INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}

#: Byte/word order of multi-register values, in the usual letter notation: ABCD is big-endian words
#: and bytes; CDAB swaps words (common on PLCs); BADC swaps bytes; DCBA is fully little-endian.
ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]


class Scaling(Strict):
    """engineering value = raw * factor + offset, applied by the pipeline."""

    factor: float = 1.0
    offset: float = 0.0


class Range(Strict):
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be less than high ({self.high})")
        return self


_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


class Deadband(Strict):
    """A change smaller than this is not reported. ``percent`` is of the point's range."""

    absolute: float | None = None
    percent: float | None = None


def _deadband(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a deadband is a number (absolute) or a percentage of range such as '0.5%'")
    if isinstance(value, int | float):
        return {"absolute": float(value)}
    if isinstance(value, str):
        match = _PERCENT.match(value)
        if match:
            return {"percent": float(match.group(1))}
        try:
            return {"absolute": float(value)}
        except ValueError:
            raise ValueError(
                f"{value!r} is not a deadband: write a number (absolute, in the point's unit) or a "
                "percentage of the point's range such as '0.5%'"
            ) from None
    return value


class Alarm(Strict):
    """A limit alarm: raised after the value stays beyond ``limit`` for ``delay``, cleared once it comes
    back by more than ``hysteresis``."""

    id: Id
    kind: Literal["high", "low"]
    limit: float
    hysteresis: Annotated[float, Field(ge=0)] = 0.0
    delay: Duration = 0.0
    severity: Literal["info", "low", "medium", "high", "critical"] = "high"
    message: str = ""


class Point(Strict):
    id: Id
    #: Driver-specific address: "hr:100", "co:5", "hr:7.3" (Modbus); "ns=2;s=Tank.Level" (OPC UA).
    address: str
    type: DataType = "float32"
    byte_order: ByteOrder = "ABCD"
    #: Registers a string occupies (Modbus) or characters kept.
    length: Annotated[int, Field(ge=1, le=125)] | None = None
    scale: Scaling | None = None
    clamp: Range | None = None
    #: The engineering range; needed for a percent deadband.
    range: Range | None = None
    unit: str = ""
    description: str = ""
    deadband: Annotated[Deadband | None, BeforeValidator(_deadband)] = None
    #: Report at least this often even without a change (report-by-exception heartbeat).
    heartbeat: Duration | None = None
    #: Overrides the device's poll interval.
    poll: Duration | None = None
    alarms: list[Alarm] = Field(default_factory=list)
    #: Inherits the device's owner when absent.
    owner: Id | None = None
    #: Who uses the value on the IT side (team, application); informs the interface document.
    consumers: list[str] = Field(default_factory=list)
    writable: bool = False


def _ip_address(value: Any) -> str:
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address: write the address the monitor will see on the wire, e.g. 10.20.3.5 "
            "(host names are not resolved: a passive monitor sends no DNS queries)"
        ) from None


class MonitorPolicy(Strict):
    """What the passive monitor (``seam watch``) accepts on the wire for this device.

    Zones and conduits carry no addresses, so the hosts allowed to act as Modbus/OPC UA masters of a
    device are listed here. Function codes are derived from the device's points unless listed.
    """

    allowed_masters: list[Annotated[str, BeforeValidator(_ip_address)]] = Field(default_factory=list)
    allowed_functions: list[Annotated[int, Field(ge=1, le=127)]] | None = None


class Node(Strict):
    """One machine (or one process) in one zone, running `seam run --node ID`.

    The same contract is deployed on every node; each node runs only the devices, sources and sinks
    placed on it.
    """

    id: Id
    zone: Id
    description: str = ""
    #: Where the node is reached (informative; `seam doc` shows it). Never used to open a connection.
    host: str | None = None
    #: Where the node keeps its journal, historian and state; default ``seam-data/<node id>`` beside
    #: the contract, so the nodes of one contract can also run side by side from one directory.
    data_dir: str | None = None


class Device(Strict):
    id: Id
    driver: Id
    #: The node that polls this device; may be left out when the contract has at most one node.
    node: Id | None = None
    #: "tcp://10.0.0.5:502", "rtu:///dev/ttyUSB0?baudrate=19200&parity=E", "rtu+tcp://host:4001",
    #: "opc.tcp://host:4840/path".
    endpoint: str
    unit: Annotated[int, Field(ge=0, le=255)] | None = None
    zone: Id
    owner: Id | None = None
    description: str = ""
    vendor: str = ""
    model: str = ""
    poll: Duration = 1.0
    constraints: Constraints = Field(default_factory=Constraints)
    #: Driver-specific settings, validated by the driver.
    options: dict[str, Any] = Field(default_factory=dict)
    #: The passive monitor's allow-list for this device.
    monitor: MonitorPolicy = Field(default_factory=MonitorPolicy)
    points: list[Point] = Field(default_factory=list)

    def point_owner(self, point: Point) -> str | None:
        return point.owner or self.owner

    def key(self, point: Point) -> str:
        """The global point key used in samples: ``<device>/<point>``."""
        return f"{self.id}/{point.id}"


# --- sinks, commands, objectives --------------------------------------------------------------------


class SourceSpec(Strict):
    """An input that is not PLC polling: the IT end of a one-way conduit, passive capture, a
    Sparkplug host. Its records go straight into the node's journal (they are not scaled again)."""

    id: Id
    #: The source plugin: "diode_receive", "capture", "sparkplug_host", ...
    type: Id
    #: The node that runs it; may be left out when the contract has at most one node.
    node: Id | None = None
    #: The conduit the data arrives through; None for inputs inside the node's zone (a span port).
    conduit: Id | None = None
    owner: Id | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class SinkSpec(Strict):
    id: Id
    #: The sink plugin: "historian", "postgres", "sparkplug", "uns_json", "diode_send", ...
    type: Id
    #: The node that runs it; may be left out when the contract has at most one node.
    node: Id | None = None
    #: The conduit the data leaves through; None for sinks that stay in the zone (a local historian).
    conduit: Id | None = None
    #: Point keys or glob patterns ("plc1/*"); empty means every point.
    points: list[str] = Field(default_factory=list)
    #: Also forward events (alarms, alerts, audit) to this sink.
    events: bool = True
    owner: Id | None = None
    options: dict[str, Any] = Field(default_factory=dict)


def _check_window(value: str) -> str:
    parse_window(value)  # raises ValueError with the reason
    return value


#: When a command may run, e.g. "Mon-Fri 06:00-18:00; Sat 08:00-12:00" (see units.parse_window).
WindowText = Annotated[str, AfterValidator(_check_window)]


class ApproverSpec(Strict):
    side: Side
    role: str


class Command(Strict):
    """An IT→OT write that may exist. Nothing else can ever be written to a PLC."""

    id: Id
    #: The point key, "<device>/<point>".
    point: str
    description: str = ""
    range: Range | None = None
    #: How often the command may be executed.
    rate: Rate | None = None
    #: When it may be executed, e.g. "Mon-Fri 06:00-18:00"; empty for any time. Parse with units.parse_window.
    window: WindowText = ""
    conduit: Id | None = None
    approvers: list[ApproverSpec] = Field(default_factory=list)
    owner: Id | None = None
    #: How far (in the point's unit) the value read back may differ from the value written, and the
    #: point may have drifted from the value the approvers saw before the OT node writes.
    tolerance: Annotated[float, Field(ge=0)] = 0.0
    #: How long the OT node waits for the written value to read back before it reports a mismatch.
    readback_timeout: Duration = 5.0


class SideView(Strict):
    ot: str
    it: str


class Objective(Strict):
    id: Id
    #: What problem the interface solves.
    problem: str
    success: SideView
    failure: SideView
    owner: Id | None = None


# --- computed points (edge processing, see docs/compute.md) ----------------------------------------


class WindowSpec(Strict):
    """An aggregate of one point's samples over a window of time, published as a point."""

    #: The point aggregated: a key such as "plc1/flow" or "computed/flow_total".
    of: str
    function: Literal["avg", "min", "max", "count", "stddev", "first", "last", "sum"]
    length: Duration
    #: Absent: tumbling windows (one value per ``length``); present: a sliding window published every ``step``.
    step: Duration | None = None


class CounterSpec(Strict):
    """A value accumulated over time whose state survives restarts (kept in the journal)."""

    #: ``total``: integrate a rate (flow to volume); ``duration``: time the input is true (run hours);
    #: ``count``: times the input went from false to true (starts).
    kind: Literal["total", "duration", "count"]
    of: str
    #: ``total``: the time unit of the input's rate ("1h" for m3/h); ``duration``: the unit of the result
    #: ("1h" gives hours). Not used by ``count``.
    per: Duration = 3600.0
    #: Samples further apart than this are not integrated across: the gap is counted, not guessed.
    max_gap: Duration = 300.0


class RateSpec(Strict):
    """Rate of change of one point, in its unit per ``per``."""

    of: str
    per: Duration = 1.0
    #: Absent: between consecutive samples; present: the slope over the samples of the last ``over``.
    over: Duration | None = None


class ConditionSpec(Strict):
    """An alarm over several points: raised once ``when`` has been true for ``delay``; cleared once
    ``clear`` (default: ``when`` is false) has been true for ``clear_delay``."""

    when: str
    clear: str | None = None
    delay: Duration = 0.0
    clear_delay: Duration = 0.0
    severity: Literal["info", "low", "medium", "high", "critical"] = "high"
    message: str = ""


class ComputedPoint(Strict):
    """A point computed on the edge from other points. Exactly one of ``expression``, ``window``,
    ``counter``, ``rate`` or ``condition`` says how. Its key is ``computed/<id>``."""

    id: Id
    #: The node that computes it; may be omitted with one node (or: the node that polls its inputs).
    node: Id | None = None
    expression: str | None = None
    #: Names usable in ``expression``, ``when`` and ``clear``: name -> point key.
    inputs: dict[str, str] = Field(default_factory=dict)
    window: WindowSpec | None = None
    counter: CounterSpec | None = None
    rate: RateSpec | None = None
    condition: ConditionSpec | None = None
    type: DataType = "float64"
    unit: str = ""
    range: Range | None = None
    description: str = ""
    deadband: Annotated[Deadband | None, BeforeValidator(_deadband)] = None
    heartbeat: Duration | None = None
    alarms: list[Alarm] = Field(default_factory=list)
    owner: Id | None = None
    consumers: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_kind(self) -> ComputedPoint:
        given = [k for k in ("expression", "window", "counter", "rate", "condition") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"computed point {self.id!r} needs exactly one of expression, window, counter, rate, condition"
                + (f" (it has {', '.join(given)})" if given else "")
            )
        return self

    @property
    def key(self) -> str:
        return f"{COMPUTED_DEVICE}/{self.id}"


#: The device part of every computed point's key.
COMPUTED_DEVICE = "computed"


class Journal(Strict):
    #: With ``nodes:``, the default is ``<node data_dir>/journal``; a path given here for several nodes
    #: must contain ``{node}`` so that nodes side by side never share one journal.
    path: str = "./seam-data/journal"
    max_size: Size = 2 * 1024**3
    max_age: Duration = 7 * 86400.0


class ControlPlane(Strict):
    """The console and REST API of every node (see otseam/control)."""

    #: Shown on the login page before anyone signs in (IEC 62443-3-3 SR 1.12, system use notification).
    banner: str = ""
    #: A session ends after this long without a request, and in any case after ``session_max``.
    session_idle: Duration = 900.0
    session_max: Duration = 8 * 3600.0
    #: Who must give a TOTP code at login: nobody, the people named as command approvers, or everyone.
    totp: Literal["off", "approvers", "everyone"] = "off"


#: The node of a contract that declares no ``nodes:`` (the single-machine form of before nodes existed).
DEFAULT_NODE = "default"


@dataclass(frozen=True, slots=True)
class Placement:
    node: str
    devices: list[Device]
    sources: list[SourceSpec]
    sinks: list[SinkSpec]


class Contract(Strict):
    version: Literal[1] = 1
    site: Site
    people: list[Person] = Field(default_factory=list)
    #: The person with authority when the two sides disagree.
    seam_owner: Id | None = None
    zones: list[Zone] = Field(default_factory=list)
    conduits: list[Conduit] = Field(default_factory=list)
    nodes: list[Node] = Field(default_factory=list)
    devices: list[Device] = Field(default_factory=list)
    sources: list[SourceSpec] = Field(default_factory=list)
    sinks: list[SinkSpec] = Field(default_factory=list)
    commands: list[Command] = Field(default_factory=list)
    objectives: list[Objective] = Field(default_factory=list)
    computed: list[ComputedPoint] = Field(default_factory=list)
    journal: Journal = Field(default_factory=Journal)
    control: ControlPlane = Field(default_factory=ControlPlane)

    # Lookups used by rules, drivers and sinks. Built on demand; contracts are small.
    def person(self, person_id: str | None) -> Person | None:
        return next((p for p in self.people if p.id == person_id), None)

    def zone(self, zone_id: str | None) -> Zone | None:
        return next((z for z in self.zones if z.id == zone_id), None)

    def conduit(self, conduit_id: str | None) -> Conduit | None:
        return next((c for c in self.conduits if c.id == conduit_id), None)

    def device(self, device_id: str | None) -> Device | None:
        return next((d for d in self.devices if d.id == device_id), None)

    def node(self, node_id: str | None) -> Node | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def node_of(self, component: Device | SourceSpec | SinkSpec) -> str:
        """The node a component runs on: its own ``node``, else the only node, else the implicit one."""
        if component.node is not None:
            return component.node
        return self.nodes[0].id if len(self.nodes) == 1 else DEFAULT_NODE

    def data_dir(self, node_id: str) -> str:
        """Where ``node_id`` keeps its data, as written (relative paths are relative to the contract)."""
        node = self.node(node_id)
        if node is None:
            # The contract without nodes keeps its data where it always did: beside its journal.
            return str(PurePosixPath(self.journal.path).parent)
        return node.data_dir or f"./seam-data/{node.id}"

    def journal_path(self, node_id: str) -> str:
        """The journal directory of ``node_id``, as written (relative to the contract)."""
        if self.node(node_id) is None:
            return self.journal.path
        if "path" in self.journal.model_fields_set:
            return self.journal.path.replace("{node}", node_id)
        return f"{self.data_dir(node_id)}/journal"

    def placement(self, node_id: str) -> Placement:
        """What runs on ``node_id``: its devices, sources and sinks, in contract order."""
        return Placement(
            node_id,
            [d for d in self.devices if self.node_of(d) == node_id],
            [s for s in self.sources if self.node_of(s) == node_id],
            [s for s in self.sinks if self.node_of(s) == node_id],
        )

    def find_point(self, key: str) -> tuple[Device, Point] | None:
        device_id, _, point_id = key.partition("/")
        device = self.device(device_id)
        if device is None:
            return None
        point = next((p for p in device.points if p.id == point_id), None)
        return (device, point) if point else None

    def point_keys(self) -> list[str]:
        """Every point key: device points, then computed points."""
        return [d.key(p) for d in self.devices for p in d.points] + [c.key for c in self.computed]
