"""Modbus driver benchmark: float32 points per second polled, decoded and appended to the journal.

    .venv/bin/python bench/bench_modbus.py [--devices 20] [--points 2000] [--seconds 20]

In one run:
  * the simulator (``seam sim`` scale mode, every value new every cycle) runs in a separate process
    pinned to core 1;
  * this process is pinned to core 0 and runs one Modbus driver per simulated device, the samples
    going straight into a real otseam.journal.Journal (no pipeline), and reports points/s decoded and
    appended, CPU% of one core, the garbage collector's share and the resident memory of this
    process; a sample of the decoded values is checked against the simulator's own formula. By
    default the start-up heap is frozen (gc.freeze()) once the drivers are built, as a long-running
    edge process should; --no-gc-freeze measures without;
  * the client comparison: 125-register reads in a loop against the same simulator with pymodbus'
    AsyncModbusTcpClient and with the driver's own link, one request at a time, reads/s and CPU
    microseconds per read (why the driver has its own client);
  * EMQX Neuron's published figures, for scale (not measured here).
Bounded: about a minute with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import operator
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from otseam.contract.models import Device
from otseam.core.plugins import PluginContext
from otseam.core.records import Record, Sample
from otseam.drivers.modbus import create
from otseam.drivers.modbus.config import parse_endpoint
from otseam.drivers.modbus.framing import parse_read_response, read_request
from otseam.drivers.modbus.transport import open_link
from otseam.journal import Journal
from otseam.sim.bank import RegisterBank
from otseam.sim.scale import ScaleSim

_third = operator.itemgetter(2)
NEURON = "EMQX Neuron (C, published, 4 Xeon cores): 100,000 Modbus points/s at 30% of 4 cores (1.2 cores), 497 MB"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise SystemExit(f"the simulator did not start listening on port {port}")


def rss_mb() -> tuple[float, float]:
    """Resident and peak resident memory of this process, MB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def devices(port: int, count: int, points: int, poll: str, in_flight: int) -> list[Device]:
    return [
        Device.model_validate(
            {
                "id": f"dev{unit}",
                "driver": "modbus",
                "endpoint": f"tcp://127.0.0.1:{port}",
                "unit": unit,
                "zone": "bench",
                "poll": poll,
                "constraints": {"timeout": "5s"},
                "options": {"max_in_flight": in_flight},
                "points": [{"id": f"p{j}", "address": f"hr:{2 * j}", "type": "float32"} for j in range(points)],
            }
        )
        for unit in range(1, count + 1)
    ]


class GcClock:
    """Time spent in the garbage collector (a share of the CPU figures, worth knowing)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self.by_generation = [0.0, 0.0, 0.0]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            spent = time.process_time() - self._started
            self.seconds += spent
            self.by_generation[info["generation"]] += spent
            self.collections += 1


GC = GcClock()


class Counter:
    """The drivers' emit: append to the journal, count good samples, keep the last batch per device."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.good = 0
        self.other = 0
        self.last: dict[str, list[Sample]] = {}
        self.journal_cpu = 0.0

    async def __call__(self, records: Sequence[Record]) -> None:
        started = time.process_time()
        self.journal.append(records)
        self.journal_cpu += time.process_time() - started
        # Quality.GOOD is 0: counting the non-zero third fields in C keeps the bench's own cost small.
        other = sum(map(bool, map(_third, records)))
        self.good += len(records) - other
        self.other += other
        if not other and records:
            self.last[records[0][0].partition("/")[0]] = records  # type: ignore[assignment]


def verify(counter: Counter, sim: ScaleSim, per_read: int = 62) -> tuple[int, int]:
    """Check the last poll of each device against the simulator's formula; (values checked, wrong).

    One read (62 float32 points) is one atomic snapshot of the simulator, a whole poll is not: the
    simulator may move on between two reads of one poll, more so on a loaded machine. So every read's
    values must all equal one cycle's values, that cycle being no earlier than the one point 0 shows.
    """
    checked = wrong = 0
    cache: dict[int, np.ndarray] = {}

    def values_at(cycle: int) -> np.ndarray:
        if cycle not in cache:
            cache[cycle] = sim.values_at(cycle)
        return cache[cycle]

    for device_id, batch in counter.last.items():
        unit = int(device_id[3:])
        by_point = {s.point.partition("/")[2]: s.value for s in batch}
        if "p0" not in by_point:
            continue
        first = int(by_point["p0"])  # type: ignore[arg-type]
        for start in range(0, sim.points, per_read):
            got = [by_point.get(f"p{j}") for j in range(start, min(start + per_read, sim.points))]
            checked += len(got)
            if not any(
                got == [float(v) for v in values_at(cycle)[unit - 1][start : start + len(got)]]
                for cycle in range(first, first + 100)
            ):
                wrong += len(got)
    return checked, wrong


async def drive(port: int, args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="seam-bench-modbus-"))
    journal = Journal.open(folder / "journal", max_size=8 * 1024**3)
    counter = Counter(journal)
    context = PluginContext(contract=None, data_dir=str(folder))  # type: ignore[arg-type]
    tasks = [
        asyncio.create_task(create(d, context).run(counter))
        for d in devices(port, args.devices, args.points, args.poll, args.in_flight)
    ]
    if args.gc_freeze:
        # What a long-running edge process should do once its contract is loaded and its plugins are
        # built: move that heap out of the collector's sight, so full collections only walk what is new.
        gc.collect()
        gc.freeze()
    try:
        await asyncio.sleep(args.warmup)
        good0, cpu0, wall0, journal0 = counter.good, time.process_time(), time.perf_counter(), counter.journal_cpu
        gc0, collections0 = GC.seconds, GC.collections
        await asyncio.sleep(args.seconds)
        good1, cpu1, wall1, journal1 = counter.good, time.process_time(), time.perf_counter(), counter.journal_cpu
        gc_seconds, collections = GC.seconds - gc0, GC.collections - collections0
        rss, peak = rss_mb()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        size = journal.metrics().bytes_on_disk if hasattr(journal.metrics(), "bytes_on_disk") else 0
        journal.close()
        shutil.rmtree(folder, ignore_errors=True)
    wall = wall1 - wall0
    rate = (good1 - good0) / wall
    cpu = 100 * (cpu1 - cpu0) / wall
    checked, wrong = verify(counter, ScaleSim(RegisterBank(), args.devices, args.points, args.seed))
    print(
        f"seam driver: {args.devices} devices x {args.points} float32 points, poll {args.poll}, "
        f"{args.in_flight} in flight per connection, gc.freeze() after start-up: {args.gc_freeze}"
    )
    print(f"  {rate:,.0f} points/s decoded and appended to the journal over {wall:.1f} s")
    journal_share = 100 * (journal1 - journal0) / max(cpu1 - cpu0, 1e-9)
    driver_cpu = (cpu1 - cpu0) - (journal1 - journal0)
    print(f"  CPU {cpu:.0f}% of one core: {rate / max(cpu / 100, 1e-9):,.0f} points per CPU-second in all")
    print(
        f"  of which journal.append {journal_share:.0f}%; the driver alone {(good1 - good0) / max(driver_cpu, 1e-9):,.0f} points per CPU-second"
    )
    print(
        f"  garbage collector: {collections} collections, {gc_seconds:.2f} s ({100 * gc_seconds / max(cpu1 - cpu0, 1e-9):.0f}% of the CPU used);"
        f" CPU seconds by generation since start: {[round(g, 2) for g in GC.by_generation]}"
    )
    print(f"  RSS {rss:.0f} MB (peak {peak:.0f} MB); non-good samples {counter.other}; journal {size / 1e6:.0f} MB")
    print(f"  values checked against the simulator's formula: {checked}, wrong: {wrong}")


async def compare_clients(port: int, seconds: float) -> None:
    """One request at a time, 125 registers, decoded to float32 with numpy in both cases."""
    from pymodbus.client import AsyncModbusTcpClient

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    client = AsyncModbusTcpClient("127.0.0.1", port=port)
    await client.connect()
    count, cpu0, end = 0, time.process_time(), time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        response = await client.read_holding_registers(0, count=124, device_id=1)
        np.array(response.registers, dtype=">u2").tobytes()
        count += 1
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    client.close()
    print(
        f"pymodbus {__import__('pymodbus').__version__} AsyncModbusTcpClient: {count / wall:,.0f} reads/s, {1e6 * cpu / count:.0f} µs CPU per read"
    )

    link = await open_link(parse_endpoint(f"tcp://127.0.0.1:{port}"), 2.0, 1)
    request = read_request(3, 0, 124)
    count, cpu0, end = 0, time.process_time(), time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        data = parse_read_response(3, 124, await link.request(1, request, 2.0))
        np.frombuffer(data, dtype=">f4").tolist()
        count += 1
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    link.close()
    print(f"seam link (own MBAP client): {count / wall:,.0f} reads/s, {1e6 * cpu / count:.0f} µs CPU per read")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--poll", default="100ms")
    parser.add_argument("--cycle", default="100ms", help="how often the simulator changes every value")
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-gc-freeze", dest="gc_freeze", action="store_false", help="leave the start-up heap to the collector"
    )
    parser.add_argument("--compare-seconds", type=float, default=5.0)
    args = parser.parse_args()
    cores = os.sched_getaffinity(0)
    driver_core, sim_core = (0, 1) if len(cores) >= 2 else (min(cores), min(cores))
    os.sched_setaffinity(0, {driver_core})
    port = free_port()
    sim = subprocess.Popen(
        ["taskset", "-c", str(sim_core), sys.executable, "-m", "otseam.cli", "sim", "--no-opcua",
         "--devices", str(args.devices), "--points", str(args.points), "--cycle", args.cycle,
         "--seed", str(args.seed), "--modbus-port", str(port)],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port)
        print(
            f"machine: {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}; driver on core {driver_core}, simulator on core {sim_core}"
        )
        asyncio.run(drive(port, args))
        asyncio.run(compare_clients(port, args.compare_seconds))
        print(NEURON)
    finally:
        sim.terminate()
        sim.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
