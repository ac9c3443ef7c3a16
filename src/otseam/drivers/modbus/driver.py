"""The polling driver for one contract device.

One :class:`ModbusDriver` per device, each with its own task (``run``); devices behind one endpoint
share its connection (connection.py). What a plant can rely on:

* ``run`` never returns and never raises for a device fault; an unexpected error in our own code is
  logged and polling resumes.
* A device that stops answering has its points emitted as STALE, carrying the last value and that
  value's original source timestamp (BAD_COMM without a value if it never answered), at the latest two
  poll intervals after its last answer when the line has fallen silent, else when its read times out
  or fails. (A device whose reads merely wait behind others on a busy shared line is not called
  stale: its values keep their true source timestamps.) A stale value is never re-sent as fresh.
* A unit that times out is skipped for an exponential, jittered backoff period, then probed with one
  read; it never holds up another device for longer than one timeout per backoff period.
* ``device.state`` events mark the transitions between online and offline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from itertools import repeat
from typing import Literal

from otseam.contract.models import Device
from otseam.core.plugins import Emit
from otseam.core.records import Event, Quality, Record, Sample, Severity, Value, device_state
from otseam.drivers.modbus.config import parse_endpoint, parse_options, unit_of
from otseam.drivers.modbus.connection import Connection, LineSettings, Unavailable, backoff_delay, registry
from otseam.drivers.modbus.framing import (
    FrameError,
    ModbusException,
    parse_read_response,
    read_request,
)
from otseam.drivers.modbus.planner import Block, plan
from otseam.drivers.modbus.splits import SplitMemory
from otseam.drivers.modbus.transport import LinkClosed, RequestTimeout
from otseam.protocols.modbus.tables import GATEWAY_EXCEPTIONS

log = logging.getLogger("otseam.drivers.modbus")

#: Exceptions that say "this block asks for addresses or a count the device does not have".
SPLITTABLE = frozenset({0x02, 0x03})

Outcome = Literal["ok", "comm", "point"]
_new_tuple = tuple.__new__


@dataclass(slots=True)
class BlockState:
    block: Block
    next_due: float
    last_values: list[Value] | None = None
    last_ts: float = 0.0
    #: The quality last emitted for the block's points when it was not GOOD (None while good).
    bad: Quality | None = None
    last_error: str = ""


class ModbusDriver:
    def __init__(self, device: Device, data_dir: str | None = None) -> None:
        self.device = device
        self.endpoint = parse_endpoint(device.endpoint, device.id)
        self.options = parse_options(device)
        self.unit = unit_of(device, self.endpoint)
        self._splits = SplitMemory(data_dir, device.id)
        blocks = _apply_known_splits(plan(device, self.options), self._splits.refused)
        constraints = device.constraints
        self.timeout = constraints.timeout
        self.settings = LineSettings(
            pause_after_connect=constraints.pause_after_connect,
            pause_between_requests=constraints.pause_between_requests,
            connect_timeout=constraints.timeout,
            max_in_flight=self.options.max_in_flight,
            max_backoff=self.options.max_backoff,
        )
        rate = constraints.max_request_rate
        self._spacing = 1.0 / rate if rate else 0.0
        self._next_request_at = 0.0
        start = time.monotonic()
        self.states = [BlockState(b, start) for b in blocks]
        self._label = f"{device.id} ({self.endpoint.key} unit {self.unit})"
        self._online: bool | None = None
        #: When the device last changed between connecting, online and offline (wall clock).
        self._state_since = time.time()
        self._failures = 0
        self._retry_at = 0.0
        self._last_answer = start
        self._emit_lock = asyncio.Lock()
        #: What the running poll cycle has read and not handed on yet (it hands a cycle on at once).
        self._unsent: list[Record] = []
        self._connection: Connection | None = None
        intervals = [b.interval for b in blocks] or [device.poll]
        self._shortest = min(intervals)

    # --- the task ------------------------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        if not self.states:
            log.warning("%s: no points to poll", self._label)
            await asyncio.Event().wait()
        with registry().use(self.endpoint, self.settings) as connection:
            self._connection = connection
            self._last_answer = time.monotonic()
            watchdog = asyncio.get_running_loop().create_task(
                self._watchdog(emit), name=f"modbus-watchdog {self.device.id}"
            )
            try:
                while True:
                    try:
                        await self._cycle(emit)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        # Our own bug, not the device's: say so loudly, keep polling.
                        log.exception("%s: unexpected error in the poll loop; polling continues", self._label)
                        await asyncio.sleep(self._shortest)
            finally:
                watchdog.cancel()
                self._connection = None

    async def _cycle(self, emit: Emit) -> None:
        now = time.monotonic()
        wake = min(s.next_due for s in self.states)
        if self._retry_at > now:
            wake = max(wake, self._retry_at)
        if wake > now:
            await asyncio.sleep(wake - now)
            return
        due = [s for s in self.states if s.next_due <= now]
        probing = self._failures > 0
        if probing:
            due = due[:1]  # one read tells whether the unit is back
        out = self._unsent
        assert self._connection is not None
        if self._connection.pipelines and not self._spacing and not probing:
            outcomes = await self._read_pipelined(due, out)
        else:
            outcomes = []
            for state in due:
                outcome = await self._read(state, out)
                outcomes.append(outcome)
                if outcome == "comm":
                    break
        now = time.monotonic()
        for state in due:
            state.next_due += state.block.interval
            if state.next_due <= now:  # fell behind: skip missed cycles instead of bursting
                state.next_due = now + state.block.interval
        if "comm" in outcomes:
            self._comm_failed(out)
        elif outcomes:
            self._answered(out, probing)
        if out:
            # Off _unsent before waiting for the lock: the watchdog must not send this batch again.
            self._unsent = []
            async with self._emit_lock:
                await emit(out)

    # --- one read ------------------------------------------------------------------------------

    async def _read_pipelined(self, due: list[BlockState], out: list[Record]) -> list[Outcome]:
        """All due reads on the wire at once, answers taken in order: no task per request."""
        assert self._connection is not None
        requests = [read_request(s.block.function, s.block.start, s.block.count) for s in due]
        try:
            link, answers = await self._connection.submit_all(self.unit, requests, self.timeout)
        except Unavailable as exc:
            self._note(due[0], f"no answer: {exc}")
            return ["comm"]
        outcomes = []
        for state, answer in zip(due, answers, strict=True):
            outcomes.append(await self._read(state, out, self._connection.settle(link, answer)))
        return outcomes

    async def _read(self, state: BlockState, out: list[Record], answer: Awaitable[bytes] | None = None) -> Outcome:
        block = state.block
        assert self._connection is not None
        if answer is None:
            if self._spacing:
                delay = self._next_request_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            answer = self._connection.request(
                self.unit, read_request(block.function, block.start, block.count), self.timeout
            )
        try:
            try:
                pdu = await answer
            finally:
                # Counted from the end of the exchange: the request left at some moment after we asked
                # (after a connect, a pause), so counting from the asking could send two too close.
                self._next_request_at = time.monotonic() + self._spacing
            ts = time.time()
            data = parse_read_response(block.function, block.count, pdu)
            values = block.decoder.decode(data)
        except (RequestTimeout, LinkClosed, Unavailable) as exc:
            self._note(state, f"no answer: {exc}" if str(exc) else f"no answer within {self.timeout:g}s")
            return "comm"
        except ModbusException as exc:
            if exc.code in GATEWAY_EXCEPTIONS:
                self._note(state, f"no answer through the gateway: {exc}")
                return "comm"
            if exc.code in SPLITTABLE and self._split(state, exc):
                return "point"
            quality = Quality.BAD_CONFIG if exc.code in SPLITTABLE or exc.code == 0x01 else Quality.BAD_DEVICE
            self._note(state, str(exc))
            self._bad(state, quality, out)
            return "point"
        except FrameError as exc:
            self._note(state, f"malformed response: {exc}")
            self._stale(state, out)
            return "point"
        self._last_answer = time.monotonic()
        if state.last_error:
            log.info("%s: %s answers again", self._label, block.label)
            state.last_error = ""
        state.last_values, state.last_ts, state.bad = values, ts, None
        # tuple.__new__ over zip runs in C: twice as fast as calling the NamedTuple's Python __new__.
        out.extend(
            map(
                _new_tuple,
                repeat(Sample),
                zip(block.decoder.keys, values, repeat(Quality.GOOD), repeat(ts), repeat(ts)),
            )
        )
        return "ok"

    def _note(self, state: BlockState, error: str) -> None:
        """Log a block's problem once, not every poll cycle."""
        if error != state.last_error:
            log.warning("%s: %s: %s", self._label, state.block.label, error)
            state.last_error = error

    def _split(self, state: BlockState, exc: ModbusException) -> bool:
        parts = state.block.split()
        if len(parts) < 2:
            return False
        index = self.states.index(state)
        old = dict(zip(state.block.decoder.keys, state.last_values or (), strict=False))
        replacement = []
        for part in parts:
            new = BlockState(part, time.monotonic())
            if state.last_values is not None:
                new.last_values = [old.get(k) for k in part.decoder.keys]
                new.last_ts = state.last_ts
            replacement.append(new)
        self.states[index : index + 1] = replacement
        self._splits.remember(state.block.label)
        log.info(
            "%s: %s refused (%s); split into %s", self._label, state.block.label, exc, ", ".join(p.label for p in parts)
        )
        return True

    # --- qualities ----------------------------------------------------------------------------

    def _stale(self, state: BlockState, out: list[Record]) -> None:
        """The block's points as STALE with their last value and its time, or BAD_COMM if none."""
        if state.bad is not None:
            return
        now = time.time()
        keys = state.block.decoder.keys
        if state.last_values is None:
            state.bad = Quality.BAD_COMM
            nothing: repeat[Value] = repeat(None)
            fields = zip(keys, nothing, repeat(Quality.BAD_COMM), repeat(now), repeat(now))
        else:
            state.bad = Quality.STALE
            fields = zip(keys, state.last_values, repeat(Quality.STALE), repeat(state.last_ts), repeat(now))
        out.extend(map(_new_tuple, repeat(Sample), fields))

    def _bad(self, state: BlockState, quality: Quality, out: list[Record]) -> None:
        if state.bad is quality:
            return
        state.bad = quality
        now = time.time()
        out.extend(Sample(k, None, quality, now, now) for k in state.block.decoder.keys)

    def _comm_failed(self, out: list[Record]) -> None:
        # The first wait is at least one timeout: on a shared line a probe of a dead unit holds it for a
        # whole timeout, so the others get at least half the line at once, and more as the wait doubles.
        delay = backoff_delay(self._failures, max(self._shortest, self.timeout), self.options.max_backoff)
        self._failures += 1
        self._retry_at = time.monotonic() + delay
        for state in self.states:
            self._stale(state, out)
        if self._online is not False:
            self._online = False
            self._state_since = time.time()
            log.warning("%s: offline; retrying in %.1fs with backoff", self._label, delay)
            out.append(self._state_event("offline", Severity.MEDIUM))

    def _answered(self, out: list[Record], probed: bool) -> None:
        self._failures = 0
        self._retry_at = 0.0
        if self._online is not True:
            self._online = True
            self._state_since = time.time()
            log.info("%s: online", self._label)
            out.append(self._state_event("online", Severity.INFO))
        if probed:
            # The probe read only one block: poll the rest now rather than a full interval later.
            now = time.monotonic()
            for state in self.states:
                state.next_due = min(state.next_due, now)

    def _state_event(self, state: str, severity: Severity) -> Event:
        return device_state(self.device.id, state, severity, endpoint=self.endpoint.key, unit=self.unit)

    # --- what /health, /metrics and the status line show -----------------------------------------

    @property
    def healthy(self) -> bool:
        """False while the device does not answer: a running driver is not a device that is up."""
        return self._online is not False

    def health(self) -> dict[str, object]:
        state = {None: "connecting", True: "online", False: "offline"}[self._online]
        report: dict[str, object] = {"device": state, "since": self._state_since, "endpoint": self.endpoint.key}
        if self._online is False:
            report["last_error"] = next((s.last_error for s in self.states if s.last_error), "no answer")
        return report

    async def _watchdog(self, emit: Emit) -> None:
        """Marks points stale even while a read is still waiting for its timeout."""
        while True:
            await asyncio.sleep(self._shortest / 2)
            now = time.monotonic()
            out: list[Record] = []
            connection = self._connection
            quiet = connection.quiet_for() if connection is not None else float("inf")
            for state in self.states:
                interval = state.block.interval
                if now - self._last_answer > 2 * interval and quiet > interval:
                    self._stale(state, out)
            if out:
                # What the running cycle read before the silence goes first, sent by us: after this
                # STALE it would arrive as fresh, hide the silence, and be marked stale once more when
                # the driver stops (the same reading journalled twice).
                out[:0] = self._unsent
                self._unsent.clear()
                async with self._emit_lock:
                    await emit(out)


def _apply_known_splits(blocks: list[Block], refused: set[str]) -> list[Block]:
    """Split, before the first request, every read the device refused in an earlier run."""
    if not refused:
        return blocks
    pending, final = list(blocks), []
    while pending:
        block = pending.pop(0)
        parts = block.split() if block.label in refused else [block]
        if len(parts) > 1:
            pending[0:0] = parts
        else:
            final.append(block)
    return final
