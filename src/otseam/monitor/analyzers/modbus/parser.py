"""Modbus/TCP: framing a reassembled byte stream into MBAP messages, and decoding each PDU.

The field set follows what CISA's ICSNPP Zeek parser logs per transaction: transaction id, unit id,
function, address, quantity, request and response values, sub-function, exception code, MEI type and the
device identification objects. Function codes and their layouts are those of the Modbus Application
Protocol Specification V1.1b3; function 90 is Schneider Electric's UMAS, identified by its sub-function.

A PDU that does not match its function's layout is still reported, with ``problem`` saying what is
wrong: a malformed frame is a finding, not a reason to stop listening.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from otseam.protocols.modbus import framing
from otseam.protocols.modbus.tables import (
    DEVICE_ID_OBJECTS,
    UMAS,
)

MBAP_SIZE = framing.MBAP_SIZE
#: The MBAP length field counts the unit id and the PDU; a PDU is at most 253 bytes.
MAX_LENGTH = framing.MAX_MBAP_LENGTH
MBAP = framing.MBAP
_U16 = struct.Struct("!H")
_U16X2 = struct.Struct("!HH")


@dataclass(slots=True)
class Message:
    """One Modbus/TCP application data unit, as seen on the wire in one direction."""

    frame: int
    ts: float
    tid: int
    unit: int
    code: int  # the raw function byte, exception bit included
    is_request: bool
    length: int  # the MBAP length field
    function: int = 0  # without the exception bit
    exception: int | None = None
    address: int | None = None
    quantity: int | None = None
    values: list[int] | None = None
    sub_function: int | None = None
    mei: int | None = None
    objects: dict[str, str] = field(default_factory=dict)
    #: For function 23, the write half of the request.
    write_address: int | None = None
    #: What is wrong with the PDU, if anything ("byte count 4 does not match 6 data bytes", ...).
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "frame": self.frame,
            "tid": self.tid,
            "unit": self.unit,
            "function": self.function,
            "request": self.is_request,
        }
        for key in ("exception", "address", "quantity", "values", "sub_function", "mei", "write_address", "problem"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.objects:
            out["objects"] = dict(self.objects)
        return out


def _bits(data: bytes, count: int | None = None) -> list[int]:
    bits = [(byte >> i) & 1 for byte in data for i in range(8)]
    return bits[:count] if count is not None else bits


def _registers(data: bytes) -> list[int]:
    return list(struct.unpack(f"!{len(data) // 2}H", data[: len(data) // 2 * 2]))


def decode_pdu(msg: Message, pdu: bytes) -> None:
    """Fill ``msg``'s fields from its PDU (function byte included). Never raises on bad input."""
    code = pdu[0]
    msg.function = code & 0x7F
    body = pdu[1:]
    n = len(body)
    if code & 0x80:
        if msg.is_request:
            msg.problem = "a request with the exception bit set"
            return
        if n != 1:
            msg.problem = f"an exception response carries {n} bytes instead of 1"
        if n:
            msg.exception = body[0]
        return
    try:
        if msg.is_request:
            _decode_request(msg, msg.function, body, n)
        else:
            _decode_response(msg, msg.function, body, n)
    except struct.error:
        msg.problem = f"function {msg.function}: {n} data bytes are too few"


def _expect(msg: Message, n: int, size: int) -> bool:
    if n < size:
        msg.problem = f"function {msg.function}: {n} data bytes, {size} expected"
        return False
    if n > size:
        msg.problem = f"function {msg.function}: {n} data bytes, {size} expected (length mismatch)"
    return True


def _decode_request(msg: Message, fc: int, body: bytes, n: int) -> None:
    if fc in (1, 2, 3, 4):
        if _expect(msg, n, 4):
            msg.address, msg.quantity = _U16X2.unpack_from(body)
    elif fc in (5, 6):
        if _expect(msg, n, 4):
            msg.address, value = _U16X2.unpack_from(body)
            if fc == 5:
                if value not in (0x0000, 0xFF00):
                    msg.problem = f"write single coil value 0x{value:04x} is neither 0x0000 nor 0xFF00"
                value = 1 if value == 0xFF00 else 0
            msg.values = [value]
    elif fc in (15, 16):
        if n < 5:
            msg.problem = f"function {fc}: {n} data bytes, at least 5 expected"
            return
        msg.address, msg.quantity = _U16X2.unpack_from(body)
        count = body[4]
        data = body[5:]
        if count != len(data):
            msg.problem = f"byte count {count} does not match {len(data)} data bytes"
        msg.values = _bits(data, msg.quantity) if fc == 15 else _registers(data)
    elif fc == 22:
        if _expect(msg, n, 6):
            msg.address, and_mask, or_mask = struct.unpack_from("!HHH", body)
            msg.values = [and_mask, or_mask]
    elif fc == 23:
        if n < 9:
            msg.problem = f"function 23: {n} data bytes, at least 9 expected"
            return
        msg.address, msg.quantity, msg.write_address, _write_qty, count = struct.unpack_from("!HHHHB", body)
        data = body[9:]
        if count != len(data):
            msg.problem = f"byte count {count} does not match {len(data)} data bytes"
        msg.values = _registers(data)
    elif fc == 24:
        if _expect(msg, n, 2):
            msg.address = _U16.unpack_from(body)[0]
    elif fc == 8:
        _decode_diagnostics(msg, body, n)
    elif fc == 43:
        if not _decode_mei(msg, body, n):
            return
        if msg.mei == 14 and _expect(msg, n, 3):
            msg.sub_function, msg.address = body[1], body[2]  # read device id code, object id
    elif fc == UMAS:
        # UMAS: a pairing key byte, then the UMAS function code.
        if n < 2:
            msg.problem = f"UMAS: {n} data bytes, at least 2 expected"
            return
        msg.sub_function = body[1]
    elif fc in (7, 11, 12, 17):
        _expect(msg, n, 0)
    elif fc in (20, 21) and (n < 1 or body[0] != n - 1):
        msg.problem = f"file record byte count does not match {max(n - 1, 0)} data bytes"


def _decode_response(msg: Message, fc: int, body: bytes, n: int) -> None:
    if fc in (1, 2, 3, 4, 23):
        if n < 1:
            msg.problem = f"function {fc}: a response without a byte count"
            return
        count = body[0]
        data = body[1:]
        if count != len(data):
            msg.problem = f"byte count {count} does not match {len(data)} data bytes"
        msg.values = _bits(data) if fc in (1, 2) else _registers(data)
    elif fc in (5, 6):
        if _expect(msg, n, 4):
            msg.address, value = _U16X2.unpack_from(body)
            msg.values = [(1 if value == 0xFF00 else 0) if fc == 5 else value]
    elif fc in (15, 16):
        if _expect(msg, n, 4):
            msg.address, msg.quantity = _U16X2.unpack_from(body)
    elif fc == 22:
        if _expect(msg, n, 6):
            msg.address, and_mask, or_mask = struct.unpack_from("!HHH", body)
            msg.values = [and_mask, or_mask]
    elif fc == 24:
        if n < 4:
            msg.problem = f"read FIFO queue: {n} data bytes, at least 4 expected"
            return
        _byte_count, fifo_count = _U16X2.unpack_from(body)
        msg.quantity = fifo_count
        msg.values = _registers(body[4:])
    elif fc == 8:
        _decode_diagnostics(msg, body, n)
    elif fc == 43:
        if not _decode_mei(msg, body, n):
            return
        if msg.mei == 14:
            _decode_device_id(msg, body, n)
    elif fc == UMAS:
        if n >= 2:
            msg.sub_function = body[1]
    elif fc == 17:
        if n < 1 or body[0] != n - 1:
            msg.problem = f"report server id byte count does not match {max(n - 1, 0)} data bytes"
        elif n >= 2:
            msg.objects["server_id"] = body[1 : n - 1].hex()
            msg.objects["run_indicator"] = "on" if body[n - 1] == 0xFF else "off"


def _decode_diagnostics(msg: Message, body: bytes, n: int) -> None:
    """FC 8 has the same shape both ways (the response echoes the request): sub-function, data words."""
    if n < 2:
        msg.problem = f"diagnostics: {n} data bytes, at least 2 expected"
        return
    msg.sub_function = _U16.unpack_from(body)[0]
    msg.values = _registers(body[2:])


def _decode_mei(msg: Message, body: bytes, n: int) -> bool:
    """FC 43's first byte, the MEI type, in either direction; False (and a problem) if it is missing."""
    if n < 1:
        msg.problem = "encapsulated interface transport without an MEI type"
        return False
    msg.mei = body[0]
    return True


def _decode_device_id(msg: Message, body: bytes, n: int) -> None:
    if n < 6:
        msg.problem = f"device identification: {n} data bytes, at least 6 expected"
        return
    msg.sub_function = body[1]
    count = body[5]
    pos = 6
    for _ in range(count):
        if pos + 2 > n:
            msg.problem = "device identification: an object header runs past the end"
            return
        object_id, length = body[pos], body[pos + 1]
        pos += 2
        if pos + length > n:
            msg.problem = f"device identification: object {object_id} runs past the end"
            return
        name = DEVICE_ID_OBJECTS.get(object_id, f"object_{object_id}")
        msg.objects[name] = body[pos : pos + length].decode("latin-1")
        pos += length
    if pos != n:
        msg.problem = f"device identification: {n - pos} bytes after the last object"


#: Could an MBAP header start at ``pos``? Used to find our footing in a stream joined mid-way.
plausible_header = framing.plausible_mbap


@dataclass(slots=True)
class StreamFault:
    """Something wrong at the framing level of one direction of a connection."""

    frame: int
    ts: float
    kind: str  # "malformed" (a bad MBAP header) or "not-modbus" (never looked like Modbus)
    detail: str


class ModbusStream:
    """One direction of a Modbus/TCP connection: bytes in, messages and framing faults out.

    The buffer never holds more than one incomplete ADU (at most 260 bytes) plus the current segment,
    so memory per flow is bounded whatever the peer sends.
    """

    __slots__ = ("_buf", "_skipped", "framed", "is_request", "synced")

    def __init__(self, is_request: bool, synced: bool) -> None:
        self.is_request = is_request
        self._buf = b""
        #: True when the stream is known to start on an ADU boundary (its SYN was seen). False when
        #: joined mid-way, and again after a gap: then we look for a plausible header instead of
        #: trusting the next bytes.
        self.synced = synced
        #: Whether this direction ever carried a valid Modbus header.
        self.framed = False
        self._skipped = 0

    def gap(self) -> None:
        """Bytes were lost (capture drop, window overflow): the next bytes may start mid-ADU."""
        self._buf = b""
        self.synced = False

    def feed(self, data: bytes, frame: int, ts: float, out: list[Message], faults: list[StreamFault]) -> None:
        buf = self._buf + data if self._buf else data
        pos = 0
        end = len(buf)
        unpack = MBAP.unpack_from
        while end - pos >= MBAP_SIZE:
            if not self.synced:
                found = pos
                while found + 8 <= end and not plausible_header(buf, found):
                    found += 1
                # Skipping is expected after joining mid-stream or a gap, so it is not a finding by
                # itself; but more than one whole ADU's worth of bytes without any header is.
                if found + 8 > end:
                    keep = max(pos, end - MBAP_SIZE)  # a tail the next segment may complete into a header
                    self._skipped += keep - pos
                    pos = keep
                else:
                    self._skipped += found - pos
                if self._skipped > MBAP_SIZE + MAX_LENGTH:
                    kind = "malformed" if self.framed else "not-modbus"
                    faults.append(StreamFault(frame, ts, kind, f"{self._skipped} bytes without an MBAP header"))
                    self._skipped = 0
                if found + 8 > end:
                    break
                pos = found
                self.synced = True
                self._skipped = 0
            tid, proto, length, unit = unpack(buf, pos)
            if proto != 0 or length < 2 or length > MAX_LENGTH:
                if proto != 0:
                    detail = f"protocol id {proto} (Modbus is 0)"
                elif length < 2:
                    detail = f"MBAP length {length} leaves no function code"
                else:
                    detail = f"MBAP length {length}: PDU of {length - 1} bytes exceeds 253"
                # A header with protocol id 0 is Modbus gone wrong; anything else, before any valid
                # header, is another protocol on the Modbus port.
                kind = "malformed" if self.framed or proto == 0 else "not-modbus"
                faults.append(StreamFault(frame, ts, kind, detail))
                self.synced = False
                pos += 1
                continue
            stop = pos + 6 + length
            if stop > end:
                break
            self.framed = True
            msg = Message(frame, ts, tid, unit, buf[pos + 7], self.is_request, length)
            decode_pdu(msg, buf[pos + 7 : stop])
            out.append(msg)
            pos = stop
        rest = buf[pos:]
        if len(rest) > MBAP_SIZE + MAX_LENGTH:  # cannot happen with a valid header; bound it anyway
            rest = rest[-(MBAP_SIZE + MAX_LENGTH) :]
        self._buf = bytes(rest)
