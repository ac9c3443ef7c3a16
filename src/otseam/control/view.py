"""What the control plane needs from the node it runs in, behind one small interface.

The REST API and the console never reach into the supervisor: they read a :class:`NodeView`. The
supervisor's adapter is :class:`SupervisorView`; tests and benchmarks run a real ``seam run`` behind it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from otseam.contract.models import Contract, SinkSpec
from otseam.core.records import Quality, Record, Value

if TYPE_CHECKING:
    from otseam.journal import Journal
    from otseam.runtime.supervisor import Supervisor


@dataclass(slots=True, frozen=True)
class LiveValue:
    point: str
    value: Value
    quality: Quality
    #: When the device produced the value.
    source_ts: float
    #: When Seam last reported (journalled) it.
    report_ts: float


class NodeView(Protocol):
    """The running node, as the control plane sees it."""

    @property
    def node_id(self) -> str: ...

    def contract(self) -> Contract: ...

    def contract_path(self) -> Path: ...

    def data_dir(self) -> Path: ...

    def health(self) -> Mapping[str, Any]: ...

    def live_values(self) -> list[LiveValue]:
        """The last reported value of every point of this node (points never read yet are left out)."""
        ...

    def journal(self) -> Journal | None: ...

    def append(self, records: Sequence[Record]) -> None:
        """Journal records (audit events, acknowledgements): they travel like every other event."""
        ...

    def delivered(self) -> dict[str, int]:
        """Records delivered so far by each sink of this node, by sink id."""
        ...


def data_dir_for(contract_path: Path, contract: Contract, node: str | None) -> Path:
    """The node's data directory (the same rule as ``seam run --node``), relative to the contract file.
    Raises ValueError with the reason when ``node`` is not one of the contract's nodes."""
    from otseam.runtime.supervisor import StartupError, resolve_node

    try:
        resolved = resolve_node(contract, node)
    except StartupError as exc:
        raise ValueError(str(exc)) from None
    path = Path(contract.data_dir(resolved))
    return path if path.is_absolute() else (contract_path.resolve().parent / path).resolve()


def historian_path(spec: SinkSpec, data_dir: Path) -> Path:
    """The database a historian sink writes (the same rule as the sink itself)."""
    option = spec.options.get("path")
    path = Path(option) if isinstance(option, str) and option else Path(f"{spec.id}.db")
    return path if path.is_absolute() else data_dir / path


class SupervisorView:
    """:class:`NodeView` over the supervisor of ``seam run``."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    @property
    def node_id(self) -> str:
        return self._supervisor.node

    def contract(self) -> Contract:
        plan = self._supervisor.plan
        if plan is None:
            raise RuntimeError("the node has not started")
        return plan.contract

    def contract_path(self) -> Path:
        return self._supervisor.contract_path

    def data_dir(self) -> Path:
        return self._supervisor.data_dir

    def health(self) -> Mapping[str, Any]:
        return self._supervisor.health()

    def live_values(self) -> list[LiveValue]:
        pipeline = self._supervisor.pipeline
        if pipeline is None:
            return []
        return [
            LiveValue(slot.key, slot.last_value, slot.last_quality, slot.last_source_ts, slot.last_report_ts)
            for slot in pipeline.table.values()
            if slot.reported
        ]

    def journal(self) -> Journal | None:
        return self._supervisor.journal

    def append(self, records: Sequence[Record]) -> None:
        journal = self._supervisor.journal
        if journal is not None and not journal.closed and records:
            journal.append(records)

    def delivered(self) -> dict[str, int]:
        return {sink_id: stats.delivered_records for sink_id, stats in self._supervisor.sink_stats.items()}
