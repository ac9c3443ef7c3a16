"""Placement rules (NODE-*): which machine runs what, and what each machine may reach.

A node sits in one zone. What runs on it inherits that zone's place in the Purdue model: data leaves a
node only through conduits that start in its zone, arrives only through conduits that end there, and
only nodes inside OT (level 3 or below) talk to PLCs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from otseam.contract.loader import LoadedContract
from otseam.contract.models import Contract, Device, Direction, SinkSpec, SourceSpec
from otseam.contract.rules.registry import Hit, Severity, rule
from otseam.contract.rules.topology import is_ot

#: Plugins that end a one-way conduit: the sender on the OT side, the receiver on the other.
ONE_WAY_SENDERS = frozenset({"diode_send"})
ONE_WAY_RECEIVERS = frozenset({"diode_receive"})


def _node_zone_level(contract: Contract, node_id: str) -> float | None:
    node = contract.node(node_id)
    zone = contract.zone(node.zone) if node else None
    return zone.level if zone else None


@rule(
    "NODE-000",
    Severity.INFO,
    "The contract places its parts on nodes",
    "add a 'nodes:' section (one entry per machine running Seam) and 'node:' on devices, sources and sinks; "
    "until then the contract runs as one node",
)
def contract_has_nodes(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    if not contract.nodes and (contract.devices or contract.sinks or contract.sources):
        yield Hit((), "the contract declares no nodes: it runs as a single node (deprecated form)")


@rule(
    "NODE-001",
    Severity.ERROR,
    "A node sits in one declared zone, and node ids are unique",
    "set the node's 'zone' to a zone declared under 'zones:'",
)
def node_in_zone(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    seen: set[str] = set()
    for i, node in enumerate(contract.nodes):
        if node.id in seen:
            yield Hit(("nodes", i, "id"), f"node '{node.id}' is declared twice", "give each node its own id")
        seen.add(node.id)
        if contract.zone(node.zone) is None:
            yield Hit(("nodes", i, "zone"), f"node '{node.id}' is in zone '{node.zone}', which is not declared")


@rule(
    "NODE-002",
    Severity.ERROR,
    "Every device, source and sink runs on a declared node",
    "add 'node:' naming one of the nodes under 'nodes:' (it may be left out only when there is one node)",
)
def placed_on_a_node(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    ids = [n.id for n in contract.nodes]
    placed: list[tuple[str, Sequence[Device | SourceSpec | SinkSpec]]] = [
        ("devices", contract.devices),
        ("sources", contract.sources),
        ("sinks", contract.sinks),
    ]
    for section, items in placed:
        kind = section[:-1]
        for i, item in enumerate(items):
            if item.node is not None:
                if item.node not in ids:
                    known = ", ".join(ids) if ids else "none are declared"
                    yield Hit(
                        (section, i, "node"),
                        f"{kind} '{item.id}' runs on node '{item.node}', which is not declared (nodes: {known})",
                    )
            elif len(ids) > 1:
                yield Hit((section, i), f"{kind} '{item.id}' does not say which of the nodes {', '.join(ids)} runs it")


@rule(
    "NODE-003",
    Severity.ERROR,
    "A sink's conduit leaves its node's zone; a source's conduit enters it",
    "place the component on a node in the conduit's zone, or name the conduit that starts (sink) or ends "
    "(source) in the node's zone",
)
def conduits_at_the_node(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    if not contract.nodes:
        return
    for i, sink in enumerate(contract.sinks):
        conduit = contract.conduit(sink.conduit)
        node = contract.node(contract.node_of(sink))
        if conduit is None or node is None:
            continue
        leaves = conduit.from_zone == node.zone or (
            conduit.direction == Direction.TWO_WAY and conduit.to_zone == node.zone
        )
        if not leaves:
            yield Hit(
                ("sinks", i, "conduit"),
                f"sink '{sink.id}' runs on node '{node.id}' in zone '{node.zone}', but conduit '{conduit.id}' "
                f"leaves zone '{conduit.from_zone}'",
            )
    for i, source in enumerate(contract.sources):
        conduit = contract.conduit(source.conduit)
        node = contract.node(contract.node_of(source))
        if conduit is None:
            if source.conduit is not None:
                yield Hit(
                    ("sources", i, "conduit"),
                    f"source '{source.id}' names conduit '{source.conduit}', which is not declared",
                )
            continue
        if node is None:
            continue
        enters = conduit.to_zone == node.zone or (
            conduit.direction == Direction.TWO_WAY and conduit.from_zone == node.zone
        )
        if not enters:
            yield Hit(
                ("sources", i, "conduit"),
                f"source '{source.id}' runs on node '{node.id}' in zone '{node.zone}', but conduit '{conduit.id}' "
                f"arrives in zone '{conduit.to_zone}'",
            )


@rule(
    "NODE-004",
    Severity.ERROR,
    "A one-way conduit joins one sending node and one receiving node",
    "put exactly one diode_send sink (on a node in the 'from' zone) and one diode_receive source (on a node in "
    "the 'to' zone) on each one-way conduit",
)
def one_way_ends(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    if not contract.nodes:
        return
    for i, conduit in enumerate(contract.conduits):
        if conduit.direction != Direction.ONE_WAY:
            continue
        senders = {contract.node_of(s) for s in contract.sinks if s.conduit == conduit.id}
        receivers = {contract.node_of(s) for s in contract.sources if s.conduit == conduit.id}
        wrong_sinks = [s.id for s in contract.sinks if s.conduit == conduit.id and s.type not in ONE_WAY_SENDERS]
        wrong_sources = [s.id for s in contract.sources if s.conduit == conduit.id and s.type not in ONE_WAY_RECEIVERS]
        if wrong_sinks or wrong_sources:
            names = ", ".join(wrong_sinks + wrong_sources)
            yield Hit(
                ("conduits", i),
                f"one-way conduit '{conduit.id}' is used by {names}, which cannot work without a path back",
                "only diode_send (sending) and diode_receive (receiving) use a one-way conduit",
            )
        if not senders and not receivers:
            continue
        if len(senders) != 1 or len(receivers) != 1:
            yield Hit(
                ("conduits", i),
                f"one-way conduit '{conduit.id}' has {len(senders)} sending node(s) "
                f"({', '.join(sorted(senders)) or 'none'}) and {len(receivers)} receiving node(s) "
                f"({', '.join(sorted(receivers)) or 'none'}); it needs one of each",
            )
        elif senders == receivers:
            yield Hit(("conduits", i), f"one-way conduit '{conduit.id}' starts and ends on the same node")


@rule(
    "NODE-005",
    Severity.ERROR,
    "OT devices are polled only from nodes at Purdue level 3 or below",
    "place the device on a node inside OT (level 0-3); IT and the DMZ receive OT data through a conduit, "
    "never by polling a PLC",
)
def ot_devices_polled_from_ot(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    if not contract.nodes:
        return
    for i, device in enumerate(contract.devices):
        zone = contract.zone(device.zone)
        level = _node_zone_level(contract, contract.node_of(device))
        if zone is None or level is None:
            continue
        if is_ot(zone.level) and not is_ot(level):
            yield Hit(
                ("devices", i, "node"),
                f"device '{device.id}' in zone '{zone.id}' (level {zone.level:g}) is polled from node "
                f"'{contract.node_of(device)}' at level {level:g}",
            )


@rule(
    "NODE-006",
    Severity.ERROR,
    "Nothing placed on an IT or DMZ node reaches a device",
    "IT never talks to a PLC: serve IT from replicas (modbus_replica, opcua_server) fed through a conduit",
)
def it_nodes_reach_no_device(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    for i, device in enumerate(contract.devices):
        level = _node_zone_level(contract, contract.node_of(device))
        zone = contract.zone(device.zone)
        # A plant device polled from outside OT is NODE-005's finding; this one covers the rest.
        if level is not None and not is_ot(level) and not (zone is not None and is_ot(zone.level)):
            yield Hit(
                ("devices", i, "node"),
                f"device '{device.id}' is polled from node '{contract.node_of(device)}' outside OT (level {level:g})",
            )


@rule(
    "NODE-007",
    Severity.ERROR,
    "Nodes side by side never share a journal",
    "leave 'journal.path' out (each node then keeps its journal under its data_dir), or write '{node}' in it",
)
def journals_apart(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    if (
        len(contract.nodes) > 1
        and "path" in contract.journal.model_fields_set
        and "{node}" not in contract.journal.path
    ):
        yield Hit(("journal", "path"), f"journal.path '{contract.journal.path}' would be the same for every node")
    dirs: dict[str, str] = {}
    for i, node in enumerate(contract.nodes):
        data_dir = contract.data_dir(node.id)
        if data_dir in dirs:
            yield Hit(
                ("nodes", i, "data_dir"),
                f"node '{node.id}' keeps its data in '{data_dir}', like node '{dirs[data_dir]}'",
            )
        dirs.setdefault(data_dir, node.id)
