"""Shortcut commands (``seam diode receive``, ``seam host``, ``seam watch``) run the same plugins under
the same runtime as ``seam run``: they build a one-node contract in memory from their flags.

There is one wiring, not two: a shortcut gets supervision, restart with backoff, draining on stop,
/health and /metrics exactly as a node of a contract does. The contract a shortcut builds places the
devices of a contract it was given (for point metadata: a replica's register map, a historian's
point names) on a node of their own, so that nothing is ever polled from the shortcut's node.
"""

from __future__ import annotations

from pathlib import Path

from otseam.contract.loader import LoadedContract, SourceMap
from otseam.contract.models import Contract, Journal, Node, SinkSpec, Site, SourceSpec

#: The node a shortcut runs, and the one the given contract's devices are parked on (never run).
SHORTCUT_NODE = "shortcut"
PARKED_NODE = "elsewhere"


def shortcut_contract(
    name: str,
    journal: Path,
    *,
    base: Contract | None = None,
    sources: list[SourceSpec] | None = None,
    sinks: list[SinkSpec] | None = None,
) -> LoadedContract:
    """A contract whose node ``shortcut`` runs ``sources`` and ``sinks`` on the journal at ``journal``,
    keeping its data beside it (the journal's parent directory)."""
    journal = journal.resolve()
    site = base.site if base is not None else Site(enterprise="seam", site=name.replace(" ", "-"))
    devices = [d.model_copy(update={"node": PARKED_NODE}) for d in base.devices] if base is not None else []
    contract = Contract(
        site=site,
        people=base.people if base is not None else [],
        zones=base.zones if base is not None else [],
        nodes=[
            Node(id=SHORTCUT_NODE, zone="shortcut", data_dir=str(journal.parent)),
            Node(id=PARKED_NODE, zone="shortcut", description="where the given contract's devices are polled"),
        ],
        devices=devices,
        sources=[s.model_copy(update={"node": SHORTCUT_NODE}) for s in sources or []],
        sinks=[s.model_copy(update={"node": SHORTCUT_NODE}) for s in sinks or []],
        journal=Journal(path=str(journal)),
    )
    label = f"<seam {name}>"
    return LoadedContract(contract, SourceMap(label), Path(label), None)
