"""Sink outage: memory stays flat while the journal holds the backlog, and the backlog drains fast.

`seam run` runs as a real process: a generator device producing a fixed 10,000 samples/s (100 points,
no deadband, so every sample is journaled), the journal, and a file sink writing JSON lines to disk.
After a warm-up the sink's directory is replaced by a plain file, so every delivery fails (the sink is
"down") for the outage period, then it is put back. Every few seconds the script samples the process's
resident memory (/proc/<pid>/status) and reads /metrics. Reported: RSS at the start and end of the
outage and its maximum, the backlog reached, and the drain rate after recovery as a multiple of the
ingest rate (the target is at least 5x), then that the file holds every record exactly once.

    .venv/bin/python bench/bench_outage.py                 # 60 s outage (about 3 minutes in all)
    .venv/bin/python bench/bench_outage.py --outage 600    # the 10-minute record run

Peer: none runs in this script. The reference is the failure reported by users of other gateways
(memory growing from 1 GB to 6 GB while the northbound link is down), which this run checks against.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CONTRACT = """\
version: 1
site: {{enterprise: bench, site: outage}}
people:
  - {{id: olga, name: Olga Ops, side: ot, role: control engineer}}
  - {{id: sam, name: Sam Seam, side: seam, role: interface owner}}
seam_owner: sam
zones:
  - {{id: cell, level: 1, sl: 2, owner: olga}}
journal: {{path: ./data/journal, max_size: 8GiB, max_age: 1d}}
devices:
  - id: load
    driver: generator
    endpoint: generator://load
    zone: cell
    owner: olga
    options: {{rate: {rate}, tick: 20ms}}
    points:
{points}
sinks:
  - id: archive
    type: file
    owner: olga
    options: {{path: out/archive.jsonl}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body = response.read().decode()
    wanted = {
        'seam_points_total{device="load"}': "points",
        'seam_sink_delivered_records_total{sink="archive"}': "delivered",
        'seam_sink_lag_records{sink="archive"}': "lag",
        "seam_journal_bytes": "journal_bytes",
        'seam_sink_errors_total{sink="archive"}': "errors",
    }
    out: dict[str, float] = {}
    for line in body.splitlines():
        name, _, value = line.rpartition(" ")
        if name in wanted:
            out[wanted[name]] = float(value)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=10_000, help="samples per second (default 10000)")
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the sink is down (default 60)")
    parser.add_argument("--every", type=float, default=5.0, help="sampling interval, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="seam-bench-outage-"))
    points = "\n".join(f'      - {{id: p{i:03d}, address: "walk:step=0.5"}}' for i in range(args.points))
    (work / "seam.yaml").write_text(CONTRACT.format(rate=args.rate, points=points))
    port = free_port()
    log = (work / "seam.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "otseam.cli", "run", str(work / "seam.yaml"), "--http", f"127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    print(f"seam run pid {process.pid}, working directory {work}", flush=True)
    print(f"machine: {os.cpu_count()} cores; load average at start {os.getloadavg()[0]:.2f}", flush=True)
    samples: list[tuple[str, float, float, dict[str, float]]] = []
    started = time.monotonic()

    def sample(phase: str) -> dict[str, float]:
        metrics = scrape(port)
        samples.append((phase, time.monotonic() - started, rss_mib(process.pid), metrics))
        return metrics

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                scrape(port)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    print((work / "seam.log").read_text())
                    return 1
                time.sleep(0.2)

        end = time.monotonic() + args.warmup
        while time.monotonic() < end:
            sample("warm-up")
            time.sleep(args.every)
        warm = sample("warm-up")

        out = work / "data" / "out"
        out.rename(work / "data" / "out.saved")
        out.write_text("the sink is down")
        outage_start = time.monotonic()
        outage_cpu_start = cpu_seconds(process.pid)
        print(f"outage: sink down for {args.outage:g}s", flush=True)
        while time.monotonic() - outage_start < args.outage:
            time.sleep(args.every)
            sample("outage")
            if len(samples) % 12 == 0:
                _, t, rss, m = samples[-1]
                print(f"  t={t:6.0f}s rss={rss:7.1f} MiB lag={m.get('lag', 0):>10,.0f}", flush=True)
        outage_end = sample("outage")
        outage_seconds = time.monotonic() - outage_start
        outage_cpu = cpu_seconds(process.pid) - outage_cpu_start
        ingest_rate = (outage_end["points"] - warm["points"]) / outage_seconds

        out.unlink()
        (work / "data" / "out.saved").rename(out)
        drain_start = time.monotonic()
        drain_cpu_start = cpu_seconds(process.pid)
        backlog = outage_end["lag"]
        delivered_at_start = outage_end["delivered"]
        caught_up = None
        resumed: tuple[float, float, float] | None = None  # (time, delivered, cpu) at the first delivery
        while time.monotonic() - drain_start < max(300.0, args.outage):
            time.sleep(0.2)
            m = sample("drain")
            if resumed is None and m["delivered"] > delivered_at_start:
                resumed = (time.monotonic(), m["delivered"], cpu_seconds(process.pid))
            if m["lag"] < ingest_rate * 1.0:  # less than a second's worth left: caught up
                caught_up = m
                break
        drain_seconds = time.monotonic() - drain_start
        drain_cpu = cpu_seconds(process.pid) - drain_cpu_start
        if caught_up is None or resumed is None:
            print("the backlog did not drain within the time allowed", flush=True)
            return 1
        # The sink runner retries with a backoff (at most 10 s): the time until it tries again is reported
        # apart from the rate at which it then catches up.
        resume_seconds = resumed[0] - drain_start
        catch_up_seconds = time.monotonic() - resumed[0]
        drain_rate = (caught_up["delivered"] - delivered_at_start) / drain_seconds
        catch_up_rate = (caught_up["delivered"] - resumed[1]) / max(catch_up_seconds, 1e-9)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            time.sleep(2)
            sample("after")

        process.send_signal(signal.SIGTERM)
        code = process.wait(120)
        with_offsets = verify(work / "data" / "out" / "archive.jsonl")
        rss_out = [s[2] for s in samples if s[0] == "outage"]
        rss_warm = [s[2] for s in samples if s[0] == "warm-up"]
        result = {
            "rate_configured": args.rate,
            "ingest_rate_measured": round(ingest_rate),
            "outage_seconds": round(outage_seconds, 1),
            "backlog_records": int(backlog),
            "journal_bytes_at_end_of_outage": int(outage_end.get("journal_bytes", 0)),
            "rss_mib_end_of_warmup": round(rss_warm[-1], 1),
            "rss_mib_outage_first": round(rss_out[0], 1),
            "rss_mib_outage_last": round(rss_out[-1], 1),
            "rss_mib_outage_max": round(max(rss_out), 1),
            "resume_seconds": round(resume_seconds, 1),
            "drain_seconds_including_resume": round(drain_seconds, 1),
            "drain_rate_including_resume": round(drain_rate),
            "catch_up_rate_records_per_s": round(catch_up_rate),
            "drain_over_ingest": round(drain_rate / ingest_rate, 2),
            "catch_up_over_ingest": round(catch_up_rate / ingest_rate, 2),
            # The machine is shared: how much of one core seam run got, and the rates per CPU-second.
            "cpu_share_during_outage": round(outage_cpu / outage_seconds, 2),
            "cpu_share_during_drain": round(drain_cpu / drain_seconds, 2),
            "ingest_cpu_seconds_per_10k_samples": round(outage_cpu / outage_seconds / ingest_rate * 10_000, 3),
            "drain_records_per_cpu_second": round((caught_up["delivered"] - delivered_at_start) / drain_cpu),
            "exit_code": code,
            "file_records": with_offsets,
            "load_average_end": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(result, indent=2))
        (work / "samples.json").write_text(json.dumps(samples))
        ok = code == 0 and result["drain_over_ingest"] >= 5
        print("target (drain >= 5x ingest, exit 0):", "met" if ok else "NOT met")
        return 0 if ok else 1
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def verify(path: Path) -> str:
    """Check the file holds offsets 1..N once each, in order; streaming, the file is large."""
    expected = 1
    with path.open("rb") as handle:
        for line in handle:
            match = re.search(rb'"offset":(\d+)', line)
            if not match or int(match.group(1)) != expected:
                return f"GAP OR DUPLICATE at line {expected}"
            expected += 1
    return f"{expected - 1} records, offsets 1..{expected - 1}, no gap, no duplicate"


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
