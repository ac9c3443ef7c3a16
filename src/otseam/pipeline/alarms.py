"""Limit alarms with hysteresis and delay.

A high alarm is raised once the value has stayed above its limit for ``delay`` seconds (measured on
the samples' source timestamps, so a device that stops answering cannot "hold" an alarm condition it
never confirmed), and cleared when the value comes back below ``limit - hysteresis`` (by more than the hysteresis, as
the contract says). A low alarm
is the mirror image. Only values the device vouched for (good or uncertain) move an alarm; a bad
reading interrupts a pending delay but never clears an active alarm: not knowing is not "back to normal".
"""

from __future__ import annotations

from otseam.core.records import Event
from otseam.pipeline.table import AlarmSlot


def evaluate(alarm: AlarmSlot, key: str, value: float, ts: float) -> Event | None:
    """Advance ``alarm`` with a new value at source time ``ts``; the raise or clear event, if any."""
    if alarm.active:
        back = value < alarm.limit - alarm.hysteresis if alarm.high else value > alarm.limit + alarm.hysteresis
        if back:
            alarm.active = False
            return _event(alarm, key, value, ts, "cleared")
        return None
    beyond = value > alarm.limit if alarm.high else value < alarm.limit
    if not beyond:
        alarm.pending_since = None
        return None
    if alarm.pending_since is None:
        alarm.pending_since = ts
    if ts - alarm.pending_since >= alarm.delay:
        alarm.pending_since = None
        alarm.active = True
        return _event(alarm, key, value, ts, "raised")
    return None


def interrupt(alarm: AlarmSlot) -> None:
    """A reading could not be trusted: a pending delay starts over, an active alarm stays active."""
    alarm.pending_since = None


def _event(alarm: AlarmSlot, key: str, value: float, ts: float, state: str) -> Event:
    kind = "high" if alarm.high else "low"
    if alarm.message and state == "raised":
        message = alarm.message
    else:
        relation = (">" if alarm.high else "<") if state == "raised" else "back within"
        message = f"{key} {kind} alarm {alarm.alarm_id} {state}: {value:g} {relation} {alarm.limit:g}"
    return Event(
        ts=ts,
        kind="alarm",
        source=key,
        severity=alarm.severity,
        message=message,
        data={
            "point": key,
            "alarm": alarm.alarm_id,
            "type": kind,
            "state": state,
            "limit": alarm.limit,
            "value": value,
            "hysteresis": alarm.hysteresis,
            "delay": alarm.delay,
        },
    )
