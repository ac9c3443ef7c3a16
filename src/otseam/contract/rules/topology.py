"""Questions the rules ask about a contract: which side a level is on, where data can flow, what a
sink carries. Kept apart from the rules so each rule reads as one plain statement."""

from __future__ import annotations

from collections import deque
from fnmatch import fnmatchcase

from otseam.contract.models import COMPUTED_DEVICE, Conduit, Contract, Direction, SinkSpec

DMZ_LEVEL = 3.5


def is_ot(level: float) -> bool:
    return level <= 3


def is_it(level: float) -> bool:
    return level >= 4


def flow_edges(contract: Contract) -> dict[str, set[str]]:
    """zone id → zones that traffic can reach in one hop (a one-way conduit only forwards)."""
    edges: dict[str, set[str]] = {z.id: set() for z in contract.zones}
    for conduit in contract.conduits:
        edges.setdefault(conduit.from_zone, set()).add(conduit.to_zone)
        if conduit.direction == Direction.TWO_WAY:
            edges.setdefault(conduit.to_zone, set()).add(conduit.from_zone)
    return edges


def reachable(contract: Contract, start: str, goal: str) -> bool:
    """True when traffic starting in zone ``start`` can arrive in zone ``goal`` over declared conduits."""
    edges = flow_edges(contract)
    seen = {start}
    queue = deque([start])
    while queue:
        zone = queue.popleft()
        if zone == goal:
            return True
        for nxt in edges.get(zone, ()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return False


def sink_point_keys(contract: Contract, sink: SinkSpec) -> list[str]:
    """The point keys a sink carries: its patterns matched against every point, or all of them."""
    keys = contract.point_keys()
    if not sink.points:
        return keys
    return [k for k in keys if any(fnmatchcase(k, pattern) for pattern in sink.points)]


def sink_data_zones(contract: Contract, sink: SinkSpec) -> set[str]:
    """The zones of the devices whose points a sink carries."""
    zones: set[str] = set()
    keys = sink_point_keys(contract, sink)
    # A computed point's data comes from the devices underneath it.
    computed = [k for k in keys if k.startswith(f"{COMPUTED_DEVICE}/")]
    if computed:
        from otseam.contract.formulas.lineage import lineage

        found_lineage = lineage(contract)
        keys = keys + [s for k in computed if k in found_lineage for s in found_lineage[k].sources]
    # One pass over the devices, not a search per key: a sink of every point made this rule quadratic.
    zone_of: dict[str, str] = {}
    for device in contract.devices:
        for point in device.points:
            zone_of.setdefault(device.key(point), device.zone)
    zones.update(zone_of[key] for key in keys if key in zone_of)
    return zones


def conduit_levels(contract: Contract, conduit: Conduit) -> tuple[float, float] | None:
    """(from level, to level), or None when a zone is missing (ARCH-006 reports that)."""
    src, dst = contract.zone(conduit.from_zone), contract.zone(conduit.to_zone)
    if src is None or dst is None:
        return None
    return src.level, dst.level
