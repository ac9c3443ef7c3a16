"""Live capture on an interface (AF_PACKET): `seam watch --iface lo` sees real Modbus/TCP traffic.

The traffic is a raw-socket master talking to pymodbus' server on a free loopback port, so that nothing
leaves the machine; the port is passed with --modbus-port and every other flow on lo is ignored.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from otseam.monitor.live import capture
from tests.monitor.conftest import REPO
from tests.support.output import OutputLines
from tests.support.servers import free_port
from tests.support.wait import wait_until_async


def request(sock: socket.socket, tid: int, pdu: bytes) -> bytes:
    sock.sendall(struct.pack("!HHHB", tid, 0, len(pdu) + 1, 1) + pdu)
    sock.settimeout(5)
    return sock.recv(300)


def start_watch(port: int) -> subprocess.Popen[bytes]:
    seam = Path(sys.executable).parent / "seam"
    return subprocess.Popen(
        [str(seam), "watch", "--iface", "lo", "--modbus-port", str(port), "--format", "jsonl", "--duration", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        # As a shell without job control starts a background job: SIGINT ignored. The watcher must still
        # stop on it, cleanly (it installs its own handler, as seam run does).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )


async def test_watch_a_live_interface() -> None:
    port = free_port()
    watcher = start_watch(port)
    try:
        assert watcher.stderr is not None
        ready = watcher.stderr.readline()
        assert b"capturing on lo" in ready, ready + watcher.stderr.read()
        alerts_out = OutputLines(watcher.stdout)
        plc = SimDevice(1, simdata=[SimData(0, values=[7, 8, 9], datatype=DataType.REGISTERS)])
        server = ModbusTcpServer([plc], address=("127.0.0.1", port))
        await server.serve_forever(background=True)
        try:

            def talk() -> list[bytes]:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    return [
                        request(sock, 1, struct.pack("!BHH", 3, 0, 3)),
                        request(sock, 2, struct.pack("!BHH", 8, 1, 0)),  # restart communications
                    ]

            replies = await asyncio.get_running_loop().run_in_executor(None, talk)
        finally:
            await server.shutdown()
        assert replies[0][7] == 3
        await wait_until_async(
            lambda: alerts_out.has('"MB-004"'), "the restart alert (MB-004)", detail=alerts_out.so_far
        )
        watcher.send_signal(signal.SIGINT)  # Ctrl-C: stop watching, cleanly
        watcher.wait(30)
        out, err = alerts_out.text().encode(), watcher.stderr.read()
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert watcher.returncode == 0, err
    alerts = [json.loads(line) for line in out.decode().splitlines()]
    restart = [a for a in alerts if a["rule"] == "MB-004"]
    assert restart, alerts
    assert restart[0]["src"] == "127.0.0.1" and restart[0]["dport"] == port and restart[0]["function"] == 8
    assert restart[0]["frame"] >= 1


async def test_a_link_that_never_goes_quiet_still_lets_the_watcher_stop() -> None:
    """On a busy span port recvfrom never comes back empty: capture() must still give the event loop a
    turn, or Ctrl-C, --duration and stop would never be seen (found under load in CI). A socket whose
    queue holds thousands of frames stands in for such a link: stop is set by another task, and capture
    must end long before the queue is drained."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    queued = 5000
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for i in range(queued):
            sender.sendto(i.to_bytes(4, "big"), receiver.getsockname())
    stop = asyncio.Event()

    async def stop_soon() -> None:
        stop.set()

    asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(stop_soon()))
    frames = [frame async for frame in capture(receiver, "busy0", stop)]
    assert frames and len(frames) < queued // 10, len(frames)
    assert receiver.fileno() == -1  # capture closes its socket
