"""End-to-end against peers: Seam, ThingsBoard IoT Gateway and Node-RED, PLC to MQTT subscriber.

    .venv/bin/python bench/bench_peers.py                      # ~15 min: 1 s and 100 ms, 60 s outage
    .venv/bin/python bench/bench_peers.py --seconds 10 --outage-seconds 10   # a short trial

The script installs the peers itself into bench/out/ (ThingsBoard's gateway in its own venv from
PyPI, Node-RED and node-red-contrib-modbus from npm, matplotlib in a venv of its own for the plots),
then for each poll period and each gateway in turn:

1. starts the simulated PLCs (peers_sim.py: ``--devices`` Modbus/TCP servers of ``--points`` uint32
   tags each, every value new every cycle, the cycle period being the poll period, the time of each
   change logged) and the gateway (peers_gateways.py), all publishing to one private Mosquitto on a
   free loopback port, received by one subscriber (peers_subscriber.py);
2. after a warm-up, measures for ``--seconds``: updates delivered per second (distinct tag changes
   received for the first time), CPU seconds of the gateway's processes (from /proc, children
   included) per 100,000 updates, peak resident memory of its processes (sampled every 0.5 s),
   latency from the PLC's change to the subscriber's receipt (p50, p99), and which share of the
   changes the gateway delivered at all (a poller whose clock drifts against the PLC's misses some);
3. in the ``--outage-poll`` run, stops the broker for ``--outage-seconds``, starts it again (the
   subscriber's persistent session survives), waits until nothing more of the outage arrives, and
   counts the changes of the outage that never arrived.

Results: a table on stdout, bench/out/peers/result.json, and the plots (``--plots``, default
docs/bench/) peers-throughput.png, peers-latency.png, peers-outage.png. A peer that cannot be
installed or run is reported with its error and the others are still measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

import peers_gateways as gateways  # noqa: E402
from machine import describe  # noqa: E402
from peers_subscriber import CYCLE_BITS, Record, Subscriber, change_times, read_times  # noqa: E402

OUT = gateways.OUT / "peers"
GATEWAYS = ("seam", "thingsboard", "node-red")


# --- processes and /proc ---------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def family(root: int) -> list[int]:
    tree, found, todo = children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += tree.get(pid, [])
    return found


def tree_cpu(root: int) -> float:
    """CPU seconds of the process, its live descendants and the children they have reaped."""
    ticks = 0
    for pid in family(root):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += sum(int(f) for f in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_rss_mib(root: int) -> float:
    total = 0
    for pid in family(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


class RssSampler:
    """Peak resident memory of a process tree, sampled every half second while the gateway runs."""

    def __init__(self, root: int) -> None:
        self.root, self.peak, self._stop = root, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, tree_rss_mib(self.root))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def stop_process(process: subprocess.Popen[Any], grace: float = 20.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            for pid in reversed(family(process.pid)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            process.wait()


class Broker:
    """A private Mosquitto whose sessions survive a restart (persistence on, saved at SIGTERM)."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {folder}/\nautosave_interval 0\n"
            "max_queued_messages 10000000\nmax_inflight_messages 1000\nqueue_qos0_messages true\n"
            "set_tcp_nodelay true\n"
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            import socket

            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        raise SystemExit("mosquitto did not start")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


# --- one gateway, one poll period ------------------------------------------------------------------


def start_sim(workdir: Path, args: argparse.Namespace, tick: float) -> tuple[subprocess.Popen[str], list[int]]:
    sim = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "peers_sim.py"), "--devices", str(args.devices),
         "--points", str(args.points), "--tick", str(tick), "--cycles", str(workdir / "cycles.txt"), "--reads", str(workdir / "reads.txt")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )  # fmt: skip
    assert sim.stdout is not None
    ports = json.loads(sim.stdout.readline())["ports"]
    return sim, [int(p) for p in ports]


def launch(name: str, setup: gateways.Setup, tools: dict[str, Path]) -> subprocess.Popen[bytes]:
    if name == "seam":
        return gateways.start_seam(setup)
    if name == "thingsboard":
        return gateways.start_thingsboard(setup, tools["thingsboard"])
    return gateways.start_node_red(setup, tools["node-red"])


def log_tail(workdir: Path, lines: int = 6) -> str:
    for name in ("seam.log", "tb.log", "node-red.log"):
        path = workdir / name
        if path.exists():
            return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def run_one(name: str, poll: float, args: argparse.Namespace, broker: Broker, subscriber: Subscriber,
            tools: dict[str, Path]) -> dict[str, Any]:  # fmt: skip
    poll_ms = round(poll * 1000)
    workdir = OUT / f"{name}-{poll_ms}ms"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    sim, ports = start_sim(workdir, args, poll)
    record = subscriber.start_run()
    setup = gateways.Setup(ports, args.points, poll_ms, broker.port, workdir)
    result: dict[str, Any] = {"gateway": name, "poll_ms": poll_ms, "load_start": round(os.getloadavg()[0], 2)}
    process = launch(name, setup, tools)
    sampler = RssSampler(process.pid)
    started = time.monotonic()
    try:
        if not wait_for(lambda: record.messages > 0 or process.poll() is not None, 120):
            result["error"] = f"no value arrived within 120 s; its log: {log_tail(workdir)}"
            return result
        if process.poll() is not None:
            result["error"] = f"exited with {process.returncode}; its log: {log_tail(workdir)}"
            return result
        result["first_value_s"] = round(time.monotonic() - started, 1)
        time.sleep(args.warmup)
        t0, cpu0 = time.time(), tree_cpu(process.pid)
        time.sleep(args.seconds)
        t1, cpu1 = time.time(), tree_cpu(process.pid)
        result["peak_rss_steady_mib"] = round(sampler.peak, 1)
        outage: tuple[float, float] | None = None
        if args.outage_seconds > 0 and abs(poll - args.outage_poll) < 1e-9:
            outage = broker_outage(broker, args.outage_seconds, record, workdir)
        result["alive_at_end"] = process.poll() is None
    finally:
        stop_process(process)
        result["peak_rss_mib"] = round(sampler.stop(), 1)
        stop_process(sim)  # type: ignore[arg-type]
    if record.tags:  # every value as received, for a second look at a run
        np.savez_compressed(workdir / "received.npz", tags=np.concatenate(record.tags),
                            values=np.concatenate(record.values), received=np.concatenate(record.received))  # fmt: skip
    result |= analyse(record, workdir, args.points, args.devices * args.points, (t0, t1), cpu1 - cpu0, poll)
    if outage is not None:
        result["outage"] = outage_figures(record, workdir, args.points, args.devices * args.points, outage)
    result["load_end"] = round(os.getloadavg()[0], 2)
    if not args.keep:
        shutil.rmtree(workdir / "data", ignore_errors=True)
    return result


def broker_outage(broker: Broker, seconds: float, record: Record, workdir: Path) -> tuple[float, float]:
    """Broker down for ``seconds``; back; wait until what was held during the outage stops arriving."""
    down = time.time()
    print(f"    broker down for {seconds:g} s", flush=True)
    broker.stop()
    time.sleep(seconds)
    broker.start()
    up = time.time()

    def late() -> int:  # values of changes made before the restart, received after it
        times = change_times(workdir / "cycles.txt")
        received = np.concatenate(record.received) if record.received else np.zeros(0)
        cycles = np.concatenate(record.values) & ((1 << CYCLE_BITS) - 1) if record.values else np.zeros(0, int)
        after = received >= up
        return int(np.sum(after & (times[np.minimum(cycles, len(times) - 1)] < up)))

    # Done when nothing old arrived for 15 s (at least 20 s after the restart), or after a bound.
    last, steady_since, deadline = -1, time.monotonic(), time.monotonic() + max(120.0, 3 * seconds)
    while time.monotonic() < deadline:
        time.sleep(2.5)
        count = late()
        if count != last:
            last, steady_since = count, time.monotonic()
        elif time.monotonic() - steady_since >= 15 and time.time() - up >= 20:
            break
    print(f"    broker back; {last:,} values of the outage and before arrived after the restart", flush=True)
    return down, up


def first_arrivals(record: Record) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Per distinct (tag, cycle): tag, cycle, first receive time; plus every value's receive time, wrong count."""
    tags, cycles, received, wrong = record.arrays()
    keys = (tags << CYCLE_BITS) | cycles
    order = np.argsort(received, kind="stable")
    unique, index = np.unique(keys[order], return_index=True)
    return unique >> CYCLE_BITS, unique & ((1 << CYCLE_BITS) - 1), received[order][index], received, int(wrong.sum())


def percentile(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values.size else None


def analyse(record: Record, workdir: Path, points: int, tags: int, window: tuple[float, float], cpu: float,
            poll: float) -> dict[str, Any]:  # fmt: skip
    t0, t1 = window
    times = change_times(workdir / "cycles.txt")
    first_tags, cycles, first, received, wrong = first_arrivals(record)
    all_tags = record.arrays()[0]
    in_window = (received >= t0) & (received < t1)
    # Latency is that of a change: its first arrival (a value read twice in one cycle is delivered
    # twice by some gateways; the second copy is not a change and is not timed).
    fresh = (first >= t0) & (first < t1)
    change_of_first = times[np.minimum(cycles, len(times) - 1)]
    latency_ms = 1000 * (first[fresh] - change_of_first[fresh])
    latency_ms = latency_ms[np.isfinite(latency_ms)]
    # From the read that first showed the change to its arrival: the gateway's own latency, whatever
    # the phase of its polling against the PLC's cycle.
    read_keys, read_at = read_times(workdir / "reads.txt", points)
    keys = (first_tags[fresh] << CYCLE_BITS) | cycles[fresh]
    where = np.minimum(np.searchsorted(read_keys, keys), max(len(read_keys) - 1, 0))
    known = read_keys[where] == keys if len(read_keys) else np.zeros(len(keys), dtype=bool)
    read_ms = 1000 * (first[fresh][known] - read_at[where][known])
    updates = int(fresh.sum())
    seconds = t1 - t0
    # Coverage: of the changes the PLCs made inside the window (a poll period clear of its end), the
    # share delivered at any time.
    made = (times >= t0) & (times < t1 - 2 * poll)
    expected = int(made.sum()) * tags
    delivered = int(np.sum((change_of_first >= t0) & (change_of_first < t1 - 2 * poll)))
    return {
        "seconds": round(seconds, 1),
        "window": [t0, t1],
        "updates": updates,
        "updates_per_s": round(updates / seconds),
        "values_received": int(in_window.sum()),
        "messages": record.messages,
        "wrong_values": wrong,
        "undecodable_messages": record.undecodable,
        "null_values": record.nulls,
        "cpu_s": round(cpu, 2),
        "cpu_share": round(cpu / seconds, 3),
        "cpu_s_per_100k": round(1e5 * cpu / updates, 3) if updates else None,
        "updates_per_cpu_s": round(updates / cpu) if cpu > 0 else None,
        "latency_p50_ms": percentile(latency_ms, 50),
        "latency_p99_ms": percentile(latency_ms, 99),
        "read_latency_p50_ms": percentile(read_ms, 50),
        "read_latency_p99_ms": percentile(read_ms, 99),
        "changes_made": expected,
        "changes_delivered": delivered,
        "delivered_share": round(delivered / expected, 4) if expected else None,
        "tags_seen": int(np.unique(all_tags).size),
    }


def outage_figures(
    record: Record, workdir: Path, points: int, tags: int, outage: tuple[float, float]
) -> dict[str, Any]:
    """What became of the changes made while the broker was down.

    A change the gateway never read (its poll fell either side of it, as happens now and then when a
    poll and the PLC's cycle have the same period) was never the gateway's to lose: the sim's read log
    tells those apart, and "lost" counts only changes a gateway read and never delivered.
    """
    down, up = outage
    times = change_times(workdir / "cycles.txt")
    first_tags, cycles, first, _, _ = first_arrivals(record)
    cycles_down = np.flatnonzero((times >= down) & (times < up))
    made = cycles_down.size * tags
    read_keys, _ = read_times(workdir / "reads.txt", points)
    read_during = read_keys[np.isin(read_keys & ((1 << CYCLE_BITS) - 1), cycles_down)]
    arrived_keys = (first_tags << CYCLE_BITS) | cycles
    during = np.isin(cycles, cycles_down)
    lost = int(np.sum(~np.isin(read_during, arrived_keys[during])))
    return {
        "seconds": round(up - down, 1),
        "changes_made": made,
        "changes_read": int(read_during.size),
        "changes_delivered": int(during.sum()),
        "changes_lost": lost,
        "changes_never_read": made - int(read_during.size),
        "delivered_share_of_read": round(1 - lost / read_during.size, 4) if read_during.size else None,
        "last_arrival_after_restart_s": round(float(first[during].max() - up), 1) if during.any() else None,
        "window": [down, up],
    }


# --- install, report, plot -------------------------------------------------------------------------


def install(wanted: list[str]) -> tuple[dict[str, Path], dict[str, str], dict[str, str]]:
    tools: dict[str, Path] = {}
    versions = {"seam": "this checkout", "mosquitto": mosquitto_version()}
    errors: dict[str, str] = {}
    gateways.OUT.mkdir(parents=True, exist_ok=True)
    for name, installer in (("thingsboard", gateways.install_thingsboard), ("node-red", gateways.install_node_red)):
        if name not in wanted:
            continue
        print(f"installing {name} into bench/out/ (once)...", flush=True)
        path, text = installer()
        if path is None:
            errors[name] = f"could not be installed: {text}"
        else:
            tools[name], versions[name] = path, text
    return tools, versions, errors


def mosquitto_version() -> str:
    out = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else "mosquitto"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def table(results: list[dict[str, Any]], errors: dict[str, str]) -> str:
    head = (f"{'gateway':<12} {'poll':>6} {'updates/s':>10} {'delivered':>9} {'CPU %':>6} {'CPU s/100k':>10} "
            f"{'upd/CPU-s':>10} {'peak RSS':>9} {'change->sub p50/p99 ms':>23} {'read->sub p50/p99 ms':>21} "
            f"{'outage: lost of read':>22}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for r in results:
        if "error" in r:
            lines.append(f"{r['gateway']:<12} {r['poll_ms']:>4}ms  ERROR: {r['error'][:300]}")
            continue
        outage = r.get("outage")
        lost = f"{outage['changes_lost']:,} of {outage['changes_read']:,}" if outage else ""
        per_100k = "-" if r["cpu_s_per_100k"] is None else f"{r['cpu_s_per_100k']:.3f}"
        lines.append(
            f"{r['gateway']:<12} {r['poll_ms']:>4}ms {r['updates_per_s']:>10,} {100 * (r['delivered_share'] or 0):>8.1f}% "
            f"{100 * r['cpu_share']:>5.1f}% {per_100k:>10} {r['updates_per_cpu_s'] or 0:>10,} {r['peak_rss_mib']:>7.0f}MB "
            f"{ms(r['latency_p50_ms']) + ' / ' + ms(r['latency_p99_ms']):>23} "
            f"{ms(r['read_latency_p50_ms']) + ' / ' + ms(r['read_latency_p99_ms']):>21} {lost:>22}"
        )
    for name, error in errors.items():
        lines.append(f"{name:<12} not measured: {error}")
    return "\n".join(lines)


def verdict(results: list[dict[str, Any]]) -> list[str]:
    out = []
    for poll in sorted({r["poll_ms"] for r in results}):
        runs = {r["gateway"]: r for r in results if r["poll_ms"] == poll and r.get("updates_per_cpu_s")}
        peers = [r["updates_per_cpu_s"] for g, r in runs.items() if g != "seam"]
        if "seam" in runs and peers:
            ratio = runs["seam"]["updates_per_cpu_s"] / max(peers)
            out.append(f"{poll} ms: Seam {ratio:.1f}x the updates per CPU-second of the best peer "
                       f"(target >= 10x: {'met' if ratio >= 10 else 'NOT met'})")  # fmt: skip
    for r in results:
        if r["gateway"] == "seam" and r.get("outage"):
            lost = r["outage"]["changes_lost"]
            out.append(f"outage: Seam lost {lost:,} changes (target 0: {'met' if lost == 0 else 'NOT met'})")
    return out


def plot(result_file: Path, folder: Path) -> str:
    venv = gateways.OUT / "plot-venv"
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        log = gateways.OUT / "plot-install.log"
        error = gateways.run([sys.executable, "-m", "venv", "--clear", str(venv)], log) or gateways.run(
            [str(python), "-m", "pip", "install", "-q", "matplotlib"], log
        )
        if error:
            return f"plots not made: matplotlib could not be installed: {error}"
        (venv / ".installed").touch()
    done = subprocess.run([str(python), str(REPO / "bench" / "peers_plot.py"), str(result_file), str(folder)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    return done.stdout.strip() if done.returncode == 0 else f"plots not made: {done.stderr.strip()[-500:]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=4, help="simulated PLCs (one Modbus/TCP server each)")
    parser.add_argument("--points", type=int, default=1000, help="uint32 tags per PLC (two registers each)")
    parser.add_argument("--polls", default="1,0.1", help="poll periods in seconds, comma-separated")
    parser.add_argument("--gateways", default=",".join(GATEWAYS))
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=30.0, help="measuring window per run")
    parser.add_argument("--outage-seconds", type=float, default=60.0, help="broker down this long; 0: no outage")
    parser.add_argument("--outage-poll", type=float, default=1.0, help="the poll period of the outage runs")
    parser.add_argument("--plots", type=Path, default=REPO / "docs" / "bench")
    parser.add_argument("--keep", action="store_true", help="keep Seam's journal of each run")
    args = parser.parse_args()
    wanted = [g.strip() for g in args.gateways.split(",") if g.strip()]
    if unknown := set(wanted) - set(GATEWAYS):
        parser.error(f"unknown gateways {sorted(unknown)}; choose from {GATEWAYS}")
    tools, versions, errors = install(wanted)
    OUT.mkdir(parents=True, exist_ok=True)
    machine = describe()
    print(f"machine: {machine}; load average {os.getloadavg()[0]:.2f}", flush=True)
    print(f"{args.devices} PLCs x {args.points} uint32 tags = {args.devices * args.points:,} tags", flush=True)
    broker = Broker(OUT / "broker")
    subscriber = Subscriber(broker.port, args.points)
    results: list[dict[str, Any]] = []
    try:
        for poll in (float(p) for p in args.polls.split(",")):
            for name in wanted:
                if name in errors:
                    continue
                print(f"  {name} at {poll:g} s ...", flush=True)
                result = run_one(name, poll, args, broker, subscriber, tools)
                results.append(result)
                print("    " + json.dumps(result), flush=True)
    finally:
        subscriber.close()
        broker.stop()
    report = {
        "machine": machine,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "versions": versions,
        "devices": args.devices,
        "points_per_device": args.points,
        "warmup_s": args.warmup,
        "outage_seconds": args.outage_seconds,
        "results": results,
        "not_measured": errors,
    }
    result_file = OUT / "result.json"
    result_file.write_text(json.dumps(report, indent=1))
    print()
    print(table(results, errors))
    for line in verdict(results):
        print(line)
    print(f"versions: {versions}")
    print(f"result: {result_file}")
    print(plot(result_file, args.plots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
