"""One-way by construction: sender and receiver in two network namespaces joined by a veth pair.

tcpdump captures every frame on the OT side's interface for the whole run; the test then checks that
each one came from the OT side. Static ARP on the OT side, ARP off and IPv6 off on the IT side, so the
operating system has no reason of its own to send anything either (as on a hardware diode, where the
IT side's transmit fibre does not exist). The /30 exists only inside these two namespaces.

The veth pair behaves like a physical link without segmentation offload in the card: the OT side's
kernel cuts the sender's segmented messages (UDP GSO) into separate 1,500-byte frames before they
reach the link (tcpdump sees those frames), and the IT side's kernel may join them again on receipt
(GRO, on by default on physical cards). Without this, a veth carries a 64 KiB message as one frame.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from otseam.core.records import Quality, Sample
from otseam.journal import Journal
from tests.support.netns import IT_ADDRESS, OT_ADDRESS, mac_of, namespace_pair, run
from tests.support.wait import wait_until

SEAM = str(Path(sys.executable).parent / "seam")


def wait_for_text(path: Path, text: str, timeout: float = 15.0) -> None:
    def content() -> str:
        return path.read_text(errors="replace") if path.exists() else ""

    wait_until(lambda: text in content(), f"{text!r} in {path}", timeout, detail=content)


def it_records(it: str) -> int:
    """Records the receiver in namespace ``it`` has written so far (its /health, read from inside)."""
    probe = "import json, urllib.request; print(json.load(urllib.request.urlopen('http://127.0.0.1:7401/health', timeout=2))['components']['source:diode']['detail']['records'])"
    out = subprocess.run(["ip", "netns", "exec", it, sys.executable, "-c", probe], capture_output=True, text=True)
    return int(out.stdout) if out.returncode == 0 and out.stdout.strip() else 0


def frames_in(pcap: Path) -> list[str]:
    """The frames of a capture, one line each (a capture still being written is read up to its last whole frame)."""
    return subprocess.run(["tcpdump", "-r", str(pcap), "-n", "-e"], capture_output=True, text=True).stdout.splitlines()


def transfer(tmp_path: Path, ot: str, it: str, records: list[Sample]) -> tuple[str, str, list[float]]:
    """Send ``records`` from an OT journal in ``ot`` to ``seam diode receive`` in ``it`` and stop the
    receiver; the sender's stderr, the receiver's log, and the gateway times in the IT journal."""
    key = tmp_path / "key"
    key.write_text(secrets.token_hex(32))
    with Journal.open(tmp_path / "ot", source="edge-ot") as journal:
        journal.append(records)
    receiver_log = tmp_path / "receiver.log"
    with receiver_log.open("wb") as out:
        receiver = subprocess.Popen(
            ["ip", "netns", "exec", it, SEAM, "diode", "receive", "--journal", str(tmp_path / "it"),
             "--listen", f"{IT_ADDRESS}:7400", "--key-file", str(key), "--metrics", "127.0.0.1:7401"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for_text(receiver_log, "listening on")
        sender = subprocess.run(
            ["ip", "netns", "exec", ot, SEAM, "diode", "send", "--journal", str(tmp_path / "ot"),
             "--target", f"{IT_ADDRESS}:7400", "--key-file", str(key), "--bind", OT_ADDRESS,
             "--rate", "200Mbit/s", "--drain"],
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        assert sender.returncode == 0, sender.stderr
        # The tail: the whole transfer is the time the IT side had to say something, and it never does.
        wait_until(lambda: it_records(it) >= len(records), f"{len(records)} records at the IT side", interval=0.2)
        receiver.send_signal(signal.SIGTERM)
        assert receiver.wait(15) == 0, receiver_log.read_text()
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    with Journal.open(tmp_path / "it") as journal:
        batch = journal.reader("check")._read(journal.first_offset, 100_000)
    received = [r.gateway_ts for r in batch.records if isinstance(r, Sample)]
    return sender.stderr, receiver_log.read_text(), received


def test_nothing_ever_travels_from_the_it_side(tmp_path: Path) -> None:
    records = [Sample(f"plc1/p{i % 40}", float(i), Quality.GOOD, 1.0, float(i)) for i in range(30_000)]
    pcap, capture_log = tmp_path / "ot.pcap", tmp_path / "tcpdump.log"
    with namespace_pair() as (ot, it, ot_dev, it_dev):
        ot_mac, it_mac = mac_of(ot, ot_dev), mac_of(it, it_dev)
        with capture_log.open("wb") as out:
            tcpdump = subprocess.Popen(
                ["ip", "netns", "exec", ot, "tcpdump", "-i", ot_dev, "-n", "-U", "-w", str(pcap)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_text(capture_log, "listening on")
            sender_log, receiver_log, received = transfer(tmp_path, ot, it, records)
            sent = int(re.search(r"(\d+) datagrams", sender_log).group(1))  # type: ignore[union-attr]
            wait_until(lambda: len(frames_in(pcap)) >= sent, f"the {sent} datagrams in the capture", interval=0.2)
            tcpdump.send_signal(signal.SIGINT)
            tcpdump.wait(10)
        finally:
            if tcpdump.poll() is None:
                tcpdump.kill()
                tcpdump.wait()
    frames = frames_in(pcap)
    sources = [line.split()[1] for line in frames]
    assert len(frames) > 700  # the whole transfer was captured
    # One datagram per frame, none larger than an Ethernet frame, even though the sender segments.
    assert max(int(re.search(r"length (\d+):", f).group(1)) for f in frames) <= 1514  # type: ignore[union-attr]
    assert set(sources) == {ot_mac}, f"frames not from the OT side: {[f for f in frames if ot_mac not in f][:5]}"
    assert it_mac not in sources
    # Every frame is one of our datagrams, OT address to the receiver's port: no ARP, no ICMP, no IPv6.
    assert all(f": {OT_ADDRESS}." in f and f"> {IT_ADDRESS}.7400: UDP" in f for f in frames)
    assert received == [float(i) for i in range(30_000)]
    assert "30000 records written" in receiver_log
    assert os.path.getsize(pcap) > 0


def test_a_link_with_a_smaller_mtu_turns_segmentation_off_and_still_delivers(tmp_path: Path) -> None:
    """A 1,400-byte link under 1,472-byte datagrams: the kernel refuses segmented messages (each
    segment must fit the link), the sender says so once and goes on one datagram per message, and the
    datagrams cross as IP fragments."""
    records = [Sample(f"plc1/p{i % 40}", "x" * 900, Quality.GOOD, 1.0, float(i)) for i in range(3_000)]
    with namespace_pair() as (ot, it, ot_dev, _it_dev):
        run("ip", "-n", ot, "link", "set", ot_dev, "mtu", "1400")
        sender_log, receiver_log, received = transfer(tmp_path, ot, it, records)
    assert sender_log.count("refuses segmented messages") == 1, sender_log
    assert "3000 records written" in receiver_log
    assert received == [float(i) for i in range(3_000)]
