"""Two network namespaces joined by a veth pair: an OT host and an IT host on one machine.

The /30 exists only inside the two namespaces the test creates. The IT side has ARP and IPv6 off and
the OT side knows the IT side's MAC address statically, so the operating system has no reason of its
own to send anything from IT to OT (as on a hardware diode, whose IT-side transmit fibre does not
exist). Each namespace's loopback is up, so services inside it (a simulator, a broker) listen on
127.0.0.1 of that namespace only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import secrets
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000

OT_ADDRESS, IT_ADDRESS = "10.203.77.1", "10.203.77.2"


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def mac_of(namespace: str, device: str) -> str:
    match = re.search(r"link/ether ([0-9a-f:]{17})", run("ip", "-n", namespace, "link", "show", device))
    assert match
    return match.group(1)


@contextlib.contextmanager
def namespace_pair() -> Iterator[tuple[str, str, str, str]]:
    """(OT namespace, IT namespace, OT interface, IT interface); removed again on exit."""
    tag = secrets.token_hex(3)
    ot, it, ot_dev, it_dev = f"seam-ot-{tag}", f"seam-it-{tag}", f"vo{tag}", f"vi{tag}"
    try:
        run("ip", "netns", "add", ot)
        run("ip", "netns", "add", it)
        for ns in (ot, it):
            run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1")
            run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1")
            run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "link", "add", ot_dev, "netns", ot, "type", "veth", "peer", "name", it_dev, "netns", it)
        run("ip", "-n", ot, "addr", "add", f"{OT_ADDRESS}/30", "dev", ot_dev)
        run("ip", "-n", it, "addr", "add", f"{IT_ADDRESS}/30", "dev", it_dev)
        run("ip", "-n", it, "link", "set", it_dev, "arp", "off")
        run("ip", "-n", ot, "neigh", "add", IT_ADDRESS, "lladdr", mac_of(it, it_dev), "dev", ot_dev, "nud", "permanent")
        run("ip", "netns", "exec", ot, "ethtool", "-K", ot_dev, "tx-udp-segmentation", "off")
        run("ip", "netns", "exec", it, "ethtool", "-K", it_dev, "gro", "on")
        run("ip", "-n", ot, "link", "set", ot_dev, "up")
        run("ip", "-n", it, "link", "set", it_dev, "up")
        yield ot, it, ot_dev, it_dev
    finally:
        for ns in (ot, it):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@contextlib.contextmanager
def loopback_namespace() -> Iterator[str]:
    """A network namespace with only its own loopback, up; removed again on exit.

    Its `lo` carries what the test sends and nothing else: a capture there sees no other test's traffic.
    """
    name = f"seam-lo-{secrets.token_hex(3)}"
    run("ip", "netns", "add", name)
    try:
        run("ip", "-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def enter_namespace(name: str) -> None:
    """Move the calling thread (only it) into network namespace ``name``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name}")
    finally:
        os.close(fd)


def in_namespace(name: str, make: Callable[[], T]) -> T:
    """``make()`` run in network namespace ``name``, in a thread of its own: the sockets it opens belong
    to that namespace for their whole life, whichever thread uses them later (the namespace is a
    property of a thread, so the test's own threads stay where they are)."""
    result: list[T] = []
    failure: list[BaseException] = []

    def enter_and_make() -> None:
        try:
            enter_namespace(name)
            result.append(make())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=enter_and_make, name=f"netns {name}")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]
