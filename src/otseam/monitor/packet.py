"""Link, IP and TCP decoding: from a captured frame to a TCP segment, or nothing.

Only what the protocol analysers need is decoded (addresses, ports, sequence number, flags, payload).
Every offset is checked against the frame's length before use; a frame that does not decode is simply
not a TCP segment for us (counted by the caller), never an exception.

The IP total length is trusted only when it fits in the frame: Ethernet pads short frames, and the
padding must not end up in a Modbus stream.
"""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

from otseam.monitor.capture import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
)

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
_VLAN_TAGS = (0x8100, 0x88A8, 0x9100)

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04

_U16 = struct.Struct("!H")
_TCP = struct.Struct("!HHIIBB")
_IPV6_EXTENSIONS = (0, 43, 60)  # hop-by-hop, routing, destination options: skipped to reach TCP


class Segment(NamedTuple):
    src: bytes  # 4 or 16 address bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    flags: int
    payload: bytes


def network_offset(linktype: int, data: bytes) -> tuple[int, int] | None:
    """Where the IP header starts and its ethertype, for the link types we know."""
    if linktype == LINKTYPE_ETHERNET:
        if len(data) < 14:
            return None
        pos = 12
        ethertype = _U16.unpack_from(data, pos)[0]
        # Up to two VLAN tags (802.1Q, QinQ): switch span ports often keep them.
        for _ in range(2):
            if ethertype not in _VLAN_TAGS:
                break
            pos += 4
            if len(data) < pos + 2:
                return None
            ethertype = _U16.unpack_from(data, pos)[0]
        return pos + 2, ethertype
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if not data:
            return None
        version = data[0] >> 4
        return 0, ETH_IPV4 if version == 4 else ETH_IPV6 if version == 6 else 0
    if linktype == LINKTYPE_LINUX_SLL:
        if len(data) < 16:
            return None
        return 16, _U16.unpack_from(data, 14)[0]
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(data) < 20:
            return None
        return 20, _U16.unpack_from(data, 0)[0]
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(data) < 5:
            return None
        version = data[4] >> 4
        return 4, ETH_IPV4 if version == 4 else ETH_IPV6 if version == 6 else 0
    return None


def decode_tcp(linktype: int, data: bytes) -> Segment | None:
    """The TCP segment carried by a frame, or None (not IP, not TCP, a fragment, or broken)."""
    found = network_offset(linktype, data)
    if found is None:
        return None
    pos, ethertype = found
    end = len(data)
    if ethertype == ETH_IPV4:
        if end < pos + 20:
            return None
        first = data[pos]
        ihl = (first & 0x0F) * 4
        if first >> 4 != 4 or ihl < 20 or end < pos + ihl:
            return None
        total = _U16.unpack_from(data, pos + 2)[0]
        if total >= ihl and pos + total <= end:
            end = pos + total  # drop Ethernet padding
        if data[pos + 9] != 6:
            return None
        # Fragments other than a whole datagram are left alone: Modbus and OPC UA ride on TCP, whose
        # segments are not fragmented on a sane network; a fragmented one is counted, not reassembled.
        if _U16.unpack_from(data, pos + 6)[0] & 0x3FFF:
            return None
        src = data[pos + 12 : pos + 16]
        dst = data[pos + 16 : pos + 20]
        pos += ihl
    elif ethertype == ETH_IPV6:
        if end < pos + 40 or data[pos] >> 4 != 6:
            return None
        payload_len = _U16.unpack_from(data, pos + 4)[0]
        if pos + 40 + payload_len <= end:
            end = pos + 40 + payload_len
        next_header = data[pos + 6]
        src = data[pos + 8 : pos + 24]
        dst = data[pos + 24 : pos + 40]
        pos += 40
        for _ in range(4):
            if next_header not in _IPV6_EXTENSIONS:
                break
            if end < pos + 8:
                return None
            next_header, length = data[pos], (data[pos + 1] + 1) * 8
            pos += length
        if next_header != 6:
            return None
    else:
        return None
    if end < pos + 20:
        return None
    sport, dport, seq, _ack, offset_byte, flags = _TCP.unpack_from(data, pos)
    header_len = (offset_byte >> 4) * 4
    if header_len < 20 or pos + header_len > end:
        return None
    return Segment(src, dst, sport, dport, seq, flags, bytes(data[pos + header_len : end]))


_names: dict[bytes, str] = {}


def ip_text(address: bytes) -> str:
    """Dotted or colon notation of an address, cached (a capture has few distinct hosts)."""
    name = _names.get(address)
    if name is None:
        if len(address) == 4:
            name = socket.inet_ntop(socket.AF_INET, address)
        elif len(address) == 16:
            name = socket.inet_ntop(socket.AF_INET6, address)
        else:
            name = address.hex()
        if len(_names) < 65536:
            _names[address] = name
    return name
