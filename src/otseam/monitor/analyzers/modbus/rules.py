"""The Modbus/TCP detections (MB-001 to MB-019, MB-022): Digital Bond's Quickdraw and Suricata's
Modbus events, with the ATT&CK for ICS technique each evidences."""

from __future__ import annotations

from otseam.core.records import Severity
from otseam.monitor.analyzers.modbus.parser import Message, StreamFault
from otseam.monitor.rules import RULES as ALL_RULES
from otseam.monitor.rules import Detector, Endpoints, Rule, register
from otseam.protocols.modbus.tables import (
    EXCEPTION_NAMES,
    FUNCTION_NAMES,
    PUBLIC_FUNCTIONS,
    READ_FUNCTIONS,
    UMAS,
    USER_DEFINED,
    WRITE_FUNCTIONS,
)

_H, _M, _L, _C = Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.CRITICAL
RULES = (
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
    Rule("MB-004", "restart-communications", _H, "T0816", "diagnostics 0x0001 restarts the device's communications"),
    Rule("MB-005", "clear-counters", _M, "T0814", "diagnostics 0x000A/0x0014 wipes the device's counters"),
    Rule("MB-006", "device-identification", _L, "T0888", "function 43/14 reads vendor, product and revision"),
    Rule("MB-007", "report-server-id", _L, "T0888", "function 17 reads the server id and run state"),
    Rule("MB-008", "function-code-scan", _H, "T0846", "a burst of exception 01 (illegal function)"),
    Rule("MB-009", "address-sweep", _M, "T0861", "a burst of exception 02 (illegal data address)"),
    Rule("MB-010", "umas-program-download", _C, "T0843", "UMAS program download to the controller"),
    Rule("MB-011", "umas-program-upload", _H, "T0845", "UMAS program upload from the controller"),
    Rule("MB-012", "umas-run-stop", _C, "T0858", "UMAS start or stop of the controller"),
    Rule("MB-013", "umas-engineering", _M, "T0871", "another UMAS engineering function"),
    Rule("MB-014", "non-modbus-on-modbus-port", _M, "T0869", "traffic on a Modbus port that is not Modbus"),
    Rule("MB-015", "modbus-on-unusual-port", _M, "T0869", "Modbus/TCP on a port other than 502/802"),
    Rule("MB-016", "malformed-frame", _M, None, "protocol id not 0, length mismatch, PDU over 253 bytes"),
    Rule("MB-017", "unassigned-function-code", _M, None, "a function code the specification does not assign"),
    Rule("MB-018", "busy-acknowledge-storm", _M, "T0814", "a burst of exceptions 05 (acknowledge) or 06 (busy)"),
    Rule("MB-019", "repeated-writes", _H, "T0806", "high-rate writes to the same coil or register"),
    Rule("MB-022", "function-not-allowed", _M, "T0855", "a function code outside the pair's allow-list"),
)
register(RULES, unusual_port=("modbus", "MB-015"))

#: Burst thresholds: (count, seconds of capture time).
SCAN_BURST = (5, 30.0)
SWEEP_BURST = (5, 30.0)
STORM_BURST = (10, 30.0)
WRITE_BURST = (20, 10.0)
BROWSE_BURST = (20, 10.0)

_UMAS_DOWNLOAD = frozenset({0x30, 0x31, 0x32})
_UMAS_UPLOAD = frozenset({0x33, 0x34, 0x35})
_UMAS_RUN_STOP = frozenset({0x40, 0x41})


def stream_fault(detector: Detector, ends: Endpoints, fault: StreamFault) -> None:
    rule = "MB-016" if fault.kind == "malformed" else "MB-014"
    what = "malformed Modbus/TCP" if fault.kind == "malformed" else "traffic that is not Modbus/TCP"
    detector.raise_alert(rule, ends, fault.frame, fault.ts, f"{what} on port {ends.sport}: {fault.detail}")


def request(detector: Detector, ends: Endpoints, msg: Message) -> None:
    fc = msg.function
    frame, ts, unit = msg.frame, msg.ts, msg.unit
    name = FUNCTION_NAMES.get(fc, f"function {fc}")
    if msg.problem is not None:
        detector.raise_alert(
            "MB-016", ends, frame, ts, f"malformed {name} request: {msg.problem}", unit=unit, function=fc
        )
    policy = detector.policy
    if policy is not None:
        allowed = policy.is_master(ends.client, ends.server)
        if allowed is False:
            if fc in WRITE_FUNCTIONS:
                detector.raise_alert(
                    "MB-001",
                    ends,
                    frame,
                    ts,
                    f"{name} to unit {unit} from {ends.client}, not an allowed master",
                    unit=unit,
                    function=fc,
                )
            elif fc in READ_FUNCTIONS:
                detector.raise_alert(
                    "MB-002",
                    ends,
                    frame,
                    ts,
                    f"{name} of unit {unit} by {ends.client}, not an allowed master",
                    unit=unit,
                    function=fc,
                )
        elif allowed and not policy.function_allowed(ends.client, ends.server, fc):
            detector.raise_alert(
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
            detector.raise_alert(
                "MB-003", ends, frame, ts, f"force listen only mode sent to unit {unit}", unit=unit, function=fc
            )
        elif sub == 0x0001:
            detector.raise_alert(
                "MB-004", ends, frame, ts, f"restart communications sent to unit {unit}", unit=unit, function=fc
            )
        elif sub in (0x000A, 0x0014):
            detector.raise_alert(
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
        detector.raise_alert(
            "MB-006", ends, frame, ts, f"device identification read from unit {unit}", unit=unit, function=fc
        )
    elif fc == 17:
        detector.raise_alert("MB-007", ends, frame, ts, f"report server id sent to unit {unit}", unit=unit, function=fc)
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
        what = ALL_RULES[rule].description
        detector.raise_alert(
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
        detector.raise_alert(
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
        if detector.burst(key, ts, WRITE_BURST):
            count, seconds = WRITE_BURST
            detector.raise_alert(
                "MB-019",
                ends,
                frame,
                ts,
                f"{count} or more {name} to address {msg.address} of unit {unit} within {seconds:g} s",
                unit=unit,
                function=fc,
                key=msg.address,
            )


def response(detector: Detector, ends: Endpoints, msg: Message) -> None:
    fc = msg.function
    if msg.problem is not None:
        name = FUNCTION_NAMES.get(fc, f"function {fc}")
        detector.raise_alert(
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
    if detector.burst((rule, ends.client, ends.server), msg.ts, limits):
        count, seconds = limits
        detector.raise_alert(
            rule,
            ends,
            msg.frame,
            msg.ts,
            f"{count} or more {EXCEPTION_NAMES[code]} exceptions from {ends.server} to {ends.client} within {seconds:g} s",
            unit=msg.unit,
        )
