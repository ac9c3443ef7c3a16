"""The monitor: frames in; transactions, alerts and inventory changes out.

One :class:`Monitor` owns the flow table (bounded: the least recently active connection is evicted
first), runs each connection's bytes through TCP reassembly and the protocol's analyser, matches Modbus
requests with responses and hands every observation to the detector and the inventory.

Nothing that arrives from the network can make ``process`` raise: the analysers turn bad input into
findings, and a bug that slips through is caught per frame, counted and reported, and the next frame is
processed as usual (a monitor that stops on the first odd packet is a monitor an attacker can switch off).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from otseam.monitor.allowlist import Policy
from otseam.monitor.analyzers.modbus.parser import Message, ModbusStream, StreamFault, plausible_header
from otseam.monitor.analyzers.opcua.parser import UaChannel, UaMessage, UaStream, looks_like_opcua
from otseam.monitor.capture import LINKTYPE_NAMES, Frame
from otseam.monitor.inventory import Change, Inventory
from otseam.monitor.packet import TCP_FIN, TCP_RST, TCP_SYN, decode_tcp, ip_text
from otseam.monitor.reassembly import Chunk, TcpDirection
from otseam.monitor.rules import Alert, Detector, Endpoints
from otseam.protocols.modbus.tables import EXCEPTION_NAMES, FUNCTION_NAMES

MODBUS_PORTS = frozenset({502, 802})
OPCUA_PORTS = frozenset({4840})
#: Connections tracked at once; the least recently active is evicted beyond this.
MAX_FLOWS = 20_000
#: Requests awaiting their response, per connection (Modbus allows pipelining; a flood must not grow us).
MAX_PENDING = 256
_ACK = 0x10


@dataclass(slots=True)
class Transaction:
    """A Modbus request and its response (either may be missing: capture started late, no answer)."""

    ends: Endpoints
    request: Message | None
    response: Message | None

    def as_dict(self) -> dict[str, Any]:
        first = self.request or self.response
        assert first is not None
        req, resp = self.request, self.response
        out: dict[str, Any] = {
            "type": "modbus",
            "ts": round(first.ts, 6),
            "frame": first.frame,
            "response_frame": resp.frame if resp else None,
            "src": self.ends.client,
            "sport": self.ends.cport,
            "dst": self.ends.server,
            "dport": self.ends.sport,
            "tid": first.tid,
            "unit": first.unit,
            "function": first.function,
            "function_name": FUNCTION_NAMES.get(first.function, f"function_{first.function}"),
            "matched": req is not None and resp is not None,
        }
        source = req or resp
        assert source is not None
        for key in ("address", "quantity", "sub_function", "mei", "write_address"):
            value = getattr(source, key)
            if value is None and resp is not None:
                value = getattr(resp, key)
            if value is not None:
                out[key] = value
        if req is not None and req.values is not None:
            out["request_values"] = req.values
        if resp is not None:
            if resp.values is not None:
                out["response_values"] = resp.values
            if resp.exception is not None:
                out["exception"] = resp.exception
                out["exception_name"] = EXCEPTION_NAMES.get(resp.exception, f"exception_{resp.exception}")
            if resp.objects:
                out["objects"] = dict(resp.objects)
        problems = [m.problem for m in (req, resp) if m is not None and m.problem]
        if problems:
            out["problem"] = "; ".join(problems)
        return out


@dataclass(slots=True)
class Observations:
    alerts: list[Alert]
    transactions: list[Transaction]
    ua_messages: list[tuple[Endpoints, UaMessage]]
    changes: list[Change]


class Connection:
    __slots__ = ("analyzers", "channel", "directions", "ends", "pending", "protocol")

    def __init__(self, ends: Endpoints, protocol: str) -> None:
        self.ends = ends
        self.protocol = protocol
        # Index 0: client to server; 1: server to client.
        self.directions = (TcpDirection(), TcpDirection())
        self.analyzers: list[ModbusStream | UaStream | None] = [None, None]
        self.pending: dict[int, Message] = {}
        self.channel = UaChannel()


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
        max_flows: int = MAX_FLOWS,
    ) -> None:
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
        self.modbus_ports = modbus_ports
        self.opcua_ports = opcua_ports
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
        known = self.modbus_ports | self.opcua_ports
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
        if server_port in self.modbus_ports:
            protocol = "modbus"
        elif server_port in self.opcua_ports:
            protocol = "opcua"
        elif payload and plausible_header(payload, 0) and int.from_bytes(payload[4:6], "big") + 6 <= len(payload):
            protocol, unusual = "modbus", True
        elif payload and looks_like_opcua(payload):
            protocol, unusual = "opcua", True
        else:
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
        conn = Connection(ends, protocol)
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
        self._flush_pending(conn)

    def _deliver(self, conn: Connection, index: int, chunk: Chunk) -> None:
        data, gap, frame, ts = chunk
        analyzer = conn.analyzers[index]
        if analyzer is None:
            synced = conn.directions[index].saw_syn and not gap
            analyzer = ModbusStream(index == 0, synced) if conn.protocol == "modbus" else UaStream(conn.channel, synced)
            conn.analyzers[index] = analyzer
        elif gap:
            analyzer.gap()
        if isinstance(analyzer, ModbusStream):
            messages: list[Message] = []
            faults: list[StreamFault] = []
            analyzer.feed(data, frame, ts, messages, faults)
            for fault in faults:
                self.detector.not_modbus(conn.ends, fault)
                if self.keep_records:
                    self.stream_faults.append((conn.ends, fault))
            for msg in messages:
                self._modbus(conn, msg)
        else:
            ua: list[UaMessage] = []
            problems: list[str] = []
            analyzer.feed(data, frame, ts, ua, problems)
            for problem in problems:
                self.detector.opcua_problem(conn.ends, frame, ts, problem)
            for ua_message in ua:
                self._opcua(conn, ua_message, index == 0)

    def _modbus(self, conn: Connection, msg: Message) -> None:
        self.stats.modbus_messages += 1
        ends = conn.ends
        if self.keep_records:
            self.modbus_messages.append((ends, msg))
        if msg.is_request:
            self.detector.modbus_request(ends, msg)
            pending = conn.pending
            previous = pending.pop(msg.tid, None)
            if previous is not None:
                self._transaction(ends, previous, None)
            if len(pending) >= MAX_PENDING:
                oldest = next(iter(pending))
                self._transaction(ends, pending.pop(oldest), None)
            pending[msg.tid] = msg
            self.inventory.modbus(ends.client, ends.server, msg.unit, msg.function, msg.ts, {})
        else:
            self.detector.modbus_response(ends, msg)
            request = conn.pending.pop(msg.tid, None)
            if request is not None and msg.values is not None and request.function in (1, 2) and request.quantity:
                del msg.values[request.quantity :]  # coil bytes are padded to whole bytes
            self._transaction(ends, request, msg)
            self.inventory.modbus(ends.client, ends.server, msg.unit, msg.function, msg.ts, msg.objects)

    def _transaction(self, ends: Endpoints, request: Message | None, response: Message | None) -> None:
        self.stats.transactions += 1
        if self.keep_records:
            self.transactions.append(Transaction(ends, request, response))

    def _opcua(self, conn: Connection, msg: UaMessage, from_client: bool) -> None:
        self.stats.opcua_messages += 1
        if self.keep_records:
            self.ua_messages.append((conn.ends, msg))
        self.detector.opcua(conn.ends, msg, from_client)
        self.inventory.opcua(
            conn.ends.client, conn.ends.server, msg.service if from_client else None, msg.security, msg.ts
        )

    def _flush_pending(self, conn: Connection) -> None:
        for msg in conn.pending.values():
            self._transaction(conn.ends, msg, None)
        conn.pending.clear()

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
                self._flush_pending(conn)
        self._flows.clear()
