"""How fast the simulator's own Modbus/TCP server answers, next to two independent servers.

Each server runs in its own process (on core 1 when there are two), serving 10 unit ids with 2,000
holding registers; this process (core 0) is the load: raw asyncio connections sending reads of 125
registers (the Modbus maximum), either one request in flight per connection (as a cautious driver
polls) or 16 pipelined per connection. Every answer is checked (function, byte count, transaction id
in order); only correct answers are counted. The server's CPU time comes from /proc.

Servers:
  * seam sim (scale mode: 10 devices × 1,000 float32 points, every value new every second);
  * pymodbus 3.16's ModbusTcpServer with SimDevice data (the server most Python projects use);
  * modbus-serial's ServerTCP (JavaScript, node), from tests/interop/node_modules.

Run: .venv/bin/python bench/bench_sim.py [--seconds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNITS = 10
REGISTERS = 125

PYMODBUS_SERVER = """
import asyncio, logging, sys
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
def device(unit):
    regs = lambda: [SimData(0, values=[unit] * 2000, datatype=DataType.REGISTERS)]
    bits = lambda: [SimData(0, values=[False], datatype=DataType.BITS)]
    return SimDevice(unit, simdata=(bits(), bits(), regs(), regs()))
async def main():
    server = ModbusTcpServer([device(u) for u in range(1, int(sys.argv[2]) + 1)], address=("127.0.0.1", int(sys.argv[1])))
    await server.serve_forever()
asyncio.run(main())
"""

MODBUS_SERIAL_SERVER = """
const { ServerTCP } = require("modbus-serial");
const port = Number(process.argv[1]);
const vector = {
  getMultipleHoldingRegisters: (addr, length, unit) => new Array(length).fill(unit),
  getHoldingRegister: (addr, unit) => unit,
};
new ServerTCP(vector, { host: "127.0.0.1", port, unitID: 255 });
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(
                f"server exited with {process.returncode}: {process.stderr.read().decode() if process.stderr else ''}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Load(asyncio.Protocol):
    """One connection keeping ``window`` reads in flight, counting correct answers."""

    def __init__(self, window: int, index: int, totals: dict[str, int]) -> None:
        self.window = window
        self.index = index
        self.totals = totals
        self.buffer = bytearray()
        self.next_tid = 0
        self.expected_tid = 0
        self.transport: asyncio.Transport | None = None
        self.running = True

    def request(self) -> bytes:
        tid = self.next_tid
        self.next_tid = (tid + 1) & 0xFFFF
        unit = 1 + (self.index + tid) % UNITS
        start = 125 * (tid % 15)
        return struct.pack(">HHHBBHH", tid, 0, 6, unit, 3, start, REGISTERS)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"".join(self.request() for _ in range(self.window)))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        sent = []
        while len(buffer) >= 6:
            length = int.from_bytes(buffer[4:6], "big")
            end = 6 + length
            if len(buffer) < end:
                break
            tid = int.from_bytes(buffer[0:2], "big")
            good = (
                tid == self.expected_tid
                and buffer[7] == 3
                and buffer[8] == 2 * REGISTERS
                and length == 3 + 2 * REGISTERS
            )
            self.totals["good" if good else "bad"] += 1
            self.expected_tid = (tid + 1) & 0xFFFF
            del buffer[:end]
            if self.running:
                sent.append(self.request())
        if sent and self.transport is not None:
            self.transport.write(b"".join(sent))


async def measure(port: int, pid: int, connections: int, window: int, seconds: float) -> tuple[float, float, int]:
    loop = asyncio.get_running_loop()
    totals = {"good": 0, "bad": 0}
    protocols = []
    for index in range(connections):
        _, protocol = await loop.create_connection(lambda i=index: Load(window, i, totals), "127.0.0.1", port)
        protocols.append(protocol)
    await asyncio.sleep(1.0)  # warm-up
    good0, cpu0, t0 = totals["good"], cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(seconds)
    good1, cpu1, t1 = totals["good"], cpu_seconds(pid), time.perf_counter()
    for protocol in protocols:
        protocol.running = False
        if protocol.transport is not None:
            protocol.transport.close()
    rate = (good1 - good0) / (t1 - t0)
    cpu_per_request = (cpu1 - cpu0) / max(1, good1 - good0)
    return rate, cpu_per_request, totals["bad"]


def start(kind: str, port: int, core: int | None) -> subprocess.Popen[bytes]:
    pin = ["taskset", "-c", str(core)] if core is not None else []
    if kind == "seam sim":
        command = [
            sys.executable,
            "-m",
            "otseam.cli",
            "sim",
            "--no-opcua",
            "--devices",
            str(UNITS),
            "--points",
            "1000",
            "--cycle",
            "1s",
            "--modbus-port",
            str(port),
        ]
        env = None
    elif kind == "pymodbus":
        command = [sys.executable, "-c", PYMODBUS_SERVER, str(port), str(UNITS)]
        env = None
    else:
        command = ["node", "-e", MODBUS_SERIAL_SERVER, str(port)]
        env = {**os.environ, "NODE_PATH": str(ROOT / "tests" / "interop" / "node_modules")}
    return subprocess.Popen([*pin, *command], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0, help="measuring time per case")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    load_core, server_core = (cores[0], cores[1]) if len(cores) >= 2 else (None, None)
    if load_core is not None:
        os.sched_setaffinity(0, {load_core})
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; load generator on core {load_core}, servers on core {server_core}"
    )
    print(f"reads of {REGISTERS} holding registers, {UNITS} unit ids, {args.seconds:g} s per case after 1 s warm-up")
    print(f"{'server':<16} {'mode':<26} {'reads/s':>10} {'registers/s':>13} {'server CPU/read':>16} {'bad':>5}")
    for kind in ("seam sim", "pymodbus", "modbus-serial"):
        port = free_port()
        server = start(kind, port, server_core)
        try:
            wait_port(port, server)
            for connections, window, label in ((8, 1, "8 conn, 1 in flight"), (8, 16, "8 conn, 16 pipelined")):
                rate, cpu, bad = asyncio.run(measure(port, server.pid, connections, window, args.seconds))
                print(
                    f"{kind:<16} {label:<26} {rate:>10,.0f} {rate * REGISTERS:>13,.0f} {cpu * 1e6:>13,.0f} µs {bad:>5}",
                    flush=True,
                )
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    main()
