"""MQTT northbound benchmark: journal -> Sparkplug edge -> Mosquitto -> `seam host` -> SQLite.

Figures, all from one run on this machine:
  1. publish: metrics/s from the journal through the Sparkplug sink to the broker, every message
     acknowledged (QoS 1 PUBACK) before the cursor commits; CPU of the publishing process (one
     event loop, one thread) and its peak RSS; the broker's CPU.
  2. ingest: metrics/s from the broker through `seam host` into SQLite (idempotent inserts), the
     host's CPU and peak RSS.
  3. latency: journal append -> received by `seam host`, p50/p99, at a steady 10,000 metrics/s.
  4. UNS: the plain JSON publisher, one retained QoS 1 message per sample, messages/s.
  5. peer: Eclipse Tahu's JavaScript codec (npm sparkplug-payload) with mqtt.js publishing the same
     DDATA shape at QoS 1, metrics/s; and each side's payload encoding alone.

Run: .venv/bin/python bench/bench_mqtt.py [--records N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from otseam.contract.models import Contract, SinkSpec  # noqa: E402
from otseam.core.plugins import PluginContext  # noqa: E402
from otseam.core.records import Batch, Quality, Sample  # noqa: E402
from otseam.journal import Journal  # noqa: E402
from otseam.runtime.sinkrunner import SinkStats, run_sink  # noqa: E402
from otseam.sinks import sparkplug  # noqa: E402
from otseam.sinks.sparkplug.model import EdgeModel  # noqa: E402
from tests.support import servers  # noqa: E402

INTEROP = REPO / "tests" / "interop"
DEVICES, POINTS = 10, 50  # 500 float64 points


def contract() -> Contract:
    return Contract.model_validate(
        {
            "site": {"enterprise": "bench", "site": "s1"},
            "zones": [{"id": "z", "level": 1, "sl": 1}],
            "devices": [
                {
                    "id": f"plc{d}",
                    "driver": "modbus",
                    "endpoint": "tcp://127.0.0.1:502",
                    "zone": "z",
                    "points": [{"id": f"p{p}", "address": f"hr:{p * 4}", "type": "float64"} for p in range(POINTS)],
                }
                for d in range(DEVICES)
            ],
        }
    )


KEYS = [f"plc{d}/p{p}" for d in range(DEVICES) for p in range(POINTS)]


def records(start: int, count: int, ts: float | None = None) -> list[Sample]:
    """Record n: point n mod 500, value n * 0.5 (always a change), source time 1 ms apart."""
    out = []
    for n in range(start, start + count):
        t = ts if ts is not None else 1_700_000_000 + n / 1000
        out.append(Sample(KEYS[n % len(KEYS)], n * 0.5, Quality.GOOD, t, t))
    return out


async def until(done: Any, what: str, poll: float, limit: float = 120.0) -> None:
    """Poll ``done`` (journal cursors and SQLite offer nothing to wait on); give up after ``limit`` s."""
    deadline = time.monotonic() + limit
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_mqtt: {what} did not finish within {limit:.0f} s")
        await asyncio.sleep(poll)


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def make_sink(data_dir: Path, port: int, **options: Any) -> sparkplug.SparkplugSink:
    spec = SinkSpec(
        id="bench",
        type="sparkplug",
        options={"brokers": [f"127.0.0.1:{port}"], "group_id": "bench", "edge_node_id": "edge1",
                 "startup_delay": 0, "timeout": 30.0, **options},
    )  # fmt: skip
    return sparkplug.create(spec, PluginContext(contract(), str(data_dir)))


async def publish_from_journal(data_dir: Path, port: int, total: int, **options: Any) -> dict[str, float]:
    journal = Journal.open(data_dir / "journal", max_size=8 * 1024**3, sync="none")
    chunk = 50_000
    for start in range(journal.last_offset + 1, total + 1, chunk):
        journal.append(records(start, min(chunk, total - start + 1)))
    sink = make_sink(data_dir, port, **options)
    reader = journal.reader("bench")
    stats = SinkStats("bench")
    cpu0, t0 = time.process_time(), time.perf_counter()
    runner = asyncio.create_task(run_sink(sink, reader, stats=stats, max_records=10_000, max_wait=0.05))
    await until(lambda: reader.committed >= total, "publish", 0.01)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    journal.close()
    return {"metrics": float(total), "wall": wall, "cpu": cpu, "messages": float(sink.stats.messages)}


async def publish_uns(data_dir: Path, port: int, total: int) -> dict[str, float]:
    """The UNS publisher: one JSON message per sample, retained, QoS 1, through the sink runner."""
    from otseam.sinks import uns_json

    journal = Journal.open(data_dir / "journal", sync="none")
    for start in range(1, total + 1, 50_000):
        journal.append(records(start, min(50_000, total - start + 1)))
    spec = SinkSpec(id="uns", type="uns_json", options={"brokers": [f"127.0.0.1:{port}"], "timeout": 30.0})
    sink = uns_json.create(spec, PluginContext(contract(), str(data_dir)))
    reader = journal.reader("uns")
    cpu0, t0 = time.process_time(), time.perf_counter()
    runner = asyncio.create_task(run_sink(sink, reader, stats=SinkStats("uns"), max_records=5000, max_wait=0.05))
    await until(lambda: reader.committed >= total, "uns publish", 0.01)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    journal.close()
    return {"metrics": float(total), "wall": wall, "cpu": cpu}


def count(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return int(conn.execute("SELECT count(*) FROM sparkplug_metrics").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def start_host(port: int, db: Path, host_id: str) -> subprocess.Popen[str]:
    host = subprocess.Popen(
        [str(Path(sys.executable).with_name("seam")), "host", "--broker", f"127.0.0.1:{port}", "--host-id", host_id,
         "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert host.stdout is not None and "online" in host.stdout.readline()
    return host


async def ingest(port: int, work: Path, total: int) -> dict[str, float]:
    db = work / "ingest.db"
    host = start_host(port, db, "bench-host")
    try:
        cpu0 = proc_cpu(host.pid)
        t0 = time.perf_counter()
        publish = asyncio.create_task(publish_from_journal(work / "edge-ingest", port, total))
        await until(lambda: count(db) >= total, "ingest", 0.25)
        wall = time.perf_counter() - t0
        await publish
        return {"metrics": float(total), "wall": wall, "cpu": proc_cpu(host.pid) - cpu0,
                "rss": proc_peak_rss_mib(host.pid)}  # fmt: skip
    finally:
        host.terminate()
        host.wait(20)


async def latency(port: int, work: Path, seconds: float, rate: int) -> dict[str, float]:
    db = work / "latency.db"
    host = start_host(port, db, "bench-latency")
    journal = Journal.open(work / "edge-latency" / "journal", sync="none")
    sink = make_sink(work / "edge-latency", port)
    reader = journal.reader("bench")
    runner = asyncio.create_task(run_sink(sink, reader, stats=SinkStats("l"), max_records=5000, max_wait=0.002))
    try:
        tick, per_tick = 0.01, rate // 100
        n = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            now = time.time()
            batch = [Sample(KEYS[(n + i) % len(KEYS)], (n + i) * 0.5, Quality.GOOD, now, now) for i in range(per_tick)]
            journal.append(batch)
            n += per_tick
            await asyncio.sleep(max(0.0, start + (n / per_tick) * tick - time.perf_counter()))
        await until(lambda: count(db) >= n, "latency", 0.1)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        journal.close()
        host.terminate()
        host.wait(20)
    with sqlite3.connect(db) as conn:
        delays = sorted(r - t for r, t in conn.execute("SELECT received_ms, ts_ms FROM sparkplug_metrics"))
    q = statistics.quantiles(delays, n=100)
    return {"metrics": float(n), "p50": q[49], "p99": q[98], "max": float(delays[-1])}


def encode_only(total: int) -> float:
    """Our encoder alone: metrics/s into DDATA payloads of 5000 metrics."""
    model = EdgeModel(contract(), "bench", "edge1", report_by_exception=False)
    model.births(0, 0)
    batch = Batch("b", list(range(total)), list(records(0, total)))
    t0 = time.process_time()
    model.plan(batch, 0)
    return total / (time.process_time() - t0)


PEER_JS = r"""
const sp = require("sparkplug-payload").get("spBv1.0");
const mqtt = require("mqtt");
const [port, totalText, perText] = process.argv.slice(1);
const total = parseInt(totalText, 10), per = parseInt(perText, 10);
function payload(start) {
  const metrics = [];
  for (let n = start; n < start + per; n++) {
    metrics.push({ alias: (n % 500) + 1, type: "Double", value: n * 0.5, timestamp: 1700000000000 + n,
                   properties: { Quality: { type: "Int32", value: 192 } } });
  }
  return { timestamp: Date.now(), seq: (start / per) % 256, metrics };
}
let t = process.cpuUsage(); let w = process.hrtime.bigint();
for (let s = 0; s < total; s += per) sp.encodePayload(payload(s));
const encCpu = process.cpuUsage(t); const encodeRate = total / ((encCpu.user + encCpu.system) / 1e6);
const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { protocolVersion: 5 });
client.on("connect", () => {
  t = process.cpuUsage(); w = process.hrtime.bigint();
  let acked = 0, n = 0;
  for (let s = 0; s < total; s += per, n++) {
    client.publish(`spBv1.0/peer/DDATA/tahu/plc${n % 10}`, Buffer.from(sp.encodePayload(payload(s))), { qos: 1 }, () => {
      acked += per;
      if (acked >= total) {
        const wall = Number(process.hrtime.bigint() - w) / 1e9; const c = process.cpuUsage(t);
        console.log(JSON.stringify({ encodeRate, publishRate: total / wall, cpu: (c.user + c.system) / 1e6, wall }));
        client.end(true, () => process.exit(0));
      }
    });
  }
});
"""


def peer(port: int, total: int, per: int) -> dict[str, float]:
    import json

    out = subprocess.run(["node", "-e", PEER_JS, str(port), str(total), str(per)], cwd=INTEROP, capture_output=True,
                         text=True, timeout=170, check=True)  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--ingest-records", type=int, default=300_000)
    parser.add_argument("--peer-records", type=int, default=300_000)
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()}  cpus: {os.cpu_count()}", flush=True)
    # TCP_NODELAY on the broker: without it Mosquitto's acknowledgements wait for Nagle's algorithm and
    # the client's delayed ACK (about 40 ms per round trip on Linux), which is what a deployment should
    # configure too (see the sinks' READMEs).
    nodelay = "set_tcp_nodelay true"
    with (
        tempfile.TemporaryDirectory(prefix="seam-bench-mqtt-") as tmp,
        servers.mosquitto(extra_config=nodelay) as broker,
    ):
        work = Path(tmp)
        rate = encode_only(200_000)
        print(f"encode only (Seam, Python)      : {rate:>12,.0f} metrics/s", flush=True)
        b0 = proc_cpu(broker.process.pid)
        pub = await publish_from_journal(work / "edge", broker.port, args.records)
        broker_cpu = proc_cpu(broker.process.pid) - b0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"publish journal->broker (Seam)  : {pub['metrics'] / pub['wall']:>12,.0f} metrics/s  "
            f"({pub['metrics']:,.0f} metrics in {pub['messages']:,.0f} messages, {pub['wall']:.2f} s, "
            f"publisher CPU {pub['cpu'] / pub['wall'] * 100:.0f}% of one core = "
            f"{pub['metrics'] / pub['cpu']:,.0f} metrics per CPU-second, peak RSS {rss:.0f} MiB, "
            f"broker CPU {broker_cpu / pub['wall'] * 100:.0f}%)",
            flush=True,
        )
        uns = await publish_uns(work / "uns", broker.port, 100_000)
        print(
            f"publish journal->broker (UNS)   : {uns['metrics'] / uns['wall']:>12,.0f} messages/s  "
            f"(one JSON message per sample, retained, QoS 1; {uns['metrics']:,.0f} in {uns['wall']:.2f} s, "
            f"CPU {uns['cpu'] / uns['wall'] * 100:.0f}% = {uns['metrics'] / uns['cpu']:,.0f} per CPU-second)",
            flush=True,
        )
        ing = await ingest(broker.port, work, args.ingest_records)
        print(
            f"ingest broker->seam host->SQLite: {ing['metrics'] / ing['wall']:>12,.0f} metrics/s  "
            f"({ing['metrics']:,.0f} metrics, {ing['wall']:.2f} s, host CPU {ing['cpu'] / ing['wall'] * 100:.0f}%, "
            f"host peak RSS {ing['rss']:.0f} MiB)",
            flush=True,
        )
        lat = await latency(broker.port, work, 5.0, 10_000)
        print(
            f"latency journal->host (10k/s)   : p50 {lat['p50']:.0f} ms, p99 {lat['p99']:.0f} ms, max {lat['max']:.0f} ms "
            f"over {lat['metrics']:,.0f} metrics",
            flush=True,
        )
        js = peer(broker.port, args.peer_records, 5000)
        print(f"encode only (Tahu JS codec)     : {js['encodeRate']:>12,.0f} metrics/s", flush=True)
        print(
            f"publish (Tahu JS codec+mqtt.js) : {js['publishRate']:>12,.0f} metrics/s  "
            f"({args.peer_records:,} metrics, {js['wall']:.2f} s, CPU {js['cpu'] / js['wall'] * 100:.0f}%)",
            flush=True,
        )
    print(f"load after: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
