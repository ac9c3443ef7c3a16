"""The OPC UA detections (UA-001 to UA-004)."""

from __future__ import annotations

from otseam.core.records import Severity
from otseam.monitor.analyzers.opcua.parser import UaMessage
from otseam.monitor.rules import Detector, Endpoints, Rule, register

_H, _M, _L, _C = Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.CRITICAL
RULES = (
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
)
register(RULES, unusual_port=("opcua", "UA-004"))

#: Burst threshold: (count, seconds of capture time).
BROWSE_BURST = (20, 10.0)
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


def message(detector: Detector, ends: Endpoints, msg: UaMessage, from_client: bool) -> None:
    if msg.problem is not None:
        detector.raise_alert(
            "UA-003", ends, msg.frame, msg.ts, f"OPC UA {msg.message_type}: {msg.problem}", protocol="opcua"
        )
    if not from_client or msg.service is None:
        return
    if (
        msg.service in _UA_CHANGES
        and detector.policy is not None
        and detector.policy.is_master(ends.client, ends.server) is False
    ):
        detector.raise_alert(
            "UA-001",
            ends,
            msg.frame,
            msg.ts,
            f"OPC UA {msg.service} from {ends.client}, not an allowed client",
            protocol="opcua",
            key=msg.service,
        )
    if msg.service in _UA_BROWSE and detector.burst(("browse", ends.client, ends.server), msg.ts, BROWSE_BURST):
        count, seconds = BROWSE_BURST
        detector.raise_alert(
            "UA-002",
            ends,
            msg.frame,
            msg.ts,
            f"{count} or more browse requests within {seconds:g} s",
            protocol="opcua",
        )


def problem(detector: Detector, ends: Endpoints, frame: int, ts: float, problem: str) -> None:
    detector.raise_alert("UA-003", ends, frame, ts, problem, protocol="opcua")
