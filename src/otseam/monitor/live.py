"""Live capture from a network interface (a switch's span or mirror port) with an AF_PACKET raw socket.

Linux only, and it needs CAP_NET_RAW (root, or the capability granted to the interpreter). The socket
is read-only in effect: the monitor never sends a byte, so it cannot disturb the process network.

On the loopback interface the kernel shows each packet twice (once leaving, once arriving); the
outgoing copy is dropped there, as libpcap does. On a real span port every copy is a distinct packet.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

from otseam.monitor.capture import LINKTYPE_ETHERNET, MAX_FRAME, Frame

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


class LiveCaptureError(Exception):
    """The interface cannot be opened (no such interface, no permission), with what to do about it."""


def open_interface(name: str) -> socket.socket:
    if not hasattr(socket, "AF_PACKET"):
        raise LiveCaptureError("live capture needs Linux (AF_PACKET sockets); use --pcap with a capture file instead")
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    except PermissionError:
        raise LiveCaptureError(
            f"no permission to capture on {name}: run as root or grant CAP_NET_RAW to the Python interpreter"
        ) from None
    try:
        sock.bind((name, 0))
    except OSError as exc:
        sock.close()
        raise LiveCaptureError(f"cannot capture on interface {name!r}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


#: Frames read in a row before the event loop gets a turn, however busy the link.
YIELD_EVERY = 64


async def capture(sock: socket.socket, name: str, stop: asyncio.Event | None = None) -> AsyncIterator[Frame]:
    """Frames from a socket made by :func:`open_interface`, until ``stop`` is set or the task is cancelled.

    The socket is closed at the end.
    """
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    loop.add_reader(sock.fileno(), ready.set)
    loopback = name == "lo"
    number = reads = 0
    try:
        while stop is None or not stop.is_set():
            reads += 1
            if reads % YIELD_EVERY == 0:
                # On a link that never goes quiet (a busy span port) recvfrom would never come back empty,
                # and without this the event loop would never run: no Ctrl-C, no --duration, no stop.
                await asyncio.sleep(0)
            try:
                data, address = sock.recvfrom(MAX_FRAME)
            except BlockingIOError:
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
            if loopback and address[2] == PACKET_OUTGOING:
                continue
            number += 1
            yield Frame(number, time.time(), LINKTYPE_ETHERNET, data)
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()
