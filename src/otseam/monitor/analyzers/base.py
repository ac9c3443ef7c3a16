"""What the engine asks of a protocol analyzer: the engine knows TCP, flows and observations; each
analyzer knows its protocol (how to recognise it, parse it, match requests and answers, and what to tell
the detector and the inventory)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from otseam.monitor.engine import Monitor
    from otseam.monitor.reassembly import Chunk
    from otseam.monitor.rules import Endpoints


class ConnectionAnalysis(Protocol):
    """One TCP connection's analysis: both directions' parsers and whatever state they share."""

    def deliver(self, from_client: bool, chunk: Chunk, synced: bool) -> None:
        """In-order bytes of one direction. ``synced``: the stream is known to start on a message
        boundary (its SYN was seen and nothing was lost); used when the direction's parser is created."""
        ...

    def close(self) -> None:
        """The connection is gone (closed, evicted or the capture ended): report what is left open."""
        ...


class Analyzer(Protocol):
    #: The protocol's name in flows, alerts and the inventory ("modbus", "opcua").
    name: str
    #: The server ports that carry it by default.
    default_ports: frozenset[int]

    def recognises(self, payload: bytes) -> bool:
        """Whether a connection's first data, on a port no analyzer claims, is this protocol."""
        ...

    def open(self, monitor: Monitor, ends: Endpoints) -> ConnectionAnalysis:
        """The analysis of a new connection of this protocol."""
        ...
