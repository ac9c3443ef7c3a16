"""A protocol is one analyzer: the engine reads a protocol it has never heard of when it is given one.

DNP3 over TCP stands in for "the next protocol": a link-layer frame starts 0x05 0x64, then its length,
control, destination and source addresses. The toy analyzer below recognises it, counts frames,
records each outstation's address in the inventory and raises one rule, and none of it touches the
engine. The traffic is real: a TCP connection on loopback, recorded by tcpdump.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from otseam.core.records import Severity
from otseam.monitor.analyzers import ANALYZERS
from otseam.monitor.capture import read_capture
from otseam.monitor.engine import Monitor
from otseam.monitor.inventory import FIELDS, register_fields
from otseam.monitor.reassembly import Chunk
from otseam.monitor.rules import RULES, Endpoints, Rule, register
from tests.monitor.traffic import tcpdump

if TYPE_CHECKING:
    from otseam.monitor.analyzers.base import ConnectionAnalysis


@pytest.fixture
def dnp3_registered() -> Iterator[None]:
    """The toy's rule and inventory field, registered as an analyzer's module does, then removed so that
    other tests in this process see the shipped set only."""
    register((Rule("DNP-900", "dnp3-test-frame", Severity.LOW, None, "a DNP3 frame (test analyzer)"),))
    register_fields("dnp3_addresses")
    try:
        yield
    finally:
        RULES.pop("DNP-900", None)
        FIELDS.remove("dnp3_addresses")


class Dnp3Connection:
    def __init__(self, monitor: Monitor, ends: Endpoints) -> None:
        self.monitor, self.ends = monitor, ends
        self.frames = 0

    def deliver(self, from_client: bool, chunk: Chunk, synced: bool) -> None:
        data = chunk.data
        pos = 0
        while pos + 10 <= len(data) and data[pos : pos + 2] == b"\x05\x64":
            destination, source = struct.unpack_from("<HH", data, pos + 4)
            self.frames += 1
            asset = self.monitor.inventory.asset(self.ends.server, chunk.ts)
            if asset is not None and from_client:
                asset.add("dnp3_addresses", destination)
            self.monitor.detector.raise_alert(
                "DNP-900", self.ends, chunk.frame, chunk.ts, f"DNP3 {destination} <- {source}", protocol="dnp3"
            )
            pos += 5 + data[pos + 2] + 5  # header, user data (no CRC blocks in this toy)

    def close(self) -> None:
        pass


class Dnp3Analyzer:
    name = "dnp3"
    default_ports = frozenset({20000})

    def recognises(self, payload: bytes) -> bool:
        return payload[:2] == b"\x05\x64"

    def open(self, monitor: Monitor, ends: Endpoints) -> ConnectionAnalysis:
        return Dnp3Connection(monitor, ends)


def test_a_new_protocol_needs_only_its_analyzer(tmp_path: Path, dnp3_registered: None) -> None:
    capture = tmp_path / "dnp3.pcap"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with tcpdump(port, capture), socket.create_connection(("127.0.0.1", port)) as client:
            server, _ = listener.accept()
            with server:
                # Two requests to outstation 10 from master 1; the port is not DNP3's 20000.
                frame = b"\x05\x64\x05\xc4" + struct.pack("<HH", 10, 1) + b"\x00\x00"
                client.sendall(frame + frame)
                assert server.recv(100)
    monitor = Monitor(analyzers=(*ANALYZERS, Dnp3Analyzer()))
    for got in read_capture(capture):
        monitor.process(got)
    monitor.finish()
    alerts = [a for a in monitor.detector.alerts if a.rule.id == "DNP-900"]
    seen = ([a.as_dict() for a in monitor.detector.alerts], monitor.stats)
    assert alerts and alerts[0].protocol == "dnp3" and alerts[0].dport == port, seen
    assert monitor.inventory.assets["127.0.0.1"].as_dict()["dnp3_addresses"] == [10], seen
    assert "dnp3" in monitor.inventory.assets["127.0.0.1"].protocols
    # Without the analyzer the same capture is not decoded at all.
    plain = Monitor()
    for got in read_capture(capture):
        plain.process(got)
    plain.finish()
    assert not plain.detector.alerts and not plain.inventory.assets
