"""Audit log benchmark: what tamper evidence costs per record, against a plain append-and-fsync log.

    .venv/bin/python bench/bench_audit.py [--records 500]

Measures, in one run, in this process, on the same disk:
  * seam: AuditLog.append (canonical JSON, SHA-256 chain, an Ed25519-signed head rewritten atomically
    after every record, fsync of the log, the head and its directory, a signed checkpoint every 100);
  * plain: the same records as JSON lines, appended and fsynced one by one (an audit table with no
    tamper evidence: the peer any log must at least match in durability);
  * verify: `seam audit verify`'s walk of the log Seam wrote (hashes, links, checkpoint and head
    signatures).
Figures are records per wall-clock second and per CPU-second of this process; the median of three
rounds. Bounded by the disk's fsync rate: about 40 s for 500 records on the 2-core machine under load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from otseam.audit.log import AuditLog, node_public_key, verify_log

ROUNDS = 3


def cpu() -> str:
    name, flags = platform.processor() or "unknown CPU", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name in ("", "unknown CPU", platform.processor()):
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                wanted = ("sha_ni", "avx2", "avx512f", "aes")
                flags = " ".join(f for f in line.split(":", 1)[1].split() if f in wanted)
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} cores; {flags or 'no sha_ni/avx2/avx512f/aes'})"


def timed(work: Callable[[], None]) -> tuple[float, float]:
    wall, cpu_start = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu_start


def data(i: int) -> dict[str, object]:
    return {"document": {"id": f"{i:016x}", "command": "set-speed", "value": "55.5", "reason": "tariff shift"}}


def seam_round(directory: Path, records: int) -> tuple[float, float, AuditLog]:
    log = AuditLog(directory, node="bench")
    log.append("warm-up", "bench", "x")  # the node key is made on first use; not part of the figure

    def work() -> None:
        for i in range(records):
            log.append("command.request", "it-lead", f"r{i}", data(i))

    wall, cpu_s = timed(work)
    return wall, cpu_s, log


def plain_round(path: Path, records: int) -> tuple[float, float]:
    def work() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            for i in range(records):
                line = {"ts": time.time(), "kind": "command.request", "actor": "it-lead", "data": data(i)}
                os.write(fd, json.dumps(line, separators=(",", ":")).encode() + b"\n")
                os.fsync(fd)
        finally:
            os.close(fd)

    return timed(work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=500)
    args = parser.parse_args()
    n = args.records
    rates: dict[str, list[tuple[float, float]]] = {"seam append": [], "plain append": [], "seam verify": []}
    for _ in range(ROUNDS):
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
            wall, cpu_s, log = seam_round(Path(tmp) / "seam", n)
            rates["seam append"].append((n / wall, n / cpu_s))
            wall, cpu_s = plain_round(Path(tmp) / "plain.log", n)
            rates["plain append"].append((n / wall, n / cpu_s))
            public = node_public_key(log.directory)
            verdict = None

            def check(log: AuditLog = log, public: Ed25519PublicKey = public) -> None:
                nonlocal verdict
                verdict = verify_log(log.path, log.head_path, public)

            wall, cpu_s = timed(check)
            assert verdict is not None and verdict.ok, verdict
            total = verdict.records
            rates["seam verify"].append((total / wall, total / cpu_s))
    print(f"CPU: {cpu()}; Python {platform.python_version()}; load average {os.getloadavg()[0]:.1f}")
    print(f"{n} records of ~200 bytes per round, median of {ROUNDS} rounds")
    print(f"{'':<14}{'records/s wall':>16}{'per CPU-second':>16}")
    for name, values in rates.items():
        wall = statistics.median(v[0] for v in values)
        per_cpu = statistics.median(v[1] for v in values)
        print(f"{name:<14}{wall:>16,.0f}{per_cpu:>16,.0f}")


if __name__ == "__main__":
    main()
