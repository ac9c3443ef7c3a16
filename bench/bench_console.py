"""The console's live updates under load: 50 browser-like SSE clients watching 10,000 changing points.

One node (`seam run`, its own process) polls 10 generator devices × 1,000 points every 100 ms (every
value changes at every poll: 100,000 samples/s into the journal) and no sink: the polling's regularity is
read from the journal itself once the node has stopped, so that measuring it costs the node nothing. The load (this process) opens 50 event streams the way the console does (signed-in
session cookie, ``GET /api/v1/stream``), in two phases on the same node:

  * baseline: no clients, to measure what polling and journalling alone cost the node;
  * 50 clients: every stream receives every change.

Figures:
  * updates delivered: point values that reached a client (each ``values`` message row);
  * the node's CPU-seconds from /proc, and updates per CPU-second of what the streams added
    (CPU with clients minus CPU without, same duration), and per CPU-second of the whole node;
  * latency from the sample's gateway timestamp (stamped when the driver read it, just before the
    pipeline appends it to the journal) to the moment a client has the message, p50/p99/max over
    messages (the report timestamp of each message's first group, its oldest);
  * polling undisturbed: the largest gap between consecutive samples (gateway timestamps, in the
    journal) of three points (first, middle and last device) while
    the clients were connected, against the 100 ms poll period (the requirement is <= 2 periods);
  * resyncs: messages a slow client was told it missed (never silent).

``--nice N`` lowers the load process's priority (the clients stand for browsers on other machines); on a
machine already loaded by other work that starves the clients instead (their latency grows), so it is
off by default. The load average is printed at the start and end of each phase: the gap is a wall-clock figure, only
comparable between runs on equally loaded machines.

Clients count a message's updates with bytes.count (each point name is the only quoted text) and read
only the first group's timestamp, the oldest of the message, so that the load process spends as little
as it can of a two-core machine. No peer console is run beside Seam:
none of the consoles of the field runs without its own platform.

Run: .venv/bin/python bench/bench_console.py [--clients 50] [--points 10000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from machine import describe  # noqa: E402  (bench/ is not a package)

PASSWORD = "benchmark pass phrase"
POLL = 0.1


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def contract(points: int) -> str:
    devices = max(1, points // 1000)
    per = points // devices
    lines = [
        "version: 1",
        "site: {enterprise: bench, site: plant}",
        "people:",
        "  - {id: erik, name: Erik Eng, side: ot, role: control engineer}",
        "  - {id: sam, name: Sam Seam, side: seam, role: interface owner}",
        "seam_owner: sam",
        "zones:",
        "  - {id: cell, level: 1, sl: 2, owner: erik}",
        "journal: {path: ./data/journal}",
        "devices:",
    ]
    for d in range(devices):
        lines += [
            f"  - id: dev{d}",
            "    driver: generator",
            f"    endpoint: generator://dev{d}",
            "    zone: cell",
            "    owner: erik",
            f"    poll: {int(POLL * 1000)}ms",
            "    points:",
        ]
        lines += [f'      - {{id: p{p}, address: "walk:step=1"}}' for p in range(per)]
    return "\n".join(lines) + "\n"


class Node:
    def __init__(self, workdir: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "otseam.cli", "run", str(workdir / "seam.yaml"), "--http", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            # A session of its own: with the kernel's autogroup scheduling (on by default), CPU is shared
            # fairly between sessions, and a node in the load process's session would split one share
            # with its own clients, which stand for browsers on other machines.
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.port = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())
            match = re.search(r"console on http://127\.0\.0\.1:(\d+)/", line)
            if match:
                self.port = int(match.group(1))

    def wait_running(self, within: float = 120.0) -> None:
        deadline = time.monotonic() + within
        while not (self.port and any("running " in line for line in self.lines)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("seam run did not start:\n" + "\n".join(self.lines[-30:]))
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def login(port: int) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/login",
        data=json.dumps({"user": "erik", "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        cookie = response.headers["Set-Cookie"].split(";", 1)[0]
    return cookie


def live_stats(port: int, cookie: str) -> dict[str, object]:
    """The node's own counters of its live updates (messages sent on, resyncs)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/health", headers={"Cookie": cookie})
    with urllib.request.urlopen(request, timeout=30) as response:
        stats: dict[str, object] = json.loads(response.read())["console"]
    return stats


#: The first group of a values message, [quality, source_ts, report_ts, ...: the oldest of the message.
_HEAD = re.compile(rb"\[\[\d+,[-+.\de]+,([-+.\de]+),")


class Totals:
    def __init__(self) -> None:
        #: CPU-seconds the node's live updates took (its own count: encoding and writing), in the phase.
        self.console_cpu = 0.0
        #: CPU-seconds the clients (this process) took in the phase: they share the node's machine.
        self.load_cpu = 0.0
        self.rows = 0
        self.messages = 0
        self.resyncs = 0
        self.latencies: list[float] = []
        self.counting = False


async def client(port: int, cookie: str, totals: Totals, stop: asyncio.Event, ready: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=64 * 1024 * 1024)
    writer.write(
        f"GET /api/v1/stream?events=false HTTP/1.0\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise SystemExit(f"stream refused: {head[:200]!r}")
    ready.append(1)
    buffer = bytearray()
    position = 0
    while not stop.is_set():
        chunk = await reader.read(1 << 20)
        if not chunk:
            raise SystemExit("a stream ended")
        buffer += chunk
        # Messages end with a blank line; the buffer is trimmed only now and then (no quadratic copying).
        while True:
            end = buffer.find(b"\n\n", position)
            if end < 0:
                break
            message = bytes(buffer[position:end])
            position = end + 2
            if not totals.counting:
                continue
            if message.startswith(b"id:") and b"event: values" in message[:40]:
                now = time.time()
                data = message[message.find(b"data: ") + 6 :]
                # Every point of this contract is a number: its name is the only quoted text.
                totals.rows += data.count(b'"') // 2
                totals.messages += 1
                head = _HEAD.match(data)
                if head:
                    totals.latencies.append(now - float(head.group(1)))
            elif b"event: resync" in message[:40]:
                totals.resyncs += 1
        if position > 1 << 20:
            del buffer[:position]
            position = 0
    writer.close()


def watched(points: int) -> frozenset[str]:
    """Three points whose polling is checked: of the first, middle and last device."""
    devices = max(1, points // 1000)
    per = points // devices
    return frozenset(("dev0/p0", f"dev{devices // 2}/p{per // 2}", f"dev{devices - 1}/p{per - 1}"))


def largest_gaps(
    journal_dir: Path, points: frozenset[str], windows: list[tuple[float, float]]
) -> list[tuple[float, int]]:
    """For each window [start, end): the largest interval between consecutive samples of one of ``points``
    (their gateway timestamps, stamped at the poll), and how many samples that is. Read from the
    journal after the node stopped."""
    from otseam.core.records import Sample
    from otseam.journal import Journal

    stamps: dict[str, list[float]] = {p: [] for p in points}

    async def read() -> None:
        with Journal.open(journal_dir) as journal:
            cursor = journal.reader("bench-gaps")
            while True:
                batch = await cursor.next_batch(max_records=100_000, max_wait=0)
                if not batch.records:
                    return
                for record in batch.records:
                    if record.__class__ is Sample and record[0] in points:
                        stamps[record[0]].append(record[4])
                cursor.commit(batch.last_offset)

    asyncio.run(read())
    found = []
    for start, end in windows:
        worst, samples = 0.0, 0
        for series in stamps.values():
            inside = sorted(t for t in series if start <= t < end)
            samples += len(inside)
            worst = max([worst, *(b - a for a, b in itertools.pairwise(inside))])
        found.append((worst, samples))
    return found


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def phase(port: int, cookie: str, clients: int, seconds: float, pid: int) -> tuple[Totals, float, float, float]:
    totals = Totals()
    stop = asyncio.Event()
    ready: list[int] = []
    tasks = [asyncio.create_task(client(port, cookie, totals, stop, ready)) for _ in range(clients)]
    while len(ready) < clients:
        await asyncio.sleep(0.05)
        for task in tasks:
            if task.done() and task.exception():
                raise task.exception()  # type: ignore[misc]
    await asyncio.sleep(3.0)  # every client has its snapshot and is in step
    console0 = await asyncio.to_thread(live_stats, port, cookie)
    totals.counting = True
    cpu0, wall0, own0 = cpu_seconds(pid), time.time(), time.process_time()
    await asyncio.sleep(seconds)
    cpu1, wall1, own1 = cpu_seconds(pid), time.time(), time.process_time()
    totals.load_cpu = own1 - own0
    totals.counting = False
    console1 = await asyncio.to_thread(live_stats, port, cookie)
    totals.console_cpu = float(console1["cpu_seconds"]) - float(console0["cpu_seconds"])  # type: ignore[arg-type]
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return totals, cpu1 - cpu0, wall0, wall1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--nice", type=int, default=0, help="niceness of the load process (not the node)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from otseam.control.roles import Role
    from otseam.control.users import UserStore

    print(f"machine: {describe()}")
    print(f"load average (1/5/15 min) at the start: {load()}")
    with tempfile.TemporaryDirectory(prefix="seam-bench-console-") as tmp:
        workdir = Path(tmp)
        (workdir / "seam.yaml").write_text(contract(args.points))
        UserStore(workdir / "data").add("erik", "erik", Role.ENGINEER, PASSWORD)
        node = Node(workdir)
        try:
            node.wait_running()
            time.sleep(5.0)  # past start-up (contract load, first polls)
            cookie = login(node.port)
            pid = node.process.pid
            os.nice(args.nice)  # after the node started: it keeps the default priority
            _idle, base_cpu, base_start, base_end = asyncio.run(phase(node.port, cookie, 0, args.seconds, pid))
            print(f"load average after the phase without clients: {load()}")
            totals, cpu, start, end = asyncio.run(phase(node.port, cookie, args.clients, args.seconds, pid))
            print(f"load average after the phase with clients: {load()}")
            stats = live_stats(node.port, cookie)
        finally:
            node.stop()
        windows = [(base_start, base_end), (start, end)]
        (base_gap, base_samples), (gap, samples) = largest_gaps(
            workdir / "data" / "journal", watched(args.points), windows
        )
    duration = end - start
    added = cpu - base_cpu * duration / (base_end - base_start)
    print(
        f"node: {args.points:,} points polled every {POLL * 1000:.0f} ms; "
        f"{args.clients} SSE clients for {duration:.1f} s"
    )
    print(f"  node CPU without clients: {base_cpu / (base_end - base_start):.2f} CPU-s per s")
    print(f"  node CPU with clients:    {cpu / duration:.2f} CPU-s per s (the streams add {added / duration:.2f})")
    print(f"  the clients' process (same machine): {totals.load_cpu / duration:.2f} CPU-s per s")
    print(
        f"  updates delivered: {totals.rows:,} ({totals.rows / duration:,.0f}/s) in {totals.messages:,} messages; "
        f"resyncs {totals.resyncs}"
    )
    print(
        f"  the node's own count of its live updates' CPU (taking, encoding, writing): "
        f"{totals.console_cpu / duration:.3f} CPU-s per s"
    )
    print(
        f"  updates per CPU-second: {totals.rows / max(totals.console_cpu, 1e-9):,.0f} of the live updates' own CPU, "
        f"{totals.rows / cpu:,.0f} of the whole node "
        f"({'the node used less CPU with clients: the machine is contended' if added <= 0 else f'{totals.rows / added:,.0f} of what the node used beyond its CPU without clients'})"
    )
    print(
        f"  latency gateway timestamp -> client: p50 {percentile(totals.latencies, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(totals.latencies, 0.99) * 1000:.0f} ms, max {max(totals.latencies, default=0) * 1000:.0f} ms"
    )
    print(
        f"  resyncs seen by the node: {stats.get('resyncs')}; its interval between sends at the end: "
        f"{float(stats.get('interval') or 0) * 1000:.0f} ms; load process niceness {args.nice}"  # type: ignore[arg-type]
    )
    verdict = "ok" if gap <= 2 * POLL else "EXCEEDED"
    base_verdict = "ok" if base_gap <= 2 * POLL else "EXCEEDED"
    print(
        f"  polling without clients: largest gap {base_gap * 1000:.0f} ms over {base_samples:,} samples of 3 points "
        f"({base_verdict})"
    )
    print(
        f"  polling with clients:    largest gap {gap * 1000:.0f} ms over {samples:,} samples of 3 points "
        f"(limit {2 * POLL * 1000:.0f} ms: {verdict})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
