"""The Modbus/TCP analyzer: MBAP streams in both directions, requests matched with their responses
(pipelining allowed, bounded), every message to the detector and the inventory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from otseam.monitor.analyzers.modbus import inventory, rules
from otseam.monitor.analyzers.modbus.parser import Message, ModbusStream, StreamFault, plausible_header
from otseam.protocols.modbus.tables import EXCEPTION_NAMES, FUNCTION_NAMES

if TYPE_CHECKING:
    from otseam.monitor.engine import Monitor
    from otseam.monitor.reassembly import Chunk
    from otseam.monitor.rules import Endpoints

#: Requests awaiting their response, per connection (Modbus allows pipelining; a flood must not grow us).
MAX_PENDING = 256


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


class ModbusAnalyzer:
    name = "modbus"
    default_ports = frozenset({502, 802})

    def recognises(self, payload: bytes) -> bool:
        # A whole plausible MBAP frame at the start of the first segment.
        return plausible_header(payload, 0) and int.from_bytes(payload[4:6], "big") + 6 <= len(payload)

    def open(self, monitor: Monitor, ends: Endpoints) -> ModbusConnection:
        return ModbusConnection(monitor, ends)


class ModbusConnection:
    __slots__ = ("ends", "monitor", "pending", "streams")

    def __init__(self, monitor: Monitor, ends: Endpoints) -> None:
        self.monitor = monitor
        self.ends = ends
        self.streams: list[ModbusStream | None] = [None, None]
        self.pending: dict[int, Message] = {}

    def deliver(self, from_client: bool, chunk: Chunk, synced: bool) -> None:
        data, gap, frame, ts = chunk
        index = 0 if from_client else 1
        stream = self.streams[index]
        if stream is None:
            stream = self.streams[index] = ModbusStream(from_client, synced)
        elif gap:
            stream.gap()
        messages: list[Message] = []
        faults: list[StreamFault] = []
        stream.feed(data, frame, ts, messages, faults)
        monitor = self.monitor
        for fault in faults:
            rules.stream_fault(monitor.detector, self.ends, fault)
            if monitor.keep_records:
                monitor.stream_faults.append((self.ends, fault))
        for msg in messages:
            self._message(msg)

    def _message(self, msg: Message) -> None:
        monitor = self.monitor
        monitor.stats.modbus_messages += 1
        ends = self.ends
        if monitor.keep_records:
            monitor.modbus_messages.append((ends, msg))
        if msg.is_request:
            rules.request(monitor.detector, ends, msg)
            pending = self.pending
            previous = pending.pop(msg.tid, None)
            if previous is not None:
                self._transaction(previous, None)
            if len(pending) >= MAX_PENDING:
                oldest = next(iter(pending))
                self._transaction(pending.pop(oldest), None)
            pending[msg.tid] = msg
            inventory.record(monitor.inventory, ends.client, ends.server, msg.unit, msg.function, msg.ts, {})
        else:
            rules.response(monitor.detector, ends, msg)
            request = self.pending.pop(msg.tid, None)
            if request is not None and msg.values is not None and request.function in (1, 2) and request.quantity:
                del msg.values[request.quantity :]  # coil bytes are padded to whole bytes
            self._transaction(request, msg)
            inventory.record(monitor.inventory, ends.client, ends.server, msg.unit, msg.function, msg.ts, msg.objects)

    def _transaction(self, request: Message | None, response: Message | None) -> None:
        monitor = self.monitor
        monitor.stats.transactions += 1
        if monitor.keep_records:
            monitor.transactions.append(Transaction(self.ends, request, response))

    def close(self) -> None:
        for msg in self.pending.values():
            self._transaction(msg, None)
        self.pending.clear()
