"""The capture source: the passive monitor (``otseam.monitor``) run as a source of a node.

One analysis for both ways of running it: under ``seam run`` (alerts and inventory changes appended to
the node's journal; health and metrics) and as ``seam watch`` (the same source built from flags, with an
observer that prints what it sees).
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from otseam.core.plugins import beside_contract
from otseam.core.records import Event, Record, Severity
from otseam.monitor.allowlist import Policy
from otseam.monitor.capture import LINKTYPE_NAMES, CaptureError, CaptureStats, check_capture_file, read_capture
from otseam.monitor.engine import Monitor, Observations
from otseam.monitor.live import LiveCapture
from otseam.monitor.rules import Alert
from otseam.sources.capture.options import Options

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from otseam.contract.models import Contract, SourceSpec
    from otseam.core.plugins import Emit, PluginContext
    from otseam.monitor.inventory import Change

log = logging.getLogger("otseam.sources.capture")

#: Drops within this many seconds make the source degraded in /health.
DROP_WINDOW = 300.0
#: The fast path holds column arrays for the whole file (some 4 to 5 bytes of memory per byte of a
#: polling capture); larger files take the per-frame path, whose memory does not grow with the file.
FAST_PATH_MAX_BYTES = 256 * 1024 * 1024
#: Frames analysed between two hand-overs of what was observed.
_CHUNK = 1024

Observer = Callable[[Observations, bool], None]


def alert_event(alert: Alert) -> Event:
    return Event(alert.ts, "alert", alert.rule.id, alert.rule.severity, alert.message, alert.as_dict())


def change_event(change: Change) -> Event:
    return Event(change.ts, change.kind, f"monitor/{change.ip}", Severity.INFO, change.message, change.data)


def learn_baseline(
    path: str | Path, modbus_ports: frozenset[int], opcua_ports: frozenset[int]
) -> dict[tuple[str, str], set[int]]:
    """Client/server pairs and the function codes each used, from a capture taken when all was well."""
    monitor = Monitor(None, modbus_ports=modbus_ports, opcua_ports=opcua_ports)
    pairs: dict[tuple[str, str], set[int]] = {}
    for frame in read_capture(path, CaptureStats()):
        monitor.process(frame)
        for ends, msg in monitor.modbus_messages:
            if msg.is_request:
                pairs.setdefault((ends.client, ends.server), set()).add(msg.function)
        monitor.modbus_messages.clear()
        for ends, _ua in monitor.ua_messages:
            pairs.setdefault((ends.client, ends.server), set())
        monitor.ua_messages.clear()
    monitor.finish()
    return pairs


def link_type_problem(monitor: Monitor, name: str) -> tuple[str | None, str | None]:
    """``(error, warning)`` about frames of a link type the decoder does not read: an error if that is all
    the capture holds (saying "no alerts" would claim an analysis that never happened), else a warning."""
    unknown = monitor.stats.unknown_link
    if not unknown:
        return None, None
    count = sum(unknown.values())
    types = ", ".join(f"{linktype} ({frames} frames)" for linktype, frames in sorted(unknown.items()))
    if count == monitor.stats.frames:
        known = ", ".join(f"{label} ({number})" for number, label in sorted(LINKTYPE_NAMES.items()))
        return (
            f"{name}: nothing was decoded: link type {types} is not one Seam reads ({known}); "
            "capture on an Ethernet interface or convert the file",
            None,
        )
    return None, (
        f"{name}: {count} of {monitor.stats.frames} frames have a link type Seam does not read ({types}) "
        "and were not analysed"
    )


class CaptureSource:
    """Implements :class:`otseam.core.plugins.Source` (and ``health``/``healthy`` for /health)."""

    def __init__(
        self,
        source_id: str,
        options: Options,
        policy: Policy | None,
        *,
        file: Path | None = None,
        metrics: CollectorRegistry | None = None,
        keep_records: bool = False,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.id = source_id
        self.options = options
        self.policy = policy
        self.file = file if file is not None else (Path(options.file) if options.file else None)
        self.metrics = metrics
        self.keep_records = keep_records
        self.observer = observer
        self.clock = clock
        self.modbus_ports = frozenset(options.modbus_ports)
        self.opcua_ports = frozenset(options.opcua_ports)
        self.monitor = self.new_monitor()
        self.live: LiveCapture | None = None
        self.capture_stats = CaptureStats()
        self.alerts = 0
        self.events = 0
        self.error = ""
        self.warnings: list[str] = []
        self.finished = False
        self.kernel_received = 0
        self.kernel_dropped = 0
        self.last_drop_ts = 0.0
        #: Live: stop after this many frames (``seam watch --count``); called once the socket is open.
        self.max_frames: int | None = None
        self.on_start: Callable[[], None] | None = None

    @classmethod
    def from_spec(cls, spec: SourceSpec, context: PluginContext) -> CaptureSource:
        # Files named in the options are found beside the contract, as `seam check` finds them.
        base = str(Path(context.contract_path).parent) if context.contract_path else ""
        options = Options.model_validate(spec.options, context={"base": base})
        modbus_ports, opcua_ports = frozenset(options.modbus_ports), frozenset(options.opcua_ports)
        policy = build_policy(
            context.contract if options.allow_from_contract else None,
            [str(address) for address in options.allow_masters],
            Path(beside_contract(options.baseline, context.contract_path)) if options.baseline else None,
            modbus_ports,
            opcua_ports,
        )
        file = Path(beside_contract(options.file, context.contract_path)) if options.file else None
        return cls(spec.id, options, policy, file=file, metrics=context.metrics, clock=context.clock)

    def new_monitor(self) -> Monitor:
        return Monitor(
            self.policy, keep_records=self.keep_records, modbus_ports=self.modbus_ports, opcua_ports=self.opcua_ports
        )

    # --- running ---------------------------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        """Capture until cancelled. A capture file is analysed once; the source then stays up reporting
        what it found, or why the file could not be read (not a fault a restart would mend)."""
        collector = CaptureCollector(self)
        if self.metrics is not None:
            self.metrics.register(collector)
        try:
            try:
                await self.capture(emit)
            except CaptureError as exc:
                self.error = str(exc)
                log.error("capture source %s: %s", self.id, exc)
            if self.file is not None:
                await asyncio.Event().wait()
        finally:
            if self.metrics is not None:
                self.metrics.unregister(collector)

    async def capture(self, emit: Emit, stop: asyncio.Event | None = None) -> None:
        """The whole capture: a file to its end, or an interface until ``stop`` is set or cancellation.
        Raises :class:`CaptureError` for a file that cannot be read, and for one of which nothing could
        be decoded; :class:`otseam.monitor.live.LiveCaptureError` for an interface that cannot be opened."""
        if self.file is not None:
            await self._capture_file(emit, self.file)
        else:
            assert self.options.interface is not None
            await self._capture_live(emit, self.options.interface, stop)

    def _hand_over(self, live: bool) -> list[Record]:
        obs = self.monitor.drain()
        if self.observer is not None:
            self.observer(obs, live)
        self.alerts += len(obs.alerts)
        events: list[Record] = [alert_event(a) for a in obs.alerts]
        events.extend(change_event(c) for c in obs.changes)
        self.events += len(events)
        return events

    async def _capture_file(self, emit: Emit, path: Path) -> None:
        check_capture_file(path)
        # Analysed in a worker thread: a large file must not stall the node's polling and /health.
        events = await asyncio.to_thread(self._analyse_file, path)
        for start in range(0, len(events), 5000):
            await emit(events[start : start + 5000])
        error, warning = link_type_problem(self.monitor, str(path))
        if error:
            raise CaptureError(error)
        if warning:
            self.warnings.append(warning)
        self.finished = True

    def _analyse_file(self, path: Path) -> list[Record]:
        from otseam.monitor.analyzers.modbus.fastpath import analyse_pcap

        monitor, stats = self.monitor, self.capture_stats
        if not self.keep_records and _fast(monitor, path, stats, analyse_pcap):
            monitor.finish()
            return self._hand_over(False)
        events: list[Record] = []
        for frame in read_capture(path, stats):
            monitor.process(frame)
            if frame.number % _CHUNK == 0:
                events.extend(self._hand_over(False))
        monitor.finish()
        events.extend(self._hand_over(False))
        return events

    async def _capture_live(self, emit: Emit, interface: str, stop: asyncio.Event | None) -> None:
        live = LiveCapture(interface, receive_buffer=self.options.receive_buffer)
        self.live = live
        monitor = self.monitor
        if self.on_start is not None:
            self.on_start()
        try:
            async for frame in live.frames(stop):
                monitor.process(frame)
                detector, inventory = monitor.detector, monitor.inventory
                if detector.alerts or inventory.changes or monitor.transactions or monitor.ua_messages:
                    events = self._hand_over(True)
                    if events:
                        await emit(events)
                if frame.number % _CHUNK == 0:
                    self.kernel_counters()
                if self.max_frames is not None and frame.number >= self.max_frames:
                    break
        finally:
            self.kernel_counters()
            live.close()  # reads the kernel's counts a last time
            self.kernel_received, self.kernel_dropped = live.counters.received, live.counters.dropped
            self.live = None
            monitor.finish()
            events = self._hand_over(True)
            if events:
                await emit(events)

    # --- what /health and /metrics read ------------------------------------------------------------

    def kernel_counters(self) -> tuple[int, int]:
        """``(packets passed the filter, packets dropped)`` since the capture started."""
        live = self.live
        if live is not None and live.sock.fileno() >= 0:
            counters = live.statistics()
            if counters.dropped > self.kernel_dropped:
                self.last_drop_ts = self.clock()
            self.kernel_received, self.kernel_dropped = counters.received, counters.dropped
        return self.kernel_received, self.kernel_dropped

    @property
    def healthy(self) -> bool:
        if self.error:
            return False
        if self.file is not None:
            return self.finished
        self.kernel_counters()
        recent_drops = self.last_drop_ts and self.clock() - self.last_drop_ts < DROP_WINDOW
        return self.live is not None and not recent_drops

    def health(self) -> dict[str, object]:
        received, dropped = self.kernel_counters()
        stats = self.monitor.stats
        report: dict[str, object] = {
            "input": f"interface {self.options.interface}" if self.file is None else f"file {self.file}",
            "capturing": self.live is not None,
            "frames": stats.frames,
            "modbus_messages": stats.modbus_messages,
            "opcua_messages": stats.opcua_messages,
            "alerts": self.alerts,
            "assets": len(self.monitor.inventory.assets),
            "tcp_conflicts": stats.tcp_conflicts,
        }
        if self.file is None:
            report.update(
                kernel_received=received,
                kernel_dropped=dropped,
                last_drop=self.last_drop_ts or None,
            )
            if self.last_drop_ts and self.clock() - self.last_drop_ts < DROP_WINDOW:
                report["problem"] = (
                    f"the kernel dropped {dropped} packets (socket buffer full): the analysis missed them; "
                    "raise receive_buffer"
                )
        else:
            report["finished"] = self.finished
            report["file_problems"] = list(self.capture_stats.problems)
        if self.warnings:
            report["warnings"] = list(self.warnings)
        if self.error:
            report["error"] = self.error
        return report


def _fast(monitor: Monitor, path: Path, stats: CaptureStats, analyse: Callable[..., bool]) -> bool:
    """The bulk path for Ethernet pcap and pcapng files; False if it does not apply."""
    try:
        if path.stat().st_size > FAST_PATH_MAX_BYTES:
            return False
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
            return bool(analyse(monitor, view, stats, name=str(path)))
    except (OSError, ValueError):
        return False  # empty or unreadable: the per-frame reader gives the precise reason


def build_policy(
    contract: Contract | None,
    allow_masters: Sequence[str],
    baseline: Path | None,
    modbus_ports: frozenset[int],
    opcua_ports: frozenset[int],
) -> Policy | None:
    """The allow-list: the contract's devices, listed masters, a baseline capture; None if none is given.
    Raises :class:`otseam.monitor.allowlist.PolicyError` or :class:`CaptureError` (a bad baseline)."""
    if contract is None and not allow_masters and baseline is None:
        return None
    policy = Policy()
    if contract is not None:
        policy.add_contract(contract)
    if allow_masters:
        policy.add_masters(allow_masters)
    if baseline is not None:
        policy.add_baseline(learn_baseline(baseline, modbus_ports, opcua_ports))
    return policy


class CaptureCollector(Collector):
    """The source's counters, read when Prometheus asks."""

    def __init__(self, source: CaptureSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        source = self.source
        labels = [source.id]
        received, dropped = source.kernel_counters()
        for name, documentation, value in (
            ("seam_capture_frames", "Frames the capture source analysed", source.monitor.stats.frames),
            ("seam_capture_alerts", "Alerts the capture source raised", source.alerts),
            ("seam_capture_kernel_packets", "Packets that passed the kernel's capture filter", received),
            ("seam_capture_kernel_drops", "Packets the kernel dropped: the capture socket's buffer was full", dropped),
        ):
            counter = CounterMetricFamily(name, documentation, labels=["source"])
            counter.add_metric(labels, value)
            yield counter
        up = GaugeMetricFamily("seam_capture_up", "1 while the capture source works without drops", labels=["source"])
        up.add_metric(labels, 1.0 if source.healthy else 0.0)
        yield up
