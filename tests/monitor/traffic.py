"""Captures made by the suite itself: real Modbus and OPC UA peers talk to `seam sim` on loopback
while tcpdump records, so that the monitor's tests need nothing from outside the repository.

The sim listens on 127.0.0.2 and the peers connect from 127.0.0.1 (the kernel's source address for
loopback), so a capture has two hosts: a master and a slave. Each peer gets a capture of its own:

- ``mbpoll.pcap``: mbpoll (libmodbus), one connection per request, reads of the four tables and writes
  of single and multiple coils and registers.
- ``modbus_serial.pcap``: modbus-serial (node), one connection, reads, writes and one exception 02.
- ``pymodbus.pcap``: pymodbus' client, device identification (43/14), report server id (17),
  diagnostics (8: restart communications, clear counters), then a function-code sweep answered with
  exception 01: what a reconnaissance tool sends.
- ``node_opcua.pcap``: node-opcua, a session without security: browse, read, write.

``MODBUS_SCRIPTS`` lists what each Modbus peer asks, so that tests compare the decoded requests with
what was really sent.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import free_port
from tests.support.wait import wait_until

SIM_HOST = "127.0.0.2"
PEER_HOST = "127.0.0.1"
INTEROP = Path(__file__).resolve().parents[1] / "interop"
TIMEOUT = 60.0

#: (unit, function, address, quantity) of every request each Modbus peer sends, in order. For function
#: 5 and 6 the quantity is None (one item); for requests without an address both are None.
Request = tuple[int, int, int | None, int | None]
MBPOLL_RUNS: list[tuple[list[str], Request]] = [
    (["-a", "1", "-t", "3", "-r", "0", "-c", "6"], (1, 4, 0, 6)),
    (["-a", "2", "-t", "0", "-r", "0", "-c", "10"], (2, 1, 0, 10)),
    (["-a", "1", "-t", "1", "-r", "0", "-c", "2"], (1, 2, 0, 2)),
    (["-a", "3", "-t", "4", "-r", "0", "-c", "6"], (3, 3, 0, 6)),
    (["-a", "2", "-t", "0", "-r", "8", "WRITE", "1"], (2, 5, 8, None)),
    (["-a", "2", "-t", "0", "-r", "8", "WRITE", "1", "0"], (2, 15, 8, 2)),
    (["-a", "3", "-t", "4", "-r", "2", "WRITE", "16256", "0"], (3, 16, 2, 2)),
    (["-a", "3", "-t", "4", "-r", "4", "WRITE", "120"], (3, 6, 4, None)),
]
MODBUS_SCRIPTS: dict[str, list[Request]] = {
    "mbpoll.pcap": [request for _args, request in MBPOLL_RUNS],
    "modbus_serial.pcap": [
        (1, 4, 0, 6),
        (1, 2, 0, 2),
        (1, 1, 0, 1),
        (2, 3, 0, 1),
        (2, 5, 8, None),
        (2, 15, 8, 2),
        (3, 3, 0, 6),
        (3, 16, 2, 2),
        (3, 3, 9000, 2),
    ],
}
#: Functions the pymodbus peer sweeps after its regular requests; the sim answers each with exception 01.
SWEEP = [7, 9, 10, 11, 12, 13, 14, 18, 19, 20, 21, 22, 24, 25, 26, 27]
CAPTURES = ["mbpoll.pcap", "modbus_serial.pcap", "pymodbus.pcap", "node_opcua.pcap"]


@dataclass
class Sim:
    process: subprocess.Popen[str]
    modbus_port: int
    opcua_endpoint: str


def _seam() -> list[str]:
    return [sys.executable, "-m", "otseam.cli"]


@contextlib.contextmanager
def running_sim() -> Iterator[Sim]:
    process = subprocess.Popen(
        [*_seam(), "sim", "--host", SIM_HOST, "--modbus-port", "0", "--opcua-port", "0", "--seed", "5"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        modbus_port, endpoint, seen = 0, "", []
        for line in process.stderr:  # the banner: ports first, then the seed line
            seen.append(line)
            if match := re.search(r"Modbus/TCP on [\d.]+:(\d+)", line):
                modbus_port = int(match.group(1))
            if match := re.search(r"OPC UA on (opc\.tcp://\S+)", line):
                endpoint = match.group(1)
            if "seed" in line:
                break
        assert modbus_port and endpoint, "seam sim did not start: " + "".join(seen)
        yield Sim(process, modbus_port, endpoint)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


#: The payload of the probe that marks the end of a capture.
CLOSING_PROBE = b"seam capture end"


@dataclass
class Recording:
    """What tcpdump said when it stopped: packets the kernel dropped (the capture then has holes)."""

    dropped: int = 0


_DROPPED = re.compile(rb"(\d+) packets? dropped by kernel")


@contextlib.contextmanager
def tcpdump(port: int, path: Path) -> Iterator[Recording]:
    """tcpdump on lo, recording TCP port ``port``, live before the body runs.

    "listening on" is printed before the kernel delivers packets to the filter for certain, so a probe
    (UDP datagrams to a port nobody listens on, a few frames the monitor counts as not TCP) is sent
    until tcpdump has written one. ``dropped`` is filled in once tcpdump has exited.
    """
    binary = shutil.which("tcpdump") or "/usr/sbin/tcpdump"
    probe_port = free_port(socket.SOCK_DGRAM)
    recording = Recording()
    # --immediate-mode: every packet is handed over at once, so SIGINT loses none still in the ring. It
    # also makes the ring one slot per packet of the snapshot length: with "-s 0" (256 KiB) tcpdump's
    # default 2 MiB held eight packets, and a burst while tcpdump waited for a core lost the rest. A
    # slot of loopback's largest frame and a 32 MiB ring hold some five hundred.
    options = ["-i", "lo", "--immediate-mode", "-U", "-s", "65600", "-B", "32768", "-w", str(path)]
    process = subprocess.Popen(
        [binary, *options, "tcp", "port", str(port), "or", "udp", "port", str(probe_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert b"listening on" in line, line + process.stderr.read()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:

            def recorded() -> bool:
                probe.sendto(b"seam capture probe", (PEER_HOST, probe_port))
                return path.exists() and path.stat().st_size > 24

            wait_until(recorded, "tcpdump to record its probe", TIMEOUT)
        yield recording
        # A closing probe, sent after everything the body sent: once tcpdump has written it (the file
        # ends with its payload), every packet before it is in the file too, and SIGINT loses nothing.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:

            def closed() -> bool:
                probe.sendto(CLOSING_PROBE, (PEER_HOST, probe_port))
                return path.read_bytes().endswith(CLOSING_PROBE)

            wait_until(closed, "tcpdump to record everything before its closing probe", TIMEOUT)
    finally:
        # SIGINT: tcpdump writes what it holds and exits; the file is then complete.
        process.send_signal(signal.SIGINT)
        try:
            _, report = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            _, report = process.communicate()
        found = _DROPPED.search(report or b"")
        recording.dropped = int(found.group(1)) if found else 0


def _run(command: list[str], env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert result.returncode == 0, f"{command[0]} failed ({result.returncode}): {result.stderr}{result.stdout}"
    return result.stdout


def mbpoll(port: int) -> None:
    binary = shutil.which("mbpoll") or "/usr/bin/mbpoll"
    for args, _request in MBPOLL_RUNS:
        options = [a for a in args if a != "WRITE"]
        if "WRITE" in args:
            at = args.index("WRITE")
            options = args[:at]
            values = args[at + 1 :]
        else:
            values = []
        # -0: addresses as on the wire; -1: one poll; -o: answer timeout in seconds.
        _run([binary, "-m", "tcp", "-p", str(port), "-0", "-1", "-o", "5", *options, SIM_HOST, *values])


def node_env() -> dict[str, str]:
    return {**os.environ, "NODE_PATH": str(INTEROP / "node_modules")}


def modbus_serial(port: int) -> None:
    out = _run(["node", str(INTEROP / "modbus_client.js"), SIM_HOST, str(port)], node_env())
    assert "done" in out, out


def node_opcua(endpoint: str) -> None:
    out = _run(
        ["node", str(INTEROP / "opcua_capture_client.js"), endpoint, "ns=2;s=Tank2.LevelHighSetpoint", "2.2"],
        node_env(),
    )
    assert "done Good" in out, out


def pymodbus(port: int) -> None:
    from pymodbus.client import ModbusTcpClient
    from pymodbus.pdu import ModbusPDU

    class Sweep(ModbusPDU):  # type: ignore[misc]
        """A request with a bare function code and no data: what a function-code scanner sends."""

        function_code = 0
        rtu_frame_size = 4

        def encode(self) -> bytes:
            return b""

        def decode(self, data: bytes) -> None:
            pass

    client = ModbusTcpClient(SIM_HOST, port=port, timeout=5, retries=0)
    assert client.connect(), f"pymodbus could not connect to {SIM_HOST}:{port}"
    try:
        assert not client.read_holding_registers(0, count=2, device_id=3).isError()
        assert not client.read_device_information(read_code=1, object_id=0, device_id=1).isError()
        client.report_device_id(device_id=1)
        client.diag_restart_communication(False, device_id=1)
        client.diag_clear_counters(device_id=1)
        for code in SWEEP:
            pdu = Sweep(dev_id=1)
            pdu.function_code = code
            client.execute(False, pdu)
    finally:
        client.close()


def server_port(capture: Path) -> int:
    """The sim's port in ``capture`` (recorded by ``generate`` beside the captures)."""
    ports: dict[str, int] = json.loads((capture.parent / "ports.json").read_text())
    return ports[capture.name]


def tshark_decode_as(capture: Path) -> list[str]:
    """tshark options that decode the sim's Modbus port as Modbus/TCP (tshark only knows port 502)."""
    if not (capture.parent / "ports.json").is_file() or capture.name == "node_opcua.pcap":
        return []
    return ["-d", f"tcp.port=={server_port(capture)},mbtcp"]


def generate(directory: Path) -> dict[str, Path]:
    """Record each peer's conversation with one sim; returns the captures by name."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / name for name in CAPTURES}
    with running_sim() as sim:
        opcua_port = int(sim.opcua_endpoint.rsplit(":", 1)[1].split("/", 1)[0])
        ports = {name: sim.modbus_port for name in CAPTURES}
        ports["node_opcua.pcap"] = opcua_port
        (directory / "ports.json").write_text(json.dumps(ports))
        record(sim.modbus_port, paths["mbpoll.pcap"], lambda: mbpoll(sim.modbus_port))
        record(sim.modbus_port, paths["modbus_serial.pcap"], lambda: modbus_serial(sim.modbus_port))
        record(sim.modbus_port, paths["pymodbus.pcap"], lambda: pymodbus(sim.modbus_port))
        record(opcua_port, paths["node_opcua.pcap"], lambda: node_opcua(sim.opcua_endpoint))
    return paths


def record(port: int, path: Path, conversation: Callable[[], None], attempts: int = 3) -> None:
    """One peer's conversation into ``path``, whole: a recording in which the kernel dropped packets
    (a loaded machine) is made again, as the tests read the capture, not the kernel's luck."""
    for _ in range(attempts):
        with tcpdump(port, path) as recording:
            conversation()
        if recording.dropped == 0:
            return
    raise AssertionError(f"tcpdump lost packets in each of {attempts} recordings of {path.name}")


if __name__ == "__main__":
    for capture_name, capture_path in generate(Path(sys.argv[1] if len(sys.argv) > 1 else "captures")).items():
        print(capture_name, capture_path.stat().st_size)
