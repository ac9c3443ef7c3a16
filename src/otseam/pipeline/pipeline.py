"""The per-point processing between a driver and the journal.

For each sample, in this order: scale (``raw * factor + offset``), clamp (a clamped value becomes
UNCERTAIN: it is not what the device said), alarms (on every reading, before any suppression), then
report by exception. Whole batches go through one tight loop with no awaits.

Reporting rules, for points whose contract gives a deadband or a heartbeat (the others are reported on
every reading, since the contract asked for nothing else):

* the first sample of a point is always reported;
* a change of quality is always reported, whatever the deadband;
* a value is reported when it moved by more than the deadband from the last *reported* value (so a
  slow drift is reported once it adds up), or when it changed at all if there is no deadband;
* a reading that arrives after the heartbeat interval without a report is reported, with its own
  timestamps (the device did confirm the value just now);
* if nothing arrives at all for a heartbeat interval, :meth:`Pipeline.tick` re-sends the last value
  with its original source timestamp and quality: the record says "this is still the last thing we
  know, from then", never that the device said it again. When the supervisor knows the device's driver
  is gone (crashed, removed), :meth:`Pipeline.mark_stale` re-sends the last values as STALE.

Non-finite numbers (NaN, infinity, as a float register can hold) become BAD_DEVICE with no value: they
cannot be compared, scaled or stored by most historians, and the device did not give a usable number.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from otseam.compute.engine import Engine
from otseam.contract.models import Contract
from otseam.core.records import Event, Quality, Record, Sample
from otseam.pipeline import alarms
from otseam.pipeline.table import PointSlot, compile_table

log = logging.getLogger(__name__)

_GOOD = Quality.GOOD
_UNCERTAIN = Quality.UNCERTAIN
_STALE = Quality.STALE
_BAD_CONFIG = Quality.BAD_CONFIG
_BAD_DEVICE = Quality.BAD_DEVICE


@dataclass(slots=True)
class DeviceStats:
    """Counters per device, read by the metrics endpoint and the terminal status."""

    samples: int = 0
    reported: int = 0
    #: Samples the driver could not vouch for: stale (the device stopped answering) or bad (no answer,
    #: device error, decode impossible). Exported as the device's error count.
    bad_samples: int = 0
    #: gateway_ts - source_ts of the last sample: how old a value is when it reaches Seam.
    latency: float = 0.0
    last_sample_ts: float = 0.0


class Pipeline:
    """Turns what drivers read into what the journal keeps."""

    def __init__(self, table: dict[str, PointSlot], clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.table: dict[str, PointSlot] = {}
        self.devices: dict[str, DeviceStats] = {}
        self._heartbeat_slots: list[PointSlot] = []
        self._unknown_logged: set[str] = set()
        self.samples_in = 0
        self.samples_out = 0
        self.events_out = 0
        self.alarms_raised = 0
        self.unknown_points = 0
        #: Computed points (docs/compute.md): fed from here, their results processed like any point's.
        self.compute = Engine(clock)
        self.reconfigure(table)

    @classmethod
    def from_contract(cls, contract: Contract, clock: Callable[[], float] = time.time) -> Pipeline:
        return cls(compile_table(contract), clock)

    def reconfigure(self, table: dict[str, PointSlot]) -> None:
        """Switch to a new table. Points whose configuration did not change keep their state (last
        reported value, active alarms), so a reload neither re-reports nor re-raises anything."""
        merged: dict[str, PointSlot] = {}
        for key, slot in table.items():
            old = self.table.get(key)
            merged[key] = old if old is not None and old.config() == slot.config() else slot
        self.table = merged
        self.compute.reconfigure(s.program for s in table.values() if s.program is not None)
        wanted = self.compute.inputs()
        index = self.compute.index
        for key, slot in merged.items():
            slot.feeds = index[key] if key in wanted and slot.program is None else -1
        self._heartbeat_slots = [s for s in merged.values() if s.heartbeat is not None]
        for slot in merged.values():
            self.devices.setdefault(slot.device, DeviceStats())
        for device in list(self.devices):
            if not any(s.device == device for s in merged.values()):
                del self.devices[device]

    def process(self, records: Sequence[Record]) -> list[Record]:
        """What to append to the journal for ``records``, in order (an alarm follows its sample)."""
        out: list[Record] = []
        append = out.append
        table = self.table
        devices = self.devices
        samples_in = 0
        events = 0
        reported = 0
        fed: list[tuple[int, Any, Quality, float]] = []
        gateway_ts = 0.0
        # Checked at run time below (a driver may hand over anything); Any keeps mypy out of the hot loop.
        value: Any
        for record in records:
            if record.__class__ is not Sample:
                append(record)
                events += 1
                continue
            samples_in += 1
            point, value, quality, source_ts, gateway_ts = record
            slot = table.get(point)
            if slot is None:
                self._unknown(point)
                continue
            stats = devices[slot.device]
            stats.samples += 1
            stats.latency = gateway_ts - source_ts if gateway_ts > source_ts else 0.0
            stats.last_sample_ts = gateway_ts
            slot.last_input_ts = gateway_ts
            reported_now = False
            unchanged = True  # value and quality are still the driver's: the record can be passed on as is

            if slot.numeric and value is not None:
                cls = value.__class__
                if cls is not float and cls is not int and (cls is bool or not isinstance(value, int | float)):
                    # The driver decoded something that is not a number for a numeric point.
                    value = None
                    unchanged = False
                    if quality <= _UNCERTAIN:
                        quality = _BAD_CONFIG
                elif value - value != 0:  # NaN or an infinity (x - x is 0 for every finite number)
                    value = None
                    unchanged = False
                    if quality <= _UNCERTAIN:
                        quality = _BAD_DEVICE
                elif slot.scaled:
                    value = value * slot.factor + slot.offset
                    unchanged = False

            if quality > _UNCERTAIN:
                stats.bad_samples += 1
                for alarm in slot.alarms:
                    alarms.interrupt(alarm)
            elif quality is _STALE:
                stats.bad_samples += 1
            if quality <= _UNCERTAIN and slot.numeric and value is not None:
                low = slot.clamp_low
                if low is not None and value < low:
                    value = low
                    unchanged = False
                    if quality is _GOOD:
                        quality = _UNCERTAIN
                high = slot.clamp_high
                if high is not None and value > high:
                    value = high
                    unchanged = False
                    if quality is _GOOD:
                        quality = _UNCERTAIN
                if slot.alarms and quality is not _STALE:
                    for alarm in slot.alarms:
                        event = alarms.evaluate(alarm, slot.key, value, source_ts)
                        if event is not None:
                            # The sample that crossed the limit goes first, whatever RBE says.
                            if not reported_now:
                                self._report(slot, value, quality, source_ts, gateway_ts, out, stats)
                                reported_now = True
                            append(event)
                            events += 1
                            if event.data["state"] == "raised":
                                self.alarms_raised += 1

            if slot.feeds >= 0:
                fed.append((slot.feeds, value, quality, source_ts))
            if reported_now or (slot.rbe and not self._changed(slot, value, quality, gateway_ts)):
                continue
            # Reported: inlined rather than a call to _report, this is the hot path.
            append(record if unchanged else Sample(point, value, quality, source_ts, gateway_ts))
            slot.reported = True
            slot.last_value = value
            slot.last_quality = quality
            slot.last_source_ts = source_ts
            slot.last_report_ts = gateway_ts
            stats.reported += 1
            reported += 1
        self.samples_in += samples_in
        self.samples_out += reported
        self.events_out += events
        if fed:
            out.extend(self._computed(self.compute.run(fed, gateway_ts)))
        return out

    def _computed(self, records: list[Record]) -> list[Record]:
        """Computed samples through their own slots (deadband, heartbeat, limit alarms), not counted as
        samples read from devices."""
        if not records:
            return []
        samples_in = self.samples_in
        out = self.process(records)
        self.samples_in = samples_in
        return out

    def checkpoint(self, now: float | None = None) -> list[Record]:
        """The computed points' state, to append to the journal (at stop; ``tick`` does it periodically)."""
        if not self.compute.runners:
            return []
        event: Event = self.compute.checkpoint(now)
        return [event]

    @staticmethod
    def _changed(slot: PointSlot, value: object, quality: Quality, gateway_ts: float) -> bool:
        if not slot.reported or quality is not slot.last_quality:
            return True
        heartbeat = slot.heartbeat
        if heartbeat is not None and gateway_ts - slot.last_report_ts >= heartbeat:
            return True
        last = slot.last_value
        if slot.numeric and value is not None and last is not None:
            deadband = slot.deadband
            if deadband is None:
                return value != last
            return bool(abs(value - last) > deadband)  # type: ignore[operator]
        return value != last

    def _report(
        self,
        slot: PointSlot,
        value: object,
        quality: Quality,
        source_ts: float,
        gateway_ts: float,
        out: list[Record],
        stats: DeviceStats,
    ) -> None:
        out.append(Sample(slot.key, value, quality, source_ts, gateway_ts))  # type: ignore[arg-type]
        slot.reported = True
        slot.last_value = value  # type: ignore[assignment]
        slot.last_quality = quality
        slot.last_source_ts = source_ts
        slot.last_report_ts = gateway_ts
        stats.reported += 1
        self.samples_out += 1

    def tick(self, now: float | None = None) -> list[Record]:
        """Heartbeats for points that have been silent for their heartbeat interval.

        The last value is re-sent with its original source timestamp and quality: nothing new was read,
        so nothing may look new. Called by the supervisor about once a second.
        """
        now = self._clock() if now is None else now
        out: list[Record] = []
        for slot in self._heartbeat_slots:
            heartbeat = slot.heartbeat
            if (
                slot.reported
                and heartbeat is not None
                and now - slot.last_report_ts >= heartbeat
                and now - slot.last_input_ts >= heartbeat
            ):
                out.append(Sample(slot.key, slot.last_value, slot.last_quality, slot.last_source_ts, now))
                slot.last_report_ts = now
                self.devices[slot.device].reported += 1
        self.samples_out += len(out)
        if self.compute.runners:
            out.extend(self._computed(self.compute.tick(now)))
        return out

    def mark_stale(self, device: str, now: float | None = None) -> list[Record]:
        """The device's driver is gone: its last good or uncertain values are re-sent as STALE, with
        their original source timestamps, so no consumer mistakes them for live values."""
        now = self._clock() if now is None else now
        out: list[Record] = []
        fed: list[tuple[int, Any, Quality, float]] = []
        for slot in self.table.values():
            if slot.device == device and slot.reported and slot.last_quality <= _UNCERTAIN:
                if slot.last_quality is _STALE:
                    continue
                out.append(Sample(slot.key, slot.last_value, _STALE, slot.last_source_ts, now))
                slot.last_quality = _STALE
                slot.last_report_ts = now
                if slot.feeds >= 0:
                    fed.append((slot.feeds, slot.last_value, _STALE, slot.last_source_ts))
        self.samples_out += len(out)
        if fed:
            # What is computed from the device's points is no better than they are now.
            out.extend(self._computed(self.compute.run(fed, now)))
        return out

    def _unknown(self, key: str) -> None:
        self.unknown_points += 1
        if key not in self._unknown_logged and len(self._unknown_logged) < 100:
            self._unknown_logged.add(key)
            log.warning("dropping samples of %r: the contract declares no such point", key)
