"""Link and network layers the span port may hand us: VLAN tags, IPv6, Linux cooked capture, fragments."""

from __future__ import annotations

import socket
import struct

from otseam.monitor.capture import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_RAW, Frame
from otseam.monitor.engine import Monitor
from otseam.monitor.packet import decode_tcp
from tests.monitor.pcapgen import frame, mbap

REQUEST = mbap(5, 1, b"\x03\x00\x10\x00\x02")


def tcp_header(sport: int, dport: int, seq: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x18, 65535, 0, 0)


def ipv6_packet(payload: bytes) -> bytes:
    src, dst = socket.inet_pton(socket.AF_INET6, "fd00::10"), socket.inet_pton(socket.AF_INET6, "fd00::20")
    tcp = tcp_header(40000, 502, 1) + payload
    return struct.pack("!IHBB", 6 << 28, len(tcp), 6, 64) + src + dst + tcp


def analyse(frames: list[tuple[int, bytes]]) -> Monitor:
    monitor = Monitor()
    for number, (linktype, data) in enumerate(frames, start=1):
        monitor.process(Frame(number, 1.0, linktype, data))
    monitor.finish()
    assert monitor.stats.internal_errors == 0
    return monitor


def test_vlan_and_qinq_tags() -> None:
    plain = frame("10.0.0.10", "10.0.0.20", 40000, 502, 1, 0x18, REQUEST)
    tagged = plain[:12] + b"\x81\x00\x00\x64" + plain[12:]
    double = plain[:12] + b"\x88\xa8\x00\x0a\x81\x00\x00\x64" + plain[12:]
    for data in (tagged, double):
        segment = decode_tcp(LINKTYPE_ETHERNET, data)
        assert segment is not None and segment.payload == REQUEST and segment.dport == 502


def test_ipv6_modbus() -> None:
    ethernet = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x86\xdd" + ipv6_packet(REQUEST)
    monitor = analyse([(LINKTYPE_ETHERNET, ethernet)])
    ((ends, msg),) = monitor.modbus_messages
    assert (ends.client, ends.server, msg.tid, msg.address, msg.quantity) == ("fd00::10", "fd00::20", 5, 16, 2)


def test_raw_ip_and_linux_cooked_captures() -> None:
    ip_packet = frame("10.0.0.10", "10.0.0.20", 40000, 502, 1, 0x18, REQUEST)[14:]
    ip_packet = ip_packet[: struct.unpack("!H", ip_packet[2:4])[0]]
    cooked = struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 8, 0x0800) + ip_packet
    for linktype, data in ((LINKTYPE_RAW, ip_packet), (LINKTYPE_LINUX_SLL, cooked)):
        assert analyse([(linktype, data)]).stats.modbus_messages == 1


def test_fragments_are_not_decoded_as_tcp() -> None:
    data = bytearray(frame("10.0.0.10", "10.0.0.20", 40000, 502, 1, 0x18, REQUEST))
    data[14 + 6 : 14 + 8] = struct.pack("!H", 0x2000)  # more fragments follow
    assert decode_tcp(LINKTYPE_ETHERNET, bytes(data)) is None
    monitor = analyse([(LINKTYPE_ETHERNET, bytes(data))])
    assert monitor.stats.not_tcp == 1 and monitor.stats.modbus_messages == 0
