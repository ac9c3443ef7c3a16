"""The monitor: frames in; transactions, alerts and inventory changes out.

One :class:`Monitor` owns the flow table (bounded: the least recently active connection is evicted
first) and runs each connection's bytes through TCP reassembly into the analyzer of its protocol
(``analyzers/``: one folder per protocol), which hands what it finds to the detector and the inventory.
The engine itself knows no protocol: which one a connection speaks comes from the server port or, on
any other port, from the analyzers' recognition of its first bytes.

Nothing that arrives from the network can make ``process`` raise: the analysers turn bad input into
findings, and a bug that slips through is caught per frame, counted and reported, and the next frame is
processed as usual (a monitor that stops on the first odd packet is a monitor an attacker can switch off).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from otseam.monitor.allowlist import Policy
from otseam.monitor.analyzers import ANALYZERS, Analyzer, ConnectionAnalysis
from otseam.monitor.analyzers.modbus.analyzer import Transaction
from otseam.monitor.analyzers.modbus.parser import Message, StreamFault
from otseam.monitor.analyzers.opcua.parser import UaMessage
from otseam.monitor.capture import LINKTYPE_NAMES, Frame
from otseam.monitor.inventory import Change, Inventory
from otseam.monitor.packet import TCP_FIN, TCP_RST, TCP_SYN, decode_tcp, ip_text
from otseam.monitor.reassembly import Chunk, TcpDirection
from otseam.monitor.rules import Alert, Detector, Endpoints

_BY_NAME = {analyzer.name: analyzer for analyzer in ANALYZERS}
MODBUS_PORTS = _BY_NAME["modbus"].default_ports
OPCUA_PORTS = _BY_NAME["opcua"].default_ports
#: Connections tracked at once; the least recently active is evicted beyond this.
MAX_FLOWS = 20_000
_ACK = 0x10


@dataclass(slots=True)
class Observations:
    alerts: list[Alert]
    transactions: list[Transaction]
    ua_messages: list[tuple[Endpoints, UaMessage]]
    changes: list[Change]


class Connection:
    __slots__ = ("analysis", "directions", "ends", "protocol")

    def __init__(self, ends: Endpoints, protocol: str, analysis: ConnectionAnalysis) -> None:
        self.ends = ends
        self.protocol = protocol
        # Index 0: client to server; 1: server to client.
        self.directions = (TcpDirection(), TcpDirection())
        self.analysis = analysis


@dataclass(slots=True)
class MonitorStats:
    frames: int = 0
    tcp_segments: int = 0
    not_tcp: int = 0
    modbus_messages: int = 0
    opcua_messages: int = 0
    transactions: int = 0
    flows: int = 0
    evicted_flows: int = 0
    #: Frames of a link type the decoder does not read, by link type.
    unknown_link: dict[int, int] = field(default_factory=dict)
    #: Retransmissions or overlaps that carried different bytes for a range already seen (TCP-001).
    tcp_conflicts: int = 0
    #: Frames whose processing hit an internal error (a bug); kept going, reported at the end.
    internal_errors: int = 0
    errors: list[str] = field(default_factory=list)


class Monitor:
    def __init__(
        self,
        policy: Policy | None = None,
        *,
        keep_records: bool = True,
        modbus_ports: frozenset[int] = MODBUS_PORTS,
        opcua_ports: frozenset[int] = OPCUA_PORTS,
        ports: dict[str, frozenset[int]] | None = None,
        max_flows: int = MAX_FLOWS,
        analyzers: Sequence[Analyzer] = ANALYZERS,
    ) -> None:
        """``ports``: the server ports of each analyzer by its name (``modbus_ports`` and ``opcua_ports``
        are shorthands for the two analyzers shipped); an analyzer not named keeps its default ports.
        ``analyzers``: the protocols read, in the order content recognition tries them."""
        self.policy = policy
        self.detector = Detector(policy)
        declared = (
            {ip: server.device for ip, server in policy.declared.items()} if policy and policy.from_contract else None
        )
        self.inventory = Inventory(declared)
        self.stats = MonitorStats()
        self.keep_records = keep_records
        self.transactions: list[Transaction] = []
        self.modbus_messages: list[tuple[Endpoints, Message]] = []
        self.stream_faults: list[tuple[Endpoints, StreamFault]] = []
        self.ua_messages: list[tuple[Endpoints, UaMessage]] = []
        self.analyzers = tuple(analyzers)
        by_name = {analyzer.name: analyzer for analyzer in self.analyzers}
        chosen = {analyzer.name: analyzer.default_ports for analyzer in self.analyzers}
        chosen.update(
            {name: value for name, value in (("modbus", modbus_ports), ("opcua", opcua_ports)) if name in by_name}
        )
        chosen.update({name: value for name, value in (ports or {}).items() if name in by_name})
        self.ports = chosen
        #: The analyzer of each server port.
        self._port_analyzer: dict[int, Analyzer] = {
            port: by_name[name] for name, numbers in chosen.items() for port in numbers
        }
        self.max_flows = max_flows
        self._flows: OrderedDict[tuple[bytes, int, bytes, int], tuple[Connection, int]] = OrderedDict()
        self._ignored: set[tuple[bytes, int, bytes, int]] = set()
        # Connections opened (a SYN without ACK) on a port that names no protocol: the payload that follows
        # may still be Modbus or OPC UA on an unusual port, and the handshake says who the client is.
        self._opened: set[tuple[bytes, int, bytes, int]] = set()

    # --- input ----------------------------------------------------------------------------------

    def process(self, frame: Frame) -> None:
        self.stats.frames += 1
        try:
            self._process(frame)
        except Exception as exc:  # a bug must not silence the monitor: count it, report it, carry on
            self.stats.internal_errors += 1
            if len(self.stats.errors) < 20:
                self.stats.errors.append(f"frame {frame.number}: {type(exc).__name__}: {exc}")

    def _process(self, frame: Frame) -> None:
        seg = decode_tcp(frame.linktype, frame.data)
        if seg is None:
            self.stats.not_tcp += 1
            if frame.linktype not in LINKTYPE_NAMES:
                unknown = self.stats.unknown_link
                unknown[frame.linktype] = unknown.get(frame.linktype, 0) + 1
            return
        self.stats.tcp_segments += 1
        ts = frame.ts
        key = (seg.src, seg.sport, seg.dst, seg.dport)
        entry = self._flows.get(key)
        if entry is None:
            if key in self._ignored:
                return
            entry = self._new_connection(key, seg.flags, seg.payload, frame)
            if entry is None:
                return
        else:
            self._flows.move_to_end(key)
        conn, index = entry
        direction = conn.directions[index]
        if seg.flags & TCP_SYN:
            direction.syn(seg.seq)
            return
        # Each chunk keeps the frame and time of the segment that carried it: data held behind a hole
        # and released by a later segment is still reported where it crossed the wire.
        if seg.payload:
            for chunk in direction.feed(seg.seq, seg.payload, frame.number, ts):
                self._deliver(conn, index, chunk)
        if seg.flags & (TCP_FIN | TCP_RST):
            for chunk in direction.flush():
                self._deliver(conn, index, chunk)
        if direction.conflicts:
            self._report_conflicts(conn, index, direction)

    def _new_connection(
        self, key: tuple[bytes, int, bytes, int], flags: int, payload: bytes, frame: Frame
    ) -> tuple[Connection, int] | None:
        src, sport, dst, dport = key
        known = self._port_analyzer
        unusual = False
        # The well-known port decides who is the server, as Wireshark does; then the handshake; then
        # the usual habit of servers holding the lower port.
        reverse = (dst, dport, src, sport)
        if dport in known:
            client_first = True
        elif sport in known:
            client_first = False
        elif key in self._opened or reverse in self._opened:
            client_first = key in self._opened
        elif flags & TCP_SYN:
            client_first = not flags & _ACK
        else:
            client_first = sport > dport  # the server usually holds the lower, well-known port
        server_port = dport if client_first else sport
        analyzer = known.get(server_port)
        if analyzer is None and payload:
            analyzer = next((a for a in self.analyzers if a.recognises(payload)), None)
            unusual = analyzer is not None
        if analyzer is None:
            if payload:
                if len(self._ignored) > 4 * self.max_flows:
                    self._ignored.clear()
                self._ignored.add(key)
            elif flags & TCP_SYN and not flags & _ACK:
                if len(self._opened) > 4 * self.max_flows:
                    self._opened.clear()
                self._opened.add(key)
            return None
        self._opened.discard(key)
        self._opened.discard(reverse)
        if client_first:
            ends = Endpoints(ip_text(src), ip_text(dst), sport, dport)
        else:
            ends = Endpoints(ip_text(dst), ip_text(src), dport, sport)
        protocol = analyzer.name
        conn = Connection(ends, protocol, analyzer.open(self, ends))
        index = 0 if client_first else 1
        flows = self._flows
        while len(flows) >= 2 * self.max_flows:
            old_key, (old_conn, old_index) = flows.popitem(last=False)
            self._close(old_conn, old_index, old_key)
            self.stats.evicted_flows += 1
        flows[key] = (conn, index)
        flows[reverse] = (conn, 1 - index)
        self.announce(ends, protocol, frame.number, frame.ts, unusual)
        return conn, index

    def announce(self, ends: Endpoints, protocol: str, frame: int, ts: float, unusual: bool) -> None:
        """A new connection carrying an industrial protocol: inventory, flow rules, declared devices."""
        self.stats.flows += 1
        self.inventory.connection(ends.client, ends.server, ends.sport, protocol, ts)
        self.detector.flow(ends, protocol, frame, ts, unusual)
        declared = self.inventory.declared
        if declared is not None and ends.server not in declared:
            self.detector.raise_alert(
                "INV-001",
                ends,
                frame,
                ts,
                f"{ends.server} serves {protocol} on port {ends.sport} but the contract declares no device there",
                protocol=protocol,
                key="undeclared",
            )

    def _report_conflicts(self, conn: Connection, index: int, direction: TcpDirection) -> None:
        side = "client" if index == 0 else "server"
        for conflict in direction.conflicts:
            self.stats.tcp_conflicts += 1
            self.detector.raise_alert(
                "TCP-001",
                conn.ends,
                conflict.frame,
                conflict.ts,
                f"the {side} side retransmitted {conflict.compared} bytes at sequence {conflict.seq} with "
                f"{conflict.differing} of them different from the first copy: the device may have executed "
                "other bytes than the ones decoded (an evasion attempt, or a broken TCP stack)",
                protocol=conn.protocol,
                key=index,
            )
        direction.conflicts.clear()

    def _close(self, conn: Connection, index: int, key: tuple[bytes, int, bytes, int]) -> None:
        """Forget an evicted connection: its other direction goes too, its open requests are reported."""
        src, sport, dst, dport = key
        self._flows.pop((dst, dport, src, sport), None)
        conn.analysis.close()

    def _deliver(self, conn: Connection, index: int, chunk: Chunk) -> None:
        conn.analysis.deliver(index == 0, chunk, conn.directions[index].saw_syn and not chunk.gap)

    def drain(self) -> Observations:
        """What was observed since the last call (the lists are handed over, not copied)."""
        out = Observations(self.detector.alerts, self.transactions, self.ua_messages, self.inventory.changes)
        self.detector.alerts = []
        self.transactions = []
        self.ua_messages = []
        self.modbus_messages = []
        self.stream_faults = []
        self.inventory.changes = []
        return out

    # --- the end --------------------------------------------------------------------------------

    def finish(self) -> None:
        """The capture ended: release held segments and report requests that were never answered."""
        seen: set[int] = set()
        for conn, index in list(self._flows.values()):
            direction = conn.directions[index]
            for chunk in direction.flush():
                self._deliver(conn, index, chunk)
            if direction.conflicts:
                self._report_conflicts(conn, index, direction)
            if id(conn) not in seen:
                seen.add(id(conn))
                conn.analysis.close()
        self._flows.clear()
