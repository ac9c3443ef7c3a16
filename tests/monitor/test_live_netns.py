"""Live capture on a real Ethernet link: two network namespaces joined by a veth pair.

Namespace A holds the master (mbpoll, an independent Modbus client) and `seam watch --iface` on its end
of the link; namespace B holds pymodbus' server. Nothing leaves the namespaces this test creates, and
they are deleted in the end whatever happens.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from tests.monitor.conftest import REPO
from tests.support.output import OutputLines
from tests.support.wait import wait_until

SERVER = """
import asyncio, logging
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
async def main():
    plc = SimDevice(1, simdata=[SimData(0, values=[11, 22, 33, 44], datatype=DataType.REGISTERS)])
    server = ModbusTcpServer([plc], address=("10.199.0.2", 502))
    await server.serve_forever()
asyncio.run(main())
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def wait_for_listener(namespace: str, port: int, within: float) -> None:
    def listening() -> bool:
        out = subprocess.run(["ip", "netns", "exec", namespace, "ss", "-ltn"], capture_output=True, text=True).stdout
        return f":{port} " in out

    wait_until(listening, f"a listener on port {port} in {namespace}", within, interval=0.1)


def test_watch_a_veth_between_namespaces(tmp_path: Path) -> None:
    assert shutil.which("mbpoll"), "mbpoll is needed for this test (apt-get install mbpoll)"
    a, b = f"seammon{os.getpid()}a", f"seammon{os.getpid()}b"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        ip("netns", "add", a)
        ip("netns", "add", b)
        ip("link", "add", "vseam0", "netns", a, "type", "veth", "peer", "name", "vseam1", "netns", b)
        ip("-n", a, "addr", "add", "10.199.0.1/24", "dev", "vseam0")
        ip("-n", b, "addr", "add", "10.199.0.2/24", "dev", "vseam1")
        for namespace, device in ((a, "vseam0"), (b, "vseam1")):
            ip("-n", namespace, "link", "set", device, "up")
            ip("-n", namespace, "link", "set", "lo", "up")
        script = tmp_path / "server.py"
        script.write_text(SERVER)
        processes.append(subprocess.Popen(["ip", "netns", "exec", b, sys.executable, str(script)], cwd=REPO))
        wait_for_listener(b, 502, 20)
        seam = str(Path(sys.executable).parent / "seam")
        watcher = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                a,
                seam,
                "watch",
                "--iface",
                "vseam0",
                "--format",
                "jsonl",
                "--allow-master",
                "10.199.0.9",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )
        processes.append(watcher)
        assert watcher.stderr is not None
        ready = watcher.stderr.readline()
        assert b"capturing on vseam0" in ready, ready
        alerts_out = OutputLines(watcher.stdout)
        poll = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                a,
                "mbpoll",
                "-m",
                "tcp",
                "-a",
                "1",
                "-t",
                "4",
                "-r",
                "1",
                "-c",
                "4",
                "-1",
                "10.199.0.2",
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert "11" in poll.stdout and "44" in poll.stdout, poll.stdout + poll.stderr
        both = lambda: alerts_out.has('"MB-002"') and alerts_out.has('"MB-020"')  # noqa: E731
        wait_until(both, "the connection and read alerts (MB-020, MB-002)", detail=alerts_out.so_far)
        watcher.send_signal(signal.SIGINT)
        watcher.wait(30)
        out, err = alerts_out.text().encode(), watcher.stderr.read() if watcher.stderr else b""
        assert watcher.returncode == 0, err
        alerts = [json.loads(line) for line in out.decode().splitlines()]
        rules = {(x["rule"], x["src"], x["dst"], x["dport"]) for x in alerts}
        # mbpoll at 10.199.0.1 is not the allowed master: its connection and its read are both findings.
        assert ("MB-020", "10.199.0.1", "10.199.0.2", 502) in rules
        assert ("MB-002", "10.199.0.1", "10.199.0.2", 502) in rules
        read = next(x for x in alerts if x["rule"] == "MB-002")
        assert read["unit"] == 1 and read["function"] == 3
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for namespace in (a, b):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10)
