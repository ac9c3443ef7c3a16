"""Prometheus metrics of a running `seam run`, computed from live state at each scrape.

A collector reads the supervisor's counters when Prometheus asks, rather than every component updating
gauges as it goes: the hot path (the pipeline loop) only increments plain integers. The registry is
our own, never prometheus_client's global one, so several supervisors (tests, embedding) never mix.

Names: ``seam_points_total`` (samples read, per device; ``rate()`` of it is points per second),
``seam_journal_depth`` and ``seam_journal_oldest_age_seconds`` (the slowest sink's backlog),
``seam_sink_lag_records`` / ``seam_sink_lag_seconds`` per sink, ``seam_device_latency_seconds`` and
``seam_device_errors_total`` per device, plus process memory and CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from otseam.runtime.supervisor import Supervisor


class SeamCollector:
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        sup = self.supervisor
        yield from self._devices()
        yield from self._sinks()
        yield from self._journal()
        pipeline = sup.pipeline
        yield _gauge("seam_points_per_second", "Samples read per second over the last second", sup.points_rate.value)
        if pipeline is not None:
            yield _counter("seam_events", "Events appended (alarms, device state, audit)", pipeline.events_out)
            yield _counter("seam_alarms_raised", "Limit alarms raised", pipeline.alarms_raised)
            yield _counter(
                "seam_unknown_point_samples",
                "Samples dropped because the contract declares no such point",
                pipeline.unknown_points,
            )
            if pipeline.compute.runners:
                stats = pipeline.compute.stats()
                yield _counter("seam_compute_evaluations", "Computed points evaluated", stats["evaluations"])
                yield _counter(
                    "seam_compute_errors",
                    "Computed points that gave no value because of their inputs (division by zero, overflow, ...)",
                    stats["errors"],
                )
                yield _counter(
                    "seam_compute_alarms_raised",
                    "Alarms over several points (conditions) raised",
                    stats["alarms_raised"],
                )
                yield _counter(
                    "seam_compute_late_samples",
                    "Samples dropped by windows and counters because they arrived after their time had passed",
                    stats["late_samples"],
                )
        restarts = CounterMetricFamily(
            "seam_component_restarts", "Restarts of a driver or sink after a failure", labels=["component"]
        )
        for name, component in sorted(sup.components.items()):
            restarts.add_metric([name], component.restarts)
        yield restarts
        reloads = CounterMetricFamily("seam_contract_reloads", "Contract reloads", labels=["result"])
        reloads.add_metric(["ok"], sup.counters.reloads_ok)
        reloads.add_metric(["refused"], sup.counters.reloads_failed)
        yield reloads

    def _devices(self) -> Iterator[Metric]:
        sup = self.supervisor
        points = CounterMetricFamily("seam_points", "Samples read from devices", labels=["device"])
        reported = CounterMetricFamily(
            "seam_samples_reported", "Samples passed on to the journal (after report by exception)", labels=["device"]
        )
        latency = GaugeMetricFamily(
            "seam_device_latency_seconds",
            "Age of the last sample when it reached Seam (gateway time - source time)",
            labels=["device"],
        )
        errors = CounterMetricFamily(
            "seam_device_errors", "Samples with a bad quality, plus driver failures", labels=["device"]
        )
        up = GaugeMetricFamily(
            "seam_device_up",
            "1 while the device answers (its driver running and the device reachable)",
            labels=["device"],
        )
        since = GaugeMetricFamily(
            "seam_device_state_since_seconds",
            "Unix time of the device's last change between up and down",
            labels=["device"],
        )
        if sup.pipeline is not None:
            for device, stats in sorted(sup.pipeline.devices.items()):
                failures = sup.counters.driver_failures.get(device, 0)
                points.add_metric([device], stats.samples)
                reported.add_metric([device], stats.reported)
                latency.add_metric([device], stats.latency)
                errors.add_metric([device], stats.bad_samples + failures)
        sources = GaugeMetricFamily("seam_source_up", "1 while the source is receiving", labels=["source"])
        for component in sup.components.values():
            if component.kind == "driver":
                up.add_metric([component.id], 1.0 if component.working else 0.0)
                detail = component.health().get("detail")
                changed = detail.get("since") if isinstance(detail, dict) else None
                since.add_metric(
                    [component.id], float(changed) if isinstance(changed, int | float) else component.started_ts
                )
            elif component.kind == "source":
                sources.add_metric([component.id], 1.0 if component.working else 0.0)
        yield from (points, reported, latency, errors, up, since, sources)

    def _sinks(self) -> Iterator[Metric]:
        sup = self.supervisor
        lag = GaugeMetricFamily("seam_sink_lag_records", "Records in the journal not yet delivered", labels=["sink"])
        lag_age = GaugeMetricFamily(
            "seam_sink_lag_seconds", "Age of the oldest record not yet delivered (0 when caught up)", labels=["sink"]
        )
        delivered = CounterMetricFamily("seam_sink_delivered_records", "Records delivered", labels=["sink"])
        errors = CounterMetricFamily("seam_sink_errors", "Failed start or delivery attempts", labels=["sink"])
        dropped = CounterMetricFamily(
            "seam_sink_dropped_records",
            "Records the journal's retention removed before this sink delivered them",
            labels=["sink"],
        )
        rejected = CounterMetricFamily(
            "seam_sink_rejected_records",
            "Records the sink will never accept, kept in the node's dead-letter file",
            labels=["sink"],
        )
        up = GaugeMetricFamily("seam_sink_up", "1 while the sink is delivering without errors", labels=["sink"])
        cursors = {}
        if sup.journal is not None and not sup.journal.closed:
            cursors = {c.name: c for c in sup.journal_metrics().cursors}
        for sink_id, stats in sorted(sup.sink_stats.items()):
            cursor = cursors.get(sink_id)
            lag.add_metric([sink_id], cursor.depth if cursor else 0)
            lag_age.add_metric([sink_id], (cursor.oldest_unread_age or 0.0) if cursor else 0.0)
            dropped.add_metric([sink_id], cursor.dropped if cursor else 0)
            delivered.add_metric([sink_id], stats.delivered_records)
            rejected.add_metric([sink_id], stats.rejected_records)
            errors.add_metric([sink_id], stats.errors)
            up.add_metric(
                [sink_id], 1.0 if stats.state in ("running", "draining") and not stats.consecutive_failures else 0.0
            )
        yield from (lag, lag_age, delivered, errors, dropped, rejected, up)

    def _journal(self) -> Iterator[Metric]:
        sup = self.supervisor
        if sup.journal is None or sup.journal.closed:
            return
        metrics = sup.journal_metrics()
        depth = max((c.depth for c in metrics.cursors if c.name in sup.sink_stats), default=0)
        age = max((c.oldest_unread_age or 0.0 for c in metrics.cursors if c.name in sup.sink_stats), default=0.0)
        yield _gauge("seam_journal_depth", "Records not yet delivered to the slowest sink", depth)
        yield _gauge("seam_journal_oldest_age_seconds", "Age of the oldest record not yet delivered everywhere", age)
        yield _gauge("seam_journal_bytes", "Bytes the journal holds on disk", metrics.bytes_on_disk)
        yield _gauge(
            "seam_journal_records", "Records the journal holds", max(0, metrics.last_offset - metrics.first_offset + 1)
        )
        yield _gauge("seam_journal_last_offset", "Offset of the newest record", metrics.last_offset)


def _counter(name: str, documentation: str, value: float) -> Metric:
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> Metric:
    return GaugeMetricFamily(name, documentation, value=value)


def build_registry(supervisor: Supervisor, registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """The node's registry (a new one unless given: plugins may already have registered theirs)."""
    registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
    registry.register(SeamCollector(supervisor))
    ProcessCollector(registry=registry)
    return registry
