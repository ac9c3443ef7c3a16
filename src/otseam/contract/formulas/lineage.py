"""What every computed point is made of: its formula, its direct inputs, the device points at the
bottom of the chain, and who owns the formula. Read by ``seam doc``, and meant for every view that
shows a computed value to someone who has to trust it (the OPC UA server, the console)."""

from __future__ import annotations

from dataclasses import dataclass

from otseam.contract.formulas.program import Program, compile_computed
from otseam.contract.models import ComputedPoint, Contract
from otseam.contract.units import format_duration


@dataclass(frozen=True, slots=True)
class Lineage:
    key: str
    #: "expression", "window", "counter", "rate" or "condition".
    kind: str
    #: The computation in words or as written: the expression, "avg of plc1/flow over 1min", ...
    formula: str
    #: The point keys it reads directly (device points and other computed points).
    inputs: tuple[str, ...]
    #: The device points it depends on in the end, through any chain of computed points.
    sources: tuple[str, ...]
    #: The person who owns the formula (None: nobody declared; seam check warns).
    owner: str | None
    node: str | None
    type: str
    unit: str
    description: str
    consumers: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "kind": self.kind,
            "formula": self.formula,
            "inputs": list(self.inputs),
            "sources": list(self.sources),
            "owner": self.owner,
            "node": self.node,
            "type": self.type,
            "unit": self.unit,
            "description": self.description,
            "consumers": list(self.consumers),
        }


def formula(point: ComputedPoint) -> str:
    if point.expression is not None:
        return point.expression
    if point.window is not None:
        w = point.window
        text = f"{w.function} of {w.of} over {format_duration(w.length)}"
        return text + (f", every {format_duration(w.step)}" if w.step is not None else " (tumbling)")
    if point.counter is not None:
        c = point.counter
        if c.kind == "total":
            return f"total of {c.of} (a rate per {format_duration(c.per)}) over time"
        if c.kind == "duration":
            return f"time {c.of} is true, in units of {format_duration(c.per)}"
        return f"number of times {c.of} became true"
    if point.rate is not None:
        r = point.rate
        over = f" over {format_duration(r.over)}" if r.over is not None else ""
        return f"rate of change of {r.of} per {format_duration(r.per)}{over}"
    assert point.condition is not None
    c2 = point.condition
    text = f"alarm when {c2.when}"
    if c2.delay:
        text += f" for {format_duration(c2.delay)}"
    if c2.clear:
        text += f"; clears when {c2.clear}"
    return text


def _direct_inputs(point: ComputedPoint, programs: dict[str, Program]) -> tuple[str, ...]:
    program = programs.get(point.key)
    if program is not None:
        return tuple(program.inputs)
    spec = point.window or point.counter or point.rate
    return (spec.of,) if spec is not None else tuple(point.inputs.values())


def lineage(contract: Contract) -> dict[str, Lineage]:
    """The lineage of every computed point of ``contract``, by point key."""
    programs = compile_computed(contract).programs
    direct = {p.key: _direct_inputs(p, programs) for p in contract.computed}
    out: dict[str, Lineage] = {}
    for point in contract.computed:
        sources: list[str] = []
        seen: set[str] = set()
        stack = list(reversed(direct[point.key]))
        while stack:
            key = stack.pop()
            if key in seen:
                continue
            seen.add(key)
            if key in direct:
                stack.extend(reversed(direct[key]))
            elif key not in sources:
                sources.append(key)
        out[point.key] = Lineage(
            key=point.key,
            kind=next(
                k for k in ("expression", "window", "counter", "rate", "condition") if getattr(point, k) is not None
            ),
            formula=formula(point),
            inputs=direct[point.key],
            sources=tuple(sources),
            owner=point.owner,
            node=point.node,
            type=point.type,
            unit=point.unit,
            description=point.description,
            consumers=tuple(point.consumers),
        )
    return out
