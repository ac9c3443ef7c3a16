"""The difference between two contracts, in words, and the zones it touches.

What a reviewer needs from a contract change is not a text diff of YAML but the consequences: which
points appear or disappear, who consumes what, which commands become wider, which conduits open,
which constraints on the equipment are relaxed. Each change names the zones it touches; the owners of
those zones (on both sides) and the seam owner are the people who must approve it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from otseam.contract.models import Command, Constraints, Contract, Direction, RestartTolerance

_TOLERANCE_ORDER = {RestartTolerance.NONE: 0, RestartTolerance.PLANNED: 1, RestartTolerance.ANY: 2}


@dataclass(slots=True)
class Changes:
    lines: list[str] = field(default_factory=list)
    zones: set[str] = field(default_factory=set)
    #: Changes that widen what crosses the seam or relax what protects the equipment.
    widening: list[str] = field(default_factory=list)

    def add(self, text: str, zones: Iterable[str | None], widening: bool = False) -> None:
        self.lines.append(text)
        self.zones.update(z for z in zones if z)
        if widening:
            self.widening.append(text)


def _by_id(items: Iterable[Any]) -> dict[str, Any]:
    return {item.id: item for item in items}


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json") if model is not None else None


def _device_zone(contract: Contract, point_key: str) -> str | None:
    found = contract.find_point(point_key)
    return found[0].zone if found else None


def _node_zone(contract: Contract, component: Any) -> str | None:
    node = contract.node(contract.node_of(component))
    return node.zone if node is not None else None


def _constraints(c: Changes, device: str, zone: str, old: Constraints, new: Constraints) -> None:
    before = len(c.lines)

    def relaxed(what: str) -> None:
        c.add(f"constraint relaxed on device {device}: {what}", [zone], widening=True)

    if old.max_request_rate is not None and (
        new.max_request_rate is None or new.max_request_rate > old.max_request_rate
    ):
        relaxed(f"max_request_rate {old.max_request_rate:g}/s -> {new.max_request_rate or 'unlimited'}")
    if new.pause_between_requests < old.pause_between_requests:
        relaxed(f"pause_between_requests {old.pause_between_requests:g}s -> {new.pause_between_requests:g}s")
    if new.pause_after_connect < old.pause_after_connect:
        relaxed(f"pause_after_connect {old.pause_after_connect:g}s -> {new.pause_after_connect:g}s")
    if new.max_connections > old.max_connections:
        relaxed(f"max_connections {old.max_connections} -> {new.max_connections}")
    if _TOLERANCE_ORDER[new.restart_tolerance] > _TOLERANCE_ORDER[old.restart_tolerance]:
        relaxed(f"restart_tolerance {old.restart_tolerance.value} -> {new.restart_tolerance.value}")
    if len(c.lines) == before and _dump(old) != _dump(new):
        c.add(f"constraints of device {device} changed (none relaxed)", [zone])


def _command(c: Changes, old: Command, new: Command, zones: list[str | None]) -> None:
    wider: list[str] = []
    if old.range is not None and (
        new.range is None or new.range.low < old.range.low or new.range.high > old.range.high
    ):
        after = f"{new.range.low:g}..{new.range.high:g}" if new.range else "unbounded"
        wider.append(f"range {old.range.low:g}..{old.range.high:g} -> {after}")
    if old.rate is not None and (new.rate is None or new.rate > old.rate):
        wider.append(f"rate {old.rate * 3600:g}/h -> {'unlimited' if new.rate is None else f'{new.rate * 3600:g}/h'}")
    if new.window != old.window:
        wider.append(f"window '{old.window or 'any time'}' -> '{new.window or 'any time'}'")
    if len(new.approvers) < len(old.approvers) or any(a not in new.approvers for a in old.approvers):
        wider.append("approvers changed: " + ", ".join(f"{a.side.value} {a.role}" for a in new.approvers))
    if new.tolerance > old.tolerance:
        wider.append(f"tolerance {old.tolerance:g} -> {new.tolerance:g}")
    if wider:
        c.add(f"command {new.id} widened: " + "; ".join(wider), zones, widening=True)
    elif _dump(old) != _dump(new):
        c.add(f"command {new.id} changed", zones)


def describe(old: Contract | None, new: Contract) -> Changes:
    """Every difference from ``old`` (None: no contract in force yet) to ``new``, in words."""
    c = Changes()
    if old is None:
        c.add("a first contract: everything in it is new", [z.id for z in new.zones], widening=True)
        return c
    # Zones and conduits.
    oz, nz = _by_id(old.zones), _by_id(new.zones)
    for zid in nz.keys() - oz.keys():
        c.add(f"zone {zid} added", [zid])
    for zid in oz.keys() - nz.keys():
        c.add(f"zone {zid} removed", [zid])
    for zid in nz.keys() & oz.keys():
        a, b = oz[zid], nz[zid]
        if b.security_level < a.security_level:
            c.add(
                f"zone {zid}: target security level lowered SL{a.security_level} -> SL{b.security_level}", [zid], True
            )
        if a.owner != b.owner:
            c.add(f"zone {zid}: owner {a.owner} -> {b.owner}", [zid])
        elif _dump(a) != _dump(b) and b.security_level >= a.security_level:
            c.add(f"zone {zid} changed", [zid])
    oc, nc = _by_id(old.conduits), _by_id(new.conduits)
    for cid in sorted(nc.keys() - oc.keys()):
        k = nc[cid]
        c.add(
            f"conduit {cid} opened ({k.direction.value}, {k.from_zone} -> {k.to_zone})", [k.from_zone, k.to_zone], True
        )
    for cid in sorted(oc.keys() - nc.keys()):
        c.add(f"conduit {cid} closed", [oc[cid].from_zone, oc[cid].to_zone])
    for cid in sorted(nc.keys() & oc.keys()):
        a, b = oc[cid], nc[cid]
        zones = [a.from_zone, a.to_zone, b.from_zone, b.to_zone]
        opened = []
        if a.direction is Direction.ONE_WAY and b.direction is Direction.TWO_WAY:
            opened.append("one-way -> two-way")
        if set(b.ports) - set(a.ports):
            opened.append("ports " + ", ".join(map(str, sorted(set(b.ports) - set(a.ports)))) + " added")
        if set(b.protocols) - set(a.protocols):
            opened.append("protocols " + ", ".join(sorted(set(b.protocols) - set(a.protocols))) + " added")
        if (a.from_zone, a.to_zone) != (b.from_zone, b.to_zone):
            opened.append(f"now {b.from_zone} -> {b.to_zone}")
        if opened:
            c.add(f"conduit {cid} opened further: " + "; ".join(opened), zones, True)
        elif _dump(a) != _dump(b):
            c.add(f"conduit {cid} changed", zones)
    # Devices and points.
    od, nd = _by_id(old.devices), _by_id(new.devices)
    for did in sorted(nd.keys() - od.keys()):
        d = nd[did]
        c.add(f"device {did} added with {len(d.points)} point(s)", [d.zone])
    for did in sorted(od.keys() - nd.keys()):
        c.add(f"device {did} removed, and its points: {', '.join(p.id for p in od[did].points)}", [od[did].zone])
    for did in sorted(nd.keys() & od.keys()):
        a, b = od[did], nd[did]
        zones = [a.zone, b.zone]
        if a.zone != b.zone:
            c.add(f"device {did} moved from zone {a.zone} to {b.zone}", zones)
        _constraints(c, did, b.zone, a.constraints, b.constraints)
        op, np_ = _by_id(a.points), _by_id(b.points)
        for pid in sorted(np_.keys() - op.keys()):
            c.add(f"point {did}/{pid} added", zones)
        for pid in sorted(op.keys() - np_.keys()):
            c.add(f"point {did}/{pid} removed", zones)
        for pid in sorted(np_.keys() & op.keys()):
            p, q = op[pid], np_[pid]
            if set(p.consumers) != set(q.consumers):
                c.add(f"point {did}/{pid}: consumers {sorted(p.consumers)} -> {sorted(q.consumers)}", zones)
            if q.writable and not p.writable:
                c.add(f"point {did}/{pid} made writable", zones, True)
            rest_p = {k: v for k, v in _dump(p).items() if k not in ("consumers", "writable")}
            rest_q = {k: v for k, v in _dump(q).items() if k not in ("consumers", "writable")}
            if rest_p != rest_q:
                c.add(f"point {did}/{pid} changed", zones)
        plain_a = {k: v for k, v in _dump(a).items() if k not in ("points", "constraints")}
        plain_b = {k: v for k, v in _dump(b).items() if k not in ("points", "constraints")}
        if plain_a != plain_b and a.zone == b.zone:
            c.add(f"device {did} changed (endpoint, driver, poll or options)", zones)
    # Commands.
    ok, nk = _by_id(old.commands), _by_id(new.commands)
    for kid in sorted(nk.keys() - ok.keys()):
        k = nk[kid]
        conduit = new.conduit(k.conduit)
        zones = [_device_zone(new, k.point), *((conduit.from_zone, conduit.to_zone) if conduit else ())]
        c.add(f"command {kid} added: writes {k.point}", zones, True)
    for kid in sorted(ok.keys() - nk.keys()):
        c.add(f"command {kid} removed", [_device_zone(old, ok[kid].point)])
    for kid in sorted(nk.keys() & ok.keys()):
        conduit = new.conduit(nk[kid].conduit)
        zones = [_device_zone(old, ok[kid].point), _device_zone(new, nk[kid].point)]
        zones += [conduit.from_zone, conduit.to_zone] if conduit else []
        _command(c, ok[kid], nk[kid], zones)
    # What leaves (sinks), what comes in (sources), where things run (nodes).
    for label, old_items, new_items in (("sink", old.sinks, new.sinks), ("source", old.sources, new.sources)):
        oi, ni = _by_id(old_items), _by_id(new_items)
        for sid in sorted(ni.keys() - oi.keys()):
            s = ni[sid]
            conduit = new.conduit(s.conduit)
            zones = [_node_zone(new, s), *((conduit.from_zone, conduit.to_zone) if conduit else ())]
            c.add(f"{label} {sid} added ({s.type})", zones, widening=label == "sink" and conduit is not None)
        for sid in sorted(oi.keys() - ni.keys()):
            c.add(f"{label} {sid} removed", [_node_zone(old, oi[sid])])
        for sid in sorted(ni.keys() & oi.keys()):
            if _dump(oi[sid]) != _dump(ni[sid]):
                conduit = new.conduit(ni[sid].conduit)
                zones = [_node_zone(old, oi[sid]), _node_zone(new, ni[sid])]
                zones += [conduit.from_zone, conduit.to_zone] if conduit else []
                c.add(f"{label} {sid} changed", zones)
    on, nn = _by_id(old.nodes), _by_id(new.nodes)
    for nid in sorted(set(on) | set(nn)):
        if _dump(on.get(nid)) != _dump(nn.get(nid)):
            state = "added" if nid not in on else "removed" if nid not in nn else "changed"
            c.add(f"node {nid} {state}", [getattr(on.get(nid), "zone", None), getattr(nn.get(nid), "zone", None)])
    # The rest concerns the whole seam: the seam owner approves it (always required).
    if _dump_list(old.people) != _dump_list(new.people):
        c.add("people changed", [])
    if old.seam_owner != new.seam_owner:
        c.add(f"seam owner {old.seam_owner} -> {new.seam_owner}", [], True)
    for name in ("site", "objectives", "journal"):
        if _dump_any(getattr(old, name)) != _dump_any(getattr(new, name)):
            c.add(f"{name} changed", [])
    return c


def _dump_list(items: Iterable[Any]) -> list[Any]:
    return [_dump(i) for i in items]


def _dump_any(value: Any) -> Any:
    if isinstance(value, list):
        return _dump_list(value)
    return _dump(value)


def approvers_needed(old: Contract | None, new: Contract, changes: Changes) -> dict[str, str]:
    """Person id -> why they must approve: owners of every touched zone (as either contract names
    them) and the seam owner (of both)."""
    needed: dict[str, str] = {}
    for contract in (new, old):
        if contract is None:
            continue
        for zone_id in sorted(changes.zones):
            zone = contract.zone(zone_id)
            if zone is not None and zone.owner:
                needed.setdefault(zone.owner, f"owner of zone {zone_id}")
        if contract.seam_owner:
            needed.setdefault(contract.seam_owner, "seam owner")
    return needed
