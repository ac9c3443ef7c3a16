"""Detections: each rule has a stable id, a severity and the MITRE ATT&CK for ICS technique it evidences.

The ids never change meaning once published (a SOC writes suppressions against them); a rule that is
retired keeps its id unused. Rules that need to know who may talk to whom (MB-001, MB-002, MB-020 to
MB-022, UA-001) stay silent without an allow-list; all the others work on any capture.

Repeated alerts are folded: the same rule for the same pair of hosts (and unit, function) fires once per
``SUPPRESS_SECONDS`` of capture time, and the number folded is counted, so a scan of ten thousand
requests is one alert that says so rather than ten thousand lines.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from otseam.core.records import Severity
from otseam.monitor.allowlist import Policy
from otseam.monitor.analyzers.modbus.parser import Message, StreamFault
from otseam.monitor.analyzers.opcua.parser import UaMessage
from otseam.protocols.modbus.tables import (
    EXCEPTION_NAMES,
    FUNCTION_NAMES,
    PUBLIC_FUNCTIONS,
    READ_FUNCTIONS,
    UMAS,
    USER_DEFINED,
    WRITE_FUNCTIONS,
)

SUPPRESS_SECONDS = 60.0
_FOLD_PER_PAIR = frozenset({"MB-016", "MB-017"})


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    name: str
    severity: Severity
    attack: str | None  # MITRE ATT&CK for ICS technique id
    description: str


_H, _M, _L, _C = Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.CRITICAL
RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        Rule(
            "MB-001",
            "write-from-unlisted-master",
            _H,
            "T0855",
            "a write function from a host that is not an allowed master",
        ),
        Rule(
            "MB-002",
            "read-from-unlisted-master",
            _M,
            "T0801",
            "a read function from a host that is not an allowed master",
        ),
        Rule("MB-003", "force-listen-only", _C, "T0814", "diagnostics 0x0004 silences the device until restarted"),
        Rule(
            "MB-004", "restart-communications", _H, "T0816", "diagnostics 0x0001 restarts the device's communications"
        ),
        Rule("MB-005", "clear-counters", _M, "T0814", "diagnostics 0x000A/0x0014 wipes the device's counters"),
        Rule("MB-006", "device-identification", _L, "T0888", "function 43/14 reads vendor, product and revision"),
        Rule("MB-007", "report-server-id", _L, "T0888", "function 17 reads the server id and run state"),
        Rule("MB-008", "function-code-scan", _H, "T0846", "a burst of exception 01 (illegal function)"),
        Rule("MB-009", "address-sweep", _M, "T0861", "a burst of exception 02 (illegal data address)"),
        Rule("MB-010", "umas-program-download", _C, "T0843", "UMAS program download to the controller"),
        Rule("MB-011", "umas-program-upload", _H, "T0845", "UMAS program upload from the controller"),
        Rule("MB-012", "umas-run-stop", _C, "T0858", "UMAS start or stop of the controller"),
        Rule("MB-013", "umas-engineering", _M, None, "another UMAS engineering function"),
        Rule("MB-014", "non-modbus-on-modbus-port", _M, "T0869", "traffic on a Modbus port that is not Modbus"),
        Rule("MB-015", "modbus-on-unusual-port", _M, "T0869", "Modbus/TCP on a port other than 502/802"),
        Rule("MB-016", "malformed-frame", _M, None, "protocol id not 0, length mismatch, PDU over 253 bytes"),
        Rule("MB-017", "unassigned-function-code", _M, None, "a function code the specification does not assign"),
        Rule("MB-018", "busy-acknowledge-storm", _M, "T0814", "a burst of exceptions 05 (acknowledge) or 06 (busy)"),
        Rule("MB-019", "repeated-writes", _H, "T0806", "high-rate writes to the same coil or register"),
        Rule("MB-020", "flow-not-allowed", _H, None, "a flow that no declared device and conduit allows"),
        Rule("MB-021", "new-pair-after-baseline", _M, None, "a master/slave pair not seen in the baseline"),
        Rule("MB-022", "function-not-allowed", _M, "T0855", "a function code outside the pair's allow-list"),
        Rule("INV-001", "undeclared-device", _M, None, "a Modbus or OPC UA server the contract does not declare"),
        Rule(
            "UA-001",
            "opcua-write-from-unlisted-client",
            _H,
            "T0855",
            "OPC UA Write, Call, AddNodes or DeleteNodes from a host that is not an allowed client",
        ),
        Rule("UA-002", "opcua-browse-sweep", _M, "T0861", "a burst of Browse requests"),
        Rule("UA-003", "opcua-malformed", _M, None, "a chunk that is not valid OPC UA binary"),
        Rule("UA-004", "opcua-on-unusual-port", _M, "T0869", "OPC UA binary on a port other than 4840"),
        Rule(
            "TCP-001",
            "conflicting-retransmission",
            _H,
            None,
            "a TCP retransmission or overlap that carries different bytes for a range already seen (evasion)",
        ),
    )
}

#: Burst thresholds: (count, seconds of capture time).
SCAN_BURST = (5, 30.0)
SWEEP_BURST = (5, 30.0)
STORM_BURST = (10, 30.0)
WRITE_BURST = (20, 10.0)
BROWSE_BURST = (20, 10.0)

_UMAS_DOWNLOAD = frozenset({0x30, 0x31, 0x32})
_UMAS_UPLOAD = frozenset({0x33, 0x34, 0x35})
_UMAS_RUN_STOP = frozenset({0x40, 0x41})
_UA_CHANGES = frozenset(
    {
        "WriteRequest",
        "CallRequest",
        "AddNodesRequest",
        "DeleteNodesRequest",
        "AddReferencesRequest",
        "DeleteReferencesRequest",
        "HistoryUpdateRequest",
    }
)
_UA_BROWSE = frozenset({"BrowseRequest", "BrowseNextRequest", "TranslateBrowsePathsToNodeIdsRequest"})


@dataclass(slots=True)
class Alert:
    ts: float
    frame: int
    rule: Rule
    src: str
    dst: str
    sport: int
    dport: int
    unit: int | None
    function: int | None
    message: str
    protocol: str = "modbus"
    #: How many identical alerts were folded into the previous one of this kind (see SUPPRESS_SECONDS).
    folded: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ts": round(self.ts, 6),
            "frame": self.frame,
            "src": self.src,
            "sport": self.sport,
            "dst": self.dst,
            "dport": self.dport,
            "protocol": self.protocol,
            "unit": self.unit,
            "function": self.function,
            "rule": self.rule.id,
            "name": self.rule.name,
            "attack": self.rule.attack,
            "severity": self.rule.severity.label,
            "message": self.message,
        }


@dataclass(slots=True)
class Endpoints:
    """The connection an observation belongs to, client (master) first."""

    client: str
    server: str
    cport: int
    sport: int


class _Burst:
    """Counts events in a sliding window of capture time."""

    __slots__ = ("times",)

    def __init__(self) -> None:
        self.times: deque[float] = deque()

    def hit(self, ts: float, count: int, window: float) -> bool:
        times = self.times
        times.append(ts)
        while times and ts - times[0] > window:
            times.popleft()
        if len(times) > count * 4:  # bounded: only the most recent matter
            times.popleft()
        return len(times) >= count


class Detector:
    """Turns decoded messages into alerts. One per monitor; state is per host pair, bounded."""

    MAX_KEYS = 100_000

    def __init__(self, policy: Policy | None) -> None:
        self.policy = policy
        self.alerts: list[Alert] = []
        self.folded = 0
        self._last: dict[tuple[Any, ...], Alert] = {}
        self._bursts: dict[tuple[Any, ...], _Burst] = {}

    # --- helpers --------------------------------------------------------------------------------

    def raise_alert(
        self,
        rule_id: str,
        ends: Endpoints,
        frame: int,
        ts: float,
        message: str,
        *,
        unit: int | None = None,
        function: int | None = None,
        protocol: str = "modbus",
        key: Any = None,
    ) -> None:
        rule = RULES[rule_id]
        # Malformed frames and unassigned codes fold per host pair: a fuzzer or a function-code scan
        # is one finding, not one per code it tried.
        folded_function = None if rule_id in _FOLD_PER_PAIR else function
        fold_key = (rule_id, ends.client, ends.server, unit, folded_function, key)
        previous = self._last.get(fold_key)
        if previous is not None and ts - previous.ts < SUPPRESS_SECONDS:
            previous.folded += 1
            self.folded += 1
            return
        if len(self._last) >= self.MAX_KEYS:
            self._last.clear()
        alert = Alert(
            ts, frame, rule, ends.client, ends.server, ends.cport, ends.sport, unit, function, message, protocol
        )
        self._last[fold_key] = alert
        self.alerts.append(alert)

    def _burst(self, key: tuple[Any, ...], ts: float, limits: tuple[int, float]) -> bool:
        burst = self._bursts.get(key)
        if burst is None:
            if len(self._bursts) >= self.MAX_KEYS:
                self._bursts.clear()
            burst = self._bursts[key] = _Burst()
        return burst.hit(ts, *limits)

    # --- flows ----------------------------------------------------------------------------------

    def flow(self, ends: Endpoints, protocol: str, frame: int, ts: float, unusual_port: bool) -> None:
        """A new connection carrying an industrial protocol."""
        if unusual_port:
            rule = "MB-015" if protocol == "modbus" else "UA-004"
            self.raise_alert(
                rule,
                ends,
                frame,
                ts,
                f"{protocol} to {ends.server} on port {ends.sport}",
                protocol=protocol,
                key=ends.sport,
            )
        policy = self.policy
        if policy is None:
            return
        verdict = policy.flow_verdict(ends.client, ends.server, ends.sport)
        if verdict is not None:
            rule, why = verdict
            self.raise_alert(
                rule,
                ends,
                frame,
                ts,
                f"{protocol} flow {ends.client} -> {ends.server}:{ends.sport}: {why}",
                protocol=protocol,
                key=ends.sport,
            )

    def not_modbus(self, ends: Endpoints, fault: StreamFault) -> None:
        rule = "MB-016" if fault.kind == "malformed" else "MB-014"
        what = "malformed Modbus/TCP" if fault.kind == "malformed" else "traffic that is not Modbus/TCP"
        self.raise_alert(rule, ends, fault.frame, fault.ts, f"{what} on port {ends.sport}: {fault.detail}")

    # --- Modbus ---------------------------------------------------------------------------------

    def modbus_request(self, ends: Endpoints, msg: Message) -> None:
        fc = msg.function
        frame, ts, unit = msg.frame, msg.ts, msg.unit
        name = FUNCTION_NAMES.get(fc, f"function {fc}")
        if msg.problem is not None:
            self.raise_alert(
                "MB-016", ends, frame, ts, f"malformed {name} request: {msg.problem}", unit=unit, function=fc
            )
        policy = self.policy
        if policy is not None:
            allowed = policy.is_master(ends.client, ends.server)
            if allowed is False:
                if fc in WRITE_FUNCTIONS:
                    self.raise_alert(
                        "MB-001",
                        ends,
                        frame,
                        ts,
                        f"{name} to unit {unit} from {ends.client}, not an allowed master",
                        unit=unit,
                        function=fc,
                    )
                elif fc in READ_FUNCTIONS:
                    self.raise_alert(
                        "MB-002",
                        ends,
                        frame,
                        ts,
                        f"{name} of unit {unit} by {ends.client}, not an allowed master",
                        unit=unit,
                        function=fc,
                    )
            elif allowed and not policy.function_allowed(ends.client, ends.server, fc):
                self.raise_alert(
                    "MB-022",
                    ends,
                    frame,
                    ts,
                    f"{name} is not among the functions allowed from {ends.client} to {ends.server}",
                    unit=unit,
                    function=fc,
                )
        if fc == 8 and msg.sub_function is not None:
            sub = msg.sub_function
            if sub == 0x0004:
                self.raise_alert(
                    "MB-003", ends, frame, ts, f"force listen only mode sent to unit {unit}", unit=unit, function=fc
                )
            elif sub == 0x0001:
                self.raise_alert(
                    "MB-004", ends, frame, ts, f"restart communications sent to unit {unit}", unit=unit, function=fc
                )
            elif sub in (0x000A, 0x0014):
                self.raise_alert(
                    "MB-005",
                    ends,
                    frame,
                    ts,
                    f"clear counters (sub-function 0x{sub:04x}) sent to unit {unit}",
                    unit=unit,
                    function=fc,
                    key=sub,
                )
        elif fc == 43 and msg.mei == 14:
            self.raise_alert(
                "MB-006", ends, frame, ts, f"device identification read from unit {unit}", unit=unit, function=fc
            )
        elif fc == 17:
            self.raise_alert("MB-007", ends, frame, ts, f"report server id sent to unit {unit}", unit=unit, function=fc)
        elif fc == UMAS:
            umas = msg.sub_function
            if umas in _UMAS_DOWNLOAD:
                rule = "MB-010"
            elif umas in _UMAS_UPLOAD:
                rule = "MB-011"
            elif umas in _UMAS_RUN_STOP:
                rule = "MB-012"
            else:
                rule = "MB-013"
            what = RULES[rule].description
            self.raise_alert(
                rule,
                ends,
                frame,
                ts,
                f"{what} (UMAS 0x{(umas or 0):02x}) on unit {unit}",
                unit=unit,
                function=fc,
                key=umas,
            )
        elif fc not in PUBLIC_FUNCTIONS and fc not in USER_DEFINED:
            self.raise_alert(
                "MB-017",
                ends,
                frame,
                ts,
                f"function code {fc} is not assigned by the Modbus specification",
                unit=unit,
                function=fc,
            )
        if fc in WRITE_FUNCTIONS and msg.address is not None:
            key = ("write", ends.server, unit, fc, msg.address)
            if self._burst(key, ts, WRITE_BURST):
                count, seconds = WRITE_BURST
                self.raise_alert(
                    "MB-019",
                    ends,
                    frame,
                    ts,
                    f"{count} or more {name} to address {msg.address} of unit {unit} within {seconds:g} s",
                    unit=unit,
                    function=fc,
                    key=msg.address,
                )

    def modbus_response(self, ends: Endpoints, msg: Message) -> None:
        fc = msg.function
        if msg.problem is not None:
            name = FUNCTION_NAMES.get(fc, f"function {fc}")
            self.raise_alert(
                "MB-016",
                ends,
                msg.frame,
                msg.ts,
                f"malformed {name} response: {msg.problem}",
                unit=msg.unit,
                function=fc,
            )
        code = msg.exception
        if code is None:
            return
        if code == 1:
            rule, limits = "MB-008", SCAN_BURST
        elif code == 2:
            rule, limits = "MB-009", SWEEP_BURST
        elif code in (5, 6):
            rule, limits = "MB-018", STORM_BURST
        else:
            return
        if self._burst((rule, ends.client, ends.server), msg.ts, limits):
            count, seconds = limits
            self.raise_alert(
                rule,
                ends,
                msg.frame,
                msg.ts,
                f"{count} or more {EXCEPTION_NAMES[code]} exceptions from {ends.server} to {ends.client} within {seconds:g} s",
                unit=msg.unit,
            )

    # --- OPC UA ---------------------------------------------------------------------------------

    def opcua(self, ends: Endpoints, msg: UaMessage, from_client: bool) -> None:
        if msg.problem is not None:
            self.raise_alert(
                "UA-003", ends, msg.frame, msg.ts, f"OPC UA {msg.message_type}: {msg.problem}", protocol="opcua"
            )
        if not from_client or msg.service is None:
            return
        if (
            msg.service in _UA_CHANGES
            and self.policy is not None
            and self.policy.is_master(ends.client, ends.server) is False
        ):
            self.raise_alert(
                "UA-001",
                ends,
                msg.frame,
                msg.ts,
                f"OPC UA {msg.service} from {ends.client}, not an allowed client",
                protocol="opcua",
                key=msg.service,
            )
        if msg.service in _UA_BROWSE and self._burst(("browse", ends.client, ends.server), msg.ts, BROWSE_BURST):
            count, seconds = BROWSE_BURST
            self.raise_alert(
                "UA-002",
                ends,
                msg.frame,
                msg.ts,
                f"{count} or more browse requests within {seconds:g} s",
                protocol="opcua",
            )

    def opcua_problem(self, ends: Endpoints, frame: int, ts: float, problem: str) -> None:
        self.raise_alert("UA-003", ends, frame, ts, problem, protocol="opcua")
