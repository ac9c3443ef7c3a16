"""Reading capture files: classic pcap and pcapng, from memory.

A capture from a plant's span port is evidence, and evidence may be truncated (the capture was
stopped mid-write), corrupt (a bad disk, a bad copy) or hostile (crafted to crash the analyser). The
readers therefore never trust a length: each record header is checked against what is left, and the
first record that does not fit ends the walk with a note in :class:`CaptureStats` instead of an
exception. What was read before stays valid.

Frames are numbered from 1 in file order, counting only packet records, exactly as Wireshark does,
so that an alert's ``frame`` can be looked up in Wireshark directly.
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

# Link-layer header types (https://www.tcpdump.org/linktypes.html) that the decoder understands.
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

#: The link types the decoder reads (packet.network_offset), with the names a user knows them by.
LINKTYPE_NAMES = {
    LINKTYPE_NULL: "BSD loopback",
    LINKTYPE_ETHERNET: "Ethernet",
    LINKTYPE_RAW: "raw IP",
    LINKTYPE_LOOP: "OpenBSD loopback",
    LINKTYPE_LINUX_SLL: "Linux cooked",
    LINKTYPE_IPV4: "raw IPv4",
    LINKTYPE_IPV6: "raw IPv6",
    LINKTYPE_LINUX_SLL2: "Linux cooked v2",
}

#: No link layer carries frames this large; a bigger length is corruption, not a jumbo frame.
MAX_FRAME = 262_144

_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"


class Frame(NamedTuple):
    number: int  # 1-based, as in Wireshark
    ts: float  # seconds since the epoch
    linktype: int
    data: bytes


class CaptureError(ValueError):
    """The file is not a capture we can read at all (wrong format, empty, unreadable): bad input, so a
    ValueError, which the runtime reports as a problem with the settings rather than a plugin bug."""


@dataclass(slots=True)
class CaptureStats:
    frames: int = 0
    #: Why reading stopped early, if it did ("truncated record at byte 1234", ...).
    problems: list[str] = field(default_factory=list)


def check_capture_file(path: str | Path) -> None:
    """Refuse what is not a regular file before opening it: opening a FIFO blocks until a writer comes,
    and a device or a FIFO has no end to bound the read by."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise CaptureError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a directory"
            if stat.S_ISDIR(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "not a regular file"
        )
        raise CaptureError(
            f"{path}: is {kind}, not a capture file; save the capture to a file first (tcpdump -w FILE), "
            "or watch an interface with --iface"
        )


def read_capture(path: str | Path, stats: CaptureStats | None = None) -> Iterator[Frame]:
    """Frames of a pcap or pcapng file, detected by its magic number."""
    stats = stats if stats is not None else CaptureStats()
    check_capture_file(path)
    try:
        with open(path, "rb") as handle:
            size = Path(path).stat().st_size
            if size == 0:
                raise CaptureError(f"{path}: the file is empty")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
                yield from iter_frames(view, stats, name=str(path))
    except OSError as exc:
        raise CaptureError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def iter_frames(buf: bytes | mmap.mmap, stats: CaptureStats, name: str = "capture") -> Iterator[Frame]:
    head = bytes(buf[:4])
    if head in _PCAP_MAGIC:
        yield from _iter_pcap(buf, stats, name)
    elif head == _PCAPNG_SHB:
        yield from _iter_pcapng(buf, stats, name)
    else:
        raise CaptureError(f"{name}: not a pcap or pcapng file (starts with {head.hex() or 'nothing'})")


def _iter_pcap(buf: bytes | mmap.mmap, stats: CaptureStats, name: str) -> Iterator[Frame]:
    size = len(buf)
    if size < 24:
        raise CaptureError(f"{name}: the pcap file header is truncated ({size} of 24 bytes)")
    order, resolution = _PCAP_MAGIC[bytes(buf[:4])]
    (linktype_field,) = struct.unpack_from(order + "I", buf, 20)
    # The upper bits of the field carry FCS length flags; the link type is the low 16 bits.
    linktype = linktype_field & 0xFFFF
    record = struct.Struct(order + "IIII")
    unpack = record.unpack_from
    pos = 24
    number = 0
    while pos < size:
        if pos + 16 > size:
            stats.problems.append(f"{name}: truncated record header at byte {pos}")
            return
        sec, frac, incl, _orig = unpack(buf, pos)
        pos += 16
        if incl > MAX_FRAME:
            stats.problems.append(f"{name}: record at byte {pos - 16} claims {incl} bytes; stopped reading")
            return
        end = pos + incl
        if end > size:
            stats.problems.append(f"{name}: truncated record at byte {pos - 16} ({size - pos} of {incl} bytes)")
            return
        number += 1
        stats.frames = number
        yield Frame(number, sec + frac * resolution, linktype, buf[pos:end])
        pos = end


def _iter_pcapng(buf: bytes | mmap.mmap, stats: CaptureStats, name: str) -> Iterator[Frame]:
    for number, (ts, linktype, start, caplen) in enumerate(pcapng_records(buf, stats, name), 1):
        yield Frame(number, ts, linktype, buf[start : start + caplen])


def pcapng_records(buf: bytes | mmap.mmap, stats: CaptureStats, name: str) -> Iterator[tuple[float, int, int, int]]:
    """``(time, link type, data position, captured length)`` of each packet of a pcapng file, in order.

    The one walk over the blocks, shared by the per-frame reader and the fast path (which needs only the
    positions); ``stats`` counts the packets and notes why the walk stopped early.
    """
    size = len(buf)
    if size < 28:
        raise CaptureError(f"{name}: the pcapng section header is truncated ({size} of at least 28 bytes)")
    if bytes(buf[8:12]) not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
        raise CaptureError(f"{name}: the pcapng section header has no valid byte-order magic")
    order = "<" if bytes(buf[8:12]) == b"\x4d\x3c\x2b\x1a" else ">"
    (first_length,) = struct.unpack_from(order + "I", buf, 4)
    if first_length < 28 or first_length % 4 or first_length > size:
        raise CaptureError(f"{name}: the pcapng section header claims an impossible length {first_length}")
    pos = 0
    # Per section: the interfaces' link types and timestamp resolutions, by interface id.
    interfaces: list[tuple[int, float]] = []
    number = 0
    while pos < size:
        if pos + 12 > size:
            stats.problems.append(f"{name}: truncated block header at byte {pos}")
            return
        if bytes(buf[pos : pos + 4]) == _PCAPNG_SHB:
            bom = bytes(buf[pos + 8 : pos + 12])
            if bom == b"\x4d\x3c\x2b\x1a":
                order = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                order = ">"
            else:
                stats.problems.append(f"{name}: section header at byte {pos} has no valid byte-order magic")
                return
            interfaces = []
        block_type, block_len = struct.unpack_from(order + "II", buf, pos)
        if block_len < 12 or block_len % 4 or pos + block_len > size:
            stats.problems.append(f"{name}: block at byte {pos} has an impossible length {block_len}; stopped")
            return
        body = pos + 8
        body_end = pos + block_len - 4
        if block_type == 1:  # Interface Description Block
            if body_end - body < 8:
                stats.problems.append(f"{name}: interface block at byte {pos} is too short")
                return
            (linktype,) = struct.unpack_from(order + "H", buf, body)
            interfaces.append((linktype, if_tsresol(buf, body + 8, body_end, order)))
        elif block_type in (6, 2):  # Enhanced Packet Block, obsolete Packet Block
            if body_end - body < 20:
                stats.problems.append(f"{name}: packet block at byte {pos} is too short")
                return
            if block_type == 6:
                iface, ts_hi, ts_lo, caplen, _origlen = struct.unpack_from(order + "IIIII", buf, body)
            else:
                iface, _drops, ts_hi, ts_lo, caplen, _origlen = struct.unpack_from(order + "HHIIII", buf, body)
            data = body + 20
            if iface >= len(interfaces) or caplen > body_end - data or caplen > MAX_FRAME:
                stats.problems.append(f"{name}: packet block at byte {pos} is inconsistent; stopped")
                return
            linktype, resolution = interfaces[iface]
            number += 1
            stats.frames = number
            yield ((ts_hi << 32) | ts_lo) * resolution, linktype, data, caplen
        elif block_type == 3:  # Simple Packet Block: interface 0, no timestamp
            if body_end - body < 4 or not interfaces:
                stats.problems.append(f"{name}: simple packet block at byte {pos} is inconsistent; stopped")
                return
            (origlen,) = struct.unpack_from(order + "I", buf, body)
            caplen = min(origlen, body_end - body - 4, MAX_FRAME)
            number += 1
            stats.frames = number
            yield 0.0, interfaces[0][0], body + 4, caplen
        pos += block_len


def if_tsresol(buf: bytes | mmap.mmap, pos: int, end: int, order: str) -> float:
    """The interface's timestamp unit in seconds (option if_tsresol, code 9; microseconds by default)."""
    while pos + 4 <= end:
        code, length = struct.unpack_from(order + "HH", buf, pos)
        if code == 0:
            break
        value = pos + 4
        if code == 9 and length >= 1 and value < end:
            raw = buf[value]
            exponent = raw & 0x7F
            if exponent > 60:
                break  # nonsense; keep the default rather than a zero or infinite unit
            return float(2.0**-exponent if raw & 0x80 else 10.0**-exponent)
        pos = value + ((length + 3) & ~3)
    return 1e-6
