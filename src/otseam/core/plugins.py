"""The three plugin interfaces, and how plugins are found by name.

A driver lives in ``otseam/drivers/<name>/``, a source in ``otseam/sources/<name>/`` and a sink in
``otseam/sinks/<name>/``. Each package exposes a module-level ``create(...)`` factory. The contract
names the plugin (``driver: modbus``, ``type: diode_receive``, ``type: historian``) and the runtime
imports that package: adding a protocol means adding a folder, never editing the core.

Data flows one way: drivers and sources → (pipeline) → journal → sinks. A driver's readings go through
the pipeline (scaling, deadband, alarms); a source's records are final already (samples another node
processed, monitor alerts) and go straight into the journal.
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from otseam.core.columns import SampleColumns
from otseam.core.extras import MissingExtra, extra_for
from otseam.core.records import Batch, Record

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from otseam.contract.models import Contract, Device, SinkSpec, SourceSpec

#: Where a driver hands over what it read. Awaiting it is the back-pressure: a driver must not read
#: faster than the pipeline and journal accept.
Emit = Callable[[Sequence[Record]], Awaitable[None]]


@runtime_checkable
class Driver(Protocol):
    """A southbound connection to one device.

    ``run`` never returns while the device is configured and never raises for a device fault: it
    reconnects with backoff, emits its points with a bad or stale quality while the device is away, and
    returns only when cancelled.
    """

    async def run(self, emit: Emit) -> None: ...


@runtime_checkable
class Source(Protocol):
    """An input that is not PLC polling: the IT end of a one-way conduit, passive capture, a Sparkplug
    host. Like a driver, ``run`` returns only when cancelled and never raises for a peer's fault; what
    it emits is appended to the node's journal as it is (not scaled again)."""

    async def run(self, emit: Emit) -> None: ...


@runtime_checkable
class Sink(Protocol):
    """A northbound consumer of the journal.

    ``deliver`` returns only when the batch is safely handed over (written, acknowledged); the caller
    then commits the sink's cursor. Raising means "not delivered": the same batch is offered again after
    a backoff, so ``deliver`` must be idempotent per ``(batch.source, offset)``. The one exception is
    :class:`RecordsRejected`: the rest of the batch was delivered, and the records it names never will
    be (the runner writes them to the node's dead-letter file instead of retrying them for ever).
    """

    async def start(self) -> None: ...

    async def deliver(self, batch: Batch) -> None: ...

    async def close(self) -> None: ...


class RecordsRejected(Exception):
    """Raised by ``Sink.deliver`` once everything else in the batch is delivered: these records (by journal
    offset) will never be accepted by this sink (a value its peer cannot represent, a name it refuses),
    so retrying them would only hold up everything behind them until retention deletes them."""

    def __init__(self, offsets: Sequence[int], reason: str) -> None:
        super().__init__(reason)
        self.offsets = list(offsets)
        self.reason = reason


@dataclass(slots=True)
class PluginContext:
    """What a plugin may need besides its own section of the contract.

    Built by the runtime for each plugin it creates. ``journal`` is None while a plan is only being
    checked (``seam check``, a reload being validated): plugins must not need it before they run.
    """

    contract: Contract
    #: This node's data directory (journal, historian, state), as an absolute path.
    data_dir: str
    #: The node this runtime runs (``DEFAULT_NODE`` for a contract without ``nodes:``).
    node: str = "default"
    #: Where a plugin appends events of its own (audit records, alerts, link gaps).
    journal: JournalWriter | None = None
    #: Wall-clock time in seconds since the epoch; tests inject their own.
    clock: Callable[[], float] = field(default=time.time)
    #: The node's Prometheus registry, for plugins that export metrics of their own.
    metrics: CollectorRegistry | None = None
    #: The contract file this node runs.
    contract_path: str = ""


def beside_contract(path: str, contract_path: str) -> str:
    """A file named in a plugin's options (a key, a certificate): relative paths are relative to the
    contract file, so that the same contract finds its files on every node wherever it is started."""
    if not contract_path or Path(path).is_absolute():
        return path
    return str(Path(contract_path).parent / path)


_NAME = re.compile(r"^[a-z][a-z0-9_]*\Z")


class PluginNotFound(LookupError):
    pass


def _load(kind: str, name: str) -> Any:
    module_name = name.replace("-", "_")
    if not _NAME.match(module_name):
        raise PluginNotFound(f"{kind} name {name!r} is not a valid plugin name")
    try:
        return importlib.import_module(f"otseam.{kind}s.{module_name}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith(f"otseam.{kind}s.{module_name}"):
            raise PluginNotFound(f"no {kind} named {name!r} (looked for otseam.{kind}s.{module_name})") from exc
        extra = extra_for(exc.name, prefer=module_name)
        if extra is not None:  # an optional part whose extra is not installed: say which one
            raise PluginNotFound(str(MissingExtra(f"the {name} {kind}", extra, exc.name))) from exc
        raise


def create_driver(device: Device, context: PluginContext) -> Driver:
    """Instantiate the driver the contract names for ``device``."""
    module = _load("driver", device.driver)
    try:
        driver: Driver = module.create(device, context)
    except MissingExtra as exc:
        raise PluginNotFound(str(exc)) from exc
    return driver


def create_source(spec: SourceSpec, context: PluginContext) -> Source:
    """Instantiate the source the contract names in ``spec.type``."""
    module = _load("source", spec.type)
    source: Source = module.create(spec, context)
    return source


def create_sink(spec: SinkSpec, context: PluginContext) -> Sink:
    """Instantiate the sink the contract names in ``spec.type``."""
    module = _load("sink", spec.type)
    try:
        sink: Sink = module.create(spec, context)
    except MissingExtra as exc:
        raise PluginNotFound(str(exc)) from exc
    return sink


# --- The journal, as the rest of the system sees it ---------------------------------------------------
# Implemented by otseam.journal.Journal. Drivers never see it (they emit into the pipeline); sinks never
# see it either (the core's sink runner reads a cursor and calls Sink.deliver, then commits).


def unknown_options(device_id: str, protocol: str, options: Mapping[str, Any], known: Set[str]) -> str | None:
    """The message for option keys a driver does not know, or None: every driver refuses them alike."""
    unknown = set(options) - known
    if not unknown:
        return None
    return (
        f"device {device_id}: unknown {protocol} option(s) {', '.join(sorted(unknown))}; "
        f"known options are {', '.join(sorted(known))}"
    )


@runtime_checkable
class JournalWriter(Protocol):
    #: A stable id of this journal (persisted with it): receivers deduplicate by (source, offset).
    source: str

    def append(self, records: Sequence[Record | SampleColumns]) -> int:
        """Append durably-enough records (see the journal's sync policy); returns the last offset given.
        A :class:`SampleColumns` is a run of samples already encoded, stored as it is."""
        ...


@runtime_checkable
class JournalReader(Protocol):
    """A named cursor. ``commit`` after delivery; after a restart reading resumes after the last commit."""

    name: str

    async def next_batch(self, max_records: int = 5000, max_wait: float = 1.0) -> Batch:
        """The next records after the committed position (empty if nothing arrives within ``max_wait`` seconds)."""
        ...

    def commit(self, offset: int) -> None:
        """Everything up to and including ``offset`` has been delivered."""
        ...
