"""Computed points that consume every sample of one input: windows, counters, rates of change.

Each has ``push(value, quality, ts)`` (one sample of its input, in order) and ``tick(now)`` (time
passes with no sample), both returning the output ``(value, quality, source_ts)`` when there is one.
Counters, tumbling windows and their peers expose ``state()``/``load(state)`` so that the engine can
checkpoint them into the journal and recover them after a restart.

Only samples the device vouched for (good or uncertain) are aggregated, integrated or counted. A stale
sample is a re-sent old value and a bad one has none: both only make the result less certain.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from typing import Any

from otseam.contract.models import CounterSpec, RateSpec, WindowSpec
from otseam.core.records import Quality

Output = tuple[Any, Quality, float]

_GOOD = Quality.GOOD
_STALE = Quality.STALE
_UNCERTAIN = Quality.UNCERTAIN
_BAD_COMM = Quality.BAD_COMM

#: How long after a window's end it is closed by the clock when no later sample has closed it.
CLOSE_GRACE = 2.0


def _usable(value: Any, quality: Quality) -> bool:
    return value is not None and (quality is _GOOD or quality is _UNCERTAIN)


class Stream(ABC):
    """One window, counter or rate: fed samples, it says when it has a value to publish."""

    #: Samples that arrived for a window already closed (dropped and counted).
    late = 0

    @abstractmethod
    def push(self, value: Any, quality: Quality, ts: float) -> Output | None: ...

    def tick(self, now: float) -> Output | None:
        return None

    def state(self) -> dict[str, Any] | None:
        return None

    def load(self, state: dict[str, Any]) -> None:
        return None


def _aggregate(function: str, values: list[Any]) -> Any:
    if function == "count":
        return len(values)
    if function == "first":
        return values[0]
    if function == "last":
        return values[-1]
    if function == "min":
        return min(values)
    if function == "max":
        return max(values)
    total = math.fsum(values)
    if function == "sum":
        return total
    mean = total / len(values)
    if function == "avg":
        return mean
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))


def _window_quality(count: int, worst: Quality) -> Quality:
    if count == 0:
        return worst if worst > _UNCERTAIN else _BAD_COMM
    return _GOOD if worst is _GOOD else _UNCERTAIN


class Tumbling(Stream):
    """One value per ``length``, for windows aligned on multiples of ``length`` since the epoch (so a
    1 h window runs from the hour to the hour), published when the window ends, stamped with its end.

    Kept as running accumulators (Welford's mean and squared deviations), so a window's state is a few
    numbers whatever its length: that is what is checkpointed.
    """

    def __init__(self, spec: WindowSpec) -> None:
        self.function = spec.function
        self.length = spec.length
        self.start: float | None = None
        self.late = 0
        self._reset()

    def _reset(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.total = 0.0
        self.low: Any = None
        self.high: Any = None
        self.first: Any = None
        self.last: Any = None
        self.worst = _GOOD

    def _open(self, ts: float) -> None:
        self.start = math.floor(ts / self.length) * self.length
        self._reset()

    def _result(self) -> Any:
        function = self.function
        if function == "count":
            return self.count
        if not self.count:
            return None
        if function == "avg":
            return self.mean
        if function == "stddev":
            return math.sqrt(self.m2 / self.count) if self.m2 > 0 else 0.0
        if function == "sum":
            return self.total
        return {"min": self.low, "max": self.high, "first": self.first, "last": self.last}[function]

    def _close(self) -> Output:
        assert self.start is not None
        value = self._result() if self.count else None
        return value, _window_quality(self.count, self.worst), self.start + self.length

    def push(self, value: Any, quality: Quality, ts: float) -> Output | None:
        out = None
        start = self.start
        if start is None:
            self._open(ts)
        elif ts >= start + self.length:
            out = self._close()
            self._open(ts)
        elif ts < start:
            self.late += 1
            return None
        if _usable(value, quality):
            self.count += 1
            self.last = value
            if self.count == 1:
                self.first = self.low = self.high = value
            else:
                if value < self.low:
                    self.low = value
                if value > self.high:
                    self.high = value
            if self.function in ("avg", "stddev", "sum"):
                self.total += value
                delta = value - self.mean
                self.mean += delta / self.count
                self.m2 += delta * (value - self.mean)
        if quality > self.worst:
            self.worst = quality
        return out

    def tick(self, now: float) -> Output | None:
        if self.start is None or now < self.start + self.length + CLOSE_GRACE:
            return None
        out = self._close()
        self._open(now - CLOSE_GRACE)
        return out

    _FIELDS = ("start", "count", "mean", "m2", "total", "low", "high", "first", "last", "late")

    def state(self) -> dict[str, Any] | None:
        data = {name: getattr(self, name) for name in self._FIELDS}
        data["worst"] = int(self.worst)
        return data

    def load(self, state: dict[str, Any]) -> None:
        for name in self._FIELDS:
            if name in state:
                setattr(self, name, state[name])
        self.worst = Quality(int(state.get("worst", 0)))


class Sliding(Stream):
    """The aggregate of the last ``length`` seconds, published every ``step`` (at multiples of it),
    stamped with the publication boundary."""

    def __init__(self, spec: WindowSpec) -> None:
        assert spec.step is not None
        self.function = spec.function
        self.length = spec.length
        self.step = spec.step
        self.samples: deque[tuple[float, Any, Quality]] = deque()
        self.boundary: float | None = None
        self.late = 0

    def _emit(self, boundary: float) -> Output:
        low = boundary - self.length
        values = []
        worst = _GOOD
        for ts, value, quality in self.samples:
            if low <= ts < boundary:
                if value is not None:
                    values.append(value)
                if quality > worst:
                    worst = quality
        return (_aggregate(self.function, values) if values else None), _window_quality(len(values), worst), boundary

    def _advance(self, ts: float) -> None:
        self.boundary = math.floor(ts / self.step) * self.step + self.step
        low = self.boundary - self.length
        samples = self.samples
        while samples and samples[0][0] < low:
            samples.popleft()

    def push(self, value: Any, quality: Quality, ts: float) -> Output | None:
        out = None
        if self.boundary is None:
            self._advance(ts)
        elif ts >= self.boundary:
            out = self._emit(self.boundary)
            self._advance(ts)
        elif ts < self.boundary - self.length:
            self.late += 1
            return None
        self.samples.append((ts, value if _usable(value, quality) else None, quality))
        return out

    def tick(self, now: float) -> Output | None:
        if self.boundary is None or now < self.boundary + CLOSE_GRACE:
            return None
        out = self._emit(self.boundary)
        self._advance(now - CLOSE_GRACE)
        return out


class Counter(Stream):
    """``total`` (integral of a rate), ``duration`` (time true) or ``count`` (false-to-true edges).

    Integration is by trapezoids between consecutive usable samples; a gap longer than ``max_gap``, or
    one with a bad sample in it, is not integrated across but counted (``gaps``, ``gap_seconds``). The
    result is published after every sample: good while the input is good, uncertain otherwise (the
    total is still known, it just did not advance as it should have).
    """

    def __init__(self, spec: CounterSpec) -> None:
        self.kind = spec.kind
        self.per = spec.per
        self.max_gap = spec.max_gap
        self.total = 0.0
        self.count = 0
        self.prev_ts: float | None = None
        self.prev_value: Any = None
        self.gaps = 0
        self.gap_seconds = 0.0
        self.broken_at: float | None = None

    def _value(self) -> Any:
        if self.kind == "count":
            return self.count
        return self.total

    def push(self, value: Any, quality: Quality, ts: float) -> Output | None:
        if not _usable(value, quality):
            if self.prev_ts is not None:
                self.broken_at = self.prev_ts
            self.prev_ts = None
            return self._value(), _UNCERTAIN, ts
        prev_ts = self.prev_ts
        if prev_ts is not None and ts < prev_ts:
            self.late += 1
            return None
        if prev_ts is None:
            if self.broken_at is not None and ts > self.broken_at:
                self.gaps += 1
                self.gap_seconds += ts - self.broken_at
                self.broken_at = None
            if self.kind == "count" and value and self.prev_value is not None and not self.prev_value:
                self.count += 1
        else:
            dt = ts - prev_ts
            if dt > self.max_gap:
                self.gaps += 1
                self.gap_seconds += dt
            elif self.kind == "total":
                self.total += (self.prev_value + value) * 0.5 * dt / self.per
            elif self.kind == "duration" and self.prev_value:
                self.total += dt / self.per
            if self.kind == "count" and value and not self.prev_value:
                self.count += 1
        self.prev_ts = ts
        self.prev_value = value
        return self._value(), (_GOOD if quality is _GOOD else _UNCERTAIN), ts

    def state(self) -> dict[str, Any] | None:
        return {
            "total": self.total,
            "count": self.count,
            "prev_ts": self.prev_ts,
            "prev_value": self.prev_value,
            "gaps": self.gaps,
            "gap_seconds": self.gap_seconds,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.total = float(state.get("total", 0.0))
        self.count = int(state.get("count", 0))
        # The time between the checkpoint and the first sample after a restart is a gap like any other:
        # integrated if shorter than max_gap, counted otherwise.
        self.prev_ts = state.get("prev_ts")
        self.prev_value = state.get("prev_value")
        self.gaps = int(state.get("gaps", 0))
        self.gap_seconds = float(state.get("gap_seconds", 0.0))


class Rate(Stream):
    """Change per ``per`` seconds: between consecutive usable samples, or the slope from the oldest to
    the newest sample of the last ``over`` seconds."""

    def __init__(self, spec: RateSpec) -> None:
        self.per = spec.per
        self.over = spec.over
        self.samples: deque[tuple[float, Any]] = deque()

    def push(self, value: Any, quality: Quality, ts: float) -> Output | None:
        samples = self.samples
        if not _usable(value, quality):
            samples.clear()
            return None, (quality if quality > _UNCERTAIN else _UNCERTAIN), ts
        if samples and ts <= samples[-1][0]:
            self.late += 1
            return None
        samples.append((ts, value))
        if self.over is None:
            if len(samples) > 2:
                samples.popleft()
        else:
            while len(samples) > 2 and samples[0][0] < ts - self.over:
                samples.popleft()
        if len(samples) < 2:
            return None
        first_ts, first = samples[0]
        return (value - first) / (ts - first_ts) * self.per, (_GOOD if quality is _GOOD else _UNCERTAIN), ts


def make(kind: str, spec: Any) -> Stream:
    if kind == "window":
        return Sliding(spec) if spec.step is not None else Tumbling(spec)
    if kind == "counter":
        return Counter(spec)
    return Rate(spec)
