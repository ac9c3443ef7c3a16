"""Two network namespaces joined by a veth pair: an OT host and an IT host on one machine.

The /30 exists only inside the two namespaces the test creates. The IT side has ARP and IPv6 off and
the OT side knows the IT side's MAC address statically, so the operating system has no reason of its
own to send anything from IT to OT (as on a hardware diode, whose IT-side transmit fibre does not
exist). Each namespace's loopback is up, so services inside it (a simulator, a broker) listen on
127.0.0.1 of that namespace only.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import subprocess
from collections.abc import Iterator

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
