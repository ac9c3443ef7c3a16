"""OPC UA binary (UA-TCP, OPC 10000-6 section 7): message headers, and services on unencrypted channels.

Every chunk starts with an 8-byte header: the message type (HEL, ACK, ERR, RHE, OPN, MSG, CLO), the chunk
type (F final, C intermediate, A abort) and the chunk size. For a channel opened with SecurityPolicy None
the body of the first chunk of each message begins with the service's binary encoding node id
(ReadRequest is 631, WriteRequest 673, ...), which we decode.

A channel opened with any other policy is reported as opaque: its bodies are signed or encrypted, and a
byte that happens to look like a node id there means nothing. A connection joined mid-way, whose OPN we
never saw, is treated the same way (security unknown), rather than guessed at.

Only the first bytes of a chunk are needed, so the rest of a large chunk is skipped without buffering.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MESSAGE_TYPES = frozenset({b"HEL", b"ACK", b"ERR", b"RHE", b"OPN", b"MSG", b"CLO"})
CHUNK_TYPES = frozenset({b"F", b"C", b"A"})
POLICY_NONE = "http://opcfoundation.org/UA/SecurityPolicy#None"
#: A chunk larger than this is not plausible (the spec lets peers negotiate, and stacks cap far lower).
MAX_CHUNK = 1 << 26
#: How much of a chunk we look at: enough for the headers and the encoding node id.
HEAD_BYTES = 8192

#: Service request binary encoding ids (namespace 0); each response's id is its request's plus 3.
_REQUESTS = {
    446: "OpenSecureChannel",
    452: "CloseSecureChannel",
    422: "FindServers",
    428: "GetEndpoints",
    437: "RegisterServer",
    461: "CreateSession",
    467: "ActivateSession",
    473: "CloseSession",
    479: "Cancel",
    488: "AddNodes",
    494: "AddReferences",
    500: "DeleteNodes",
    506: "DeleteReferences",
    527: "Browse",
    533: "BrowseNext",
    554: "TranslateBrowsePathsToNodeIds",
    560: "RegisterNodes",
    566: "UnregisterNodes",
    615: "QueryFirst",
    621: "QueryNext",
    631: "Read",
    664: "HistoryRead",
    673: "Write",
    700: "HistoryUpdate",
    712: "Call",
    751: "CreateMonitoredItems",
    763: "ModifyMonitoredItems",
    769: "SetMonitoringMode",
    775: "SetTriggering",
    781: "DeleteMonitoredItems",
    787: "CreateSubscription",
    793: "ModifySubscription",
    799: "SetPublishingMode",
    826: "Publish",
    832: "Republish",
    841: "TransferSubscriptions",
    847: "DeleteSubscriptions",
}
SERVICES: dict[int, str] = {}
for _id, _name in _REQUESTS.items():
    SERVICES[_id] = _name + "Request"
    SERVICES[_id + 3] = _name + "Response"
SERVICES[397] = "ServiceFault"

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_HEADER = struct.Struct("<3ssI")


@dataclass(slots=True)
class UaMessage:
    """One OPC UA chunk as seen on the wire, with what could be decoded from it."""

    frame: int
    ts: float
    message_type: str  # "HEL", "MSG", ...
    chunk_type: str  # "F", "C", "A"
    size: int
    #: "none", "secured" (a policy other than None: bodies are opaque) or "unknown" (OPN not seen).
    security: str = "unknown"
    policy: str | None = None
    channel_id: int | None = None
    request_id: int | None = None
    #: The service's encoding node id and name, for unencrypted first chunks.
    type_id: int | None = None
    service: str | None = None
    endpoint_url: str | None = None
    error: int | None = None
    problem: str | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "frame": self.frame,
            "message_type": self.message_type,
            "chunk_type": self.chunk_type,
            "size": self.size,
            "security": self.security,
        }
        for key in ("policy", "channel_id", "request_id", "type_id", "service", "endpoint_url", "error", "problem"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


class _Short(Exception):
    pass


class _Reader:
    """Bounded little-endian reads over a chunk head; running past the end raises _Short."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def u8(self) -> int:
        if self.pos + 1 > len(self.data):
            raise _Short
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self) -> int:
        if self.pos + 2 > len(self.data):
            raise _Short
        self.pos += 2
        return int.from_bytes(self.data[self.pos - 2 : self.pos], "little")

    def u32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise _Short
        value: int = _U32.unpack_from(self.data, self.pos)[0]
        self.pos += 4
        return value

    def bytestring(self, limit: int = 65536) -> bytes | None:
        if self.pos + 4 > len(self.data):
            raise _Short
        (length,) = _I32.unpack_from(self.data, self.pos)
        self.pos += 4
        if length < 0:
            return None
        if length > limit or self.pos + length > len(self.data):
            raise _Short
        self.pos += length
        return self.data[self.pos - length : self.pos]

    def numeric_node_id(self) -> int | None:
        """A numeric node id in namespace 0, or None for any other node id."""
        encoding = self.u8()
        if encoding == 0x00:
            return self.u8()
        if encoding == 0x01:
            namespace = self.u8()
            value = self.u16()
        elif encoding == 0x02:
            namespace = self.u16()
            value = self.u32()
        else:
            return None
        return value if namespace == 0 else None


class UaStream:
    """One direction of an OPC UA connection. ``channel`` is shared by both directions."""

    __slots__ = ("_buf", "_in_message", "_skip", "channel", "framed", "synced")

    def __init__(self, channel: UaChannel, synced: bool) -> None:
        self.channel = channel
        self._buf = b""
        self._skip = 0
        self._in_message = False
        self.synced = synced
        self.framed = False

    def gap(self) -> None:
        self._buf = b""
        self._skip = 0
        self._in_message = False
        self.synced = False

    def feed(self, data: bytes, frame: int, ts: float, out: list[UaMessage], problems: list[str]) -> None:
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return
            data = data[self._skip :]
            self._skip = 0
        buf = self._buf + data if self._buf else data
        pos = 0
        while len(buf) - pos >= 8:
            if not self.synced:
                found = _find_header(buf, pos)
                if found < 0:
                    pos = max(pos, len(buf) - 7)
                    break
                pos = found
                self.synced = True
            kind, chunk, size = _HEADER.unpack_from(buf, pos)
            if kind not in MESSAGE_TYPES or chunk not in CHUNK_TYPES or size < 8 or size > MAX_CHUNK:
                problems.append(f"not an OPC UA chunk header: {bytes(buf[pos : pos + 8]).hex()}")
                self.synced = False
                pos += 1
                continue
            available = len(buf) - pos
            if available < size and available < HEAD_BYTES:
                break  # wait for more of the head
            head = buf[pos : pos + min(size, HEAD_BYTES)]
            self.framed = True
            out.append(self._decode(head, kind.decode(), chunk.decode(), size, frame, ts))
            if available < size:
                self._skip = size - available
                pos = len(buf)
                break
            pos += size
        self._buf = bytes(buf[pos:]) if pos < len(buf) else b""

    def _decode(self, head: bytes, kind: str, chunk: str, size: int, frame: int, ts: float) -> UaMessage:
        msg = UaMessage(frame, ts, kind, chunk, size)
        channel = self.channel
        reader = _Reader(head, 8)
        try:
            if kind in ("HEL", "ACK", "RHE"):
                msg.security = "none"
                if kind == "HEL":
                    for _ in range(5):
                        reader.u32()
                    url = reader.bytestring(4096)
                    msg.endpoint_url = url.decode("utf-8", "replace") if url is not None else None
            elif kind == "ERR":
                msg.security = "none"
                msg.error = reader.u32()
            elif kind == "OPN":
                msg.channel_id = reader.u32()
                policy = reader.bytestring(1024)
                msg.policy = policy.decode("utf-8", "replace") if policy is not None else ""
                channel.policy = msg.policy
                msg.security = "none" if msg.policy == POLICY_NONE else "secured"
                if msg.security == "none":
                    reader.bytestring(1 << 20)  # sender certificate
                    reader.bytestring(1024)  # receiver thumbprint
                    self._body(reader, msg, chunk)
            else:  # MSG, CLO
                msg.channel_id = reader.u32()
                reader.u32()  # token id
                msg.security = channel.security
                msg.policy = channel.policy
                if msg.security == "none":
                    self._body(reader, msg, chunk)
        except _Short:
            msg.problem = f"{kind} chunk of {size} bytes is too short for its headers"
        return msg

    def _body(self, reader: _Reader, msg: UaMessage, chunk: str) -> None:
        reader.u32()  # sequence number
        msg.request_id = reader.u32()
        first = not self._in_message
        if chunk == "C":
            self._in_message = True
        elif chunk in ("F", "A"):
            self._in_message = False
        if first and chunk != "A":
            msg.type_id = reader.numeric_node_id()
            if msg.type_id is not None:
                msg.service = SERVICES.get(msg.type_id)
            if msg.service is None:
                msg.problem = f"unknown service encoding id {msg.type_id}"


class UaChannel:
    """What both directions of one connection know: the security policy from OPN."""

    __slots__ = ("policy",)

    def __init__(self) -> None:
        self.policy: str | None = None

    @property
    def security(self) -> str:
        if self.policy is None:
            return "unknown"
        return "none" if self.policy == POLICY_NONE else "secured"


def _find_header(buf: bytes, pos: int) -> int:
    """The next offset where a plausible chunk header starts, or -1."""
    best = -1
    for kind in MESSAGE_TYPES:
        at = buf.find(kind, pos)
        while at >= 0 and at + 8 <= len(buf):
            if buf[at + 3 : at + 4] in CHUNK_TYPES and 8 <= _U32.unpack_from(buf, at + 4)[0] <= MAX_CHUNK:
                if best < 0 or at < best:
                    best = at
                break
            at = buf.find(kind, at + 1)
    return best


def looks_like_opcua(payload: bytes) -> bool:
    """Does a segment start with a plausible UA-TCP chunk header (for traffic on unexpected ports)?"""
    if len(payload) < 8:
        return False
    kind, chunk, size = _HEADER.unpack_from(payload, 0)
    return kind in MESSAGE_TYPES and chunk in CHUNK_TYPES and 8 <= size <= MAX_CHUNK
