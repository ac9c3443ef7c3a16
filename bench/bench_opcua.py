"""OPC UA driver benchmark: values per second received by subscription from many changing nodes.

    .venv/bin/python bench/bench_opcua.py [--nodes 10000] [--interval 1s] [--seconds 20] [--shards 1]

In one run:
  * node-opcua servers (tests/interop/opcua_server.js, an implementation we did not write), ``--shards``
    processes sharing ``--nodes`` Double variables that all change every ``--interval``;
  * Seam's OPC UA driver, in its own process, one driver (one contract device, one session, one
    subscription) per server, subscribes to all of them (publishing interval = the interval) and
    counts the GOOD samples it emits: the time until every monitored item exists ("subscribed"), until
    every node has delivered its first value ("start-up"), with the CPU seconds of the client and of
    the servers to get there; then values/s, values per CPU-second, CPU% and resident memory over
    ``--seconds``;
  * the same driver in poll mode: every node read once per interval, one Read call per 1,000 nodes;
  * the peer, in its own process, from the same servers: asyncua's high-level client (what most Python
    gateways use), one client and one subscription per server, ``subscribe_data_change`` on the whole
    list of nodes, a handler counting notifications; the same figures;
  * EMQX Neuron's published figure for OPC UA, for scale (not measured here).
Bounded: about two to three minutes with the defaults on a loaded two-core machine; at 100,000 nodes
node-opcua needs minutes of CPU to create the items.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
sys.path.insert(0, str(ROOT))

from bench.machine import describe as describe_cpu  # noqa: E402

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
        #: CPU seconds of this process when every monitored item existed (noted by ``watch_subscribed``).
        self.subscribed_at = self.subscribed_cpu = self.servers_subscribed_cpu = 0.0

    def note_subscribed(self) -> None:
        """Every monitored item exists now."""
        self.subscribed_at, self.subscribed_cpu, self.servers_subscribed_cpu = mark()

    async def watch_subscribed(self, subscribed: Any) -> None:
        # The driver notes a time (its health shows it), it sets no event: look every 50 ms.
        while not subscribed():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        self.note_subscribed()

    def add(self, index: int) -> None:
        self.count += 1
        if not self.all_seen_at:
            self.seen.add(index)
            if len(self.seen) == self.nodes:
                self.all_seen_at = time.monotonic()
                self.all_seen_cpu = time.process_time()
                self.all_seen.set()

    async def measure(
        self, start: tuple[float, float, float], seconds: float, subscribed: Any = None
    ) -> dict[str, Any]:
        """From ``start`` (a ``mark()`` after the set-up of the points, as the session opens) to every
        node delivered, then ``seconds`` of changes. ``subscribed``: a function true once every monitored
        item exists (else the caller calls ``note_subscribed``)."""
        started, started_cpu, servers0 = start
        if subscribed is not None:
            watcher = asyncio.get_running_loop().create_task(self.watch_subscribed(subscribed))
        await asyncio.wait_for(self.all_seen.wait(), 1800)
        servers_all_seen = servers_cpu() - servers0
        startup = self.all_seen_at - started
        if subscribed is not None:
            await watcher
        subscribed_at, subscribed_cpu = self.subscribed_at, self.subscribed_cpu
        await asyncio.sleep(1.0)  # past the initial burst
        count0, cpu0, wall0 = self.count, time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        wall = time.monotonic() - wall0
        return {
            "subscribed_s": round(subscribed_at - started, 2) if subscribed_at else None,
            "subscribed_cpu_s": round(subscribed_cpu - started_cpu, 2) if subscribed_at else None,
            "servers_subscribed_cpu_s": round(self.servers_subscribed_cpu - servers0, 2) if subscribed_at else None,
            "startup_s": round(startup, 2),
            "startup_cpu_s": round(self.all_seen_cpu - started_cpu, 2),
            "servers_startup_cpu_s": round(servers_all_seen, 2),
            "values_per_s": round((self.count - count0) / wall),
            "values_per_cpu_s": round((self.count - count0) / max(1e-9, time.process_time() - cpu0)),
            "cpu_percent": round(100 * (time.process_time() - cpu0) / wall, 1),
            "rss_mb": round(rss_mb(), 1),
        }


async def worker_seam(
    endpoints: list[str], nodes: int, interval: float, sampling_ms: float, seconds: float, mode: str = "subscribe"
) -> dict[str, Any]:
    """One driver (one contract device) per server shard, all in this process."""
    from otseam.contract.models import Device, Point
    from otseam.core.records import Quality, Record, Sample
    from otseam.drivers.opcua import create

    sampling = f"{sampling_ms:g}ms"
    per_shard = nodes // len(endpoints)
    meter = Meter(per_shard * len(endpoints))
    index: dict[str, int] = {}
    drivers = []
    for shard, endpoint in enumerate(endpoints):
        points = [
            Point(id=f"n{k}", address=f"ns=2;i={FIRST_NODE + k}", type="float64", poll=sampling)  # type: ignore[arg-type]
            for k in range(per_shard)
        ]
        device = Device(
            id=f"bench{shard}", driver="opcua", endpoint=endpoint, zone="z", poll=f"{interval:g}s", points=points
        )  # type: ignore[arg-type]
        device.constraints.timeout = 30.0
        device.options = {"mode": mode}
        if mode == "poll":
            for point in points:
                point.poll = None  # every node read once per interval
        index.update({f"bench{shard}/n{k}": shard * per_shard + k for k in range(per_shard)})
        drivers.append(create(device, None))  # type: ignore[arg-type]
    good = Quality.GOOD

    async def emit(records: list[Record]) -> None:
        for record in records:
            if record.__class__ is Sample and record.quality is good:  # type: ignore[union-attr]
                meter.add(index[record.point])  # type: ignore[union-attr]

    def subscribed() -> bool:
        return all(getattr(driver, "subscribed_at", 0.0) for driver in drivers)

    started = mark()
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(driver.run(emit)) for driver in drivers]  # type: ignore[arg-type]
    try:
        return {
            **await meter.measure(started, seconds, subscribed if mode == "subscribe" else None),
            "note": f"{len(drivers)} driver(s), one subscription each",
        }
    finally:
        for task in tasks:
            task.cancel()


async def worker_asyncua(
    endpoints: list[str], nodes: int, interval: float, sampling_ms: float, seconds: float
) -> dict[str, Any]:
    """One asyncua client (one session, one subscription) per server shard, all in this process."""
    from asyncua import Client, ua

    per_shard = nodes // len(endpoints)
    meter = Meter(per_shard * len(endpoints))

    class Handler:
        def __init__(self, base: int) -> None:
            self.base = base - FIRST_NODE

        def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
            meter.add(self.base + node.nodeid.Identifier)

    async def subscribe(client: Client, shard: int) -> str:
        subscription = await client.create_subscription(interval * 1000, Handler(shard * per_shard))
        targets = [client.get_node(f"ns=2;i={FIRST_NODE + k}") for k in range(per_shard)]
        try:
            await subscription.subscribe_data_change(targets, sampling_interval=sampling_ms)
            return "all nodes in one call"
        except ua.UaStatusCodeError as exc:
            # The peer does not split by itself; a user would have to. Do it for it, at the server's limit.
            for first in range(0, per_shard, PEER_CHUNK):
                await subscription.subscribe_data_change(
                    targets[first : first + PEER_CHUNK], sampling_interval=sampling_ms
                )
            return f"all in one call: {exc.__class__.__name__}; then in calls of {PEER_CHUNK}"

    started = mark()
    # asyncua's watchdog reads the server state every second and gives up after one second without an
    # answer: a busy server (node-opcua creating 100,000 items) takes longer, so it is told 30 s.
    clients = [Client(endpoint, timeout=30, watchdog_intervall=30) for endpoint in endpoints]
    try:
        for client in clients:
            await client.connect()
        notes = await asyncio.gather(*(subscribe(client, shard) for shard, client in enumerate(clients)))
        meter.note_subscribed()
        result = await meter.measure(started, seconds)
        return {**result, "note": f"{len(clients)} client(s), one subscription each; {notes[0]}"}
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.disconnect()


def run_worker(kind: str, endpoint: str, pids: list[int], args: argparse.Namespace) -> dict[str, Any]:
    sizes = ["--nodes", str(args.nodes), "--interval", str(args.interval), "--seconds", str(args.seconds)]
    sizes += ["--sampling", str(args.sampling)]
    done = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--endpoint", endpoint, *sizes],
        env={**os.environ, "SEAM_BENCH_SERVER_PIDS": ",".join(str(pid) for pid in pids)},
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


def mark() -> tuple[float, float, float]:
    """Now: monotonic time, CPU seconds of this process, CPU seconds of the node-opcua servers."""
    return time.monotonic(), time.process_time(), servers_cpu()


def servers_cpu() -> float:
    """CPU seconds of the node-opcua servers (their pids in SEAM_BENCH_SERVER_PIDS)."""
    pids = os.environ.get("SEAM_BENCH_SERVER_PIDS", "")
    return sum(server_cpu(int(pid)) for pid in pids.split(",") if pid)


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
    parser.add_argument("--endpoint", help="(worker) the servers' endpoints, comma-separated")
    parser.add_argument(
        "--shards", type=int, default=1, help="node-opcua server processes sharing the nodes (one client session each)"
    )
    args = parser.parse_args()
    # Sampling exactly at the change rate aliases (a change can fall between two samples): sample twice as often.
    args.sampling = args.sampling or args.interval * 500
    if args.worker:
        sizes = (args.endpoint.split(","), args.nodes, args.interval, args.sampling, args.seconds)
        if args.worker == "asyncua":
            result = asyncio.run(worker_asyncua(*sizes))
        else:
            result = asyncio.run(worker_seam(*sizes, mode="poll" if args.worker == "seam-poll" else "subscribe"))
        print(json.dumps(result))
        return

    env = {**os.environ, "NODE_PATH": str(INTEROP / "node_modules")}
    per_shard = args.nodes // args.shards
    servers, endpoints = [], []
    try:
        for _ in range(args.shards):
            port = free_port()
            servers.append(
                subprocess.Popen(
                    [
                        "node",
                        str(INTEROP / "opcua_server.js"),
                        str(port),
                        str(per_shard),
                        str(int(args.interval * 1000)),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    env=env,
                )
            )
            endpoints.append(f"opc.tcp://127.0.0.1:{port}/seam/test")
        for server in servers:
            assert server.stdout is not None
            said = []
            for line in server.stdout:
                if line.strip() == "ready":
                    break
                said.append(line)
            else:
                raise SystemExit("a node-opcua server did not start:\n" + "".join(said[-20:]))
        endpoint = ",".join(endpoints)
        print(f"CPU: {describe_cpu()}")
        print(
            f"node-opcua: {args.shards} server process(es) of {per_shard} Double nodes each, changing every "
            f"{args.interval:g}s"
        )
        print(f"both clients: publishing interval {args.interval:g}s, sampling interval {args.sampling:g}ms")
        print(f"load before: {os.getloadavg()[0]:.2f} (1-min average), {os.cpu_count()} cores")
        results = {}
        # In the order given: the first client meets node-opcua before its JIT has warmed up.
        for kind in [k for k in args.kinds.split(",") if k in ("seam", "seam-poll", "asyncua")]:
            cpu0, wall0 = sum(server_cpu(server.pid) for server in servers), time.monotonic()
            results[kind] = run_worker(kind, endpoint, [server.pid for server in servers], args)
            results[kind]["server_cpu_percent"] = round(
                100 * (sum(server_cpu(server.pid) for server in servers) - cpu0) / (time.monotonic() - wall0), 1
            )
        report(results, args)
    finally:
        for server in servers:
            server.kill()
            server.wait()


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    expected = args.nodes / args.interval
    print(f"\nexpected: {expected:,.0f} values/s ({args.nodes} nodes / {args.interval:g}s)")
    print(
        f"{'client':<38}{'subscribed s':>13}{'(CPU s)':>8}{'start-up s':>11}{'values/s':>10}{'values/CPU-s':>13}{'CPU %':>7}"
        f"{'RSS MB':>8}{'server CPU %':>14}"
    )
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
        subscribed = result.get("subscribed_s")
        print(
            f"{names[kind]:<38}{'-' if subscribed is None else subscribed:>13}"
            f"{'-' if subscribed is None else result['subscribed_cpu_s']:>8}{result['startup_s']:>11}"
            f"{result['values_per_s']:>10,}{result['values_per_cpu_s']:>13,}{result['cpu_percent']:>7}"
            f"{result['rss_mb']:>8}{result['server_cpu_percent']:>14}"
        )
    for kind, result in results.items():
        if "error" not in result:
            print(
                f"  {kind}: CPU seconds to subscribe: client {result['subscribed_cpu_s']}, node-opcua "
                f"{result['servers_subscribed_cpu_s']}; until every node delivered: client {result['startup_cpu_s']}, "
                f"node-opcua {result['servers_startup_cpu_s']}"
            )
    print("EMQX Neuron (published, 4 Xeon cores): OPC UA 100,000 points at 1 s: 594 MB, 60% CPU")
    print(f"load after: {os.getloadavg()[0]:.2f}")
    print("JSON " + json.dumps(results))


if __name__ == "__main__":
    main()
