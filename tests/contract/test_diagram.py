"""The zone/conduit diagram: every zone drawn in its level's band, conduits that do not cut through zones."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET

from otseam.contract.diagram import BOX_HEIGHT, BOX_WIDTH, render_svg
from tests.contract.helpers import example, load_data

SVG = "{http://www.w3.org/2000/svg}"


def _svg(data: dict[str, object]) -> ET.Element:
    return ET.fromstring(render_svg(load_data(data).contract))  # also proves it is well-formed XML


def _boxes(root: ET.Element) -> dict[str, tuple[float, float]]:
    """zone id → (x, y) of its box, read back from the drawing."""
    out = {}
    for group in root.iter(f"{SVG}g"):
        if group.get("class") != "zone":
            continue
        rect = group.find(f"{SVG}rect")
        meta = group.findall(f"{SVG}text")[1].text or ""
        assert rect is not None
        out[meta.split(" · ")[0]] = (float(rect.get("x", 0)), float(rect.get("y", 0)))
    return out


def test_nodes_are_drawn_inside_their_zones() -> None:
    root = _svg(example())
    boxes = _boxes(root)
    nodes = {}
    for group in root.iter(f"{SVG}g"):
        if group.get("class") == "node":
            rect = group.find(f"{SVG}rect")
            assert rect is not None
            nodes[group.findtext(f"{SVG}text", "")] = (float(rect.get("x", 0)), float(rect.get("y", 0)))
    assert set(nodes) == {"node ot-edge", "node it-gateway"}
    for label, zone in (("node ot-edge", "supervisory"), ("node it-gateway", "dmz")):
        x, y = nodes[label]
        zx, zy = boxes[zone]
        assert zx < x < zx + BOX_WIDTH and zy < y <= zy + BOX_HEIGHT


def test_zones_stack_by_level_it_on_top() -> None:
    boxes = _boxes(_svg(example()))
    order = sorted(boxes, key=lambda zone: boxes[zone][1])
    assert order == ["enterprise", "dmz", "supervisory", "pumping", "filtration"]


def test_conduits_in_both_directions_between_two_zones_do_not_overlap() -> None:
    root = _svg(example())
    lines = {line.findtext(f"{SVG}title", "").split(":")[0]: line for line in root.iter(f"{SVG}line")}
    diode, commands = lines["diode-out"], lines["commands-in"]
    assert diode.get("x1") != commands.get("x1")
    assert "diode" in diode.get("class", "") and commands.get("marker-start")  # two-way: arrows at both ends
    assert diode.get("marker-start") is None  # one-way: one arrow


def test_a_conduit_skipping_a_level_goes_around_the_zones_between() -> None:
    root = _svg(example())
    boxes = _boxes(root)
    [route] = list(root.iter(f"{SVG}polyline"))
    assert route.findtext(f"{SVG}title", "").startswith("filtration-poll")
    points = [tuple(map(float, p.split(","))) for p in (route.get("points") or "").split()]
    px, py = boxes["pumping"]
    for (x1, y1), (x2, y2) in itertools.pairwise(points):
        # no segment passes through the pumping cell's box, which lies between the two ends
        crosses_x = min(x1, x2) < px + BOX_WIDTH and max(x1, x2) > px
        crosses_y = min(y1, y2) < py + BOX_HEIGHT and max(y1, y2) > py
        assert not (crosses_x and crosses_y)


def test_several_zones_on_one_level_sit_side_by_side() -> None:
    data = example()
    data["zones"].append({"id": "chemicals", "name": "Chemical dosing", "level": 1, "sl": 3, "owner": "ot-engineer"})
    boxes = _boxes(_svg(data))
    assert boxes["chemicals"][1] == boxes["filtration"][1]
    assert abs(boxes["chemicals"][0] - boxes["filtration"][0]) >= BOX_WIDTH


def test_zone_names_are_escaped() -> None:
    data = example()
    data["zones"][0]["name"] = "A&B <cell>"
    svg = render_svg(load_data(data).contract)
    assert "A&amp;B &lt;cell&gt;" in svg and not re.search(r"<cell>", svg)
