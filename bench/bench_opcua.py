"""OPC UA driver benchmark: values per second received by subscription from many changing nodes.

    .venv/bin/python bench/bench_opcua.py [--nodes 10000] [--interval 1s] [--seconds 20]

In one run:
  * a node-opcua server (tests/interop/opcua_server.js, an implementation we did not write) serves
    ``--nodes`` Double variables that all change every ``--interval``;
  * Seam's OPC UA driver, in its own process, subscribes to all of them (publishing interval = the
    interval) and counts the GOOD samples it emits: start-up time until every node has delivered its
    first value, then values/s, CPU% of one core and resident memory over ``--seconds``;
  * the same driver in poll mode: every node read once per interval, one Read call per 1,000 nodes;
  * the peer, in its own process, from the same server: asyncua's high-level client (what most Python
    gateways use), one subscription, ``subscribe_data_change`` on the whole list of nodes, a handler
    counting notifications; the same figures;
  * EMQX Neuron's published figure for OPC UA, for scale (not measured here).
Bounded: about two to three minutes with the defaults on a loaded two-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
INTEROP = ROOT / "tests" / "interop"
FIRST_NODE = 100000
#: The test server's MaxMonitoredItemsPerCall (tests/interop/opcua_server.js).
PEER_CHUNK = 2000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Meter:
    """Counts values; notes when every node has delivered its first one."""

    def __init__(self, nodes: int) -> None:
        self.nodes = nodes
        self.seen: set[int] = set()
        self.count = 0
        self.all_seen_at = 0.0
        #: CPU seconds of this process when every node had delivered (the wall time depends on the load).
        self.all_seen_cpu = 0.0
        self.all_seen = asyncio.Event()

    def add(self, index: int) -> None:
        self.count += 1
        if not self.all_seen_at:
            self.seen.add(index)
            if len(self.seen) == self.nodes:
                self.all_seen_at = time.monotonic()
                self.all_seen_cpu = time.process_time()
                self.all_seen.set()

    async def measure(self, started: float, seconds: float) -> dict[str, Any]:
        await asyncio.wait_for(self.all_seen.wait(), 1800)
        startup = self.all_seen_at - started
        await asyncio.sleep(1.0)  # past the initial burst
        count0, cpu0, wall0 = self.count, time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        wall = time.monotonic() - wall0
        return {
            "startup_s": round(startup, 2),
            "startup_cpu_s": round(self.all_seen_cpu, 2),
            "values_per_s": round((self.count - count0) / wall),
            "values_per_cpu_s": round((self.count - count0) / max(1e-9, time.process_time() - cpu0)),
            "cpu_percent": round(100 * (time.process_time() - cpu0) / wall, 1),
            "rss_mb": round(rss_mb(), 1),
        }


async def worker_seam(
    endpoint: str, nodes: int, interval: float, sampling_ms: float, seconds: float, mode: str = "subscribe"
) -> dict[str, Any]:
    from otseam.contract.models import Device, Point
    from otseam.core.records import Quality, Record, Sample
    from otseam.drivers.opcua import create

    sampling = f"{sampling_ms:g}ms"
    points = [
        Point(id=f"n{k}", address=f"ns=2;i={FIRST_NODE + k}", type="float64", poll=sampling)  # type: ignore[arg-type]
        for k in range(nodes)
    ]
    device = Device(id="bench", driver="opcua", endpoint=endpoint, zone="z", poll=f"{interval:g}s", points=points)  # type: ignore[arg-type]
    device.constraints.timeout = 10.0
    device.options = {"mode": mode}
    if mode == "poll":
        for point in points:
            point.poll = None  # every node read once per interval
    meter = Meter(nodes)
    index = {f"bench/n{k}": k for k in range(nodes)}
    good = Quality.GOOD

    async def emit(records: list[Record]) -> None:
        for record in records:
            if record.__class__ is Sample and record.quality is good:  # type: ignore[union-attr]
                meter.add(index[record.point])  # type: ignore[union-attr]

    started = time.monotonic()
    driver = create(device, None)  # type: ignore[arg-type]
    task = asyncio.get_running_loop().create_task(driver.run(emit))  # type: ignore[arg-type]
    try:
        return await meter.measure(started, seconds)
    finally:
        task.cancel()


async def worker_asyncua(
    endpoint: str, nodes: int, interval: float, sampling_ms: float, seconds: float
) -> dict[str, Any]:
    from asyncua import Client, ua

    meter = Meter(nodes)

    class Handler:
        def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
            meter.add(node.nodeid.Identifier - FIRST_NODE)

    started = time.monotonic()
    client = Client(endpoint, timeout=30)
    await client.connect()
    try:
        subscription = await client.create_subscription(interval * 1000, Handler())
        targets = [client.get_node(f"ns=2;i={FIRST_NODE + k}") for k in range(nodes)]
        note = "all nodes in one call"
        try:
            await subscription.subscribe_data_change(targets, sampling_interval=sampling_ms)
        except ua.UaStatusCodeError as exc:
            # The peer does not split by itself; a user would have to. Do it for it, at the server's limit.
            note = f"all in one call: {exc.__class__.__name__}; then in calls of {PEER_CHUNK}"
            for first in range(0, nodes, PEER_CHUNK):
                await subscription.subscribe_data_change(
                    targets[first : first + PEER_CHUNK], sampling_interval=sampling_ms
                )
        return {**await meter.measure(started, seconds), "note": note}
    finally:
        await client.disconnect()


def run_worker(kind: str, endpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    sizes = ["--nodes", str(args.nodes), "--interval", str(args.interval), "--seconds", str(args.seconds)]
    sizes += ["--sampling", str(args.sampling)]
    done = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--endpoint", endpoint, *sizes],
        capture_output=True,
        text=True,
        timeout=args.seconds + 1900,
        cwd=ROOT,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def server_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10000)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between changes and publishes")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window per client")
    parser.add_argument(
        "--sampling",
        type=float,
        default=0.0,
        help="sampling interval in ms for both clients (default: half the interval)",
    )
    parser.add_argument("--worker", choices=["seam", "seam-poll", "asyncua"])
    parser.add_argument(
        "--kinds", default="seam,seam-poll,asyncua", help="which clients to run, comma-separated (default: all three)"
    )
    parser.add_argument("--endpoint")
    args = parser.parse_args()
    # Sampling exactly at the change rate aliases (a change can fall between two samples): sample twice as often.
    args.sampling = args.sampling or args.interval * 500
    if args.worker:
        sizes = (args.endpoint, args.nodes, args.interval, args.sampling, args.seconds)
        if args.worker == "asyncua":
            result = asyncio.run(worker_asyncua(*sizes))
        else:
            result = asyncio.run(worker_seam(*sizes, mode="poll" if args.worker == "seam-poll" else "subscribe"))
        print(json.dumps(result))
        return

    port = free_port()
    env = {**os.environ, "NODE_PATH": str(INTEROP / "node_modules")}
    server = subprocess.Popen(
        ["node", str(INTEROP / "opcua_server.js"), str(port), str(args.nodes), str(int(args.interval * 1000))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        for line in server.stdout:
            if line.strip() == "ready":
                break
        else:
            raise SystemExit("the node-opcua server did not start")
        endpoint = f"opc.tcp://127.0.0.1:{port}/seam/test"
        print(f"node-opcua server: {args.nodes} Double nodes changing every {args.interval:g}s at {endpoint}")
        print(f"both clients: publishing interval {args.interval:g}s, sampling interval {args.sampling:g}ms")
        print(f"load before: {os.getloadavg()[0]:.2f} (1-min average), {os.cpu_count()} cores")
        results = {}
        for kind in [k for k in ("seam", "seam-poll", "asyncua") if k in args.kinds.split(",")]:
            cpu0, wall0 = server_cpu(server.pid), time.monotonic()
            results[kind] = run_worker(kind, endpoint, args)
            results[kind]["server_cpu_percent"] = round(
                100 * (server_cpu(server.pid) - cpu0) / (time.monotonic() - wall0), 1
            )
        expected = args.nodes / args.interval
        print(f"\nexpected: {expected:,.0f} values/s ({args.nodes} nodes / {args.interval:g}s)")
        print(f"{'client':<38}{'start-up s':>11}{'values/s':>10}{'CPU %':>7}{'RSS MB':>8}{'server CPU %':>14}")
        names = {
            "seam": "Seam opcua driver (subscribe)",
            "seam-poll": "Seam opcua driver (poll, 1 Read/1,000)",
            "asyncua": "asyncua high-level client (peer)",
        }
        for kind, result in results.items():
            if "error" in result:
                print(f"{names[kind]:<38}error: {result['error']}")
                continue
            if "note" in result:
                print(f"  ({kind}: {result['note']})")
            print(
                f"{names[kind]:<38}{result['startup_s']:>11}{result['values_per_s']:>10,}{result['cpu_percent']:>7}"
                f"{result['rss_mb']:>8}{result['server_cpu_percent']:>14}"
            )
        print("EMQX Neuron (published, 4 Xeon cores): OPC UA 100,000 points at 1 s: 594 MB, 60% CPU")
        print(f"load after: {os.getloadavg()[0]:.2f}")
        print("JSON " + json.dumps(results))
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
