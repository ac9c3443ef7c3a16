"""`seam doc`: the interface as one self-contained HTML page both teams can read.

Everything is inline (CSS and SVG, no scripts, no fonts or images from the network): the page is read
on plant PCs that have no internet access, and is attached to change records as a single file. Every
piece of text from the contract is escaped, because the contract is edited by many hands.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from otseam.contract.diagram import render_svg
from otseam.contract.formulas.lineage import lineage
from otseam.contract.loader import LoadedContract
from otseam.contract.models import Contract, Device, Point
from otseam.contract.rules.registry import Finding
from otseam.contract.units import format_duration

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1200px;color:#1d1d1d;
line-height:1.45;padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
.sub{color:#555;margin-top:0}
table{border-collapse:collapse;width:100%;margin:.6rem 0;font-size:.92rem}
th,td{border:1px solid #d5d5d5;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}
.side-ot{background:#eef6ee}.side-it{background:#eaf1fb}.side-seam{background:#fff6e0}
.tag{display:inline-block;border-radius:3px;padding:0 .35rem;font-size:.8rem;border:1px solid #bbb}
.error{color:#a40000}.warning{color:#8a5a00}.info{color:#005a8a}
.muted{color:#777}
svg{max-width:100%;height:auto;border:1px solid #ddd;border-radius:6px;background:#fff}
svg .band{font-size:12px;fill:#555}
svg .zone rect{fill:#fff;stroke:#333;stroke-width:1.3}
svg .zone-name{font-size:13px;font-weight:600}svg .zone-meta{font-size:11px;fill:#555}svg .node rect{fill:#333}svg .node-name{font-size:11px;fill:#fff}
svg .conduit{stroke:#333;stroke-width:1.6}svg .one-way{stroke:#0a5}
svg .diode{stroke:#0a5;stroke-width:3;stroke-dasharray:8 4}
svg .conduit-label{font-size:11px;fill:#333}
@media print{body{margin:0}h2{break-after:avoid}}
"""


def _e(value: object) -> str:
    return escape(str(value))


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str = "none declared") -> str:
    """A table whose cells are already-escaped HTML."""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _person(contract: Contract, person_id: str | None) -> str:
    if person_id is None:
        return '<span class="error">no owner</span>'
    person = contract.person(person_id)
    if person is None:
        return f'<span class="error">{_e(person_id)} (not declared)</span>'
    return f'{_e(person.name)} <span class="tag side-{_e(person.side)}">{_e(person.side)}</span>'


def _objectives(contract: Contract) -> str:
    if not contract.objectives:
        return '<p class="error">No objective is stated: the two teams have not yet written down what this is for.</p>'
    out = []
    for o in contract.objectives:
        out.append(f"<h3>{_e(o.id)}</h3><p>{_e(o.problem)}</p>")
        out.append(
            _table(
                ["", "OT", "IT"],
                [
                    ["Success", _e(o.success.ot), _e(o.success.it)],
                    ["Failure", _e(o.failure.ot), _e(o.failure.it)],
                ],
            )
        )
        out.append(f"<p>Owner: {_person(contract, o.owner)}</p>" if o.owner else "")
    return "".join(out)


def _owned_by(contract: Contract, person_id: str) -> list[str]:
    things = [f"zone {z.id}" for z in contract.zones if z.owner == person_id]
    things += [f"conduit {c.id}" for c in contract.conduits if c.owner == person_id]
    things += [f"device {d.id}" for d in contract.devices if d.owner == person_id]
    things += [f"point {d.key(p)}" for d in contract.devices for p in d.points if p.owner == person_id]
    things += [f"sink {s.id}" for s in contract.sinks if s.owner == person_id]
    things += [f"command {c.id}" for c in contract.commands if c.owner == person_id]
    things += [f"objective {o.id}" for o in contract.objectives if o.owner == person_id]
    return things


def _people(contract: Contract) -> str:
    rows = []
    for p in contract.people:
        seam = " (seam owner)" if p.id == contract.seam_owner else ""
        rows.append(
            [
                _e(p.name) + _e(seam),
                f'<span class="tag side-{_e(p.side)}">{_e(p.side)}</span>',
                _e(p.role),
                _e(p.contact),
                _e(", ".join(_owned_by(contract, p.id))) or '<span class="muted">nothing</span>',
            ]
        )
    return _table(["Person", "Side", "Role", "Contact", "Owns"], rows)


def _range(point: Point) -> str:
    return f"{point.range.low:g} … {point.range.high:g}" if point.range else ""


def _deadband(point: Point) -> str:
    if point.deadband is None:
        return ""
    if point.deadband.percent is not None:
        return f"{point.deadband.percent:g} % of range"
    return f"{point.deadband.absolute:g} {point.unit}".strip() if point.deadband.absolute is not None else ""


def _constraints(device: Device) -> str:
    c = device.constraints
    items = [
        f"max {c.max_request_rate:g} requests/s" if c.max_request_rate is not None else "no request rate declared",
        f"restart: {c.restart_tolerance}",
        f"timeout {format_duration(c.timeout)}",
    ]
    if c.pause_between_requests:
        items.append(f"pause {format_duration(c.pause_between_requests)} between requests")
    if c.patch_window:
        items.append(f"patch window: {c.patch_window}")
    if c.notes:
        items.append(c.notes)
    return "<br>".join(_e(i) for i in items)


def _devices(contract: Contract) -> str:
    rows = [
        [
            _e(d.id),
            _e(" ".join(x for x in (d.vendor, d.model) if x) or d.description),
            _e(d.driver),
            _e(d.zone),
            _person(contract, d.owner),
            _e(format_duration(d.poll)),
            _constraints(d),
        ]
        for d in contract.devices
    ]
    return _table(["Device", "Equipment", "Driver", "Zone", "Owner", "Poll", "Constraints (set by OT)"], rows)


def _points(contract: Contract) -> str:
    rows = []
    for d in contract.devices:
        for p in d.points:
            owner = _person(contract, d.point_owner(p))
            if p.owner is None:
                owner += ' <span class="muted">(device)</span>'
            rows.append(
                [
                    _e(d.key(p)),
                    _e(p.address),
                    _e(p.type),
                    _e(p.unit),
                    _e(_range(p)),
                    _e(_deadband(p)),
                    owner,
                    _e(", ".join(p.consumers)),
                    "yes" if p.writable else "",
                ]
            )
    return _table(["Point", "Address", "Type", "Unit", "Range", "Deadband", "Owner", "Consumers", "Writable"], rows)


def _computed(contract: Contract) -> str:
    """Every computed point with what it is made of, so a consumer knows what the number means and
    who answers for the formula."""
    rows = []
    for item in lineage(contract).values():
        inputs = "<br>".join(_e(k) for k in item.inputs)
        sources = "<br>".join(_e(k) for k in item.sources)
        rows.append(
            [
                _e(item.key) + (f'<br><span class="muted">{_e(item.description)}</span>' if item.description else ""),
                f"<code>{_e(item.formula)}</code>",
                inputs,
                sources if item.sources != item.inputs else '<span class="muted">(the inputs)</span>',
                _e(item.type),
                _e(item.unit),
                _person(contract, item.owner),
                _e(", ".join(item.consumers)),
            ]
        )
    note = (
        "<p>Computed on the edge from the points they name, by the formula both sides sign here. A computed "
        "value is never of better quality than its worst input.</p>"
    )
    return note + _table(
        ["Point", "Computed as", "Inputs", "From device points", "Type", "Unit", "Formula owner", "Consumers"],
        rows,
        "no computed points",
    )


def _conduits(contract: Contract) -> str:
    rows = [
        [
            _e(c.id),
            f"{_e(c.from_zone)} → {_e(c.to_zone)}",
            _e(c.direction),
            _e(c.transport),
            _e(", ".join(c.protocols)),
            _e(", ".join(str(p) for p in c.ports)),
            _person(contract, c.owner),
            _e(c.justification),
        ]
        for c in contract.conduits
    ]
    return _table(
        ["Conduit", "From → to", "Direction", "Transport", "Protocols", "Ports", "Owner", "Justification"], rows
    )


def _zones(contract: Contract) -> str:
    rows = [
        [_e(z.id), _e(z.name), _e(f"{z.level:g}"), _e(z.security_level), _person(contract, z.owner), _e(z.description)]
        for z in sorted(contract.zones, key=lambda z: -z.level)
    ]
    return _table(["Zone", "Name", "Purdue level", "Target SL", "Owner", "Description"], rows)


def _nodes(contract: Contract) -> str:
    if not contract.nodes:
        return "<p>One node: every part of this contract runs on one machine.</p>"
    rows = []
    for n in contract.nodes:
        placement = contract.placement(n.id)
        runs = [f"device {d.id}" for d in placement.devices]
        runs += [f"source {s.id} ({s.type})" for s in placement.sources]
        runs += [f"sink {s.id} ({s.type})" for s in placement.sinks]
        rows.append([_e(n.id), _e(n.zone), _e(n.host or ""), _e(n.description), "<br>".join(_e(r) for r in runs)])
    return _table(["Node", "Zone", "Host", "Role", "Runs"], rows)


def _sources(contract: Contract) -> str:
    rows = [
        [_e(s.id), _e(s.type), _e(contract.node_of(s)), _e(s.conduit or "inside the node's zone")]
        for s in contract.sources
    ]
    return _table(["Source", "Type", "Node", "Conduit"], rows, "no sources: every input is polled from devices")


def _sinks(contract: Contract) -> str:
    rows = [
        [
            _e(s.id),
            _e(s.type),
            _e(contract.node_of(s)),
            _e(s.conduit or "stays in the node's zone"),
            _e(", ".join(s.points) or "every point"),
            "yes" if s.events else "no",
            _person(contract, s.owner) if s.owner else "",
        ]
        for s in contract.sinks
    ]
    return _table(["Sink", "Type", "Node", "Conduit", "Points", "Events", "Owner"], rows)


def _commands(contract: Contract) -> str:
    rows = [
        [
            _e(c.id) + (f'<br><span class="muted">{_e(c.description)}</span>' if c.description else ""),
            _e(c.point),
            _e(f"{c.range.low:g} … {c.range.high:g}") if c.range else '<span class="warning">any value</span>',
            _e(f"{c.rate * 3600:g} per hour") if c.rate else '<span class="warning">unlimited</span>',
            _e(c.window or "any time"),
            _e(c.conduit or ""),
            "<br>".join(f"{_e(a.role)} ({_e(a.side)})" for a in c.approvers),
        ]
        for c in contract.commands
    ]
    note = (
        "<p>These are the only writes from IT to OT that can exist. The contract requires every listed approver "
        "to approve each execution.</p>"
    )
    return note + _table(
        ["Command", "Point", "Range", "Rate", "Window", "Conduit", "Approvers"],
        rows,
        "no commands: IT cannot write to the plant",
    )


def _findings(findings: Sequence[Finding]) -> str:
    if not findings:
        return "<p><code>seam check</code> finds nothing to report.</p>"
    rows = [
        [
            f'<span class="{_e(f.severity)}">{_e(f.severity)}</span>',
            _e(f.rule),
            _e(f"line {f.line}"),
            _e(f.message),
            _e(f.hint),
        ]
        for f in findings
    ]
    return _table(["Severity", "Rule", "Where", "Finding", "How to fix"], rows)


def _sign_off(contract: Contract) -> str:
    """Blank lines to sign on paper: the contract is an agreement, and a printout gets signed."""
    rows = [
        [_e(p.name), f'<span class="tag side-{_e(p.side)}">{_e(p.side)}</span>', _e(p.role), "", ""]
        for p in contract.people
    ]
    return _table(["Name", "Side", "Role", "Signature", "Date"], rows)


def _summary(contract: Contract, findings: Sequence[Finding]) -> str:
    points = sum(len(d.points) for d in contract.devices)
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = sum(1 for f in findings if f.severity == "warning")
    state = (
        '<span class="muted">passes <code>seam check</code></span>'
        if not errors and not warnings
        else f'<span class="error">{errors} error(s)</span>, <span class="warning">{warnings} warning(s)</span> '
        '(see <a href="#open-findings">open findings</a>)'
    )
    counts = [
        (len(contract.zones), "zone"),
        (len(contract.conduits), "conduit"),
        (max(len(contract.nodes), 1), "node"),
        (len(contract.devices), "device"),
        (points, "point"),
        (len(contract.sources), "source"),
        (len(contract.sinks), "sink"),
        (len(contract.commands), "command"),
    ]
    if contract.computed:
        counts.insert(4, (len(contract.computed), "computed point"))
    text = ", ".join(f"{n} {word}{'' if n == 1 else 's'}" for n, word in counts)
    return f"<p>{text}. {state}</p>"


def render_html(loaded: LoadedContract, findings: Sequence[Finding]) -> str:
    c = loaded.contract
    site = " / ".join(c.site.path)
    sections = [
        ("Objectives", _objectives(c)),
        ("Zones and conduits", render_svg(c) + _zones(c) + _conduits(c)),
        ("Nodes", _nodes(c)),
        ("People and ownership", _people(c)),
        ("Devices and their constraints", _devices(c)),
        ("Points", _points(c)),
        ("Computed points", _computed(c)),
        ("What comes in", _sources(c)),
        ("What goes out", _sinks(c)),
        ("Commands", _commands(c)),
        ("Open findings", _findings(findings)),
        ("Sign-off", _sign_off(c)),
    ]
    body = "".join(
        f'<section><h2 id="{_e(title.lower().replace(" ", "-"))}">{_e(title)}</h2>{html}</section>'
        for title, html in sections
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Seam interface: {_e(site)}</title><style>{_CSS}</style></head><body>"
        f"<h1>Seam interface: {_e(site)}</h1>"
        f'<p class="sub">{_e(c.site.description)}</p>'
        f'<p class="sub">From {_e(loaded.source.file)}. Seam owner: {_person(c, c.seam_owner)}</p>'
        f"{_summary(c, findings)}"
        f"{body}</body></html>\n"
    )
