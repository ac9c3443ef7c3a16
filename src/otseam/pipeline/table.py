"""The contract's points compiled once into a table the pipeline can run through quickly.

Reading pydantic models in the hot loop would cost more than the arithmetic itself, so each point
becomes a small slots object holding exactly the numbers the pipeline needs: factor and offset, clamp
bounds, an absolute deadband (a percent deadband is converted with the point's range here, once), the
heartbeat interval and the alarm rules. The mutable per-point state lives in the same object.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from otseam.contract.formulas.program import Program, compile_computed, source_devices
from otseam.contract.models import COMPUTED_DEVICE, Alarm, ComputedPoint, Contract, Device, Point
from otseam.core.records import Quality, Severity, Value

_SEVERITIES = {s.label: s for s in Severity}


class PipelineConfigError(ValueError):
    """The contract asks for something the pipeline cannot do (e.g. a percent deadband with no range)."""


@dataclass(slots=True)
class AlarmSlot:
    """One limit alarm and where it stands."""

    alarm_id: str
    high: bool
    limit: float
    hysteresis: float
    delay: float
    severity: Severity
    message: str
    #: Raised and not yet cleared.
    active: bool = False
    #: Source time at which the value first went beyond the limit, while waiting out ``delay``.
    pending_since: float | None = None

    def config(self) -> tuple[object, ...]:
        return (self.alarm_id, self.high, self.limit, self.hysteresis, self.delay, self.severity, self.message)


@dataclass(slots=True)
class PointSlot:
    """Configuration and state of one point, keyed by ``"<device>/<point>"`` in the table."""

    key: str
    device: str
    #: Whether values are numbers that scaling, clamping, deadband and alarms apply to.
    numeric: bool
    factor: float
    offset: float
    scaled: bool
    clamp_low: float | None
    clamp_high: float | None
    #: Absolute deadband in engineering units; None means "no deadband configured".
    deadband: float | None
    heartbeat: float | None
    #: Report by exception: on when the contract gives a deadband or a heartbeat for the point.
    rbe: bool
    alarms: list[AlarmSlot]

    # --- state: the last sample reported downstream ---
    reported: bool = False
    last_value: Value = None
    last_quality: Quality = Quality.GOOD
    last_source_ts: float = 0.0
    #: Gateway time of the last report (a heartbeat counts): the heartbeat clock.
    last_report_ts: float = 0.0
    #: Gateway time of the last sample received from the driver, reported or not.
    last_input_ts: float = 0.0
    #: The compute engine's register for this point when computed points read it, else -1.
    feeds: int = -1
    #: For a computed point: what computes it.
    program: Program | None = None

    def config(self) -> tuple[object, ...]:
        """Everything that came from the contract; equal configs may carry state across a reload."""
        return (
            self.numeric,
            self.factor,
            self.offset,
            self.clamp_low,
            self.clamp_high,
            self.deadband,
            self.heartbeat,
            tuple(a.config() for a in self.alarms),
            self.program.fingerprint if self.program is not None else None,
        )


def _alarm_slot(alarm: Alarm) -> AlarmSlot:
    return AlarmSlot(
        alarm_id=alarm.id,
        high=alarm.kind == "high",
        limit=alarm.limit,
        hysteresis=alarm.hysteresis,
        delay=alarm.delay,
        severity=_SEVERITIES[alarm.severity],
        message=alarm.message,
    )


def compile_point(device: Device, point: Point) -> PointSlot:
    key = device.key(point)
    numeric = point.type not in ("bool", "string")
    deadband: float | None = None
    if point.deadband is not None:
        if point.deadband.percent is not None:
            span = point.range or point.clamp
            if span is None:
                raise PipelineConfigError(
                    f"point {key}: a percent deadband needs the point's range: add 'range: {{low: ..., high: ...}}' "
                    "or write the deadband as an absolute number"
                )
            deadband = point.deadband.percent / 100.0 * (span.high - span.low)
        elif point.deadband.absolute is not None:
            if point.deadband.absolute < 0:
                raise PipelineConfigError(f"point {key}: a deadband cannot be negative")
            deadband = point.deadband.absolute
    if not numeric and (point.scale or point.clamp or point.alarms or deadband):
        raise PipelineConfigError(
            f"point {key}: scaling, clamping, deadband and alarms apply to numbers, not to type {point.type!r}"
        )
    if point.heartbeat is not None and point.heartbeat <= 0:
        raise PipelineConfigError(f"point {key}: the heartbeat must be longer than zero")
    factor = point.scale.factor if point.scale else 1.0
    offset = point.scale.offset if point.scale else 0.0
    return PointSlot(
        key=key,
        device=device.id,
        numeric=numeric,
        factor=factor,
        offset=offset,
        scaled=factor != 1.0 or offset != 0.0,
        clamp_low=point.clamp.low if point.clamp else None,
        clamp_high=point.clamp.high if point.clamp else None,
        deadband=deadband,
        heartbeat=point.heartbeat,
        rbe=deadband is not None or point.heartbeat is not None,
        alarms=[_alarm_slot(a) for a in point.alarms],
    )


def _deadband_of(key: str, point: Point | ComputedPoint) -> float | None:
    if point.deadband is None:
        return None
    if point.deadband.percent is not None:
        span = point.range or getattr(point, "clamp", None)
        if span is None:
            raise PipelineConfigError(
                f"point {key}: a percent deadband needs the point's range: add 'range: {{low: ..., high: ...}}' "
                "or write the deadband as an absolute number"
            )
        return point.deadband.percent / 100.0 * (span.high - span.low)
    if point.deadband.absolute is not None and point.deadband.absolute < 0:
        raise PipelineConfigError(f"point {key}: a deadband cannot be negative")
    return point.deadband.absolute


def compile_computed_point(point: ComputedPoint, program: Program) -> PointSlot:
    """A computed point's slot: no scaling or clamping (its formula is the whole computation), but
    deadband, heartbeat and limit alarms as for any point."""
    key = point.key
    numeric = point.type not in ("bool", "string")
    deadband = _deadband_of(key, point)
    if not numeric and (point.alarms or deadband):
        raise PipelineConfigError(f"point {key}: deadband and alarms apply to numbers, not to type {point.type!r}")
    if point.heartbeat is not None and point.heartbeat <= 0:
        raise PipelineConfigError(f"point {key}: the heartbeat must be longer than zero")
    return PointSlot(
        key=key,
        device=COMPUTED_DEVICE,
        numeric=numeric,
        factor=1.0,
        offset=0.0,
        scaled=False,
        clamp_low=None,
        clamp_high=None,
        deadband=deadband,
        heartbeat=point.heartbeat,
        rbe=deadband is not None or point.heartbeat is not None,
        alarms=[_alarm_slot(a) for a in point.alarms],
        program=program,
    )


def compile_table(contract: Contract, devices: Collection[str] | None = None) -> dict[str, PointSlot]:
    """Every point of the contract (or of ``devices``, the ones a node polls), compiled. Raises
    :class:`PipelineConfigError` listing all problems."""
    table: dict[str, PointSlot] = {}
    problems: list[str] = []
    for device in contract.devices:
        if devices is not None and device.id not in devices:
            continue
        for point in device.points:
            try:
                slot = compile_point(device, point)
            except PipelineConfigError as exc:
                problems.append(str(exc))
                continue
            if slot.key in table:
                problems.append(f"point {slot.key} is declared twice")
            table[slot.key] = slot
    compiled = compile_computed(contract)
    for problem in compiled.problems:
        where = contract.computed[problem.index].key if problem.index < len(contract.computed) else "computed"
        problems.append(f"computed point {where}, {problem.where}: {problem.message}")
    # A computed point runs on the node that polls its inputs (COMPUTE-003 refuses inputs spread over
    # several nodes): here, the ones whose devices are all among ``devices``.
    placed = source_devices(contract, compiled.programs)
    for program in compiled.programs.values():
        if devices is not None and not (placed[program.key] and placed[program.key] <= set(devices)):
            continue
        try:
            slot = compile_computed_point(program.point, program)
        except PipelineConfigError as exc:
            problems.append(str(exc))
            continue
        if slot.key in table:
            problems.append(f"point {slot.key} is declared twice")
        table[slot.key] = slot
    if problems:
        raise PipelineConfigError("\n".join(problems))
    return table
