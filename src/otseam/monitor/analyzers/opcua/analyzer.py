"""The OPC UA binary analyzer: one secure channel per connection, seen from both directions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from otseam.monitor.analyzers.opcua import inventory, rules
from otseam.monitor.analyzers.opcua.parser import UaChannel, UaMessage, UaStream, looks_like_opcua

if TYPE_CHECKING:
    from otseam.monitor.engine import Monitor
    from otseam.monitor.reassembly import Chunk
    from otseam.monitor.rules import Endpoints


class OpcUaAnalyzer:
    name = "opcua"
    default_ports = frozenset({4840})

    def recognises(self, payload: bytes) -> bool:
        return looks_like_opcua(payload)

    def open(self, monitor: Monitor, ends: Endpoints) -> OpcUaConnection:
        return OpcUaConnection(monitor, ends)


class OpcUaConnection:
    __slots__ = ("channel", "ends", "monitor", "streams")

    def __init__(self, monitor: Monitor, ends: Endpoints) -> None:
        self.monitor = monitor
        self.ends = ends
        self.channel = UaChannel()
        self.streams: list[UaStream | None] = [None, None]

    def deliver(self, from_client: bool, chunk: Chunk, synced: bool) -> None:
        data, gap, frame, ts = chunk
        index = 0 if from_client else 1
        stream = self.streams[index]
        if stream is None:
            stream = self.streams[index] = UaStream(self.channel, synced)
        elif gap:
            stream.gap()
        messages: list[UaMessage] = []
        problems: list[str] = []
        stream.feed(data, frame, ts, messages, problems)
        monitor, ends = self.monitor, self.ends
        for problem in problems:
            rules.problem(monitor.detector, ends, frame, ts, problem)
        for msg in messages:
            monitor.stats.opcua_messages += 1
            if monitor.keep_records:
                monitor.ua_messages.append((ends, msg))
            rules.message(monitor.detector, ends, msg, from_client)
            inventory.record(
                monitor.inventory, ends.client, ends.server, msg.service if from_client else None, msg.security, msg.ts
            )

    def close(self) -> None:
        pass  # OPC UA requests are not matched with responses: nothing is left open
