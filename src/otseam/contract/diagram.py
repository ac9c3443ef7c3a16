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
GAP = 40
LABEL_WIDTH = 150
MARGIN = 20

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


def _edge_point(box: _Box, toward: _Box) -> tuple[float, float]:
    """Where the line from ``box``'s centre toward ``toward`` leaves the box (top, bottom or side)."""
    dx, dy = toward.cx - box.cx, toward.cy - box.cy
    if dx == 0 and dy == 0:
        return box.cx, box.cy
    sx = (BOX_WIDTH / 2) / abs(dx) if dx else float("inf")
    sy = (BOX_HEIGHT / 2) / abs(dy) if dy else float("inf")
    scale = min(sx, sy)
    return box.cx + dx * scale, box.cy + dy * scale


def render_svg(contract: Contract) -> str:
    levels = sorted({z.level for z in contract.zones}, reverse=True)
    by_level: dict[float, list[Zone]] = {level: [z for z in contract.zones if z.level == level] for level in levels}
    widest = max((len(zs) for zs in by_level.values()), default=1)
    width = MARGIN * 2 + LABEL_WIDTH + widest * (BOX_WIDTH + GAP)
    height = MARGIN * 2 + max(len(levels), 1) * BAND_HEIGHT

    parts: list[str] = []
    boxes: dict[str, _Box] = {}
    for row, level in enumerate(levels):
        top = MARGIN + row * BAND_HEIGHT
        parts.append(
            f'<rect x="{MARGIN}" y="{top}" width="{width - 2 * MARGIN}" height="{BAND_HEIGHT - 6}" '
            f'fill="{_BAND_FILL[_side(level)]}" rx="6"/>'
        )
        name = _LEVEL_NAMES.get(level, f"Level {level:g}")
        parts.append(f'<text x="{MARGIN + 10}" y="{top + 22}" class="band">{escape(name)}</text>')
        for col, zone in enumerate(by_level[level]):
            box = _Box(MARGIN + LABEL_WIDTH + col * (BOX_WIDTH + GAP), top + (BAND_HEIGHT - 6 - BOX_HEIGHT) / 2)
            boxes.setdefault(zone.id, box)

    for conduit in contract.conduits:
        src, dst = boxes.get(conduit.from_zone), boxes.get(conduit.to_zone)
        if src is None or dst is None or src is dst:
            continue
        x1, y1 = _edge_point(src, dst)
        x2, y2 = _edge_point(dst, src)
        diode = conduit.transport.strip().lower() == "diode"
        markers = 'marker-end="url(#arrow)"'
        if conduit.direction == Direction.TWO_WAY:
            markers += ' marker-start="url(#arrow-back)"'
        css = "conduit diode" if diode else ("conduit one-way" if conduit.direction == Direction.ONE_WAY else "conduit")
        label = conduit.id + (" (diode)" if diode else "")
        parts.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" class="{css}" {markers}>'
            f"<title>{escape(conduit.id)}: {escape(conduit.from_zone)} → {escape(conduit.to_zone)}, "
            f"{escape(str(conduit.direction))}</title></line>"
        )
        parts.append(
            f'<text x="{(x1 + x2) / 2 + 6:.1f}" y="{(y1 + y2) / 2:.1f}" class="conduit-label">{escape(label)}</text>'
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
