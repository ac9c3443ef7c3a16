"""The PLCs of bench_peers.py: one Modbus/TCP server per device, every value new every cycle.

    python bench/peers_sim.py --devices 4 --points 1000 --tick 0.1 --cycles cycles.txt

Built from the simulator's own parts (``otseam.sim``'s register bank and Modbus/TCP server, the ones
``seam sim`` serves with), with one difference from its scale mode: every point is a uint32 (ABCD, two
holding registers, point ``j`` at ``hr:2j``) whose value is ``j << 20 | cycle``. So every value changes
at every cycle, and a subscriber that receives a value knows which point it is (the high bits, a check
that nothing was mixed up on the way) and which cycle it belongs to (the low 20 bits). The time each
cycle was installed, the PLC's change, is appended to the ``--cycles`` file as ``cycle epoch_seconds``,
so the subscriber computes latency from the change to its receipt on the same clock. Every read served
is appended to the ``--reads`` file as ``device first_register count cycle epoch_seconds``: a poller's
phase against the PLC's cycle is arbitrary (anywhere in one period, fixed for a run), so the latency
from the read to the subscriber is what says how fast the gateway itself is.

Prints one JSON line with the ports once every server listens; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import struct
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from otseam.sim.bank import RegisterBank, Unit  # noqa: E402
from otseam.sim.modbus_server import ModbusTcpServer  # noqa: E402

CYCLE_BITS = 20
CYCLE_MASK = (1 << CYCLE_BITS) - 1
MAX_POINTS = 1 << (32 - CYCLE_BITS)


class LoggedBank(RegisterBank):
    """A bank of one device that notes every holding-register read it serves, with the cycle it showed."""

    def __init__(self, unit: Unit, device: int, clock: list[int], reads: list[str]) -> None:
        super().__init__([unit])
        self.device, self.clock, self.reads = device, clock, reads

    def handle_pdu(self, unit_id: int, pdu: bytes) -> bytes | None:
        answer = super().handle_pdu(unit_id, pdu)
        if len(pdu) == 5 and pdu[0] == 3 and answer and answer[0] == 3:
            first, count = struct.unpack_from(">HH", pdu, 1)
            self.reads.append(f"{self.device} {first} {count} {self.clock[0]} {time.time():.6f}\n")
        return answer


def image(points: int, cycle: int) -> np.ndarray:
    """The holding registers of one device at ``cycle``: uint32 ``j << 20 | cycle``, big-endian words."""
    values = (np.arange(points, dtype=np.uint32) << CYCLE_BITS) | np.uint32(cycle & CYCLE_MASK)
    return values.astype(">u4").view(">u2")


async def serve(devices: int, points: int, tick: float, cycles_file: Path, reads_file: Path, host: str) -> None:
    units = [Unit.sized(1, holding=2 * points) for _ in range(devices)]
    clock, reads = [0], []  # the cycle on show; reads not yet written
    servers = [ModbusTcpServer(LoggedBank(unit, n, clock, reads), host, 0) for n, unit in enumerate(units, 1)]
    for server in servers:
        await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"ports": [s.port for s in servers]}), flush=True)
    cycle, next_at = 0, loop.time()
    with cycles_file.open("a", buffering=1) as log, reads_file.open("a") as read_log:
        while not stop.is_set():
            cycle += 1
            registers = image(points, cycle)
            for unit in units:
                unit.holding = registers  # one assignment: a read never sees half a cycle
            clock[0] = cycle
            log.write(f"{cycle} {time.time():.6f}\n")
            read_log.writelines(reads)
            read_log.flush()
            reads.clear()
            next_at += tick
            behind = loop.time() - next_at
            if behind > tick:  # an overloaded machine: skip ahead rather than burst
                next_at += tick * int(behind / tick)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - loop.time()))
        read_log.writelines(reads)
    for server in servers:
        await server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--tick", type=float, default=1.0, help="seconds between cycles")
    parser.add_argument("--cycles", type=Path, required=True, help="file the change times are appended to")
    parser.add_argument("--reads", type=Path, required=True, help="file the reads served are appended to")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    if not 1 <= args.points <= MAX_POINTS:
        parser.error(f"--points must be 1 to {MAX_POINTS}")
    asyncio.run(serve(args.devices, args.points, args.tick, args.cycles, args.reads, args.host))
    return 0


if __name__ == "__main__":
    sys.exit(main())
