"""Pipeline throughput: samples per second through Pipeline.process on one core.

Four point configurations, 1,000 points, batches of 1,000 samples (what a driver hands over per poll
of a large device), values from a random walk so that deadbands suppress a realistic share:

* ``pass``: no scaling, no deadband, no heartbeat: every sample reported (the floor of the loop)
* ``scale``: factor/offset and clamp, every sample reported
* ``rbe``: scale, clamp, 0.5 % deadband and a heartbeat: report by exception
* ``alarms``: as ``rbe`` plus a high and a low alarm with hysteresis and delay on every point

Then the same ``rbe`` pipeline followed by appending to a real journal (``pipeline+journal``), which is
the whole ingest path of `seam run` after the driver. CPU time is measured (time.process_time), so
other load on the machine slows the figures less than wall time would; both are printed.

    .venv/bin/python bench/bench_pipeline.py [--seconds 5]

Peer: none in this script (no other gateway's pipeline can be driven in-process); the relevant figure
is the ingest rate the outage benchmark needs, 10,000 samples/s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from otseam.contract.models import Contract
from otseam.core.records import Quality, Sample
from otseam.journal import Journal
from otseam.pipeline import Pipeline

POINTS = 1000
BATCH = 1000

CONFIGS: dict[str, dict[str, Any]] = {
    "pass": {},
    "scale": {"scale": {"factor": 0.1, "offset": -10}, "clamp": {"low": -100, "high": 1100}},
    "rbe": {
        "scale": {"factor": 0.1, "offset": -10},
        "clamp": {"low": -100, "high": 1100},
        "range": {"low": 0, "high": 1000},
        "deadband": "0.5%",
        "heartbeat": "1min",
    },
}
CONFIGS["alarms"] = {
    **CONFIGS["rbe"],
    "alarms": [
        {"id": "hi", "kind": "high", "limit": 900, "hysteresis": 10, "delay": "2s"},
        {"id": "lo", "kind": "low", "limit": 50, "hysteresis": 10, "delay": "2s"},
    ],
}


def contract(point: dict[str, Any]) -> Contract:
    return Contract.model_validate(
        {
            "site": {"enterprise": "bench", "site": "pipeline"},
            "zones": [{"id": "cell", "level": 1, "sl": 2}],
            "devices": [
                {
                    "id": "plc",
                    "driver": "generator",
                    "endpoint": "generator://plc",
                    "zone": "cell",
                    "points": [{"id": f"p{i:04d}", "address": "walk", **point} for i in range(POINTS)],
                }
            ],
        }
    )


def batches(count: int) -> list[list[Sample]]:
    """Pre-built input, so the benchmark measures the pipeline and not the making of samples."""
    rng = random.Random(7)
    values = [rng.uniform(0, 10000) for _ in range(POINTS)]
    out = []
    t = 1.8e9
    for _ in range(count):
        batch = []
        for i in range(POINTS):
            values[i] = min(10000.0, max(0.0, values[i] + rng.uniform(-40, 40)))
            batch.append(Sample(f"plc/p{i:04d}", values[i], Quality.GOOD, t, t))
        out.append(batch)
        t += 1.0
    return out


def measure(
    name: str, pipeline: Pipeline, data: list[list[Sample]], seconds: float, journal: Journal | None
) -> dict[str, Any]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    done = 0
    reported = 0
    rounds = 0
    while time.process_time() - cpu0 < seconds:
        for batch in data:
            out = pipeline.process(batch)
            if journal is not None and out:
                journal.append(out)
            reported += len(out)
            done += len(batch)
        rounds += 1
        # Next round continues in time so heartbeats and alarm delays behave as in a long run.
        data = [
            [s._replace(source_ts=s.source_ts + len(data), gateway_ts=s.gateway_ts + len(data)) for s in b]
            for b in data
        ]
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "config": name,
        "samples": done,
        "reported_share": round(reported / done, 3),
        "samples_per_cpu_second": round(done / cpu),
        "samples_per_wall_second": round(done / wall),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0, help="CPU seconds per configuration")
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; {POINTS} points, batches of {BATCH}"
    )
    data = batches(50)
    results = []
    for name, point in CONFIGS.items():
        results.append(measure(name, Pipeline.from_contract(contract(point)), data, args.seconds, None))
        print(json.dumps(results[-1]), flush=True)
    work = Path(tempfile.mkdtemp(prefix="seam-bench-pipeline-"))
    try:
        with Journal.open(work / "journal", max_size=4 * 1024**3) as journal:
            results.append(
                measure(
                    "pipeline+journal (rbe)",
                    Pipeline.from_contract(contract(CONFIGS["rbe"])),
                    data,
                    args.seconds,
                    journal,
                )
            )
            print(json.dumps(results[-1]), flush=True)
            results.append(
                measure(
                    "pipeline+journal (pass)",
                    Pipeline.from_contract(contract(CONFIGS["pass"])),
                    data,
                    args.seconds,
                    journal,
                )
            )
            print(json.dumps(results[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
