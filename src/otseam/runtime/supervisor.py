"""`seam run`: drivers and sources → pipeline → journal → sinks, one node of one contract, kept running.

* The contract is the same on every node; this process runs the devices, sources and sinks placed on
  its node (``--node``), with its data under that node's directory.

* Every driver, source and sink is its own supervised task (see components.py): one that fails is
  restarted with backoff and the others never notice. While a driver is down its points are re-sent as
  STALE so no consumer takes an old value for a live one.
* The journal is opened once and stays open for the life of the process. Everything a driver reads is
  appended before anything else happens to it, so stopping, restarting or reconfiguring any component
  loses nothing: sinks resume from their committed cursors.
* Reload (SIGHUP, or the contract file changing on disk): the new contract is loaded and checked in
  full before anything is touched. If anything is wrong the old contract keeps running and the problems
  are logged. Otherwise only what changed is stopped and started; unchanged drivers and sinks keep
  running, and points whose settings did not change keep their state (no re-reported values, no
  re-raised alarms).
* SIGTERM or SIGINT: drivers stop, their points are marked stale, sinks deliver what the journal holds
  (up to the drain timeout), cursors are committed, the journal is closed, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otseam.audit.log import AuditLog, AuditUnavailable, authority_dir
from otseam.compute.recover import checkpoint_data, last_checkpoint
from otseam.contract.loader import ContractError, LoadedContract, SourceMap, load
from otseam.contract.models import DEFAULT_NODE, Contract, Device, SinkSpec, SourceSpec
from otseam.core.plugins import (
    Driver,
    Emit,
    PluginContext,
    PluginNotFound,
    Sink,
    Source,
    create_driver,
    create_sink,
    create_source,
)
from otseam.core.records import Event, Record, Severity
from otseam.journal import Journal, JournalError, JournalMetrics
from otseam.pipeline import Pipeline, PipelineConfigError, compile_table
from otseam.runtime.components import Component, supervise
from otseam.runtime.deadletter import DeadLetters
from otseam.runtime.sinkrunner import RecordFilter, SinkStats, run_sink

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger("otseam.supervisor")


class StartupError(Exception):
    """The contract or the environment does not allow starting; the message says what to fix."""


@dataclass(slots=True)
class Plan:
    """A contract checked and turned into everything needed to run it, before anything is started."""

    loaded: LoadedContract
    #: The node this plan runs.
    node: str
    table: dict[str, Any]
    drivers: dict[str, tuple[Device, str]]
    sources: dict[str, tuple[SourceSpec, str]]
    sinks: dict[str, tuple[SinkSpec, str]]

    @property
    def contract(self) -> Contract:
        return self.loaded.contract


@dataclass(slots=True)
class Settings:
    drain_timeout: float = 30.0
    #: Seconds between the housekeeping ticks (heartbeats, file watch, status).
    tick: float = 1.0
    #: Watch the contract file's modification time (in addition to SIGHUP).
    watch: bool = True
    #: Records per delivery; None lets each sink choose (its ``max_batch``), else the runner's default.
    max_batch: int | None = None
    #: Asked last before every load and reload with (contract file, data directory, node): None admits the
    #: contract, a text refuses it and says why. ``seam run`` passes change control's check (governance);
    #: a module-level function, so that a reload planned in a child process carries it along.
    admit: Callable[[Path, Path, str], str | None] | None = None
    #: Sign an audit checkpoint once the oldest record no checkpoint covers is this old (seconds).
    audit_checkpoint_seconds: float = 300.0


@dataclass(slots=True)
class Counters:
    reloads_ok: int = 0
    reloads_failed: int = 0
    last_reload_error: str = ""
    driver_failures: dict[str, int] = field(default_factory=dict)


def check_contract(loaded: LoadedContract) -> list[str]:
    """Problems of severity "error" from the rules of ``seam check``, as printable lines."""
    from otseam.contract import rules

    problems = []
    for finding in rules.run(loaded):
        if str(finding.severity) == "error":
            text = f"{finding.file}:{finding.line}:{finding.column}: {finding.rule}: {finding.message}"
            if finding.hint:
                text += f"\n    fix: {finding.hint}"
            problems.append(text)
    return problems


def _plugin_problem(exc: Exception) -> str:
    """Plugins report bad settings as ValueError (or PluginNotFound); anything else is a plugin bug,
    named as such so the operator knows the contract may be fine."""
    if isinstance(exc, PluginNotFound | ValueError):
        return str(exc)
    log.debug("plugin failure details", exc_info=exc)
    return f"the plugin failed to load its settings ({type(exc).__name__}: {exc}); run with --verbose and report it"


def _sink_fingerprint(spec: SinkSpec, contract: Contract) -> str:
    """A sink may build on the site path and on the metadata of the points it carries (a Sparkplug
    birth certificate lists them), so those are part of what restarts it on reload."""
    record_filter = RecordFilter(spec.points, spec.events)
    points = [
        (device.key(point), point.model_dump(mode="json"))
        for device in contract.devices
        for point in device.points
        if record_filter.wants_point(device.key(point))
    ]
    return json.dumps(
        [spec.model_dump(mode="json"), contract.site.model_dump(mode="json"), points], sort_keys=True, default=str
    )


def _lower_priority() -> None:
    """The reload's child process yields the CPU to the node (niceness +10; nothing if not allowed)."""
    with contextlib.suppress(OSError):
        os.nice(10)


def _prepare_in_child(contract_path: str, settings: Settings, node: str) -> Plan:
    """Runs in the reload's child process: the checked plan, without what is not needed to run it or is
    cheaper to rebuild than to unpickle (the parser's tree, the positions, the compiled point table).

    The parent unpickles the plan in one call that holds the interpreter lock: for 5,000 points the
    whole plan took 125 ms, the positions and the table 64 and 91 of them; compiling the table again
    takes about 15 ms."""
    plan = Supervisor(contract_path, settings, node=node).prepare()
    plan.loaded.raw = None
    plan.loaded.source = SourceMap(plan.loaded.source.file)
    plan.table = {}
    return plan


def resolve_node(contract: Contract, requested: str | None) -> str:
    """The node this process runs: the one asked for, else the only one. Raises StartupError."""
    ids = [n.id for n in contract.nodes]
    if not ids:
        if requested not in (None, DEFAULT_NODE):
            raise StartupError(
                f"--node {requested}: the contract declares no nodes (add a 'nodes:' section, or leave out --node)"
            )
        return DEFAULT_NODE
    if requested is None:
        if len(ids) == 1:
            return ids[0]
        raise StartupError(f"the contract declares the nodes {', '.join(ids)}: say which one this is with --node ID")
    if requested not in ids:
        import difflib

        close = difflib.get_close_matches(requested, ids, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise StartupError(f"--node {requested}: no such node in the contract{hint}; its nodes are {', '.join(ids)}")
    return requested


def _source_fingerprint(spec: SourceSpec, contract: Contract) -> str:
    """A source may build on the site path and the devices it replicates or watches."""
    return json.dumps(
        [spec.model_dump(mode="json"), contract.site.model_dump(mode="json")], sort_keys=True, default=str
    )


class Rates:
    """Points per second from a counter, over the interval since the previous reading."""

    def __init__(self) -> None:
        self._last: tuple[float, int] | None = None
        self.value = 0.0

    def update(self, count: int, now: float) -> float:
        if self._last is not None and now > self._last[0]:
            self.value = (count - self._last[1]) / (now - self._last[0])
        self._last = (now, count)
        return self.value


class Supervisor:
    def __init__(
        self,
        contract_path: str | os.PathLike[str],
        settings: Settings | None = None,
        node: str | None = None,
        registry: CollectorRegistry | None = None,
        fixed: LoadedContract | None = None,
    ) -> None:
        """``fixed``: a contract built in memory (a shortcut such as ``seam diode receive`` builds one
        from its flags) instead of the file; it is not checked against the rules (it is no signed
        interface, only the parts the operator named) and never reloaded."""
        self.contract_path = Path(contract_path)
        self.fixed = fixed
        self.settings = settings or Settings()
        #: The node asked for on the command line (None: the contract's only node).
        self.requested_node = node
        self.node = node or DEFAULT_NODE
        #: The node's metrics registry, handed to plugins that export metrics of their own.
        self.registry = registry
        self.started_ts = time.time()
        self.state = "starting"
        self.plan: Plan | None = None
        self.journal: Journal | None = None
        #: The node's audit log, for its time-based checkpoints (every part that records opens its own).
        self.audit: AuditLog | None = None
        self.pipeline: Pipeline | None = None
        self.data_dir = Path(".")
        self.components: dict[str, Component] = {}
        self.sink_stats: dict[str, SinkStats] = {}
        self.counters = Counters()
        self._stop_requested = asyncio.Event()
        self._reload_requested = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._watched: tuple[int, int] | None = None
        self._pending_stat: tuple[int, int] | None = None
        self._journal_metrics: JournalMetrics | None = None
        self._journal_metrics_ts = 0.0
        self.on_tick: list[Callable[[], None]] = []
        #: Samples read per second, over the last tick.
        self.points_rate = Rates()

    # --- planning: everything that can fail, before anything changes -------------------------------

    def prepare(self) -> Plan:
        """Load, check and compile the contract, and instantiate every plugin of this node once to
        validate its settings. Raises :class:`StartupError` with every problem found.

        Blocking (file reads, YAML, every plugin's validation): a running node calls it off the event
        loop (see :meth:`reload`) so that polling and /health never wait for it.
        """
        if self.fixed is not None:
            loaded = self.fixed
        else:
            try:
                loaded = load(self.contract_path, node=self.requested_node)
            except ContractError as exc:
                raise StartupError(str(exc)) from None
        node = resolve_node(loaded.contract, self.requested_node)
        problems = [] if self.fixed is not None else check_contract(loaded)
        if self.journal is None:
            self.node = node
            self.data_dir = self._resolve(loaded.contract.data_dir(node))
        elif node != self.node:
            raise StartupError(f"this process runs node {self.node}; the contract now makes it {node}")
        placement = loaded.contract.placement(node)
        table: dict[str, Any] = {}
        try:
            table = compile_table(loaded.contract, {d.id for d in placement.devices})
        except PipelineConfigError as exc:
            problems.extend(str(exc).splitlines())
        context = self._context(loaded.contract, validating=True)
        drivers: dict[str, tuple[Device, str]] = {}
        for device in placement.devices:
            try:
                create_driver(device, context)
            except Exception as exc:
                problems.append(f"device {device.id}: {_plugin_problem(exc)}")
            drivers[device.id] = (device, device.model_dump_json())
        sources: dict[str, tuple[SourceSpec, str]] = {}
        for source_spec in placement.sources:
            try:
                create_source(source_spec, context)
            except Exception as exc:
                problems.append(f"source {source_spec.id}: {_plugin_problem(exc)}")
            sources[source_spec.id] = (source_spec, _source_fingerprint(source_spec, loaded.contract))
        sinks: dict[str, tuple[SinkSpec, str]] = {}
        for spec in placement.sinks:
            try:
                create_sink(spec, context)
            except Exception as exc:
                problems.append(f"sink {spec.id}: {_plugin_problem(exc)}")
            sinks[spec.id] = (spec, _sink_fingerprint(spec, loaded.contract))
        if problems:
            raise StartupError("\n".join(problems))
        if self.fixed is None:
            self._governed(loaded.contract, node)
        return Plan(loaded, node, table, drivers, sources, sinks)

    def _governed(self, contract: Contract, node: str) -> None:
        """Change control's word on this contract file (Settings.admit): with governance on, only the
        contract in force or a bundle its quorum signed may load; otherwise StartupError, and a running
        node keeps its contract. Last in :meth:`prepare`, so a bundle becomes the contract in force only
        when everything else passed."""
        if self.settings.admit is None:
            return
        refused = self.settings.admit(self.contract_path, self._resolve(contract.data_dir(node)), node)
        if refused:
            raise StartupError(refused)

    async def _prepare_aside(self) -> Plan:
        """:meth:`prepare` in a child process, for a reload.

        Loading a large contract is seconds of CPU (the YAML parser is pure Python) and leaves a large
        tree of garbage behind; in a thread of this process it would still hold the interpreter lock
        for long stretches and trigger full garbage collections on the event loop's time, and polling
        and /health would stall (measured by bench/bench_reload.py). A child process does the work; only
        the finished plan comes back.
        """
        loop = asyncio.get_running_loop()
        # At a lower priority: on a small edge box the planner must never take the CPU from the running
        # node's polling and /health (measured by bench/bench_reload.py).
        pool = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_lower_priority
        )
        try:
            plan = await loop.run_in_executor(
                pool, _prepare_in_child, str(self.contract_path), self.settings, self.requested_node or self.node
            )
            # Checked in the child already; compiled again here (cheaper than shipping it).
            plan.table = compile_table(plan.contract, set(plan.drivers))
            return plan
        except (BrokenProcessPool, OSError) as exc:
            log.warning("could not plan the reload in a child process (%s); planning it here", exc)
            return await asyncio.to_thread(self.prepare)
        finally:
            pool.shutdown(wait=False)

    def _context(self, contract: Contract, *, validating: bool = False) -> PluginContext:
        return PluginContext(
            contract=contract,
            data_dir=str(self.data_dir),
            node=self.node,
            journal=None if validating else self.journal,
            metrics=self.registry,
            contract_path=str(self.contract_path),
        )

    def _resolve(self, path_text: str) -> Path:
        path = Path(path_text)
        # Relative to the contract file, not to wherever the service manager started us.
        return path if path.is_absolute() else (self.contract_path.parent / path).resolve()

    def _journal_path(self, contract: Contract) -> Path:
        return self._resolve(contract.journal_path(self.node))

    # --- running ----------------------------------------------------------------------------------

    async def start(self) -> None:
        plan = self.prepare()
        journal_path = self._journal_path(plan.contract)
        try:
            self.journal = Journal.from_config(plan.contract.journal.model_copy(update={"path": str(journal_path)}))
        except JournalError as exc:
            raise StartupError(f"journal: {exc}") from None
        self.audit = AuditLog(
            authority_dir(self.data_dir),
            node=self.node,
            journal=self.journal,
            checkpoint_seconds=self.settings.audit_checkpoint_seconds,
        )
        self.pipeline = Pipeline(plan.table)
        self._recover_compute_state()
        self.plan = plan
        self._watched = self._stat()
        for device, fingerprint in plan.drivers.values():
            self._start_driver(device, fingerprint, plan.contract)
        for source_spec, fingerprint in plan.sources.values():
            self._start_source(source_spec, fingerprint, plan.contract)
        for spec, fingerprint in plan.sinks.values():
            self._start_sink(spec, fingerprint, plan.contract)
        self.state = "running"
        log.info(
            "running %s, node %s: %d devices, %d points, %d sources, %d sinks; journal %s (id %s)",
            self.contract_path,
            plan.node,
            len(plan.drivers),
            len(plan.table),
            len(plan.sources),
            len(plan.sinks),
            journal_path,
            self.journal.source,
        )

    def _recover_compute_state(self) -> None:
        """Counters, windows and raised conditions of computed points continue from the journal's last
        checkpoint (docs/compute.md)."""
        assert self.pipeline is not None and self.journal is not None
        if not self.pipeline.compute.runners:
            return
        event = last_checkpoint(self.journal.directory)
        if event is None:
            log.info("no computed-point state in the journal: counters and windows start from zero")
            return
        restored = self.pipeline.compute.restore(checkpoint_data(event))
        log.info("computed-point state of %d point(s) recovered from the checkpoint of %s", len(restored), event.ts)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)

    def request_stop(self) -> None:
        if self._stop_requested.is_set():
            # A second signal while draining: the person means it. Skip the drain.
            log.warning("second stop request: stopping without waiting for sinks to drain")
            for component in self.components.values():
                if component.task is not None:
                    component.task.cancel()
            return
        log.info("stop requested: stopping drivers, draining sinks (up to %gs)", self.settings.drain_timeout)
        self._stop_requested.set()

    def request_reload(self) -> None:
        if self.fixed is not None:
            log.info("SIGHUP: nothing to reload (this node was built from command-line flags)")
            return
        log.info("reload requested (SIGHUP)")
        self._reload_requested.set()

    async def run(self) -> None:
        """Until stopped: heartbeats, reloads, file watch. Returns after a clean shutdown."""
        if self.plan is None:
            await self.start()
        try:
            while not self._stop_requested.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.tick):
                        await self._wake()
                if self._stop_requested.is_set():
                    break
                self._housekeeping()
                if self._reload_requested.is_set():
                    self._reload_requested.clear()
                    await self._reload_guarded()
                elif self.settings.watch and self.fixed is None and self._contract_changed():
                    log.info("%s changed on disk: reloading", self.contract_path)
                    await self._reload_guarded()
        finally:
            await self.shutdown()

    async def _reload_guarded(self) -> None:
        try:
            await self.reload()
        except Exception:
            # A bug in a reload must not take the running plant interface down with it.
            log.exception("reload failed unexpectedly; the components shown in /health are what runs now")

    async def _wake(self) -> None:
        stop = asyncio.ensure_future(self._stop_requested.wait())
        reload = asyncio.ensure_future(self._reload_requested.wait())
        try:
            await asyncio.wait({stop, reload}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            reload.cancel()

    def _housekeeping(self) -> None:
        assert self.pipeline is not None
        self.points_rate.update(self.pipeline.samples_in, time.monotonic())
        beats = self.pipeline.tick()
        if beats:
            self._append(beats)
        if self.audit is not None:
            # A quiet audit log still gets its signed checkpoint (AuditLog logs the failure itself).
            with contextlib.suppress(AuditUnavailable):
                self.audit.checkpoint_if_due()
        for callback in self.on_tick:
            try:
                callback()
            except Exception:
                log.exception("status update failed")

    def _append(self, records: Sequence[Record]) -> None:
        assert self.journal is not None
        if records and not self.journal.closed:
            self.journal.append(records)

    # --- the file watch ---------------------------------------------------------------------------

    def _stat(self) -> tuple[int, int] | None:
        try:
            stat = self.contract_path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def _contract_changed(self) -> bool:
        """True once the file changed and then stayed the same for one tick: an editor that writes the
        file in several steps must not get its half-written version loaded."""
        current = self._stat()
        if current is None or current == self._watched:
            self._pending_stat = None
            return False
        if current != self._pending_stat:
            self._pending_stat = current
            return False
        self._pending_stat = None
        return True

    # --- drivers ----------------------------------------------------------------------------------

    def _start_driver(self, device: Device, fingerprint: str, contract: Contract) -> None:
        previous = self.components.get(f"driver:{device.id}")
        component = Component("driver", device.id, fingerprint)
        if previous is not None:
            component.restarts, component.errors = previous.restarts, previous.errors
        context = self._context(contract)

        async def body() -> None:
            driver: Driver = create_driver(device, context)
            component.plugin = driver
            await driver.run(self._emitter(device.id))

        component.task = asyncio.create_task(
            supervise(component, body, on_failure=self._driver_failed), name=component.name
        )
        self.components[component.name] = component

    def _emitter(self, device_id: str) -> Emit:
        pipeline = self.pipeline
        journal = self.journal
        assert pipeline is not None and journal is not None

        async def emit(records: Sequence[Record]) -> None:
            out = pipeline.process(records)
            if out:
                journal.append(out)
            # Appending is synchronous; yielding here keeps one fast driver from starving the others.
            await asyncio.sleep(0)

        return emit

    def _driver_failed(self, component: Component, exc: Exception) -> None:
        assert self.pipeline is not None
        self.counters.driver_failures[component.id] = self.counters.driver_failures.get(component.id, 0) + 1
        records: list[Record] = list(self.pipeline.mark_stale(component.id))
        records.append(
            Event(
                time.time(),
                "device.state",
                component.id,
                Severity.MEDIUM,
                f"driver for {component.id} failed and is being restarted: {component.last_error}",
                {"device": component.id, "state": "driver-failed", "error": component.last_error},
            )
        )
        self._append(records)

    # --- sources ----------------------------------------------------------------------------------

    def _start_source(self, spec: SourceSpec, fingerprint: str, contract: Contract) -> None:
        previous = self.components.get(f"source:{spec.id}")
        component = Component("source", spec.id, fingerprint)
        if previous is not None:
            component.restarts, component.errors = previous.restarts, previous.errors
        context = self._context(contract)
        journal = self.journal
        assert journal is not None

        async def emit(records: Sequence[Record]) -> None:
            if records and not journal.closed:
                journal.append(records)
            await asyncio.sleep(0)

        async def body() -> None:
            source: Source = create_source(spec, context)
            component.plugin = source
            await source.run(emit)

        component.task = asyncio.create_task(supervise(component, body), name=component.name)
        self.components[component.name] = component

    # --- sinks ------------------------------------------------------------------------------------

    def _start_sink(self, spec: SinkSpec, fingerprint: str, contract: Contract) -> None:
        previous = self.components.get(f"sink:{spec.id}")
        component = Component("sink", spec.id, fingerprint)
        if previous is not None:
            component.restarts, component.errors = previous.restarts, previous.errors
        stats = self.sink_stats.setdefault(spec.id, SinkStats(spec.id))
        record_filter = RecordFilter(spec.points, spec.events)
        context = self._context(contract)
        journal = self.journal
        assert journal is not None

        async def body() -> None:
            sink: Sink = create_sink(spec, context)
            component.plugin = sink
            reader = journal.reader(spec.id)
            try:
                await run_sink(
                    sink,
                    reader,
                    stats=stats,
                    record_filter=record_filter,
                    stop=component.stop,
                    max_records=self.settings.max_batch,
                    dead_letters=DeadLetters(spec.id, self.data_dir, self._append),
                )
            finally:
                reader.close()

        component.task = asyncio.create_task(supervise(component, body), name=component.name)
        self.components[component.name] = component

    # --- stopping components ----------------------------------------------------------------------

    async def _stop(self, names: Sequence[str], *, drain: bool, within: float) -> None:
        """Stop components; sinks asked to drain get ``within`` seconds before they are cancelled."""
        tasks = []
        for name in names:
            component = self.components[name]
            component.stop.set()
            if component.task is None:
                continue
            if component.kind != "sink" or not drain:
                component.task.cancel()
            tasks.append(component.task)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=within)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=15.0)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("%s ended with an error: %s", task.get_name(), task.exception())

    # --- reload -----------------------------------------------------------------------------------

    async def reload(self) -> bool:
        """Apply the contract file as it is now; keep the running one if it has any problem."""
        async with self._reload_lock:
            self._watched = self._stat()
            assert self.plan is not None and self.pipeline is not None and self.journal is not None
            try:
                plan = await self._prepare_aside()
            except StartupError as exc:
                self.counters.reloads_failed += 1
                self.counters.last_reload_error = str(exc)
                log.error("reload refused, still running the previous contract:\n%s", exc)
                return False
            old = self.plan
            if plan.contract.journal != old.contract.journal:
                log.warning("the journal settings changed: they apply at the next restart of seam run")

            removed_devices = [d for d in old.drivers if d not in plan.drivers]
            changed_devices = [d for d in old.drivers if d in plan.drivers and plan.drivers[d][1] != old.drivers[d][1]]
            added_devices = [d for d in plan.drivers if d not in old.drivers]
            removed_sinks = [s for s in old.sinks if s not in plan.sinks]
            changed_sinks = [s for s in old.sinks if s in plan.sinks and plan.sinks[s][1] != old.sinks[s][1]]
            added_sinks = [s for s in plan.sinks if s not in old.sinks]
            removed_sources = [s for s in old.sources if s not in plan.sources]
            changed_sources = [s for s in old.sources if s in plan.sources and plan.sources[s][1] != old.sources[s][1]]
            added_sources = [s for s in plan.sources if s not in old.sources]

            await self._stop([f"driver:{d}" for d in removed_devices + changed_devices], drain=False, within=10.0)
            for device_id in removed_devices:
                self._append(self.pipeline.mark_stale(device_id))
                del self.components[f"driver:{device_id}"]
            await self._stop([f"source:{s}" for s in removed_sources + changed_sources], drain=False, within=10.0)
            for source_id in removed_sources:
                del self.components[f"source:{source_id}"]
            # Sinks stop without draining: their cursor keeps the rest for the new instance.
            await self._stop([f"sink:{s}" for s in removed_sinks + changed_sinks], drain=False, within=10.0)
            for sink_id in removed_sinks:
                del self.components[f"sink:{sink_id}"]
                self.sink_stats.pop(sink_id, None)
                # A sink taken out of the contract must not hold the journal's depth up forever.
                self.journal.remove_cursor(sink_id)

            self.pipeline.reconfigure(plan.table)
            self.plan = plan
            for device_id in changed_devices + added_devices:
                device, fingerprint = plan.drivers[device_id]
                self._start_driver(device, fingerprint, plan.contract)
            for source_id in changed_sources + added_sources:
                source_spec, fingerprint = plan.sources[source_id]
                self._start_source(source_spec, fingerprint, plan.contract)
            for sink_id in changed_sinks + added_sinks:
                spec, fingerprint = plan.sinks[sink_id]
                self._start_sink(spec, fingerprint, plan.contract)
            self.counters.reloads_ok += 1
            self.counters.last_reload_error = ""
            summary = {
                "devices added": added_devices,
                "devices changed": changed_devices,
                "devices removed": removed_devices,
                "sources added": added_sources,
                "sources changed": changed_sources,
                "sources removed": removed_sources,
                "sinks added": added_sinks,
                "sinks changed": changed_sinks,
                "sinks removed": removed_sinks,
            }
            described = "; ".join(f"{k}: {', '.join(v)}" for k, v in summary.items() if v) or "nothing to restart"
            log.info("reloaded %s: %s", self.contract_path, described)
            self._append(
                [
                    Event(
                        time.time(),
                        "audit.contract",
                        "supervisor",
                        Severity.INFO,
                        f"contract reloaded: {described}",
                        {k.replace(" ", "_"): v for k, v in summary.items()},
                    )
                ]
            )
            return True

    # --- shutdown ---------------------------------------------------------------------------------

    async def shutdown(self) -> None:
        if self.state == "stopped":
            return
        self.state = "stopping"
        drivers = [n for n, c in self.components.items() if c.kind == "driver"]
        sources = [n for n, c in self.components.items() if c.kind == "source"]
        sinks = [n for n, c in self.components.items() if c.kind == "sink"]
        await self._stop(drivers + sources, drain=False, within=10.0)
        if self.pipeline is not None and self.journal is not None and not self.journal.closed:
            for name in drivers:
                self._append(self.pipeline.mark_stale(self.components[name].id))
            self._append(self.pipeline.checkpoint())
        started = time.monotonic()
        await self._stop(sinks, drain=True, within=self.settings.drain_timeout)
        undelivered = {s.sink_id: s for s in self.sink_stats.values()}
        if self.journal is not None:
            metrics = self.journal_metrics(fresh=True)
            behind = {c.name: c.depth for c in metrics.cursors if c.depth > 0 and c.name in undelivered}
            if behind:
                log.warning(
                    "stopped with records not yet delivered (kept in the journal for the next start): %s",
                    ", ".join(f"{k}: {v}" for k, v in behind.items()),
                )
            else:
                log.info("all sinks drained in %.1fs", time.monotonic() - started)
            self.journal.close()
        self.state = "stopped"
        log.info("stopped")

    # --- what the status, health and metrics views read ------------------------------------------

    def journal_metrics(self, fresh: bool = False) -> JournalMetrics:
        """Journal numbers, cached for a second: the status line, /health and /metrics all ask, and
        finding the age of the oldest undelivered record reads the journal."""
        assert self.journal is not None
        now = time.monotonic()
        stale = fresh or self._journal_metrics is None or now - self._journal_metrics_ts >= 1.0
        if stale and not self.journal.closed:
            self._journal_metrics = self.journal.metrics()
            self._journal_metrics_ts = now
        assert self._journal_metrics is not None
        return self._journal_metrics

    def problems(self) -> list[str]:
        """One line per component that is not working, naming it and since when: what /health and the
        status line show, so that nothing that is down is ever reported as up."""
        lines = []
        for _, component in sorted(self.components.items()):
            report = component.health().get("detail")
            detail = report if isinstance(report, dict) else {}
            if component.state != "running":
                stopped = component.last_error_ts or component.started_ts
                why = f": {component.last_error}" if component.last_error else ""
                lines.append(f"{component.kind} {component.id} {component.state} since {_when(stopped)}{why}")
            elif not component.working:
                said = detail.get("problems")
                listed = "; ".join(str(p) for p in said) if isinstance(said, list) and said else ""
                state = detail.get("device") or listed or detail.get("state") or "not working"
                changed = detail.get("since")
                when = f" since {_when(float(changed))}" if isinstance(changed, int | float) else ""
                error = detail.get("last_error") or detail.get("error")
                why = f": {error}" if error else ""
                what = "device" if component.kind == "driver" else component.kind
                lines.append(f"{what} {component.id} {state}{when}{why}")
        for sink_id, stats in sorted(self.sink_stats.items()):
            if stats.consecutive_failures > 0:
                when = f" since {_when(stats.failing_since)}" if stats.failing_since else ""
                lines.append(
                    f"sink {sink_id} failing{when} ({stats.consecutive_failures} attempts): {stats.last_error}"
                )
        return lines

    def health(self) -> dict[str, object]:
        components = {name: c.health() for name, c in sorted(self.components.items())}
        cursors = {}
        if self.journal is not None and not self.journal.closed:
            cursors = {c.name: c for c in self.journal_metrics().cursors}
        for name, entry in components.items():
            if name.startswith("sink:"):
                sink_id = name[5:]
                stats = self.sink_stats.get(sink_id)
                cursor = cursors.get(sink_id)
                entry["lag_records"] = cursor.depth if cursor else 0
                # The backlog's age: how old the oldest record this sink has not delivered is.
                entry["lag_seconds"] = round(cursor.oldest_unread_age or 0.0, 3) if cursor else 0.0
                if stats is not None:
                    entry["delivery_state"] = stats.state
                    entry["delivered_records"] = stats.delivered_records
                    entry["delivery_errors"] = stats.errors
                    entry["rejected_records"] = stats.rejected_records
                    if stats.last_error:
                        entry["last_delivery_error"] = stats.last_error
        degraded = any(not c.working for c in self.components.values()) or any(
            s.consecutive_failures > 0 for s in self.sink_stats.values()
        )
        status = self.state if self.state != "running" else ("degraded" if degraded else "ok")
        return {
            "status": status,
            "problems": self.problems(),
            "node": self.node,
            "contract": str(self.contract_path),
            "journal": self.journal.source if self.journal else None,
            "started": self.started_ts,
            "reloads": {
                "ok": self.counters.reloads_ok,
                "failed": self.counters.reloads_failed,
                "last_error": self.counters.last_reload_error or None,
            },
            "components": components,
        }


def _when(ts: float) -> str:
    """A wall-clock time as people and log tools read it: ISO 8601, UTC, to the second."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def run_until_stopped(
    supervisor: Supervisor, before: Callable[[Supervisor], Awaitable[None]] | None = None
) -> None:
    """Signal handlers, then the supervisor's main loop."""
    supervisor.install_signal_handlers()
    if before is not None:
        await before(supervisor)
    await supervisor.run()
