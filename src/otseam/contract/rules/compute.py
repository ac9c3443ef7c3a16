"""Computed-point rules (COMPUTE-*): every formula is sound, refers to declared points, and can run.

Problems inside an expression are reported at the character they concern (file:line:column of that
character in the contract), when the expression is written on one line or as a block; otherwise at the
start of the value.
"""

from __future__ import annotations

from collections.abc import Iterator

from otseam.contract.formulas.program import ComputeProblem, compile_computed, source_devices
from otseam.contract.loader import LoadedContract, PathKey
from otseam.contract.rules.registry import Hit, Severity, rule


def _path(problem: ComputeProblem) -> PathKey:
    return ("computed", problem.index, *problem.where.split("."))


def _value_position(loaded: LoadedContract, problem: ComputeProblem) -> tuple[int, int] | None:
    """Where character ``problem.pos`` of the expression is in the file (1-based line and column)."""
    if problem.pos is None or not loaded.text:
        return None
    parts: list[str | int] = ["computed", problem.index, *problem.where.split(".")]
    place = loaded.source.value_at(parts)
    expression: object = loaded.raw
    try:
        for part in parts:
            expression = expression[part]  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        return None
    if place is None:
        return None
    line, column = place.line - 1, place.column - 1
    if not isinstance(expression, str):
        return None
    # The character's line within the expression, and its offset on that line.
    before = expression[: problem.pos]
    row = before.count("\n")
    offset = problem.pos - (before.rfind("\n") + 1)
    wanted = expression.split("\n")[row]
    lines = loaded.text.splitlines()
    for number in range(line, min(line + 1 + expression.count("\n") + 2 + row, len(lines))):
        start = column if number == line else 0
        found = lines[number].find(wanted, start) if wanted else -1
        if found >= 0:
            return number + 1, found + offset + 1
    return None


def _hits(loaded: LoadedContract, cycles: bool) -> Iterator[Hit]:
    for problem in compile_computed(loaded.contract).problems:
        if problem.message.startswith("computed points depend on each other") != cycles:
            continue
        key = loaded.contract.computed[problem.index].key
        yield Hit(_path(problem), f"{key}: {problem.message}", problem.hint, _value_position(loaded, problem))


@rule(
    "COMPUTE-001",
    Severity.ERROR,
    "Every computed point's formula is valid, refers to declared points and fits its type and unit",
    "correct the formula as the message says; docs/compute.md describes the language",
)
def formulas_check(loaded: LoadedContract) -> Iterator[Hit]:
    yield from _hits(loaded, cycles=False)


@rule(
    "COMPUTE-002",
    Severity.ERROR,
    "No computed point depends on its own result",
    "break the loop: a computed point cannot read itself, directly or through others",
)
def no_cycles(loaded: LoadedContract) -> Iterator[Hit]:
    yield from _hits(loaded, cycles=True)


@rule(
    "COMPUTE-003",
    Severity.ERROR,
    "A computed point's inputs are polled on one node, the node that computes it",
    "compute it on the node that polls its inputs; a value from another node arrives there as data, "
    "not as a point that node can compute from",
)
def inputs_on_one_node(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    compiled = compile_computed(contract)
    placed = source_devices(contract, compiled.programs)
    for index, point in enumerate(contract.computed):
        devices = placed.get(point.key)
        if not devices:
            continue
        nodes = sorted({contract.node_of(d) for d in contract.devices if d.id in devices})
        if len(nodes) > 1:
            yield Hit(
                ("computed", index),
                f"{point.key} reads points polled on different nodes ({', '.join(nodes)})",
            )
        elif point.node is not None and point.node != nodes[0]:
            yield Hit(
                ("computed", index, "node"),
                f"{point.key} is placed on node '{point.node}' but its inputs are polled on node '{nodes[0]}'",
                f"set 'node: {nodes[0]}' or leave 'node' out",
            )
