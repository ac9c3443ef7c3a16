"""Computed points: input samples per CPU-second through 1,000 computed points and 100 windows.

    .venv/bin/python bench/bench_compute.py [--seconds 5] [--devices 20] [--points 2000]

The load is the Modbus benchmark's (bench_modbus.py): 20 devices of 2,000 float32 points each, every
value new every poll, one batch of 2,000 samples per device and poll, as the driver hands them to the
pipeline. The samples are built beforehand, so the figures are the pipeline's and the compute engine's
CPU, not the driver's (bench_modbus.py measures that).

On that load, in one process, one after the other, CPU time measured (time.process_time):

* ``pipeline``: the pipeline without computed points;
* ``pipeline + compute``: the same with 1,000 computed points (400 arithmetic formulas, 200 unit
  conversions with clamp, 200 conditionals, 100 min/max/abs, 100 multi-point alarm conditions with a
  delay), each over 2-3 points of one device, and 100 windows (50 tumbling, 50 sliding; avg, min, max,
  count, stddev, first, last) over other points: the engine compiled to closures;
* ``pipeline + compute (peer)``: the same work with the expressions evaluated by a plain tree-walking
  interpreter reading the latest values by point key (otseam.compute.evaluate.interpret), the usual
  way to write an expression evaluator in Python.

Printed: samples per CPU-second of each, and the compute engine's own figure: input samples per
CPU-second of the difference (what the computed points cost on top of the pipeline); also per sample
that actually feeds a computed point or window.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import time
from pathlib import Path
from typing import Any

from otseam.compute.engine import _Condition, _Expression
from otseam.compute.evaluate import interpret
from otseam.contract.models import Contract
from otseam.core.records import Quality, Sample
from otseam.pipeline import Pipeline

ROUNDS = 12  # polls pre-built; replayed with advancing time


def cpu() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    wanted = [f for f in ("avx2", "avx512f", "sse4_2", "bmi2") if f in flags]
    return f"{name or platform.processor()} ({', '.join(wanted)}); {os.cpu_count()} cores"


def computed_points(devices: int, points: int) -> list[dict[str, Any]]:
    rng = random.Random(11)
    out: list[dict[str, Any]] = []

    def pick() -> tuple[str, str, str]:
        d = rng.randrange(devices)
        a, b, c = rng.sample(range(points), 3)
        return f"d{d:02d}/p{a:04d}", f"d{d:02d}/p{b:04d}", f"d{d:02d}/p{c:04d}"

    for i in range(1000):
        a, b, c = pick()
        if i < 400:
            expression = f"(${a} - ${b}) * 0.5 + ${c} / 4 + 3"
        elif i < 600:
            expression = f'clamp(convert(${a}, "degF", "degC"), -50, 500) + convert(${b}, "degF", "degC")'
        elif i < 800:
            expression = f"${a} > 50 ? ${a} - ${b} : ${b} + ${c} * 2"
        elif i < 900:
            expression = f"max(abs(${a} - ${b}), min(${c}, 10))"
        else:
            out.append(
                {
                    "id": f"c{i:04d}",
                    "type": "bool",
                    "condition": {"when": f"${a} > 90 and ${b} < 10", "clear": f"${a} < 80", "delay": "5s"},
                }
            )
            continue
        out.append({"id": f"c{i:04d}", "expression": expression})
    functions = ["avg", "min", "max", "count", "stddev", "first", "last"]
    for i in range(100):
        d = rng.randrange(devices)
        p = rng.randrange(points)
        spec: dict[str, Any] = {"of": f"d{d:02d}/p{p:04d}", "function": functions[i % len(functions)]}
        spec["length"] = "10s"
        if i % 2:
            spec["step"] = "2s"
        out.append({"id": f"w{i:03d}", "window": spec, "type": "int32" if spec["function"] == "count" else "float64"})
    return out


def contract(devices: int, points: int, computed: list[dict[str, Any]]) -> Contract:
    return Contract.model_validate(
        {
            "site": {"enterprise": "bench", "site": "compute"},
            "zones": [{"id": "cell", "level": 1, "sl": 2}],
            "devices": [
                {
                    "id": f"d{d:02d}",
                    "driver": "modbus",
                    "endpoint": "tcp://127.0.0.1:5020",
                    "zone": "cell",
                    "points": [{"id": f"p{i:04d}", "address": f"hr:{2 * i}", "unit": "degF"} for i in range(points)],
                }
                for d in range(devices)
            ],
            "computed": computed,
        }
    )


def polls(devices: int, points: int) -> list[list[Sample]]:
    rng = random.Random(7)
    values = [[rng.uniform(0, 100) for _ in range(points)] for _ in range(devices)]
    out = []
    t = 1.8e9
    for _ in range(ROUNDS):
        for d in range(devices):
            row = values[d]
            batch = []
            for i in range(points):
                row[i] = min(100.0, max(0.0, row[i] + rng.uniform(-5, 5)))
                batch.append(Sample(f"d{d:02d}/p{i:04d}", row[i], Quality.GOOD, t, t))
            out.append(batch)
        t += 1.0
    return out


class _View:
    """Latest values by point key, as a plain evaluator keeps them."""

    def __init__(self, values: list[Any], index: dict[str, int]) -> None:
        self.values = values
        self.index = index

    def __getitem__(self, key: str) -> Any:
        return self.values[self.index[key]]


def use_interpreter(pipeline: Pipeline) -> None:
    """The peer: same engine, same work, every expression evaluated by walking its tree."""
    engine = pipeline.compute
    view = _View(engine.values, engine.index)
    for runner in engine.runners.values():
        program = runner.program
        if isinstance(runner, _Expression):
            checked = program.expression
            runner.fn = lambda c=checked: interpret(c, view)  # type: ignore[misc]
        elif isinstance(runner, _Condition):
            when, clear = program.when, program.clear
            runner.when = lambda c=when: interpret(c, view)  # type: ignore[misc]
            if clear is not None:
                runner.clear = lambda c=clear: interpret(c, view)  # type: ignore[misc]


def _peer(with_compute: Contract) -> Pipeline:
    pipeline = Pipeline.from_contract(with_compute)
    use_interpreter(pipeline)
    return pipeline


def measure(pipelines: dict[str, Pipeline], data: list[list[Sample]], seconds: float) -> list[dict[str, Any]]:
    """One pass of the load through each pipeline in turn, repeated: the machine's other load then
    weighs on every configuration alike (a difference of two runs minutes apart would mostly be noise)."""
    stats = {name: {"samples": 0, "computed": 0, "cpu": 0.0, "wall": 0.0} for name in pipelines}
    shift = 0.0
    while max(x["cpu"] for x in stats.values()) < seconds:  # as many passes for each, bounded by the slowest
        # Time moves on between passes (windows close, delays run); shifting is not timed.
        shifted = [
            [s._replace(source_ts=s.source_ts + shift, gateway_ts=s.gateway_ts + shift) for s in b] for b in data
        ]
        shift += float(ROUNDS)
        for name, pipeline in pipelines.items():
            entry = stats[name]
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for batch in shifted:
                out = pipeline.process(batch)
                entry["samples"] += len(batch)
                entry["computed"] += len(out) - len(batch)
            entry["cpu"] += time.process_time() - cpu0
            entry["wall"] += time.perf_counter() - wall0
    return [
        {
            "config": name,
            "samples": int(x["samples"]),
            "cpu_seconds": round(x["cpu"], 3),
            "computed_records": int(x["computed"]),
            "samples_per_cpu_second": round(x["samples"] / x["cpu"]),
            "samples_per_wall_second": round(x["samples"] / x["wall"]),
            "evaluations": pipelines[name].compute.evaluations,
            "compute_errors": pipelines[name].compute.errors,
        }
        for name, x in stats.items()
    ]


def measure_engine(name: str, pipeline: Pipeline, data: list[list[Sample]], seconds: float) -> dict[str, Any]:
    """The compute engine alone, fed exactly what the pipeline feeds it for each batch."""
    table = pipeline.table
    fed_batches = []
    for batch in data:
        fed = [(table[s.point].feeds, s.value, s.quality, s.source_ts) for s in batch if table[s.point].feeds >= 0]
        fed_batches.append((fed, batch[0].gateway_ts, len(batch)))
    engine = pipeline.compute
    done = fed_count = produced = 0
    cpu_s = 0.0
    shift = 0.0
    while cpu_s < seconds:
        # Time moves on between passes (windows close, delays run); shifting is not timed.
        shifted = [([(r, v, q, t + shift) for r, v, q, t in fed], ts + shift, size) for fed, ts, size in fed_batches]
        cpu0 = time.process_time()
        for fed, ts, size in shifted:
            produced += len(engine.run(fed, ts))
            done += size
            fed_count += len(fed)
        cpu_s += time.process_time() - cpu0
        shift += float(ROUNDS)
    return {
        "config": name,
        "input_samples": done,
        "fed_samples": fed_count,
        "computed_records": produced,
        "cpu_seconds": round(cpu_s, 3),
        "input_samples_per_cpu_second": round(done / cpu_s),
        "fed_samples_per_cpu_second": round(fed_count / cpu_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0, help="CPU seconds of the slowest configuration")
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument(
        "--dense", action="store_true", help="one device of 1,500 points: most samples feed a computed point"
    )
    args = parser.parse_args()
    if args.dense:
        args.devices, args.points = 1, 1500
    print(f"machine: {cpu()}; load average {os.getloadavg()[0]:.2f}")
    data = polls(args.devices, args.points)
    computed = computed_points(args.devices, args.points)
    with_compute = contract(args.devices, args.points, computed)
    plain = Pipeline.from_contract(contract(args.devices, args.points, []))
    fast = Pipeline.from_contract(with_compute)
    peer = _peer(with_compute)
    feeding = sum(1 for slot in fast.table.values() if slot.feeds >= 0)
    share = feeding / (args.devices * args.points)
    print(
        f"load: {args.devices} devices x {args.points} points, batches of {args.points}; "
        f"{len(fast.compute.runners)} computed points and windows reading {feeding} points ({share:.1%} of samples)"
    )
    # As `seam run` does once started: the start-up heap (contract, tables, compiled programs, and here
    # the pre-built load) is left out of the collector's passes.
    gc.freeze()
    peer_name = "pipeline + compute (peer: tree-walking interpreter)"
    measured = measure({"pipeline": plain, "pipeline + compute": fast, peer_name: peer}, data, args.seconds)
    base = measured[0]
    print(json.dumps(base), flush=True)
    results = {}
    for result in measured[1:]:
        per_sample_base = base["cpu_seconds"] / base["samples"]
        extra = result["cpu_seconds"] / result["samples"] - per_sample_base
        result["compute_input_samples_per_cpu_second"] = round(1 / extra) if extra > 0 else None
        result["compute_fed_samples_per_cpu_second"] = round(share / extra) if extra > 0 else None
        results[result["config"]] = result
        print(json.dumps(result), flush=True)
    ours = results["pipeline + compute"]["compute_input_samples_per_cpu_second"]
    theirs = results[peer_name]["compute_input_samples_per_cpu_second"]
    if ours and theirs:
        print(
            f"in the pipeline (difference to the pipeline alone): {ours:,} input samples per CPU-second of compute; "
            f"peer {theirs:,}"
        )
    # The engine alone: the same fed samples, no pipeline around it (less noise than a difference).
    alone = [
        measure_engine("engine alone (closures)", Pipeline.from_contract(with_compute), data, args.seconds),
        measure_engine("engine alone (peer)", _peer(with_compute), data, args.seconds),
    ]
    for result in alone:
        print(json.dumps(result), flush=True)
    a, b = alone[0]["input_samples_per_cpu_second"], alone[1]["input_samples_per_cpu_second"]
    print(
        f"compute engine: {a:,} input samples per CPU-second (target 1,000,000: {'met' if a >= 1e6 else 'NOT met'}); "
        f"{alone[0]['fed_samples_per_cpu_second']:,} fed samples; peer {b:,} ({a / b:.2f}x)"
    )
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
