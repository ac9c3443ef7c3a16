"""A driver that reads from no device: it produces signals, for demonstrations, training and load tests.

It behaves like any other driver towards the rest of Seam (same samples, same back-pressure through
``emit``), so a pipeline, journal and sinks can be exercised and measured without a PLC or a network.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from otseam.contract import plugin_options
from otseam.contract.models import Device
from otseam.core.plugins import Emit
from otseam.core.records import Quality, Sample, Value
from otseam.drivers.generator.options import GeneratorConfigError, Options
from otseam.drivers.generator.signals import Signal, parse_signal

__all__ = ["GeneratorConfigError", "GeneratorDriver"]

_GOOD = Quality.GOOD


@dataclass(slots=True)
class _Point:
    key: str
    signal: Signal
    kind: str  # "float" | "int" | "bool" | "string"

    def read(self, t: float) -> Value:
        raw = self.signal.value(t)
        if self.kind == "float":
            return raw
        if self.kind == "int":
            return round(raw)
        if self.kind == "bool":
            return raw >= 0.5
        return f"{raw:g}"


def _kind(data_type: str) -> str:
    if data_type in ("float32", "float64"):
        return "float"
    if data_type in ("bool", "string"):
        return data_type
    return "int"


class GeneratorDriver:
    """Emits one sample per point every poll interval, or a fixed total ``rate`` of samples per second."""

    def __init__(self, device: Device) -> None:
        options = plugin_options.parse(Options, device.options, f"device {device.id}", GeneratorConfigError)
        self.device_id = device.id
        seed = str(options.seed if options.seed is not None else device.id)
        self.points: list[_Point] = []
        self.intervals: list[float] = []
        for point in device.points:
            key = device.key(point)
            try:
                signal = parse_signal(point.address, f"{seed}/{key}")
            except ValueError as exc:
                raise GeneratorConfigError(f"point {key}: address {point.address!r}: {exc}") from None
            self.points.append(_Point(key, signal, _kind(point.type)))
            self.intervals.append(point.poll or device.poll)
        self.rate = options.rate
        self.tick = options.tick
        self.fail_after = options.fail_after
        #: Samples produced since start (for the benchmarks and tests).
        self.produced = 0

    async def run(self, emit: Emit) -> None:
        started = time.monotonic()
        if not self.points:
            await asyncio.Event().wait()  # nothing to generate; run until cancelled, like any driver
        if self.rate:
            await self._run_at_rate(emit, started)
        else:
            await self._run_polled(emit, started)

    def _check_fault(self, started: float) -> None:
        if self.fail_after is not None and time.monotonic() - started >= self.fail_after:
            raise RuntimeError(f"generator {self.device_id}: rehearsed failure after {self.fail_after:g}s (fail_after)")

    async def _run_polled(self, emit: Emit, started: float) -> None:
        due = [time.monotonic()] * len(self.points)
        while True:
            self._check_fault(started)
            now_mono = time.monotonic()
            t = time.time()
            batch = []
            for index, point in enumerate(self.points):
                if due[index] <= now_mono:
                    batch.append(Sample(point.key, point.read(t), _GOOD, t, t))
                    # Keep the schedule, but never try to "catch up" a backlog of missed polls.
                    due[index] = max(due[index] + self.intervals[index], now_mono)
            if batch:
                self.produced += len(batch)
                await emit(batch)
            await asyncio.sleep(max(0.0, min(due) - time.monotonic()))

    async def _run_at_rate(self, emit: Emit, started: float) -> None:
        assert self.rate is not None
        rate = self.rate
        points = self.points
        count = len(points)
        cursor = 0
        owed = 0.0
        last = time.monotonic()
        while True:
            self._check_fault(started)
            await asyncio.sleep(self.tick)
            now_mono = time.monotonic()
            # After a stall (emit back-pressure, a busy machine) at most one second is made up.
            owed = min(owed + (now_mono - last) * rate, rate)
            last = now_mono
            n = int(owed)
            if n == 0:
                continue
            owed -= n
            t = time.time()
            batch = []
            for _ in range(n):
                point = points[cursor]
                batch.append(Sample(point.key, point.read(t), _GOOD, t, t))
                cursor = cursor + 1 if cursor + 1 < count else 0
            self.produced += n
            await emit(batch)
