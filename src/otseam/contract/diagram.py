"""The zone and conduit diagram, as inline SVG: one horizontal band per Purdue level, IT at the top.

Drawn by hand rather than with a layout library so the page needs nothing from the network and the
picture is the same on every machine. Contracts have a handful of zones; a plain grid reads best.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from otseam.contract.models import Contract, Direction, Zone

BAND_HEIGHT = 110
BOX_WIDTH = 190
BOX_HEIGHT = 54
#: The tag under a zone's box naming the nodes (machines running Seam) in it.
NODE_HEIGHT = 20
GAP = 40
LABEL_WIDTH = 150
MARGIN = 20
#: Horizontal distance between conduits drawn side by side, and between the lanes at the right.
PARALLEL_GAP = 56
LANE_GAP = 22
LABEL_ROOM = 150

_BAND_FILL = {"ot": "#eef6ee", "seam": "#fff6e0", "it": "#eaf1fb"}
_LEVEL_NAMES = {
    0: "Level 0 · process",
    1: "Level 1 · basic control",
    2: "Level 2 · supervisory control",
    3: "Level 3 · site operations",
    3.5: "Level 3.5 · IT/OT DMZ",
    4: "Level 4 · business logistics",
    5: "Level 5 · enterprise",
}


@dataclass(frozen=True, slots=True)
class _Box:
    x: float
    y: float

    @property
    def cx(self) -> float:
        return self.x + BOX_WIDTH / 2

    @property
    def cy(self) -> float:
        return self.y + BOX_HEIGHT / 2


def _side(level: float) -> str:
    return "seam" if level == 3.5 else ("ot" if level <= 3 else "it")


def _edge_point(box: _Box, toward: _Box, shift: float = 0.0) -> tuple[float, float]:
    """Where the line from ``box``'s centre (moved sideways by ``shift``) toward ``toward`` leaves the box."""
    dx, dy = toward.cx - box.cx, toward.cy - box.cy
    if dx == 0 and dy == 0:
        return box.cx, box.cy
    sx = (BOX_WIDTH / 2) / abs(dx) if dx else float("inf")
    sy = (BOX_HEIGHT / 2) / abs(dy) if dy else float("inf")
    scale = min(sx, sy)
    x, y = box.cx + dx * scale, box.cy + dy * scale
    # Parallel conduits between the same two zones are drawn side by side, not on top of each other.
    if abs(dy) * (BOX_WIDTH / 2) >= abs(dx) * (BOX_HEIGHT / 2):
        x += shift
    else:
        y += shift / 3
    return x, y


def _conduit_shape(
    src: _Box, dst: _Box, shift: float, lane_x: float | None, lane: int
) -> tuple[str, tuple[float, float, str]]:
    """SVG geometry of a conduit and where its label goes (x, y, anchor).

    Conduits between neighbouring bands are straight lines. One that skips a band would cut through the
    zones in between, so it leaves its zone through the free strip above or below the box, runs along a
    lane at the right of the diagram, and comes back in the same way.
    """
    if lane_x is None:
        x1, y1 = _edge_point(src, dst, shift)
        x2, y2 = _edge_point(dst, src, shift)
        geometry = f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}"'
        if shift < 0:
            return geometry, ((x1 + x2) / 2 - 6, (y1 + y2) / 2, "end")
        return geometry, ((x1 + x2) / 2 + 6, (y1 + y2) / 2, "start")
    upward = dst.y < src.y
    gap = 6 + 6 * (lane % 3)  # within the strip between a box and its band's edge
    sx = src.x + BOX_WIDTH - 14 - 8 * (lane % 4)
    dx = dst.x + BOX_WIDTH - 14 - 8 * (lane % 4)
    src_edge, dst_edge = (src.y, dst.y + BOX_HEIGHT) if upward else (src.y + BOX_HEIGHT, dst.y)
    y_out = src_edge - gap if upward else src_edge + gap
    y_in = dst_edge + gap if upward else dst_edge - gap
    points = [(sx, src_edge), (sx, y_out), (lane_x, y_out), (lane_x, y_in), (dx, y_in), (dx, dst_edge)]
    geometry = '<polyline fill="none" points="' + " ".join(f"{x:.1f},{y:.1f}" for x, y in points) + '"'
    return geometry, (lane_x + 6, (y_out + y_in) / 2, "start")


def render_svg(contract: Contract) -> str:
    levels = sorted({z.level for z in contract.zones}, reverse=True)
    by_level: dict[float, list[Zone]] = {level: [z for z in contract.zones if z.level == level] for level in levels}
    row_of = {level: row for row, level in enumerate(levels)}
    widest = max((len(zs) for zs in by_level.values()), default=1)
    zones_right = MARGIN + LABEL_WIDTH + widest * (BOX_WIDTH + GAP) - GAP

    boxes: dict[str, _Box] = {}
    zone_rows: dict[str, int] = {}
    for row, level in enumerate(levels):
        top = MARGIN + row * BAND_HEIGHT
        for col, zone in enumerate(by_level[level]):
            box = _Box(MARGIN + LABEL_WIDTH + col * (BOX_WIDTH + GAP), top + (BAND_HEIGHT - 6 - BOX_HEIGHT) / 2)
            boxes.setdefault(zone.id, box)
            zone_rows.setdefault(zone.id, row_of[level])

    drawable = [
        c
        for c in contract.conduits
        if c.from_zone in boxes and c.to_zone in boxes and boxes[c.from_zone] is not boxes[c.to_zone]
    ]
    pair_count: dict[frozenset[str], int] = {}
    for c in drawable:
        pair = frozenset((c.from_zone, c.to_zone))
        pair_count[pair] = pair_count.get(pair, 0) + 1
    lanes = sum(1 for c in drawable if abs(zone_rows[c.from_zone] - zone_rows[c.to_zone]) > 1)
    width = zones_right + LANE_GAP * (lanes + 1) + (LABEL_ROOM if lanes else 0) + MARGIN
    height = MARGIN * 2 + max(len(levels), 1) * BAND_HEIGHT

    parts: list[str] = []
    for row, level in enumerate(levels):
        top = MARGIN + row * BAND_HEIGHT
        parts.append(
            f'<rect x="{MARGIN}" y="{top}" width="{width - 2 * MARGIN}" height="{BAND_HEIGHT - 6}" '
            f'fill="{_BAND_FILL[_side(level)]}" rx="6"/>'
        )
        name = _LEVEL_NAMES.get(level, f"Level {level:g}")
        parts.append(f'<text x="{MARGIN + 10}" y="{top + 22}" class="band">{escape(name)}</text>')

    drawn_of_pair: dict[frozenset[str], int] = {}
    lane = 0
    for conduit in drawable:
        src, dst = boxes[conduit.from_zone], boxes[conduit.to_zone]
        pair = frozenset((conduit.from_zone, conduit.to_zone))
        k = drawn_of_pair.get(pair, 0)
        drawn_of_pair[pair] = k + 1
        shift = (k - (pair_count[pair] - 1) / 2) * PARALLEL_GAP
        lane_x: float | None = None
        if abs(zone_rows[conduit.from_zone] - zone_rows[conduit.to_zone]) > 1:
            lane += 1
            lane_x = zones_right + lane * LANE_GAP
        geometry, (lx, ly, anchor) = _conduit_shape(src, dst, shift, lane_x, lane)
        diode = conduit.transport.strip().lower() == "diode"
        markers = 'marker-end="url(#arrow)"'
        if conduit.direction == Direction.TWO_WAY:
            markers += ' marker-start="url(#arrow-back)"'
        css = "conduit diode" if diode else ("conduit one-way" if conduit.direction == Direction.ONE_WAY else "conduit")
        label = conduit.id + (" (diode)" if diode else "")
        parts.append(
            f'{geometry} class="{css}" {markers}>'
            f"<title>{escape(conduit.id)}: {escape(conduit.from_zone)} → {escape(conduit.to_zone)}, "
            f"{escape(str(conduit.direction))}</title></{geometry[1 : geometry.index(' ')]}>"
        )
        parts.append(
            f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="{anchor}" class="conduit-label">{escape(label)}</text>'
        )

    for zone in contract.zones:
        box = boxes[zone.id]
        parts.append(
            f'<g class="zone"><rect x="{box.x}" y="{box.y}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="4"/>'
            f'<text x="{box.cx}" y="{box.y + 22}" text-anchor="middle" class="zone-name">{escape(zone.name or zone.id)}'
            f"</text>"
            f'<text x="{box.cx}" y="{box.y + 40}" text-anchor="middle" class="zone-meta">{escape(zone.id)} · '
            f"SL {zone.security_level}</text></g>"
        )
        # The nodes inside the zone: the machines that run Seam there, under the zone's box.
        nodes = [n.id for n in contract.nodes if n.zone == zone.id]
        if nodes:
            label = ("node " if len(nodes) == 1 else "nodes ") + ", ".join(nodes)
            parts.append(
                f'<g class="node"><rect x="{box.x + 12}" y="{box.y + BOX_HEIGHT - 4}" width="{BOX_WIDTH - 24}" '
                f'height="{NODE_HEIGHT}" rx="8"/><text x="{box.cx}" y="{box.y + BOX_HEIGHT + 11}" '
                f'text-anchor="middle" class="node-name">{escape(label)}</text></g>'
            )

    defs = (
        "<defs>"
        '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker>'
        '<marker id="arrow-back" viewBox="0 0 10 10" refX="1" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto"><path d="M10,0 L0,5 L10,10 z" fill="#333"/></marker>'
        "</defs>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="Zones and conduits by Purdue level">{defs}{"".join(parts)}</svg>'
    )
