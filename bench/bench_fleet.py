"""Fleet benchmark: many sites -> NATS leaf nodes -> three-server hub -> fleet_ingest -> PostgreSQL,
and the same work over Sparkplug B -> Mosquitto -> `seam host` -> PostgreSQL, in the same run.

Every site is a real journal, a real sink and its runner, with its own NATS (or MQTT) connection,
appending ``--points`` samples every ``--period`` seconds (all values changing). The sites run as
asyncio tasks in ``--publishers`` processes (a Python process per site does not fit two cores); the
leaf nodes are ``--leaves`` nats-server processes, each holding the streams of its share of the sites.

Figures over a steady window of ``--seconds`` after a warm-up:
  * offered and stored samples/s (rows committed in PostgreSQL during the window);
  * CPU seconds per 100,000 stored samples for each part: publishers, NATS servers (hub + leaves),
    ingest processes, PostgreSQL (postmaster and backends); for the Sparkplug path publishers,
    Mosquitto, `seam host` processes, PostgreSQL;
  * latency from the edge's journal append (the sample's gateway time) to the row's commit, p50/p99.

Run: .venv/bin/python bench/bench_fleet.py [--sites 100 --points 1000 --period 1 --seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

import nats  # noqa: E402
import psycopg  # noqa: E402
from nats.js.api import ExternalStream, StorageType, StreamConfig, StreamSource  # noqa: E402

from bench.machine import describe  # noqa: E402
from tests.fleet.topology import FLEET, Fleet, Relay, Site, _hub  # noqa: E402
from tests.support import servers  # noqa: E402

DEVICES = 10


def clk() -> float:
    return float(os.sysconf("SC_CLK_TCK"))


def proc_cpu(pid: int, children: bool = False) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / clk()


def postgres_cpu(port: int) -> float:
    """The postmaster listening on ``port`` (with its reaped children) plus its live backends."""
    master = None
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"postgres") and f"-p {port}".encode() in b" ".join(cmd):
            master = pid
            break
    if master is None:
        return 0.0
    total = proc_cpu(master, children=True)
    for pid in pids:
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == master:
            total += proc_cpu(pid)
    return total


# --- the publishing processes -----------------------------------------------------------------------


def publisher(kind: str, sites: list[str], urls: dict[str, str], work: str, points: int, period: float,
              seconds: float, ready: Any, go: Any, out: Any) -> None:  # fmt: skip
    asyncio.run(_publish(kind, sites, urls, Path(work), points, period, seconds, ready, go, out))


def _contract(site: str, points: int) -> Any:
    from otseam.contract.models import Contract

    per = points // DEVICES
    return Contract.model_validate({
        "site": {"enterprise": "acme", "site": site},
        "zones": [{"id": "z", "level": 1, "sl": 1}],
        "devices": [{"id": f"d{d}", "driver": "modbus", "endpoint": "tcp://127.0.0.1:502", "zone": "z",
                     "points": [{"id": f"p{p}", "address": f"hr:{p * 4}", "type": "float64"} for p in range(per)]}
                    for d in range(DEVICES)],
    })  # fmt: skip


async def _publish(kind: str, sites: list[str], urls: dict[str, str], work: Path, points: int, period: float,
                   seconds: float, ready: Any, go: Any, out: Any) -> None:  # fmt: skip
    from otseam.contract.models import SinkSpec
    from otseam.core.plugins import PluginContext, create_sink
    from otseam.core.records import Quality, Sample
    from otseam.journal import Journal
    from otseam.runtime.sinkrunner import SinkStats, run_sink

    per = points // DEVICES
    keys = [f"d{d}/p{p}" for d in range(DEVICES) for p in range(per)]
    journals, tasks, readers = [], [], []
    for site in sites:
        journal = Journal.open(work / kind / site, source=f"{kind}-{site}", sync="none")
        context = PluginContext(contract=_contract(site, points), data_dir=str(work / kind / site))
        if kind == "nats":
            options: dict[str, Any] = {"servers": [urls[site]], "timeout": 30, "max_batch": 5000}
            spec = SinkSpec(id="fleet", type="nats", options=options)
        else:
            options = {"brokers": [urls[site]], "group_id": "acme", "edge_node_id": site, "startup_delay": 0,
                       "timeout": 30.0}  # fmt: skip
            spec = SinkSpec(id="sp", type="sparkplug", options=options)
        sink = create_sink(spec, context)
        reader = journal.reader("bench")
        readers.append(reader)
        tasks.append(asyncio.create_task(run_sink(sink, reader, stats=SinkStats("b"), max_wait=0.05)))
        journals.append(journal)
    ready.set()
    while not go.is_set():  # noqa: ASYNC110 - a multiprocessing Event, shared with the parent
        await asyncio.sleep(0.05)
    cpu0 = time.process_time()
    appended = 0
    start = time.monotonic()
    tick = 0
    while time.monotonic() - start < seconds:
        now = time.time()
        for journal in journals:
            journal.append([Sample(key, tick + i * 0.001, Quality.GOOD, now, now) for i, key in enumerate(keys)])
            appended += len(keys)
        tick += 1
        await asyncio.sleep(max(0.0, start + tick * period - time.monotonic()))
    # Let the sinks hand over what was appended, then report.
    deadline = time.monotonic() + 120

    def behind() -> bool:
        return any(r.committed < j.last_offset for r, j in zip(readers, journals, strict=True))

    while time.monotonic() < deadline and behind():  # noqa: ASYNC110 - the journal offers nothing to await
        await asyncio.sleep(0.2)
    out.put({"cpu": time.process_time() - cpu0, "appended": appended})
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# --- batching: one site's journal into one JetStream server, by message kind and batch size ---------------


async def batching(total: int) -> list[tuple[str, int, float, float, int]]:
    """(message kind, records per delivery, samples/s, CPU s per 100k samples in this process, messages)."""
    from otseam.contract.models import SinkSpec
    from otseam.core.plugins import PluginContext, create_sink
    from otseam.core.records import Quality, Sample
    from otseam.journal import Journal
    from otseam.runtime.sinkrunner import SinkStats, run_sink

    rows = []
    keys = [f"d{d}/p{p}" for d in range(DEVICES) for p in range(100)]
    with servers.nats_jetstream() as server, tempfile.TemporaryDirectory(prefix="seam-bench-batch-") as tmp:
        client = await nats.connect(server.url)
        await client.jetstream().add_stream(StreamConfig(name="SITE", subjects=["seam.>"], storage=StorageType.FILE))
        await client.close()
        for kind, batch in (("sample", 1000), ("device", 100), ("device", 1000), ("device", 5000)):
            count = total // 10 if kind == "sample" else total
            journal = Journal.open(Path(tmp) / f"{kind}{batch}", sync="none")
            now = time.time()
            for start in range(0, count, len(keys)):
                journal.append([Sample(k, start + i * 0.5, Quality.GOOD, now, now) for i, k in enumerate(keys)])
            context = PluginContext(contract=_contract("s000", len(keys)), data_dir=tmp)
            options = {"servers": [server.url], "message": kind, "max_batch": batch, "timeout": 60}
            sink = create_sink(SinkSpec(id="b", type="nats", options=options), context)
            reader = journal.reader("b")
            cpu0, t0 = time.process_time(), time.perf_counter()
            task = asyncio.create_task(run_sink(sink, reader, stats=SinkStats("b"), max_wait=0.01))
            while reader.committed < journal.last_offset:  # noqa: ASYNC110 - the journal offers nothing to await
                await asyncio.sleep(0.01)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            rows.append((kind, batch, count / wall, cpu * 100_000 / count, sink.counters.messages))  # type: ignore[attr-defined]
            await sink.close()
            journal.close()
    return rows


# --- the ingest processes ---------------------------------------------------------------------------


def ingest_process(servers_: list[str], dsn: str, prefix: str, name: str) -> None:
    from otseam.contract.models import Contract, Site, SourceSpec
    from otseam.core.plugins import PluginContext, create_source

    context = PluginContext(contract=Contract(site=Site(enterprise="acme", site="it")), data_dir=tempfile.gettempdir())
    spec = SourceSpec(id=name, type="fleet_ingest", options={"servers": servers_, "dsn": dsn, "table_prefix": prefix,
                                                             "fetch_batch": 200})  # fmt: skip
    source = create_source(spec, context)

    async def emit(records: Any) -> None:
        print(f"ingest {name}: {records}", file=sys.stderr)

    asyncio.run(source.run(emit))


# --- the two paths ------------------------------------------------------------------------------------


async def fleet_streams(running: Fleet, sites_of: dict[str, list[str]]) -> None:
    for leaf, names in sites_of.items():
        client = await nats.connect(running.sites[leaf].server.url)
        await client.jetstream().add_stream(StreamConfig(
            name=f"SITE_{leaf}", subjects=[f"seam.acme.{s}.>" for s in names], storage=StorageType.FILE))  # fmt: skip
        await client.close()
    client = await nats.connect(running.hub_urls)
    js = client.jetstream()
    config = StreamConfig(name=FLEET, storage=StorageType.FILE, num_replicas=3, sources=[
        StreamSource(name=f"SITE_{leaf}", external=ExternalStream(api=f"$JS.{leaf}.API")) for leaf in sites_of])  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            await js.add_stream(config)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    await client.close()


def run_publishers(kind: str, sites: list[str], urls: dict[str, str], work: Path, args: argparse.Namespace
                   ) -> tuple[list[multiprocessing.Process], Any, Any, list[Any]]:  # fmt: skip
    ctx = multiprocessing.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    procs, readies = [], []
    for index in range(args.publishers):
        ready = ctx.Event()
        share = sites[index :: args.publishers]
        proc = ctx.Process(target=publisher, args=(kind, share, urls, str(work), args.points, args.period,
                                                   args.seconds, ready, go, out))  # fmt: skip
        proc.start()
        procs.append(proc)
        readies.append(ready)
    return procs, go, out, readies


async def measure(kind: str, args: argparse.Namespace, dsn: str, pg_port: int, server_pids: list[int],
                  consumer_pids: list[int], table: str, sites: list[str], urls: dict[str, str], work: Path
                  ) -> dict[str, float]:  # fmt: skip
    procs, go, out, readies = run_publishers(kind, sites, urls, work, args)
    for ready in readies:
        ready.wait(120)
    await asyncio.sleep(2)  # connections and births settle before the window opens
    servers0 = sum(proc_cpu(p) for p in server_pids)
    consumers0 = sum(proc_cpu(p) for p in consumer_pids)
    pg0 = postgres_cpu(pg_port)
    t0 = time.time()
    go.set()
    results = [out.get(timeout=args.seconds + 300) for _ in procs]
    for proc in procs:
        proc.join(30)
    offered = sum(r["appended"] for r in results)
    stored_col = "stored_ts" if kind == "nats" else "to_timestamp(received_ms / 1000.0)"
    ts_col = "gateway_ts" if kind == "nats" else "to_timestamp(ts_ms / 1000.0)"
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        deadline = time.monotonic() + 300
        while True:
            row = await (
                await connection.execute(
                    f"SELECT count(*), max({stored_col}) FROM {table} WHERE {ts_col} >= to_timestamp(%s)", (t0,)
                )
            ).fetchone()
            assert row is not None
            if row[0] >= offered or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        stored, last = int(row[0]), row[1]
        cursor = await connection.execute(
            f"SELECT extract(epoch from {stored_col} - {ts_col}) FROM {table} WHERE {ts_col} >= to_timestamp(%s)", (t0,)
        )
        delays = sorted(float(r[0]) for r in await cursor.fetchall())
    wall = max((last.timestamp() if last else time.time()) - t0, args.seconds)
    q = statistics.quantiles(delays, n=100) if len(delays) > 100 else [0.0] * 99
    per = 100_000 / max(stored, 1)
    return {
        "offered": offered, "stored": stored, "wall": wall, "rate": stored / wall,
        "offered_rate": offered / args.seconds,
        "cpu_publishers": sum(r["cpu"] for r in results) * per,
        "cpu_servers": (sum(proc_cpu(p) for p in server_pids) - servers0) * per,
        "cpu_consumers": (sum(proc_cpu(p) for p in consumer_pids) - consumers0) * per,
        "cpu_postgres": (postgres_cpu(pg_port) - pg0) * per,
        "p50": q[49], "p99": q[98],
    }  # fmt: skip


def _row(name: str, r: dict[str, float], parts: tuple[str, str, str]) -> str:
    return (f"{name:<22} offered {r['offered_rate']:>9,.0f}/s  stored {r['rate']:>9,.0f}/s ({r['stored']:,}/{r['offered']:,})  "
            f"CPU s per 100k: publishers {r['cpu_publishers']:.2f}, {parts[0]} {r['cpu_servers']:.2f}, "
            f"{parts[1]} {r['cpu_consumers']:.2f}, PostgreSQL {r['cpu_postgres']:.2f}  "
            f"latency p50 {r['p50'] * 1000:.0f} ms p99 {r['p99'] * 1000:.0f} ms")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--period", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--publishers", type=int, default=2, help="processes hosting the simulated sites")
    parser.add_argument("--leaves", type=int, default=4, help="leaf node servers the sites share")
    parser.add_argument("--consumers", type=int, default=2, help="ingest / seam host processes")
    parser.add_argument("--skip-sparkplug", action="store_true")
    parser.add_argument("--batching", type=int, default=200_000, help="samples for the batching run (0: skip)")
    args = parser.parse_args()
    print(f"machine: {describe()}; load average {os.getloadavg()[0]:.1f} at start (shared machine)")
    print(f"work: {args.sites} sites x {args.points} points every {args.period:g} s "
          f"= {args.sites * args.points / args.period:,.0f} samples/s offered, {args.seconds:g} s window; "
          f"{args.publishers} publisher processes, {args.leaves} leaf nodes, {args.consumers} consumers")  # fmt: skip
    if args.batching:
        print("nats sink batching (one journal -> one JetStream server, every message acknowledged):")
        for kind, batch, rate, cpu, messages in await batching(args.batching):
            print(f"  message: {kind:<6} max_batch {batch:>5}: {rate:>9,.0f} samples/s, "
                  f"{cpu:.2f} CPU s per 100k in the publisher, {messages:,} messages")  # fmt: skip
    if not args.sites:
        return
    sites = [f"s{i:03d}" for i in range(args.sites)]
    leaves = [f"leaf{i}" for i in range(min(args.leaves, args.sites))]
    sites_of = {leaf: sites[i :: len(leaves)] for i, leaf in enumerate(leaves)}
    with tempfile.TemporaryDirectory(prefix="seam-bench-fleet-") as tmp, servers.postgres() as pg:
        work = Path(tmp)
        running = Fleet(work, _hub(work, 3))
        try:
            for server in running.hub:
                server.start()
            for leaf in leaves:
                relays = [Relay(servers.free_port(), s.leaf_port) for s in running.hub]  # type: ignore[attr-defined]
                remotes = ", ".join(f'"nats-leaf://127.0.0.1:{r.listen}"' for r in relays)
                body = (f'jetstream {{ store_dir: "{work / leaf}", domain: {leaf} }}\n'
                        f"leafnodes {{ remotes: [ {{ urls: [{remotes}] }} ] }}\n")  # fmt: skip
                site = Site(leaf, servers.nats_config(work, leaf, body), relays)
                site.restore()
                site.server.start()
                running.sites[leaf] = site
            await fleet_streams(running, sites_of)
            prefix = f"b{uuid.uuid4().hex[:6]}_"
            ctx = multiprocessing.get_context("spawn")
            consumers = [ctx.Process(target=ingest_process, args=(running.hub_urls, pg.dsn, prefix, f"ingest-{i}"))
                         for i in range(args.consumers)]  # fmt: skip
            for proc in consumers:
                proc.start()
            urls = {s: running.sites[leaf].server.url for leaf, names in sites_of.items() for s in names}
            server_pids = [
                s.process.pid for s in [*running.hub, *(x.server for x in running.sites.values())] if s.process
            ]
            result = await measure("nats", args, pg.dsn, pg.port, server_pids, [p.pid for p in consumers if p.pid],
                                   f"{prefix}samples", sites, urls, work)  # fmt: skip
            print(_row("NATS JetStream fleet", result, ("NATS servers", "fleet_ingest")))
            for proc in consumers:
                proc.terminate()
                proc.join(10)
        finally:
            running.stop()
        if args.skip_sparkplug:
            return
        with servers.mosquitto("set_tcp_nodelay true\nmax_inflight_messages 0\n") as broker:
            host_bin = str(Path(sys.executable).with_name("seam"))
            command = [host_bin, "host", "--broker", f"127.0.0.1:{broker.port}", "--dsn", pg.dsn, "--share-group", "b"]
            hosts = [
                subprocess.Popen([*command, "--host-id", f"h{i}"], stdout=subprocess.PIPE,  # noqa: ASYNC220
                                 stderr=subprocess.DEVNULL, text=True)
                for i in range(args.consumers)
            ]  # fmt: skip
            try:
                for host in hosts:
                    assert host.stdout is not None and "online" in host.stdout.readline()
                urls = {s: f"127.0.0.1:{broker.port}" for s in sites}
                result = await measure("sparkplug", args, pg.dsn, pg.port, [broker.process.pid],
                                       [h.pid for h in hosts], "sparkplug_metrics", sites, urls, work)  # fmt: skip
                print(_row("Sparkplug + seam host", result, ("Mosquitto", "seam host")))
            finally:
                for host in hosts:
                    host.terminate()
                    host.wait(20)


if __name__ == "__main__":
    asyncio.run(main())
