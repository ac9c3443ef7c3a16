"""The two plugin interfaces, and how plugins are found by name.

A driver lives in ``otseam/drivers/<name>/`` and a sink in ``otseam/sinks/<name>/``. Each package
exposes a module-level ``create(...)`` factory. The contract names the plugin (``driver: modbus``,
``type: historian``) and the core imports ``otseam.drivers.modbus`` or ``otseam.sinks.historian``:
adding a protocol means adding a folder, never editing the core.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from otseam.core.columns import SampleColumns
from otseam.core.extras import MissingExtra, extra_for
from otseam.core.records import Batch, Record

if TYPE_CHECKING:
    from otseam.contract.models import Contract, Device, SinkSpec

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
class Sink(Protocol):
    """A northbound consumer of the journal.

    ``deliver`` returns only when the batch is safely handed over (written, acknowledged); the caller
    then commits the sink's cursor. Raising means "not delivered": the same batch is offered again after
    a backoff, so ``deliver`` must be idempotent per ``(batch.source, offset)``.
    """

    async def start(self) -> None: ...

    async def deliver(self, batch: Batch) -> None: ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class PluginContext:
    """What a plugin may need besides its own section of the contract."""

    contract: Contract
    data_dir: str
    #: Free-form extras the supervisor passes (metrics registry, journal, ...), by name.
    extras: dict[str, Any] = field(default_factory=dict)


_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


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
        extra = extra_for(exc.name)
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
