"""OPC UA server benchmark: Seam's opcua_server sink beside a plain asyncua server, on the same work.

    .venv/bin/python bench/bench_opcua_server.py [--points 100000] [--clients 10] [--seconds 10]

For each server, in its own process:
  * start-up: from the process start until a separate client process has browsed Objects down to the
    last point and read it (the address space is browsable), and the server's resident memory then;
  * serving: ``--clients`` client processes (asyncua, security None, anonymous: the same for both
    servers) each subscribe to an equal share of the points (publishing interval 100 ms); the server
    then changes every point in turn, as fast as it can, for ``--seconds``. Reported: changes written
    per second, notifications the clients received per second (each client counts until nothing more
    arrives, so a client that a loaded machine slowed down still counts all it was sent), and
    notifications per CPU-second of the server process (its own /proc counters, from the first change
    to the last notification received), the time its cyclic collector ran, its memory at the end.
The peer is asyncua's own high-level API: ``add_variable`` per point (BaseDataVariableType, no units),
``write_value`` per change. Seam's server builds AnalogUnitRangeType variables with EngineeringUnits
and EURange (three nodes per point) and writes through the sink's ``deliver``. Both processes move
their start-up objects out of the cyclic collector's reach once started, as ``seam run`` does.

One process serves one event loop. Where that loop is the limit, run one opcua_server sink per
shard of the points (``points:`` patterns) on separate ports and processes; this script measures one.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEVICES = 100
NS_URI = "urn:otseam:bench:plant"
LOG = Path(os.environ.get("TMPDIR", "/tmp")) / "bench_opcua_server.log"


def rss_mb(pid: int | None = None) -> float:
    with open(f"/proc/{pid or 'self'}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def point_keys(points: int) -> list[str]:
    per = max(1, points // DEVICES)
    return [f"d{k // per}/p{k % per}" for k in range(points)]


# --- servers -------------------------------------------------------------------------------------


async def serve_seam(port: int, points: int, seconds: float, changed: int) -> None:
    from otseam.contract.models import Contract, SinkSpec
    from otseam.core.plugins import PluginContext
    from otseam.core.records import Batch, Quality, Sample
    from otseam.sinks import opcua_server

    per = max(1, points // DEVICES)
    contract = Contract.model_validate(
        {
            "site": {"enterprise": "bench", "site": "plant", "area": "area", "line": "line"},
            "zones": [{"id": "z", "level": 3, "sl": 2}],
            "devices": [
                {
                    "id": f"d{d}",
                    "driver": "modbus",
                    "endpoint": "tcp://127.0.0.1:502",
                    "zone": "z",
                    "points": [
                        {
                            "id": f"p{p}",
                            "address": "hr:0",
                            "type": "float64",
                            "unit": "m3/h",
                            "range": {"low": 0, "high": 100},
                        }
                        for p in range(per)
                    ],
                }
                for d in range(points // per)
            ],
        }
    )
    options = {
        "endpoint": f"opc.tcp://127.0.0.1:{port}/seam",
        "security_policies": ["None"],
        "anonymous": True,
        "namespace_uri": NS_URI,
    }
    sink = opcua_server.create(SinkSpec(id="ua", type="opcua_server", options=options), PluginContext(contract, "/tmp"))
    await sink.start()
    settle()
    print(f"READY {rss_mb():.1f} {time.process_time():.2f}", flush=True)
    keys = point_keys(points)[:changed]  # the subscribed points change; the others are served, not changed
    await _wait_for_go()
    value = 0.0
    written = 0
    deadline = time.monotonic() + seconds
    collector = CollectorTime()
    cpu0 = time.process_time()
    while time.monotonic() < deadline:
        value += 1.0
        for first in range(0, len(keys), 1000):
            now = time.time()
            records = [Sample(k, value, Quality.GOOD, now, now) for k in keys[first : first + 1000]]
            await sink.deliver(Batch("bench", list(range(len(records))), list(records)))
            written += len(records)
            await asyncio.sleep(0)  # let the server send its publish responses
            if time.monotonic() >= deadline:
                break
    print(f"DONE {written} {time.process_time() - cpu0:.2f} {rss_mb():.1f} {collector.stop():.2f}", flush=True)
    await _wait_for_go()
    await sink.close()


async def serve_asyncua(port: int, points: int, seconds: float, changed: int) -> None:
    from asyncua import Server, ua

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/seam")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await server.register_namespace(NS_URI)
    per = max(1, points // DEVICES)
    folder = server.nodes.objects
    for name in ("bench", "plant", "area", "line"):
        folder = await folder.add_folder(ua.NodeId(name, ns), f"{ns}:{name}")
    nodes = []
    for d in range(points // per):
        device = await folder.add_object(ua.NodeId(f"d{d}", ns), f"{ns}:d{d}")
        for p in range(per):
            nodes.append(await device.add_variable(ua.NodeId(f"d{d}/p{p}", ns), f"{ns}:p{p}", 0.0))
    await server.start()
    settle()
    print(f"READY {rss_mb():.1f} {time.process_time():.2f}", flush=True)
    nodes = nodes[:changed]
    await _wait_for_go()
    value = 0.0
    written = 0
    deadline = time.monotonic() + seconds
    collector = CollectorTime()
    cpu0 = time.process_time()
    while time.monotonic() < deadline:
        value += 1.0
        for first in range(0, len(nodes), 1000):
            for node in nodes[first : first + 1000]:
                await server.write_attribute_value(node.nodeid, ua.DataValue(ua.Variant(value, ua.VariantType.Double)))
            written += len(nodes[first : first + 1000])
            await asyncio.sleep(0)
            if time.monotonic() >= deadline:
                break
    print(f"DONE {written} {time.process_time() - cpu0:.2f} {rss_mb():.1f} {collector.stop():.2f}", flush=True)
    await _wait_for_go()
    await server.stop()


class CollectorTime:
    """Seconds the cyclic garbage collector ran while serving (it runs inside whatever allocates, so a
    profile spreads it over the whole program)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._tick)

    def _tick(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started

    def stop(self) -> float:
        gc.callbacks.remove(self._tick)
        return self.seconds


def settle() -> None:
    """What ``seam run`` does once everything has started (commands/run.py): the start-up objects are
    moved out of the cyclic collector's reach, so its full passes do not walk 300,000 nodes again and
    again while serving. Done for both servers alike."""
    gc.collect()
    gc.freeze()


async def _wait_for_go() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)


# --- clients -------------------------------------------------------------------------------------


async def probe(port: int, points: int) -> None:
    """Connect (retrying), browse from Objects to the last point by browse names, read it."""
    from asyncua import Client

    per = max(1, points // DEVICES)
    last_device, last_point = points // per - 1, per - 1
    deadline = time.monotonic() + 1500  # a loaded machine builds slowly: wall time is not the figure
    while True:
        try:
            async with Client(f"opc.tcp://127.0.0.1:{port}/seam", timeout=120, watchdog_intervall=120) as client:
                ns = await client.get_namespace_index(NS_URI)
                path = [f"{ns}:{n}" for n in ("bench", "plant", "area", "line", f"d{last_device}", f"p{last_point}")]
                node = await client.nodes.objects.get_child(path)
                await node.read_data_value(raise_on_bad_status=False)
                print("BROWSED", flush=True)
                return
        except Exception as exc:  # not listening yet, or still starting: try again, for a bounded time
            if time.monotonic() > deadline:
                raise
            print(f"probe: {type(exc).__name__}: {exc}", file=sys.stderr)
            await asyncio.sleep(0.2)


async def subscriber(port: int, keys: list[str]) -> None:
    from asyncua import Client, ua

    count = 0
    last = [time.monotonic()]

    class Handler:
        def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
            nonlocal count
            count += 1
            last[0] = time.monotonic()

    # Generous timeouts and subscription lifetime: on a loaded machine the server answers late, and a
    # client that gives up measures the machine, not the server.
    client = Client(f"opc.tcp://127.0.0.1:{port}/seam", timeout=600, watchdog_intervall=120)
    async with client:
        ns = await client.get_namespace_index(NS_URI)
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=100,
            RequestedLifetimeCount=60_000,
            RequestedMaxKeepAliveCount=1_000,
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
            Priority=0,
        )
        subscription = await client.create_subscription(params, Handler())
        nodes = [client.get_node(ua.NodeId(k, ns)) for k in keys]
        for first in range(0, len(nodes), 1000):
            await subscription.subscribe_data_change(nodes[first : first + 1000], queuesize=1)
        print("SUBSCRIBED", flush=True)
        await _wait_for_go()
        count0, cpu0, wall0 = count, time.process_time(), time.monotonic()
        await _wait_for_go()
        # The server has stopped changing values; on a loaded machine this client may still be behind
        # it. Everything it sent counts: read until nothing more arrives for a second.
        while True:
            seen = count
            await asyncio.sleep(1.0)
            if count == seen:
                break
        print(f"COUNT {count - count0} {last[0] - wall0:.2f} {time.process_time() - cpu0:.2f}", flush=True)


# --- orchestration -------------------------------------------------------------------------------


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=open(LOG, "a"),  # the child owns it
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )


def expect(process: subprocess.Popen[str], tag: str) -> list[str]:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(tag):
            return line.split()[1:]
    raise SystemExit(f"a worker ended before {tag}")


def tell(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.write("go\n")
    process.stdin.flush()


def run(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    from tests.support.servers import free_port

    port = free_port()
    started = time.monotonic()
    server = spawn(
        "--role", f"server-{kind}", "--port", str(port), "--points", str(args.points), "--seconds", str(args.seconds),
        "--subscribed", str(args.subscribed or args.points),
    )  # fmt: skip
    clients: list[subprocess.Popen[str]] = []
    try:
        probe_process = spawn("--role", "probe", "--port", str(port), "--points", str(args.points))
        expect(probe_process, "BROWSED")
        startup = time.monotonic() - started
        probe_process.wait()
        rss_ready, startup_cpu = expect(server, "READY")
        print(
            f"  {kind}: browsable after {startup:.1f} s wall, {startup_cpu} s of server CPU, {rss_ready} MB", flush=True
        )
        keys = point_keys(args.points)[: args.subscribed or args.points]
        share = len(keys) // args.clients
        for c in range(args.clients):
            clients.append(
                spawn("--role", "client", "--port", str(port), "--keys", json.dumps(keys[c * share : (c + 1) * share]))
            )
        subscribed_at = time.monotonic()
        for client in clients:
            expect(client, "SUBSCRIBED")
        subscribe_s = time.monotonic() - subscribed_at
        for client in clients:
            tell(client)
        cpu0 = cpu_seconds(server.pid)
        tell(server)
        written, _cpu, rss_end, collector_s = expect(server, "DONE")
        for client in clients:
            tell(client)
        received = 0
        window = 0.0
        for client in clients:
            count, seconds, _ = expect(client, "COUNT")
            received += int(count)
            window = max(window, float(seconds))
        # Up to the last notification the clients received: sending what was queued is the server's work.
        server_cpu = cpu_seconds(server.pid) - cpu0
        tell(server)
        return {
            "startup_s": round(startup, 2),
            "startup_cpu_s": float(startup_cpu),
            "rss_ready_mb": float(rss_ready),
            "rss_end_mb": float(rss_end),
            "subscribe_s": round(subscribe_s, 2),
            "changes_per_s": round(int(written) / args.seconds),
            "notifications_per_s": round(received / window) if window else 0,
            "server_cpu_s": round(server_cpu, 2),
            "collector_cpu_s": float(collector_s),
            "notifications_per_cpu_s": round(received / server_cpu) if server_cpu else 0,
        }
    finally:
        for process in [server, *clients]:
            if process.poll() is None:
                process.kill()
                process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--subscribed", type=int, default=0, help="points subscribed in all (default: every point)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--only", choices=["seam", "asyncua"])
    parser.add_argument("--role", choices=["server-seam", "server-asyncua", "probe", "client"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--keys")
    args = parser.parse_args()
    if args.role == "server-seam":
        asyncio.run(serve_seam(args.port, args.points, args.seconds, args.subscribed or args.points))
        return
    if args.role == "server-asyncua":
        asyncio.run(serve_asyncua(args.port, args.points, args.seconds, args.subscribed or args.points))
        return
    if args.role == "probe":
        asyncio.run(probe(args.port, args.points))
        return
    if args.role == "client":
        asyncio.run(subscriber(args.port, json.loads(args.keys)))
        return
    sys.path.insert(0, str(ROOT))
    from bench.machine import describe

    print(f"{describe()}; load average {os.getloadavg()[0]:.2f} (other work shares the machine)")
    subscribed = args.subscribed or args.points
    print(
        f"{args.points:,} points, {subscribed:,} of them subscribed by {args.clients} clients, "
        f"{args.seconds:g} s of changes per server"
    )
    results = {}
    for kind in ("seam", "asyncua"):
        if args.only and kind != args.only:
            continue
        results[kind] = run(kind, args)
    names = {"seam": "Seam opcua_server (AnalogUnitRangeType)", "asyncua": "asyncua add_variable (peer)"}
    print(
        f"{'server':<42}{'browsable s':>12}{'CPU s':>7}{'MB':>7}{'changes/s':>11}{'notif./s':>10}"
        f"{'notif./CPU-s':>14}{'MB end':>8}"
    )
    for kind, r in results.items():
        print(
            f"{names[kind]:<42}{r['startup_s']:>12}{r['startup_cpu_s']:>7}{r['rss_ready_mb']:>7.0f}{r['changes_per_s']:>11,}"
            f"{r['notifications_per_s']:>10,}{r['notifications_per_cpu_s']:>14,}{r['rss_end_mb']:>8.0f}"
        )
    print(f"load after: {os.getloadavg()[0]:.2f}")
    print("JSON " + json.dumps(results))


if __name__ == "__main__":
    main()
