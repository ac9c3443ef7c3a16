"""The compute engine: keeps the latest value of every input and computes the computed points.

The pipeline hands it, per batch, every sample of a point something is computed from (after scaling
and clamping, before report by exception: a deadband must not hide samples from a window or a
totaliser). Then:

* windows, counters and rates get every sample, in order;
* expressions and conditions are evaluated once per batch, after the whole batch is in, so a result
  never mixes half of one poll with half of the previous one; a result that others depend on is
  computed first (programs run by level in the dependency graph).

Quality: a result is never better than its worst input: any bad input gives a bad result with no
value (the input's own bad quality), a stale input an uncertain one. The source timestamp is the latest
of the inputs'. An input never seen yet means no result at all.

State that must survive a restart (counters, tumbling windows, which conditions are raised) is written
into the journal as ``compute.state`` events (:meth:`Engine.checkpoint`) and read back from it at start
(``compute.recover``). On reload, programs whose computation did not change keep their state.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from otseam.compute import streams
from otseam.compute.evaluate import Fn, compile_closure
from otseam.contract.formulas.program import Program
from otseam.core.records import Event, Quality, Record, Sample, Severity

CHECKPOINT_KIND = "compute.state"
#: Seconds between two checkpoints of the engine's state into the journal: at most this much counting
#: is lost by a crash (a clean stop writes one). SEAM_COMPUTE_CHECKPOINT_EVERY overrides it.
CHECKPOINT_EVERY = 60.0


def _checkpoint_every() -> float:
    text = os.environ.get("SEAM_COMPUTE_CHECKPOINT_EVERY", "")
    try:
        value = float(text)
    except ValueError:
        return CHECKPOINT_EVERY
    return value if 0 < value < math.inf else CHECKPOINT_EVERY


_GOOD = Quality.GOOD
_STALE = Quality.STALE
_UNCERTAIN = Quality.UNCERTAIN
_BAD_CONFIG = Quality.BAD_CONFIG
_SEVERITIES = {s.label: s for s in Severity}

Fed = tuple[int, Any, Quality, float]


class _Runner:
    """A program with its state, placed in the engine."""

    level = 1
    queued = False
    errors = 0
    stream: streams.Stream | None = None

    def __init__(self, program: Program, out: int) -> None:
        self.program = program
        self.key = program.key
        self.out = out
        self.regs: tuple[int, ...] = ()

    def state(self) -> dict[str, Any] | None:
        return self.stream.state() if self.stream is not None else None

    def load(self, state: dict[str, Any]) -> None:
        if self.stream is not None:
            self.stream.load(state)


class _Expression(_Runner):
    def __init__(self, program: Program, out: int, fn: Fn) -> None:
        super().__init__(program, out)
        self.fn = fn
        self.output = program.output
        self.int_range = program.int_range


class _Condition(_Runner):
    def __init__(self, program: Program, out: int, when: Fn, clear: Fn | None) -> None:
        super().__init__(program, out)
        self.when = when
        self.clear = clear
        spec = program.point.condition
        assert spec is not None
        self.delay = spec.delay
        self.clear_delay = spec.clear_delay
        self.severity = _SEVERITIES[spec.severity]
        self.message = spec.message
        self.active = False
        self.pending_since: float | None = None
        self.clear_since: float | None = None

    def state(self) -> dict[str, Any] | None:
        return {"active": self.active}

    def load(self, state: dict[str, Any]) -> None:
        self.active = bool(state.get("active", False))


class _Stream(_Runner):
    def __init__(self, program: Program, out: int, stream: streams.Stream) -> None:
        super().__init__(program, out)
        self.stream = stream


class Engine:
    def __init__(self, clock: Callable[[], float] = time.time, checkpoint_every: float | None = None) -> None:
        self._clock = clock
        self.checkpoint_every = _checkpoint_every() if checkpoint_every is None else checkpoint_every
        #: Registers: one per point key ever seen (inputs and results), never reused, so compiled
        #: closures stay valid across reloads.
        self.index: dict[str, int] = {}
        self.values: list[Any] = []
        self.qualities: list[Quality | None] = []
        self.times: list[float] = []
        self.runners: dict[str, _Runner] = {}
        #: Per register: the streams fed every sample of it, and the programs evaluated after a batch.
        self._streams_of: list[tuple[_Stream, ...]] = []
        self._dependents: list[tuple[_Runner, ...]] = []
        self._levels: list[list[_Runner]] = []
        self._ticking: list[_Stream] = []
        self._last_checkpoint: float | None = None
        self.evaluations = 0
        self.errors = 0
        self.alarms_raised = 0

    # --- configuration ----------------------------------------------------------------------------

    def register(self, key: str) -> int:
        index = self.index.get(key)
        if index is None:
            index = self.index[key] = len(self.values)
            self.values.append(None)
            self.qualities.append(None)
            self.times.append(0.0)
            self._streams_of.append(())
            self._dependents.append(())
        return index

    def inputs(self) -> set[str]:
        """The keys of the points this engine must be fed."""
        return {key for runner in self.runners.values() for key in runner.program.inputs}

    def reconfigure(self, programs: Iterable[Program]) -> None:
        """Run ``programs`` from now on. A program whose fingerprint is unchanged keeps its runner, so its
        window, counter and alarm state carry over; the others start afresh."""
        runners: dict[str, _Runner] = {}
        for program in programs:
            old = self.runners.get(program.key)
            if old is not None and old.program.fingerprint == program.fingerprint:
                old.program = program  # presentation (unit, owner, ...) may have changed
                runners[program.key] = old
            else:
                runners[program.key] = self._runner(program)
        self.runners = runners
        self._wire()

    def _runner(self, program: Program) -> _Runner:
        out = self.register(program.key)
        for key in program.inputs:
            self.register(key)
        if program.kind == "expression":
            assert program.expression is not None
            runner: _Runner = _Expression(program, out, compile_closure(program.expression, self.index, self.values))
        elif program.kind == "condition":
            assert program.when is not None
            when = compile_closure(program.when, self.index, self.values)
            clear = compile_closure(program.clear, self.index, self.values) if program.clear is not None else None
            runner = _Condition(program, out, when, clear)
        else:
            runner = _Stream(program, out, streams.make(program.kind, getattr(program.point, program.kind)))
        runner.regs = tuple(self.index[k] for k in program.inputs)
        return runner

    def _wire(self) -> None:
        count = len(self.values)
        stream_lists: list[list[_Stream]] = [[] for _ in range(count)]
        dependent_lists: list[list[_Runner]] = [[] for _ in range(count)]
        for runner in self.runners.values():
            for reg in runner.regs:
                if isinstance(runner, _Stream):
                    stream_lists[reg].append(runner)
                else:
                    dependent_lists[reg].append(runner)
        self._streams_of = [tuple(x) for x in stream_lists]
        self._dependents = [tuple(x) for x in dependent_lists]
        # Levels: 1 + the highest level among computed inputs (the program compiler refused cycles).
        by_out = {runner.out: runner for runner in self.runners.values()}
        levels: dict[str, int] = {}

        def level(runner: _Runner) -> int:
            known = levels.get(runner.key)
            if known is None:
                levels[runner.key] = 1  # provisional; cycles were refused before we got here
                parents = [by_out[r] for r in runner.regs if r in by_out]
                known = levels[runner.key] = 1 + max((level(p) for p in parents), default=0)
            return known

        for runner in self.runners.values():
            runner.level = level(runner)
            runner.queued = False
        self._levels = [[] for _ in range(max(levels.values(), default=0) + 2)]
        self._ticking = [r for r in self.runners.values() if isinstance(r, _Stream)]

    # --- running ----------------------------------------------------------------------------------

    def run(self, fed: list[Fed], gateway_ts: float) -> list[Record]:
        """Take in a batch of input samples; the computed samples and alarm events that result."""
        out: list[Record] = []
        values, qualities, times = self.values, self.qualities, self.times
        streams_of, dependents, levels = self._streams_of, self._dependents, self._levels
        for reg, value, quality, ts in fed:
            values[reg] = value
            qualities[reg] = quality
            times[reg] = ts
            for stream in streams_of[reg]:
                result = stream.stream.push(value, quality, ts)  # type: ignore[union-attr]
                if result is not None:
                    self._publish(stream, result[0], result[1], result[2], gateway_ts, out)
            for runner in dependents[reg]:
                if not runner.queued:
                    runner.queued = True
                    levels[runner.level].append(runner)
        self._drain(gateway_ts, out)
        return out

    def _drain(self, gateway_ts: float, out: list[Record]) -> None:
        for pending in self._levels:
            if not pending:
                continue
            # Evaluating may queue programs of higher levels only, never this one: safe to iterate.
            for runner in pending:
                runner.queued = False
                if runner.__class__ is _Expression:
                    self._evaluate(runner, gateway_ts, out)
                else:
                    self._condition(runner, gateway_ts, out)  # type: ignore[arg-type]
            pending.clear()

    def _inputs_quality(self, runner: _Runner) -> tuple[Quality, float] | None:
        qualities, times = self.qualities, self.times
        worst = _GOOD
        latest = 0.0
        for reg in runner.regs:
            quality = qualities[reg]
            if quality is None:
                return None
            if quality > worst:
                worst = quality
            ts = times[reg]
            if ts > latest:
                latest = ts
        return worst, latest

    def _evaluate(self, runner: _Expression, gateway_ts: float, out: list[Record]) -> None:
        # The hot path of the engine: the input loop of _inputs_quality is written out here.
        qualities, times = self.qualities, self.times
        quality = _GOOD
        ts = 0.0
        for reg in runner.regs:
            q = qualities[reg]
            if q is None:
                return
            if q > quality:
                quality = q
            t = times[reg]
            if t > ts:
                ts = t
        self.evaluations += 1
        if quality > _UNCERTAIN:
            self._publish(runner, None, quality, ts, gateway_ts, out)
            return
        try:
            value = runner.fn()
            output = runner.output
            if output == "float":
                value = float(value)
                if value - value != 0:  # NaN or infinity
                    raise ArithmeticError("not a finite number")
            elif output == "int":
                low, high = runner.int_range or (-math.inf, math.inf)
                if not low <= value <= high:
                    raise ArithmeticError(f"{value} is outside the declared type")
        except (ArithmeticError, ValueError, TypeError):
            runner.errors += 1
            self.errors += 1
            self._publish(runner, None, _BAD_CONFIG, ts, gateway_ts, out)
            return
        self._publish(runner, value, _UNCERTAIN if quality is _STALE else quality, ts, gateway_ts, out)

    def _condition(self, runner: _Condition, gateway_ts: float, out: list[Record]) -> None:
        known = self._inputs_quality(runner)
        if known is None:
            return
        quality, ts = known
        self.evaluations += 1
        if quality > _UNCERTAIN or quality is _STALE:
            # Not knowing is not "back to normal": a pending delay starts over, a raised alarm stays.
            runner.pending_since = runner.clear_since = None
            self._publish(
                runner, None if quality > _UNCERTAIN else runner.active, max(quality, _UNCERTAIN), ts, gateway_ts, out
            )
            return
        try:
            when = bool(runner.when())
            clear = (bool(runner.clear()) if runner.clear is not None else not when) if runner.active else False
        except (ArithmeticError, ValueError, TypeError):
            runner.errors += 1
            self.errors += 1
            runner.pending_since = runner.clear_since = None
            self._publish(runner, None, _BAD_CONFIG, ts, gateway_ts, out)
            return
        event = None
        if not runner.active:
            if when:
                if runner.pending_since is None:
                    runner.pending_since = ts
                if ts - runner.pending_since >= runner.delay:
                    runner.active = True
                    runner.pending_since = None
                    self.alarms_raised += 1
                    event = self._alarm_event(runner, "raised", ts)
            else:
                runner.pending_since = None
        elif clear:
            if runner.clear_since is None:
                runner.clear_since = ts
            if ts - runner.clear_since >= runner.clear_delay:
                runner.active = False
                runner.clear_since = None
                event = self._alarm_event(runner, "cleared", ts)
        else:
            runner.clear_since = None
        self._publish(runner, runner.active, quality, ts, gateway_ts, out)
        if event is not None:
            out.append(event)

    def _alarm_event(self, runner: _Condition, state: str, ts: float) -> Event:
        program = runner.program
        inputs = {key: self.values[self.index[key]] for key in program.inputs}
        spec = program.point.condition
        assert spec is not None
        if runner.message and state == "raised":
            message = runner.message
        else:
            message = f"{runner.key} condition alarm {state}: {spec.when}"
        return Event(
            ts,
            "alarm",
            runner.key,
            runner.severity,
            message,
            {
                "point": runner.key,
                "alarm": program.point.id,
                "type": "condition",
                "state": state,
                "when": spec.when,
                "clear": spec.clear,
                "delay": runner.delay,
                "inputs": inputs,
            },
        )

    def _publish(
        self, runner: _Runner, value: Any, quality: Quality, ts: float, gateway_ts: float, out: list[Record]
    ) -> None:
        reg = runner.out
        self.values[reg] = value
        self.qualities[reg] = quality
        self.times[reg] = ts
        out.append(Sample(runner.key, value, quality, ts, gateway_ts))
        for stream in self._streams_of[reg]:
            result = stream.stream.push(value, quality, ts)  # type: ignore[union-attr]
            if result is not None:
                self._publish(stream, result[0], result[1], result[2], gateway_ts, out)
        for dependent in self._dependents[reg]:
            if not dependent.queued:
                dependent.queued = True
                self._levels[dependent.level].append(dependent)

    def tick(self, now: float | None = None) -> list[Record]:
        """Close windows whose time is up, and write a checkpoint when one is due."""
        now = self._clock() if now is None else now
        out: list[Record] = []
        for runner in self._ticking:
            result = runner.stream.tick(now)  # type: ignore[union-attr]
            if result is not None:
                self._publish(runner, result[0], result[1], result[2], now, out)
        self._drain(now, out)
        if self._last_checkpoint is None:
            self._last_checkpoint = now
        elif now - self._last_checkpoint >= self.checkpoint_every:
            out.append(self.checkpoint(now))
        return out

    # --- state in the journal ---------------------------------------------------------------------

    def checkpoint(self, now: float | None = None) -> Event:
        """The state to recover after a restart, as an event to append to the journal."""
        now = self._clock() if now is None else now
        self._last_checkpoint = now
        points: dict[str, Any] = {}
        for key, runner in self.runners.items():
            state = runner.state()
            if state is not None:
                points[key] = {"fingerprint": runner.program.fingerprint, "state": state}
        return Event(
            now,
            CHECKPOINT_KIND,
            "compute",
            Severity.INFO,
            f"state of {len(points)} computed point(s)",
            {"version": 1, "points": points},
        )

    def restore(self, data: dict[str, Any]) -> list[str]:
        """Load a checkpoint's state into the programs whose computation is unchanged; their keys."""
        restored: list[str] = []
        points = data.get("points") if isinstance(data, dict) else None
        if not isinstance(points, dict):
            return restored
        for key, entry in points.items():
            runner = self.runners.get(key)
            if runner is None or not isinstance(entry, dict) or entry.get("fingerprint") != runner.program.fingerprint:
                continue
            state = entry.get("state")
            if isinstance(state, dict):
                runner.load(state)
                restored.append(key)
        return restored

    def stats(self) -> dict[str, Any]:
        return {
            "points": len(self.runners),
            "evaluations": self.evaluations,
            "errors": self.errors,
            "alarms_raised": self.alarms_raised,
            "late_samples": sum(r.stream.late for r in self.runners.values() if r.stream is not None),
        }
