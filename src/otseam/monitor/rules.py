"""Detections: each rule has a stable id, a severity and the MITRE ATT&CK for ICS technique it evidences.

This module holds what is common to every protocol: the rule table, alerts, folding, bursts, and the
rules about flows (MB-020, MB-021, INV-001) and TCP (TCP-001). Each analyzer's own rules are in its
folder (``analyzers/modbus/rules.py``, ``analyzers/opcua/rules.py``) and register themselves here.

The ids never change meaning once published (a SOC writes suppressions against them); a rule that is
retired keeps its id unused. Rules that need to know who may talk to whom (MB-001, MB-002, MB-020 to
MB-022, UA-001) stay silent without an allow-list; all the others work on any capture.

Repeated alerts are folded: the same rule for the same client and server (its address and port: two
Modbus services on one gateway are two targets), unit and function fires once per ``SUPPRESS_SECONDS``
of capture time, and the number folded is counted, so a scan of ten thousand requests is one alert that
says so rather than ten thousand lines. A write to one port is never hidden in the alert of another.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from otseam.core.records import Severity
from otseam.monitor.allowlist import Policy

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
        Rule("MB-020", "flow-not-allowed", _H, "T0848", "a flow that no declared device and conduit allows"),
        Rule("MB-021", "new-pair-after-baseline", _M, "T0848", "a master/slave pair not seen in the baseline"),
        Rule("INV-001", "undeclared-device", _M, None, "a Modbus or OPC UA server the contract does not declare"),
        Rule(
            "TCP-001",
            "conflicting-retransmission",
            _H,
            "T0820",
            "a TCP retransmission or overlap that carries different bytes for a range already seen (evasion)",
        ),
    )
}
#: The rule for each protocol's traffic on a port other than its own (registered by the analyzers).
UNUSUAL_PORT_RULES: dict[str, str] = {}


def register(rules: tuple[Rule, ...], *, unusual_port: tuple[str, str] | None = None) -> None:
    """Add an analyzer's rules (and the id of its "on an unusual port" rule) to the table."""
    for rule in rules:
        if rule.id in RULES and RULES[rule.id] != rule:
            raise ValueError(f"rule id {rule.id} is registered twice")
        RULES[rule.id] = rule
    if unusual_port is not None:
        protocol, rule_id = unusual_port
        UNUSUAL_PORT_RULES[protocol] = rule_id


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
        # is one finding, not one per code or port it tried.
        per_pair = rule_id in _FOLD_PER_PAIR
        fold_key = (
            rule_id,
            ends.client,
            ends.server,
            None if per_pair else ends.sport,
            unit,
            None if per_pair else function,
            key,
        )
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

    def burst(self, key: tuple[Any, ...], ts: float, limits: tuple[int, float]) -> bool:
        burst = self._bursts.get(key)
        if burst is None:
            if len(self._bursts) >= self.MAX_KEYS:
                self._bursts.clear()
            burst = self._bursts[key] = _Burst()
        return burst.hit(ts, *limits)

    # --- flows ----------------------------------------------------------------------------------

    def flow(self, ends: Endpoints, protocol: str, frame: int, ts: float, unusual_port: bool) -> None:
        """A new connection carrying an industrial protocol."""
        rule_id = UNUSUAL_PORT_RULES.get(protocol)
        if unusual_port and rule_id is not None:
            rule = rule_id
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
