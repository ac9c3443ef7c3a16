"""Type and unit checking of an expression against the points it names.

Types are ``bool``, ``int``, ``float`` and ``string`` (a point's data type maps onto one of them). Units
are the points' ``unit`` texts: adding, comparing or choosing between two values with different known
units is refused (convert one first), a literal number takes the unit of what it meets, and a product
or quotient has a derived unit that is not checked further. An empty unit means "not declared" and is
never refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from otseam.contract.formulas.expr import Binary, BoolLit, Call, Cond, ExprError, Node, Num, Ref, Str, Unary
from otseam.contract.formulas.units import conversion, known_units

#: A point's data type as the expression sees it.
KIND_OF_TYPE = {
    "bool": "bool",
    "string": "string",
    "float32": "float",
    "float64": "float",
    **{t: "int" for t in ("int16", "uint16", "int32", "uint32", "int64", "uint64")},
}


@dataclass(frozen=True, slots=True)
class Input:
    """What a reference resolves to: a point key, its value kind and unit."""

    key: str
    kind: str
    unit: str


@dataclass(frozen=True, slots=True)
class Typed:
    kind: str
    #: None: a literal (takes the unit of what it meets) or a derived unit (not checked).
    unit: str | None
    literal: bool = False
    #: Multiplied or divided by a constant somewhere: the unit is kept for adding and comparing, but a
    #: scale factor is often a change of unit (m to % of a tank's height), so it is not held against the
    #: unit the point declares.
    scaled: bool = False


@dataclass(slots=True)
class Checked:
    tree: Node
    kind: str
    unit: str | None
    scaled: bool = False
    #: Point keys by reference position, and the distinct keys in order of first use.
    keys: dict[int, str] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    #: Conversion coefficients by call position (a, b): target = a * source + b.
    conversions: dict[int, tuple[float, float]] = field(default_factory=dict)


Resolver = Callable[[Ref], Input]

_NUMERIC = ("int", "float")
FUNCTIONS = ("abs", "min", "max", "clamp", "if", "round", "floor", "ceil", "sqrt", "convert")


def check(tree: Node, resolve: Resolver) -> Checked:
    """Type-check ``tree``; :class:`ExprError` at the offending character if it is not sound."""
    result = Checked(tree, "", None)
    typed = _Checker(resolve, result).visit(tree)
    result.kind, result.unit, result.scaled = typed.kind, typed.unit, typed.scaled
    return result


def start(node: Node) -> int:
    """Where the text of a sub-expression begins (a binary node's own position is its operator's)."""
    while isinstance(node, Binary | Cond):
        node = node.left if isinstance(node, Binary) else node.test
    return node.pos


def _same_unit(a: Typed, b: Typed) -> str | None:
    """The unit of a value combining ``a`` and ``b`` additively, or None when either is open."""
    if a.unit and b.unit:
        return a.unit if a.unit == b.unit else "!"
    return a.unit or b.unit if (a.unit or b.unit) else None


class _Checker:
    def __init__(self, resolve: Resolver, result: Checked) -> None:
        self.resolve = resolve
        self.result = result

    def visit(self, node: Node) -> Typed:
        if isinstance(node, Num):
            return Typed("int" if isinstance(node.value, int) else "float", None, literal=True)
        if isinstance(node, BoolLit):
            return Typed("bool", None, literal=True)
        if isinstance(node, Str):
            return Typed("string", None, literal=True)
        if isinstance(node, Ref):
            found = self.resolve(node)
            self.result.keys[node.pos] = found.key
            if found.key not in self.result.inputs:
                self.result.inputs.append(found.key)
            return Typed(found.kind, found.unit or None)
        if isinstance(node, Unary):
            operand = self.visit(node.operand)
            if node.op == "not":
                self._want(operand, ("bool",), node.operand, "'not' applies to true/false values")
                return Typed("bool", None)
            self._want(operand, _NUMERIC, node.operand, "'-' applies to numbers")
            return operand
        if isinstance(node, Binary):
            return self.binary(node)
        if isinstance(node, Cond):
            return self.choose(node, node.test, node.then, node.other)
        if isinstance(node, Call):
            return self.call(node)
        raise ExprError("unsupported expression", node.pos)  # pragma: no cover - the parser makes no other nodes

    def _want(self, typed: Typed, kinds: tuple[str, ...], node: Node, why: str) -> None:
        if typed.kind not in kinds:
            raise ExprError(f"{why}; this is a {typed.kind}", start(node))

    def binary(self, node: Binary) -> Typed:
        left, right = self.visit(node.left), self.visit(node.right)
        op = node.op
        if op in ("and", "or"):
            self._want(left, ("bool",), node.left, f"'{op}' combines true/false values")
            self._want(right, ("bool",), node.right, f"'{op}' combines true/false values")
            return Typed("bool", None)
        if op in ("==", "!="):
            if left.kind != right.kind and not (left.kind in _NUMERIC and right.kind in _NUMERIC):
                raise ExprError(f"'{op}' compares a {left.kind} with a {right.kind}", node.pos)
            self._units(left, right, node, "compare")
            return Typed("bool", None)
        if op in ("<", "<=", ">", ">="):
            self._want(left, _NUMERIC, node.left, f"'{op}' compares numbers")
            self._want(right, _NUMERIC, node.right, f"'{op}' compares numbers")
            self._units(left, right, node, "compare")
            return Typed("bool", None)
        self._want(left, _NUMERIC, node.left, f"'{op}' applies to numbers")
        self._want(right, _NUMERIC, node.right, f"'{op}' applies to numbers")
        kind = "float" if op == "/" or "float" in (left.kind, right.kind) else "int"
        literal = left.literal and right.literal
        scaled = left.scaled or right.scaled
        if op in ("+", "-", "%"):
            verb = "add" if op == "+" else "subtract"
            return Typed(kind, self._units(left, right, node, verb), literal, scaled)
        # A product or quotient with a literal keeps the other side's unit (a scale factor); otherwise
        # its unit is derived and not checked.
        if left.literal:
            return Typed(kind, right.unit, literal, True)
        if right.literal:
            return Typed(kind, left.unit, literal, True)
        return Typed(kind, None)

    def _units(self, left: Typed, right: Typed, node: Node, verb: str) -> str | None:
        unit = _same_unit(left, right)
        if unit == "!":
            raise ExprError(
                f"cannot {verb} {left.unit!r} and {right.unit!r}",
                node.pos,
                f'convert one side first, e.g. convert(x, "{right.unit}", "{left.unit}")',
            )
        return unit

    def choose(self, node: Node, test: Node, then: Node, other: Node) -> Typed:
        self._want(self.visit(test), ("bool",), test, "the condition must be true/false")
        a, b = self.visit(then), self.visit(other)
        if a.kind != b.kind and not (a.kind in _NUMERIC and b.kind in _NUMERIC):
            raise ExprError(f"the two results are a {a.kind} and a {b.kind}: they must be of one kind", node.pos)
        unit = self._units(a, b, node, "choose between")
        kind = "float" if "float" in (a.kind, b.kind) else a.kind
        return Typed(kind, unit, a.literal and b.literal, a.scaled or b.scaled)

    def call(self, node: Call) -> Typed:
        name, args = node.name, node.args
        if name not in FUNCTIONS:
            raise ExprError(f"unknown function {name}()", node.pos, f"the functions are {', '.join(FUNCTIONS)}")
        arity = {"abs": 1, "round": 1, "floor": 1, "ceil": 1, "sqrt": 1, "clamp": 3, "if": 3, "convert": 3}
        if name in arity and len(args) != arity[name]:
            raise ExprError(f"{name}() takes {arity[name]} argument(s), not {len(args)}", node.pos)
        if name in ("min", "max") and len(args) < 2:
            raise ExprError(f"{name}() takes at least 2 arguments", node.pos)
        if name == "if":
            return self.choose(node, *args)
        if name == "convert":
            return self.convert(node)
        typed = [self.visit(arg) for arg in args]
        for arg, t in zip(args, typed, strict=True):
            self._want(t, _NUMERIC, arg, f"{name}() applies to numbers")
        if name in ("round", "floor", "ceil"):
            return Typed("int", typed[0].unit, typed[0].literal)
        if name == "sqrt":
            return Typed("float", None, typed[0].literal)
        if name == "abs":
            return typed[0]
        unit = typed[0]
        for t in typed[1:]:
            unit = Typed(unit.kind, self._units(unit, t, node, f"take {name}() of"))
        kind = "float" if any(t.kind == "float" for t in typed) else "int"
        return Typed(kind, unit.unit, all(t.literal for t in typed))

    def convert(self, node: Call) -> Typed:
        value_node, source_node, target_node = node.args
        value = self.visit(value_node)
        self._want(value, _NUMERIC, value_node, "convert() converts a number")
        names = []
        for arg in (source_node, target_node):
            if not isinstance(arg, Str):
                raise ExprError('convert() takes the units as quoted text, e.g. convert(x, "degF", "degC")', arg.pos)
            names.append(arg.value)
        try:
            coefficients = conversion(names[0], names[1])
        except ValueError as exc:
            raise ExprError(str(exc), source_node.pos, f"known units: {known_units()}") from None
        if value.unit and value.unit != names[0]:
            raise ExprError(
                f"the value is in {value.unit!r}, not {names[0]!r}",
                source_node.pos,
                f'write convert(x, "{value.unit}", ...)',
            )
        self.result.conversions[node.pos] = coefficients
        return Typed("float", names[1], value.literal)
