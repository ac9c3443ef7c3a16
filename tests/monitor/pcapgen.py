"""Write pcap files by hand, to build the exact TCP situations the reassembly tests need.

Independent of the code under test: frames are assembled here with struct, byte by byte, following
the pcap, Ethernet, IPv4 and TCP layouts (checksums left at zero, which analysers do not verify).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path

SYN, ACK, PSH, FIN, RST = 0x02, 0x10, 0x08, 0x01, 0x04


def mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack("!HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def frame(src: str, dst: str, sport: int, dport: int, seq: int, flags: int, payload: bytes = b"") -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0)
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, 64, 6, 0, socket.inet_aton(src), socket.inet_aton(dst))
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    data = eth + ip + tcp + payload
    return data + b"\x00" * max(0, 60 - len(data))  # Ethernet minimum size: padding the decoder must ignore


@dataclass
class Conversation:
    """One TCP connection; ``c`` and ``s`` send from client and server, tracking sequence numbers."""

    client: str = "10.0.0.10"
    server: str = "10.0.0.20"
    cport: int = 40000
    sport: int = 502
    cseq: int = 1000
    sseq: int = 5000
    frames: list[bytes] = field(default_factory=list)

    def handshake(self) -> Conversation:
        self.frames.append(frame(self.client, self.server, self.cport, self.sport, self.cseq, SYN))
        self.frames.append(frame(self.server, self.client, self.sport, self.cport, self.sseq, SYN | ACK))
        self.cseq += 1
        self.sseq += 1
        return self

    def c(self, payload: bytes, seq: int | None = None) -> bytes:
        use = self.cseq if seq is None else seq
        data = frame(self.client, self.server, self.cport, self.sport, use, PSH | ACK, payload)
        if seq is None:
            self.cseq += len(payload)
        self.frames.append(data)
        return data

    def s(self, payload: bytes, seq: int | None = None) -> bytes:
        use = self.sseq if seq is None else seq
        data = frame(self.server, self.client, self.sport, self.cport, use, PSH | ACK, payload)
        if seq is None:
            self.sseq += len(payload)
        self.frames.append(data)
        return data


def pcap_bytes(frames: list[bytes], start: float = 1_700_000_000.0, step: float = 0.001) -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, data in enumerate(frames):
        ts = start + i * step
        sec = int(ts)
        usec = round((ts - sec) * 1e6)
        out.append(struct.pack("<IIII", sec, usec, len(data), len(data)) + data)
    return b"".join(out)


def write_pcap(path: Path, frames: list[bytes], start: float = 1_700_000_000.0, step: float = 0.001) -> Path:
    path.write_bytes(pcap_bytes(frames, start, step))
    return path


# --- OPC UA binary chunks (OPC 10000-6, 7.1.2), enough for the analyser's headers ---------------------

UA_POLICY_NONE = "http://opcfoundation.org/UA/SecurityPolicy#None"
UA_POLICY_BASIC256SHA256 = "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"


def _ua_string(text: str | bytes | None) -> bytes:
    if text is None:
        return struct.pack("<i", -1)
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<i", len(raw)) + raw


def ua_chunk(kind: bytes, body: bytes, chunk: bytes = b"F") -> bytes:
    return kind + chunk + struct.pack("<I", 8 + len(body)) + body


def ua_hello(url: str) -> bytes:
    return ua_chunk(b"HEL", struct.pack("<IIIII", 0, 65536, 65536, 0, 0) + _ua_string(url))


def ua_open(policy: str, channel: int = 0, request_id: int = 1, body: bytes | None = None) -> bytes:
    header = struct.pack("<I", channel) + _ua_string(policy) + _ua_string(None) + _ua_string(None)
    if body is None:  # sequence header, then OpenSecureChannelRequest's encoding id (446) and padding
        body = struct.pack("<II", 1, request_id) + b"\x01\x00" + struct.pack("<H", 446) + bytes(32)
    return ua_chunk(b"OPN", header + body)


def ua_message(type_id: int, channel: int = 1, request_id: int = 2, chunk: bytes = b"F") -> bytes:
    node = b"\x01\x00" + struct.pack("<H", type_id) if type_id < 65536 else b"\x02\x00\x00" + struct.pack("<I", type_id)
    return ua_chunk(b"MSG", struct.pack("<IIII", channel, 1, request_id + 1, request_id) + node + bytes(24), chunk)
