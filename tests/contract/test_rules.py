"""Every rule of `seam check`, each with a contract that breaks it and contracts that keep it.

The example contract from `seam init` keeps every rule (test_example_is_clean); each case below changes
it in one way and expects the named rule to fire at the right place, and each passing case changes it
in a way the rule must accept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from otseam.contract.rules import RULES, Severity
from tests.contract.helpers import by_id, example, findings, load_data, rule_ids

Mutation = Callable[[dict[str, Any]], None]


def _conduit(d: dict[str, Any], cid: str) -> dict[str, Any]:
    return by_id(d["conduits"], cid)


def _device(d: dict[str, Any], did: str) -> dict[str, Any]:
    return by_id(d["devices"], did)


def _point(d: dict[str, Any], did: str, pid: str) -> dict[str, Any]:
    return by_id(_device(d, did)["points"], pid)


def _command(d: dict[str, Any]) -> dict[str, Any]:
    return d["commands"][0]


def _add_conduit(d: dict[str, Any], cid: str, src: str, dst: str, direction: str = "one-way", **extra: Any) -> None:
    d["conduits"].append({"id": cid, "from": src, "to": dst, "direction": direction, "owner": "seam-lead", **extra})


def _isolated_lab(d: dict[str, Any]) -> None:
    """A zone no conduit connects, with a device whose data a sink tries to carry out via the diode."""
    d["zones"].append({"id": "lab", "level": 3, "sl": 2, "owner": "ot-lead"})
    lab = dict(_device(d, "filter-server"), id="lab-server", zone="lab")
    d["devices"].append(lab)
    d["sinks"].insert(
        2,
        {
            "id": "lab-out",
            "type": "diode_send",
            "node": "ot-edge",
            "conduit": "diode-out",
            "points": ["lab-server/*"],
            "options": {"target": "192.0.2.10:4000", "key_file": "seam-diode.key"},
        },
    )


def _without_nodes(d: dict[str, Any]) -> None:
    """The contract as it was before nodes: one machine, no sources, no IT-side sinks."""
    d.pop("nodes")
    d.pop("sources")
    d["sinks"] = [s for s in d["sinks"] if s["node"] == "ot-edge"]
    for item in (*d["devices"], *d["sinks"]):
        item.pop("node")


def _one_node(d: dict[str, Any]) -> None:
    """A single node: the key 'node' may be left out everywhere."""
    _without_nodes(d)
    d["nodes"] = [{"id": "edge", "zone": "supervisory"}]


def _set(path: str, value: Any) -> Mutation:
    """Set a value by a dotted path of ids and keys, e.g. 'conduits.diode-out.direction'."""

    def apply(d: dict[str, Any]) -> None:
        node: Any = d
        parts = path.split(".")
        for part in parts[:-1]:
            node = by_id(node, part) if isinstance(node, list) else node[part]
        if value is _DELETE:
            del node[parts[-1]]
        else:
            node[parts[-1]] = value

    return apply


_DELETE = object()

# (rule, case name, mutation, path the finding must point at)
FAILING: list[tuple[str, str, Mutation, str]] = [
    ("ARCH-001", "cell straight to enterprise", _set("conduits.pumping-poll.to", "enterprise"), "conduits[1]"),
    (
        "ARCH-002",
        "sink delivers OT data into IT",
        lambda d: (
            _add_conduit(d, "straight-out", "supervisory", "enterprise", transport="diode"),
            d["sinks"][1].update(conduit="straight-out"),
        ),
        "sinks[1].conduit",
    ),
    (
        "ARCH-002",
        "command enters OT from IT",
        lambda d: (
            _add_conduit(d, "it-in", "enterprise", "supervisory", "two-way", justification="test"),
            _command(d).update(conduit="it-in"),
        ),
        "commands[0].conduit",
    ),
    ("ARCH-003", "command over the diode", lambda d: _command(d).update(conduit="diode-out"), "commands[0].conduit"),
    ("ARCH-004", "two-way diode", _set("conduits.diode-out.direction", "two-way"), "conduits[2].direction"),
    (
        "ARCH-004",
        "diode pointing into OT",
        lambda d: _conduit(d, "diode-out").update({"from": "dmz", "to": "supervisory"}),
        "conduits[2].from",
    ),
    ("ARCH-005", "modbus over one-way", _set("conduits.diode-out.protocols", ["modbus"]), "conduits[2].protocols[0]"),
    ("ARCH-006", "conduit to nowhere", _set("conduits.pumping-poll.to", "nowhere"), "conduits[1].to"),
    ("ARCH-006", "conduit to itself", _set("conduits.pumping-poll.to", "pumping"), "conduits[1].to"),
    (
        "ARCH-007",
        "SL 3 zone two-way to SL 2 without justification",
        _set("conduits.commands-in.justification", _DELETE),
        "conduits[3].direction",
    ),
    ("ARCH-008", "sink via an undeclared conduit", lambda d: d["sinks"][1].update(conduit="nope"), "sinks[1].conduit"),
    ("ARCH-008", "sink data cannot reach its conduit", _isolated_lab, "sinks[2].conduit"),
    ("ARCH-009", "command without a conduit", lambda d: _command(d).pop("conduit"), "commands[0]"),
    # Purdue: the DMZ talks to site operations (level 3), never straight to a cell or the process.
    ("ARCH-010", "two-way DMZ to a level-2 cell", _set("conduits.commands-in.to", "pumping"), "conduits[3]"),
    (
        "ARCH-010",
        "two-way level-1 cell to the DMZ, written the other way round",
        lambda d: _add_conduit(
            d, "cell-out", "filtration", "dmz", "two-way", transport="tls", protocols=["opcua"], ports=[4840]
        ),
        "conduits[5]",
    ),
    (
        "ARCH-011",
        "plain TCP between the DMZ and IT",
        _set("conduits.dmz-to-enterprise.transport", "tcp"),
        "conduits[4].transport",
    ),
    (
        "ARCH-011",
        "plain TCP between OT and the DMZ",
        _set("conduits.commands-in.transport", "tcp"),
        "conduits[3].transport",
    ),
    ("ARCH-012", "a conduit that lists no protocol", _set("conduits.pumping-poll.protocols", []), "conduits[1]"),
    ("ARCH-012", "a two-way TCP conduit that lists no port", _set("conduits.pumping-poll.ports", []), "conduits[1]"),
    ("NODE-000", "a contract without nodes", _without_nodes, ""),
    ("NODE-001", "a node in an undeclared zone", _set("nodes.ot-edge.zone", "nowhere"), "nodes[0].zone"),
    ("NODE-002", "a device on no node of several", lambda d: _device(d, "pump-plc").pop("node"), "devices[0]"),
    ("NODE-002", "a sink on an undeclared node", lambda d: d["sinks"][0].update(node="edge-2"), "sinks[0].node"),
    (
        "NODE-003",
        "a DMZ sink placed on the OT node",
        lambda d: by_id(d["sinks"], "to-enterprise").update(node="ot-edge"),
        "sinks[4].conduit",
    ),
    (
        "NODE-003",
        "the diode received on the OT node",
        lambda d: d["sources"][0].update(node="ot-edge"),
        "sources[0].conduit",
    ),
    (
        "NODE-004",
        "a one-way conduit received on two nodes",
        lambda d: (
            d["nodes"].append({"id": "it-gateway-2", "zone": "dmz"}),
            d["sources"].append(dict(d["sources"][0], id="from-ot-2", node="it-gateway-2")),
        ),
        "conduits[2]",
    ),
    (
        "NODE-004",
        "a two-way plugin on a one-way conduit",
        lambda d: d["sinks"][0].update(conduit="diode-out"),
        "conduits[2]",
    ),
    ("NODE-005", "a PLC polled from the DMZ", _set("devices.pump-plc.node", "it-gateway"), "devices[0].node"),
    (
        "NODE-006",
        "an IT device polled from the gateway",
        lambda d: _device(d, "pump-plc").update(zone="enterprise", node="it-gateway"),
        "devices[0].node",
    ),
    (
        "NODE-007",
        "one journal path for two nodes",
        lambda d: d.update(journal={"path": "./data/journal"}),
        "journal.path",
    ),
    (
        "NODE-007",
        "two nodes in one data directory",
        lambda d: [n.update(data_dir="./data") for n in d["nodes"]],
        "nodes[1].data_dir",
    ),
    (
        "ARCH-009",
        "command conduit cannot reach the device",
        lambda d: _conduit(d, "pumping-poll").update(direction="one-way", protocols=[]),
        "commands[0].conduit",
    ),
    ("OWN-001", "zone without owner", _set("zones.filtration.owner", _DELETE), "zones[0]"),
    ("OWN-001", "device owned by a stranger", _set("devices.pump-plc.owner", "ghost"), "devices[0].owner"),
    (
        "OWN-001",
        "point owned by a stranger",
        lambda d: _point(d, "pump-plc", "outlet_flow").update(owner="ghost"),
        "devices[0].points[1].owner",
    ),
    ("OWN-002", "PLC owned by IT", _set("devices.pump-plc.owner", "it-lead"), "devices[0].owner"),
    (
        "OWN-002",
        "OT point owned by the seam owner",
        lambda d: _point(d, "pump-plc", "outlet_flow").update(owner="seam-lead"),
        "devices[0].points[1].owner",
    ),
    ("OWN-003", "no seam owner", lambda d: d.pop("seam_owner"), ""),
    ("OWN-003", "seam owner from OT", lambda d: d.update(seam_owner="ot-lead"), "seam_owner"),
    ("OWN-004", "one approver", lambda d: _command(d)["approvers"].pop(), "commands[0]"),
    (
        "OWN-004",
        "two IT approvers",
        lambda d: _command(d).update(approvers=[{"side": "it", "role": "data platform lead"}] * 2),
        "commands[0].approvers",
    ),
    (
        "OWN-004",
        "two OT approvers",
        lambda d: _command(d).update(
            approvers=[{"side": "ot", "role": "operations supervisor"}, {"side": "ot", "role": "control engineer"}]
        ),
        "commands[0].approvers",
    ),
    (
        "OWN-005",
        "approver role nobody holds",
        lambda d: _command(d)["approvers"][1].update(role="night janitor"),
        "commands[0].approvers[1]",
    ),
    ("OWN-006", "no objectives", lambda d: d.update(objectives=[]), ""),
    (
        "OWN-006",
        "IT success left blank",
        lambda d: d["objectives"][0]["success"].update(it="  "),
        "objectives[0].success.it",
    ),
    (
        "OWN-007",
        "a point nobody consumes",
        lambda d: (
            [s.update(points=["pump-plc/*"]) for s in d["sinks"]],
            _point(d, "filter-server", "filter1_headloss").update(consumers=[]),
        ),
        "devices[1].points[1]",
    ),
    (
        "OPS-001",
        "polling faster than the PLC allows",
        _set("devices.pump-plc.constraints.max_request_rate", "1/s"),
        "devices[0].constraints.max_request_rate",
    ),
    (
        "OPS-001",
        "a point polled faster than its device",
        lambda d: (
            _device(d, "filter-server").update(driver="vendor-x"),
            _point(d, "filter-server", "filter1_turbidity").update(poll="100ms"),
        ),
        "devices[1].constraints.max_request_rate",
    ),
    ("OPS-002", "no request rate", _set("devices.pump-plc.constraints.max_request_rate", _DELETE), "devices[0]"),
    (
        "OPS-003",
        "never-restart PLC without a pause",
        _set("devices.pump-plc.constraints.pause_between_requests", _DELETE),
        "devices[0].constraints.restart_tolerance",
    ),
    (
        "OPS-004",
        "command on a read-only point",
        lambda d: _point(d, "pump-plc", "pump1_speed_setpoint").update(writable=False),
        "commands[0].point",
    ),
    ("OPS-005", "command without a rate", lambda d: _command(d).pop("rate"), "commands[0]"),
    ("OPS-005", "command without a range", lambda d: _command(d).pop("range"), "commands[0]"),
    (
        "DATA-001",
        "a coil declared float",
        lambda d: _point(d, "pump-plc", "pump1_running").update(type="float32"),
        "devices[0].points[2].type",
    ),
    (
        "DATA-001",
        "a string without length",
        lambda d: _point(d, "pump-plc", "outlet_flow").update(type="string"),
        "devices[0].points[1]",
    ),
    (
        "DATA-001",
        "a float64 past the last register",
        lambda d: _point(d, "pump-plc", "outlet_flow").update(type="float64", address="ir:65534"),
        "devices[0].points[1].address",
    ),
    (
        "DATA-001",
        "a string past the last register",
        lambda d: _point(d, "pump-plc", "outlet_flow").update(type="string", length=8, address="ir:65530"),
        "devices[0].points[1].address",
    ),
    (
        "DATA-002",
        "percent deadband without range",
        lambda d: _point(d, "pump-plc", "clearwell_level").pop("range"),
        "devices[0].points[0].deadband",
    ),
    (
        "DATA-003",
        "a driver with unchecked addresses",
        _set("devices.filter-server.driver", "vendor-x"),
        "devices[1].driver",
    ),
    (
        "DATA-004",
        "command range beyond the point's",
        lambda d: _command(d).update(range={"low": 40, "high": 120}),
        "commands[0].range",
    ),
    (
        "COMPUTE-001",
        "a window over a point nobody declared",
        lambda d: d.update(computed=[{"id": "w", "window": {"of": "nowhere/x", "function": "avg", "length": "1min"}}]),
        "computed[0].window.of",
    ),
    (
        "COMPUTE-002",
        "two computed points reading each other",
        lambda d: d.update(computed=[{"id": "a", "expression": "b + 1"}, {"id": "b", "expression": "a + 1"}]),
        "computed[0].expression",
    ),
    (
        "COMPUTE-003",
        "a computed point on another node than its inputs",
        lambda d: d.update(computed=[{"id": "x", "node": "it-gateway", "expression": "$pump-plc/clearwell_level * 2"}]),
        "computed[0].node",
    ),
    ("REF-001", "two zones with one id", lambda d: d["zones"].append(dict(d["zones"][0])), "zones[5].id"),
    (
        "REF-001",
        "two points with one id",
        lambda d: _device(d, "pump-plc")["points"].append(dict(_point(d, "pump-plc", "outlet_flow"))),
        "devices[0].points[4].id",
    ),
    (
        "REF-002",
        "command on a missing point",
        lambda d: _command(d).update(point="pump-plc/nothing"),
        "commands[0].point",
    ),
    (
        "REF-003",
        "sink pattern matching nothing",
        lambda d: d["sinks"][0].update(points=["nothing/*"]),
        "sinks[0].points[0]",
    ),
    ("REF-004", "device in an undeclared zone", _set("devices.pump-plc.zone", "nowhere"), "devices[0].zone"),
    ("REF-005", "a misspelt sink type", lambda d: d["sinks"][0].update(type="historain"), "sinks[0].type"),
    ("REF-005", "a driver that does not exist", _set("devices.pump-plc.driver", "modbuss"), "devices[0].driver"),
]

# (rule, case name, mutation): changes the rule must accept.
PASSING: list[tuple[str, str, Mutation]] = [
    ("ARCH-001", "DMZ to enterprise", lambda d: None),
    ("ARCH-002", "OT data stays in OT", lambda d: d["sinks"][1].update(conduit="pumping-poll", points=["pump-plc/*"])),
    ("ARCH-003", "command over a two-way conduit", lambda d: None),
    ("ARCH-004", "a one-way transport that is not a diode", _set("conduits.diode-out.transport", "udp")),
    ("ARCH-004", "a diode upward inside OT", lambda d: _conduit(d, "diode-out").update({"from": "pumping", "to": "supervisory"})),
    ("ARCH-005", "a two-way conduit with modbus", lambda d: None),
    ("ARCH-006", "conduits between declared zones", lambda d: None),
    ("ARCH-007", "justified two-way conduit", lambda d: None),
    ("ARCH-007", "two-way between equal SLs", lambda d: (
        _set("conduits.commands-in.justification", _DELETE)(d),
        _set("zones.dmz.sl", 3)(d),
        _set("conduits.dmz-to-enterprise.justification", "IT subscribers read from the DMZ broker only")(d),
    )),
    ("ARCH-007", "SL 2 two-way to SL 1 needs no justification", lambda d: _conduit(d, "dmz-to-enterprise").pop("justification", None)),
    ("ARCH-008", "a local sink without conduit", lambda d: d["sinks"][1].pop("conduit")),
    ("ARCH-009", "command reaching its device through supervisory", lambda d: None),
    ("ARCH-010", "two-way DMZ to level 3 (site operations)", lambda d: None),
    ("ARCH-010", "one-way diode out of a level-1 cell into the DMZ", lambda d: _add_conduit(
        d, "cell-diode", "filtration", "dmz", transport="diode", protocols=["seam-diode"], ports=[4001])),
    ("ARCH-011", "TLS and a diode across the boundary", lambda d: None),
    ("ARCH-011", "plain TCP inside OT", _set("conduits.pumping-poll.transport", "tcp")),
    ("ARCH-012", "protocols and ports listed", lambda d: None),
    ("ARCH-012", "a serial link needs no port", lambda d: _conduit(d, "pumping-poll").update(transport="serial", ports=[])),
    ("NODE-000", "a contract with nodes", lambda d: None),
    ("NODE-001", "both nodes in declared zones", lambda d: None),
    ("NODE-002", "one node, components without node keys", _one_node),
    ("NODE-003", "sinks leave and the source enters its node's zone", lambda d: None),
    ("NODE-004", "one diode_send on the edge, one diode_receive on the gateway", lambda d: None),
    ("NODE-005", "PLCs polled from the supervisory zone", lambda d: None),
    ("NODE-006", "the gateway reaches no device", lambda d: None),
    ("NODE-007", "a journal path with {node}", lambda d: d.update(journal={"path": "./data/{node}/journal"})),
    ("OWN-001", "a point inherits its device's owner", lambda d: None),
    ("OWN-001", "a point with its own declared owner", lambda d: _point(d, "pump-plc", "outlet_flow").update(owner="ot-lead")),
    ("OWN-002", "DMZ owned by the seam side", lambda d: None),
    ("OWN-003", "seam owner on side seam", lambda d: None),
    ("OWN-004", "three approvers, OT and IT", lambda d: _command(d)["approvers"].append({"side": "seam", "role": "interface owner"})),
    ("OWN-005", "roles matched without regard to case", lambda d: _command(d)["approvers"][0].update(role="Operations Supervisor")),
    ("OWN-006", "objectives complete", lambda d: None),
    ("OWN-007", "consumers named, no sink", lambda d: d.update(sinks=[])),
    ("OPS-001", "exactly at the limit", _set("devices.pump-plc.constraints.max_request_rate", "4/s")),
    ("OPS-002", "a device with no points needs no rate", lambda d: _device(d, "filter-server").update(points=[], constraints={})),
    ("OPS-003", "planned restarts need no pacing", _set("devices.filter-server.constraints.restart_tolerance", "planned")),
    ("OPS-004", "command on a writable point", lambda d: None),
    ("OPS-005", "a bool command needs no range", lambda d: (
        _point(d, "pump-plc", "pump1_running").update(writable=True),
        _command(d).update(point="pump-plc/pump1_running"),
        _command(d).pop("range"),
    )),
    ("DATA-001", "a register bit as bool", lambda d: _point(d, "pump-plc", "pump1_running").update(address="hr:20.3")),
    ("DATA-001", "a string with length", lambda d: _point(d, "pump-plc", "outlet_flow").update(type="string", length=8)),
    ("DATA-002", "an absolute deadband without range", lambda d: _point(d, "filter-server", "filter1_headloss").update(deadband=0.1)),
    ("DATA-003", "modbus and opcua addresses are checked", lambda d: None),
    ("DATA-004", "command range inside", lambda d: None),
    ("COMPUTE-001", "a percentage of a level", lambda d: d.update(computed=[
        {"id": "pct", "expression": "$pump-plc/clearwell_level / 4.5 * 100", "unit": "%"}])),
    ("COMPUTE-002", "a chain without a loop", lambda d: d.update(computed=[
        {"id": "a", "expression": "$pump-plc/clearwell_level + 1"}, {"id": "b", "expression": "a + 1"}])),
    ("COMPUTE-003", "a computed point on its inputs' node", lambda d: d.update(computed=[
        {"id": "x", "node": "ot-edge", "expression": "$pump-plc/clearwell_level * 2"}])),
    ("REF-001", "same point id on two devices", lambda d: _point(d, "filter-server", "filter1_headloss").update(id="outlet_flow")),
    ("REF-002", "command point exists", lambda d: None),
    ("REF-003", "exact key and glob", lambda d: d["sinks"][0].update(points=["pump-plc/outlet_flow", "filter-*/*"])),
    ("REF-004", "devices in declared zones", lambda d: None),
    ("REF-005", "every driver and sink type Seam ships", lambda d: d["sinks"].extend(
        {"id": f"s-{t}", "type": t, "options": options} for t, options in (
            ("postgres", {"dsn_env": "SEAM_DSN"}),
            ("sparkplug", {"brokers": ["broker:1883"], "group_id": "g", "edge_node_id": "e"}),
            ("uns_json", {"brokers": ["broker:1883"]}),
            ("file", {"path": "out.jsonl"}),
        )
    )),
]  # fmt: skip


def test_example_is_clean() -> None:
    assert findings(example()) == []


def test_there_are_at_least_fifteen_rules_with_ids_severities_and_hints() -> None:
    assert len(RULES) >= 15
    for rule in RULES.values():
        assert rule.id and rule.title and rule.hint
        assert rule.severity in set(Severity)


def test_every_rule_has_a_failing_and_a_passing_case() -> None:
    assert {case[0] for case in FAILING} == set(RULES)
    assert {case[0] for case in PASSING} == set(RULES)


@pytest.mark.parametrize(("rule_id", "case", "mutate", "where"), FAILING, ids=[f"{c[0]}:{c[1]}" for c in FAILING])
def test_rule_fires(rule_id: str, case: str, mutate: Mutation, where: str) -> None:
    data = example()
    mutate(data)
    loaded = load_data(data)
    hits = [f for f in findings(data) if f.rule == rule_id]
    assert hits, f"{rule_id} did not fire for: {case}"
    at_place = [f for f in hits if f.path == where]
    assert at_place, f"{rule_id} fired at {[f.path for f in hits]}, expected {where!r}"
    finding = at_place[0]
    # The position is the element's own line in the file the user wrote.
    expected = loaded.at(_path_key(where))
    assert (finding.line, finding.column) == (expected.line, expected.column)
    assert finding.line > 1 or where == ""
    assert finding.hint and finding.message
    assert finding.severity == RULES[rule_id].severity


@pytest.mark.parametrize(("rule_id", "case", "mutate"), PASSING, ids=[f"{c[0]}:{c[1]}" for c in PASSING])
def test_rule_accepts(rule_id: str, case: str, mutate: Mutation) -> None:
    data = example()
    mutate(data)
    assert rule_id not in rule_ids(data), f"{rule_id} fired for: {case}"


def _path_key(text: str) -> tuple[str | int, ...]:
    out: list[str | int] = []
    for part in text.replace("[", ".[").split("."):
        if not part:
            continue
        out.append(int(part[1:-1]) if part.startswith("[") else part)
    return tuple(out)


def test_duplicate_id_names_the_line_of_the_first() -> None:
    data = example()
    data["zones"].append(dict(data["zones"][0]))
    loaded = load_data(data)
    [finding] = [f for f in findings(data) if f.rule == "REF-001"]
    assert finding.message.endswith(f"(first on line {loaded.at(('zones', 0, 'id')).line})")


def test_a_failing_rule_becomes_a_finding_not_a_traceback() -> None:
    from otseam.contract.loader import LoadedContract
    from otseam.contract.rules import Hit, Rule, run
    from otseam.contract.rules.registry import RULE_FAILED

    def broken(loaded: LoadedContract) -> list[Hit]:
        raise KeyError("surprise")

    loaded = load_data(example())
    [finding] = run(loaded, [Rule("TEST-001", Severity.ERROR, "a rule with a bug", "none", broken)])
    assert finding.rule == "TEST-001" and finding.message.startswith(RULE_FAILED)
    assert "KeyError" in finding.message and finding.hint


def test_misspelt_plugin_gets_a_suggestion() -> None:
    data = example()
    data["sinks"][0]["type"] = "historain"
    [finding] = [f for f in findings(data) if f.rule == "REF-005"]
    assert finding.hint == "did you mean 'historian'?"


def test_request_rate_counts_per_point_poll_overrides() -> None:
    from otseam.contract.rules.operations import requests_per_second

    data = example()
    device = _device(data, "filter-server")
    device["driver"] = "vendor-x"  # no planner: one request per point per poll
    _point(data, "filter-server", "filter1_turbidity")["poll"] = "250ms"
    loaded = load_data(data)
    rate, how = requests_per_second(loaded.contract.devices[1])
    # two points every 2 s, one every 250 ms
    assert rate == pytest.approx(2 * 0.5 + 4.0)
    assert "per point" in how


def test_request_rate_uses_the_modbus_planner() -> None:
    """The Modbus driver merges neighbouring registers into one read; the rule counts its requests."""
    from otseam.contract.rules.operations import requests_per_second

    data = example()
    loaded = load_data(data)
    rate, how = requests_per_second(loaded.contract.devices[0])
    assert how == "as planned by the driver"
    # ir:0 and ir:2 are one read, co:0 and hr:10 one each: three requests a second, not four.
    assert rate == pytest.approx(3.0)
    _set("devices.pump-plc.constraints.max_request_rate", "3/s")(data)
    assert "OPS-001" not in rule_ids(data)
