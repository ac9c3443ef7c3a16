"""Computed points of a contract, checked and compiled into programs the engine runs.

Everything that can be wrong with a computed point is found here, once, with the field and the
character it concerns: unknown points and names, type and unit errors, cycles. ``seam check`` reports
these with file:line:column; the runtime refuses to start (or to reload) while there are any.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from otseam.contract.formulas.check import KIND_OF_TYPE, Checked, Input, check
from otseam.contract.formulas.expr import ExprError, Ref, parse
from otseam.contract.models import COMPUTED_DEVICE, INTEGER_RANGES, ComputedPoint, Contract

#: The fields of a computed point whose text is an expression.
EXPRESSION_FIELDS = ("expression", "condition.when", "condition.clear")


@dataclass(slots=True)
class Program:
    """One computed point, ready to run."""

    key: str
    point: ComputedPoint
    #: "expression", "window", "counter", "rate" or "condition".
    kind: str
    #: The point keys it reads, in order of first use.
    inputs: list[str]
    #: Equal fingerprints mean the same computation: state carries over a reload and a restart.
    fingerprint: str
    #: "bool", "int", "float" or "string": the kind of value published.
    output: str
    int_range: tuple[int, int] | None = None
    expression: Checked | None = None
    when: Checked | None = None
    clear: Checked | None = None


@dataclass(slots=True)
class ComputeProblem:
    """Something wrong with computed point number ``index``; ``where`` is the field (dotted), ``pos``
    the character inside an expression when the problem is in one."""

    index: int
    where: str
    message: str
    hint: str = ""
    pos: int | None = None


@dataclass(slots=True)
class Compiled:
    programs: dict[str, Program] = field(default_factory=dict)
    problems: list[ComputeProblem] = field(default_factory=list)


def _fingerprint(point: ComputedPoint) -> str:
    what = point.model_dump(
        mode="json", include={"expression", "inputs", "window", "counter", "rate", "condition", "type"}
    )
    return json.dumps(what, sort_keys=True)


def _kind(point: ComputedPoint) -> str:
    for kind in ("expression", "window", "counter", "rate", "condition"):
        if getattr(point, kind) is not None:
            return kind
    raise ValueError(f"computed point {point.id} has no computation")  # the model refuses this already


class _Scope:
    """What references in the contract can resolve to."""

    def __init__(self, contract: Contract) -> None:
        self.points: dict[str, Input] = {}
        for device in contract.devices:
            for point in device.points:
                key = device.key(point)
                self.points[key] = Input(key, KIND_OF_TYPE[point.type], point.unit)
        for computed in contract.computed:
            self.points.setdefault(computed.key, Input(computed.key, KIND_OF_TYPE[computed.type], computed.unit))

    def key(self, text: str, point: ComputedPoint, pos: int, dollar: bool) -> Input:
        """Resolve a reference as written (``plc1/level``, ``total``) for ``point``."""
        if text in point.inputs:
            target = point.inputs[text]
            found = self.points.get(target)
            if found is None:
                raise ExprError(f"input {text!r} names {target!r}, which the contract does not declare", pos)
            return found
        if "/" in text:
            found = self.points.get(text)
            if found is None:
                raise ExprError(
                    f"the contract declares no point {text!r}", pos, "write a device point as $device/point"
                )
            return found
        found = self.points.get(f"{COMPUTED_DEVICE}/{text}")
        if found is None:
            written = f"${text}" if dollar else text
            raise ExprError(
                f"unknown name {written!r}",
                pos,
                "name it under 'inputs:' of this computed point, write a point as $device/point, "
                "or use the id of another computed point",
            )
        return found

    def known(self, key: str) -> Input | None:
        return self.points.get(key)


def compile_computed(contract: Contract) -> Compiled:
    """Every computed point of ``contract`` compiled; problems collected, none raised."""
    scope = _Scope(contract)
    result = Compiled()
    seen: set[str] = set()
    device_ids = {d.id for d in contract.devices}
    for index, point in enumerate(contract.computed):
        if point.key in seen:
            result.problems.append(ComputeProblem(index, "id", f"computed point {point.id!r} is declared twice"))
            continue
        seen.add(point.key)
        if COMPUTED_DEVICE in device_ids and index == 0:
            result.problems.append(
                ComputeProblem(
                    index,
                    "id",
                    f"a device is named {COMPUTED_DEVICE!r}: its points' keys would clash with computed points",
                    "rename that device",
                )
            )
        program = _compile_one(index, point, scope, result.problems)
        if program is not None:
            result.programs[program.key] = program
    _cycles(contract, result)
    return result


def _compile_one(index: int, point: ComputedPoint, scope: _Scope, problems: list[ComputeProblem]) -> Program | None:
    kind = _kind(point)
    output = KIND_OF_TYPE[point.type]
    program = Program(point.key, point, kind, [], _fingerprint(point), output, INTEGER_RANGES.get(point.type))
    before = len(problems)
    for name, target in point.inputs.items():
        if not name.isidentifier() or name in ("true", "false", "and", "or", "not"):
            problems.append(
                ComputeProblem(index, f"inputs.{name}", f"{name!r} cannot be used as a name in expressions")
            )
        elif scope.known(target) is None:
            problems.append(ComputeProblem(index, f"inputs.{name}", f"the contract declares no point {target!r}"))
    if kind == "expression":
        assert point.expression is not None
        program.expression = _checked(index, "expression", point.expression, point, scope, problems)
        if program.expression is not None:
            _result_fits(index, "expression", program.expression, point, problems)
            program.inputs = list(program.expression.inputs)
    elif kind == "condition":
        condition = point.condition
        assert condition is not None
        if output != "bool":
            problems.append(ComputeProblem(index, "type", "a condition is published as true/false: give 'type: bool'"))
        program.when = _checked(index, "condition.when", condition.when, point, scope, problems)
        if condition.clear is not None:
            program.clear = _checked(index, "condition.clear", condition.clear, point, scope, problems)
        for field_name, checked in (("condition.when", program.when), ("condition.clear", program.clear)):
            if checked is not None and checked.kind != "bool":
                problems.append(
                    ComputeProblem(
                        index, field_name, f"a condition must be true/false; this is a {checked.kind}", pos=0
                    )
                )
            if checked is not None:
                program.inputs += [k for k in checked.inputs if k not in program.inputs]
    else:
        spec = getattr(point, kind)
        source = scope.known(spec.of)
        if source is None:
            problems.append(
                ComputeProblem(
                    index,
                    f"{kind}.of",
                    f"the contract declares no point {spec.of!r}",
                    "write a point key such as plc1/flow",
                )
            )
        else:
            program.inputs = [spec.of]
            _stream_fits(index, kind, point, source, problems)
    if kind in ("expression", "condition") and len(problems) == before and not program.inputs:
        where = "expression" if kind == "expression" else "condition.when"
        problems.append(
            ComputeProblem(
                index, where, "the formula reads no point: it would never be computed", "name at least one point", 0
            )
        )
    return program if len(problems) == before else None


def _checked(
    index: int, where: str, text: str, point: ComputedPoint, scope: _Scope, problems: list[ComputeProblem]
) -> Checked | None:
    try:
        tree = parse(text)

        def resolve(ref: Ref) -> Input:
            return scope.key(ref.name, point, ref.pos, ref.dollar)

        return check(tree, resolve)
    except ExprError as exc:
        problems.append(ComputeProblem(index, where, exc.message, exc.hint, exc.pos))
        return None


def _result_fits(
    index: int, where: str, checked: Checked, point: ComputedPoint, problems: list[ComputeProblem]
) -> None:
    declared = KIND_OF_TYPE[point.type]
    fits = checked.kind == declared or (declared == "float" and checked.kind == "int")
    if not fits:
        hint = "declare the matching 'type'"
        if declared == "int" and checked.kind == "float":
            hint = "wrap it in round(), floor() or ceil(), or declare a float type"
        problems.append(
            ComputeProblem(
                index, where, f"the expression gives a {checked.kind}, the point is declared {point.type}", hint, 0
            )
        )
    if checked.unit and point.unit and checked.unit != point.unit and not checked.scaled:
        problems.append(
            ComputeProblem(
                index,
                where,
                f"the expression gives {checked.unit!r}, the point is declared in {point.unit!r}",
                f'convert it: convert(..., "{checked.unit}", "{point.unit}"), or correct the unit',
                0,
            )
        )


def _stream_fits(index: int, kind: str, point: ComputedPoint, source: Input, problems: list[ComputeProblem]) -> None:
    declared = KIND_OF_TYPE[point.type]
    if kind == "window":
        assert point.window is not None
        function = point.window.function
        if source.kind not in ("int", "float") and function not in ("count", "first", "last"):
            problems.append(
                ComputeProblem(
                    index, "window.function", f"{function} needs a numeric point; {source.key} is a {source.kind}"
                )
            )
        if point.window.step is not None and not 0 < point.window.step <= point.window.length:
            problems.append(
                ComputeProblem(
                    index, "window.step", "a sliding window's step must be longer than zero and at most its length"
                )
            )
        if point.window.length <= 0:
            problems.append(ComputeProblem(index, "window.length", "a window must be longer than zero"))
        wants = "int" if function == "count" else ("float" if function in ("avg", "stddev", "sum") else source.kind)
        same_unit = function not in ("count",)
        if same_unit and source.unit and point.unit and source.unit != point.unit and function != "stddev":
            problems.append(
                ComputeProblem(
                    index, "unit", f"the {function} of {source.key} is in {source.unit!r}, not {point.unit!r}"
                )
            )
    elif kind == "counter":
        assert point.counter is not None
        counter = point.counter
        if counter.kind == "total" and source.kind not in ("int", "float"):
            problems.append(
                ComputeProblem(index, "counter.of", f"a total integrates a number; {source.key} is a {source.kind}")
            )
        if counter.kind != "total" and source.kind == "string":
            problems.append(
                ComputeProblem(
                    index, "counter.of", f"{counter.kind} counts a true/false point; {source.key} is a string"
                )
            )
        if counter.per <= 0 or counter.max_gap <= 0:
            problems.append(ComputeProblem(index, "counter", "'per' and 'max_gap' must be longer than zero"))
        wants = "int" if counter.kind == "count" else "float"
    else:
        assert point.rate is not None
        if source.kind not in ("int", "float"):
            problems.append(
                ComputeProblem(index, "rate.of", f"a rate of change needs a number; {source.key} is a {source.kind}")
            )
        if point.rate.per <= 0 or (point.rate.over is not None and point.rate.over <= 0):
            problems.append(ComputeProblem(index, "rate", "'per' and 'over' must be longer than zero"))
        wants = "float"
    fits = declared == wants or (declared == "float" and wants == "int")
    if not fits:
        problems.append(
            ComputeProblem(index, "type", f"this {kind} gives a {wants}; the point is declared {point.type}")
        )


def _cycles(contract: Contract, result: Compiled) -> None:
    """A computed point may not depend on itself, directly or through others."""
    graph = {key: [k for k in p.inputs if k in result.programs] for key, p in result.programs.items()}
    index_of = {p.key: i for i, p in enumerate(contract.computed)}
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    reported: set[str] = set()
    for root in graph:
        if root in state:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = [root]
        state[root] = 1
        while stack:
            node, i = stack[-1]
            if i < len(graph[node]):
                stack[-1] = (node, i + 1)
                child = graph[node][i]
                if state.get(child) == 1:
                    loop = [*path[path.index(child) :], child]
                    if not reported.intersection(loop):
                        reported.update(loop)
                        result.problems.append(
                            ComputeProblem(
                                index_of[child],
                                _field(result.programs[child]),
                                "computed points depend on each other in a loop: " + " -> ".join(loop),
                                "break the loop: a computed point cannot depend on its own result",
                            )
                        )
                elif child not in state:
                    state[child] = 1
                    stack.append((child, 0))
                    path.append(child)
            else:
                state[node] = 2
                stack.pop()
                path.pop()
    for key in reported:
        result.programs.pop(key, None)


def _field(program: Program) -> str:
    return {"expression": "expression", "condition": "condition.when"}.get(program.kind, f"{program.kind}.of")


def source_devices(contract: Contract, programs: dict[str, Program]) -> dict[str, set[str]]:
    """For each computed point, the devices whose points it depends on, through any chain."""
    device_of = {device.key(point): device.id for device in contract.devices for point in device.points}
    out: dict[str, set[str]] = {}

    def walk(key: str, trail: frozenset[str]) -> set[str]:
        if key in out:
            return out[key]
        found: set[str] = set()
        program = programs.get(key)
        if program is not None and key not in trail:
            for input_key in program.inputs:
                if input_key in device_of:
                    found.add(device_of[input_key])
                else:
                    found |= walk(input_key, trail | {key})
        out[key] = found
        return found

    for key in programs:
        walk(key, frozenset())
    return out
