"""Live capture from a network interface (a switch's span or mirror port) with an AF_PACKET raw socket.

Linux only, and it needs CAP_NET_RAW (root, or the capability granted to the interpreter). The socket
is read-only in effect: the monitor never sends a byte, so it cannot disturb the process network.

* **Filtered in the kernel.** A classic BPF program is attached before the socket is bound, so that no
  unfiltered packet is ever queued: only TCP over IPv4 or IPv6 (VLAN-tagged or not) reaches the
  monitor, and on loopback the outgoing copy of each packet (the kernel shows it twice) is dropped there
  too. Everything else costs the kernel a few instructions instead of a wake-up and a copy to Python.
* **Kernel timestamps.** Each frame carries the time the kernel received it (``SO_TIMESTAMPNS``), not
  the time Python got round to reading it, so a backlog does not shift alert times.
* **Drops are counted.** When the socket's buffer overflows the kernel drops packets and says so
  (``PACKET_STATISTICS``); :meth:`LiveCapture.statistics` accumulates those counts, which the watch
  summary, the capture source's metrics and its health report. A monitor that lost packets says so.
"""

from __future__ import annotations

import asyncio
import ctypes
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

from otseam.monitor.capture import LINKTYPE_ETHERNET, MAX_FRAME, Frame

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
#: BPF's ancillary load of the packet type (SKF_AD_OFF + SKF_AD_PKTTYPE).
_SKF_AD_PKTTYPE = 0xFFFFF000 + 4
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0

# Classic BPF opcodes used below.
_LD_H_ABS, _LD_B_ABS, _LD_W_ABS, _JEQ_K, _RET_K = 0x28, 0x30, 0x20, 0x15, 0x06


def tcp_filter(drop_outgoing: bool) -> list[tuple[int, int, int, int]]:
    """The BPF program: accept TCP over IPv4/IPv6, plain or in one VLAN tag; drop everything else.

    Written with labels and resolved here, so that a jump can never land off by one.
    """
    accept, drop = "accept", "drop"
    program: list[tuple[str | None, int, str | None, str | None, int]] = []
    if drop_outgoing:
        program += [(None, _LD_W_ABS, None, None, _SKF_AD_PKTTYPE), (None, _JEQ_K, drop, None, PACKET_OUTGOING)]
    program += [
        (None, _LD_H_ABS, None, None, 12),  # EtherType
        (None, _JEQ_K, "ipv4", None, 0x0800),
        (None, _JEQ_K, "ipv6", None, 0x86DD),
        (None, _JEQ_K, None, drop, 0x8100),
        (None, _LD_H_ABS, None, None, 16),  # EtherType after a VLAN tag
        (None, _JEQ_K, "vlan4", None, 0x0800),
        (None, _JEQ_K, "vlan6", drop, 0x86DD),
        ("ipv4", _LD_B_ABS, None, None, 14 + 9),  # IPv4 protocol
        (None, _JEQ_K, accept, drop, 6),
        ("ipv6", _LD_B_ABS, None, None, 14 + 6),  # IPv6 next header (no extension headers)
        (None, _JEQ_K, accept, drop, 6),
        ("vlan4", _LD_B_ABS, None, None, 18 + 9),
        (None, _JEQ_K, accept, drop, 6),
        ("vlan6", _LD_B_ABS, None, None, 18 + 6),
        (None, _JEQ_K, accept, drop, 6),
        (accept, _RET_K, None, None, MAX_FRAME),
        (drop, _RET_K, None, None, 0),
    ]
    where = {label: index for index, (label, *_rest) in enumerate(program) if label is not None}
    resolved = []
    for index, (_label, code, true, false, k) in enumerate(program):
        jt = where[true] - index - 1 if true else 0
        jf = where[false] - index - 1 if false else 0
        resolved.append((code, jt, jf, k))
    return resolved


class LiveCaptureError(Exception):
    """The interface cannot be opened (no such interface, no permission), with what to do about it."""


@dataclass(slots=True)
class CaptureCounters:
    """What the kernel says about the socket since it was opened."""

    #: Packets that passed the filter (delivered to the socket or dropped for lack of room).
    received: int = 0
    #: Packets that passed the filter but were dropped because the socket's buffer was full.
    dropped: int = 0


class LiveCapture:
    """An AF_PACKET socket on one interface, filtered in the kernel; read it with :meth:`frames`."""

    def __init__(self, name: str, *, receive_buffer: int | None = None) -> None:
        if not hasattr(socket, "AF_PACKET"):
            raise LiveCaptureError(
                "live capture needs Linux (AF_PACKET sockets); use --pcap with a capture file instead"
            )
        self.name = name
        self.counters = CaptureCounters()
        try:
            # Protocol 0: nothing is queued until bind() names one, after the filter is in place.
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise LiveCaptureError(
                f"no permission to capture on {name}: run as root or grant CAP_NET_RAW to the Python interpreter"
            ) from None
        try:
            _attach(sock, tcp_filter(drop_outgoing=name == "lo"))
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            if receive_buffer is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.bind((name, ETH_P_ALL))
        except OSError as exc:
            sock.close()
            raise LiveCaptureError(f"cannot capture on interface {name!r}: {exc.strerror or exc}") from None
        sock.setblocking(False)
        self.sock = sock

    def statistics(self) -> CaptureCounters:
        """The kernel's counts, accumulated (the kernel resets them on every read)."""
        if self.sock.fileno() >= 0:
            raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            packets, drops = struct.unpack("@II", raw)
            self.counters.received += packets
            self.counters.dropped += drops
        return self.counters

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.statistics()
            self.sock.close()

    def read(self, number: int) -> Frame | None:
        """One frame if one is queued, else None."""
        try:
            data, ancillary, _flags, _address = self.sock.recvmsg(MAX_FRAME, _ANCILLARY)
        except BlockingIOError:
            return None
        ts = 0.0
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                ts = seconds + nanoseconds / 1e9
        return Frame(number, ts, LINKTYPE_ETHERNET, data)

    async def frames(self, stop: asyncio.Event | None = None) -> AsyncIterator[Frame]:
        """Frames until ``stop`` is set or the task is cancelled; the socket is closed at the end."""
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        loop.add_reader(self.sock.fileno(), ready.set)
        number = reads = 0
        try:
            while stop is None or not stop.is_set():
                reads += 1
                if reads % YIELD_EVERY == 0:
                    # On a link that never goes quiet (a busy span port) recvmsg would never come back empty,
                    # and without this the event loop would never run: no Ctrl-C, no --duration, no stop.
                    await asyncio.sleep(0)
                frame = self.read(number + 1)
                if frame is None:
                    ready.clear()
                    waiter = asyncio.ensure_future(ready.wait())
                    stopper = asyncio.ensure_future(stop.wait()) if stop is not None else None
                    tasks = [t for t in (waiter, stopper) if t is not None]
                    try:
                        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        for task in tasks:
                            task.cancel()
                    continue
                number += 1
                yield frame
        finally:
            loop.remove_reader(self.sock.fileno())
            self.close()


def _attach(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    instructions = b"".join(struct.pack("HBBI", code, jt, jf, k) for code, jt, jf, k in program)
    buffer = ctypes.create_string_buffer(instructions)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies the program


#: Frames read in a row before the event loop gets a turn, however busy the link.
YIELD_EVERY = 64


def open_interface(name: str) -> LiveCapture:
    return LiveCapture(name)
