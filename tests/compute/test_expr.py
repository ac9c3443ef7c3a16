"""The expression language: parsing, type and unit checking, evaluation, and fuzzing of the parser."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otseam.compute.evaluate import compile_closure, interpret
from otseam.contract.formulas.check import Checked, Input, check
from otseam.contract.formulas.expr import MAX_LENGTH, ExprError, Ref, parse
from tests.compute.helpers import problems

UNITS = {"a": ("float", "m"), "b": ("float", "m"), "t": ("float", "degF"), "p": ("float", "bar"), "n": ("int", "")}
UNITS |= {"ok": ("bool", ""), "txt": ("string", "")}


def resolve(ref: Ref) -> Input:
    name = ref.name.removeprefix("dev/")
    if name not in UNITS:
        raise ExprError(f"unknown name {name!r}", ref.pos)
    kind, unit = UNITS[name]
    return Input(f"dev/{name}", kind, unit)


def checked(text: str) -> Checked:
    return check(parse(text), resolve)


def run(text: str, **values: Any) -> Any:
    """Evaluate with the compiled closures and with the tree walker; both must agree."""
    c = checked(text)
    by_key = {f"dev/{k}": v for k, v in values.items()}
    index = {key: i for i, key in enumerate(by_key)}
    slots = list(by_key.values())
    fast = compile_closure(c, index, slots)()
    slow = interpret(c, by_key)
    assert fast == slow or (isinstance(fast, float) and math.isclose(fast, slow))
    return fast


def error(text: str) -> ExprError:
    with pytest.raises(ExprError) as info:
        checked(text)
    return info.value


# --- evaluation --------------------------------------------------------------------------------------


def test_arithmetic_follows_the_usual_precedence() -> None:
    assert run("1 + 2 * 3 - 4 / 2") == 5.0
    assert run("(1 + 2) * 3") == 9
    assert run("-$a * 2", a=1.5) == -3.0
    assert run("7 % 3") == 1


def test_point_references_by_key_and_by_name() -> None:
    assert run("$dev/a + a + $a", a=2.0) == 6.0


def test_comparisons_logic_and_conditionals() -> None:
    assert run("$a > 1 and not ($b < 0) or false", a=2.0, b=1.0) is True
    assert run("$a > 1 && !ok || false", a=2.0, ok=True) is False
    assert run("$a > 1 ? 10 : 20", a=0.5) == 20
    assert run("if(ok, $a, $b)", ok=True, a=1.0, b=2.0) == 1.0
    assert run('txt == "running"', txt="running") is True


def test_functions() -> None:
    assert run("min($a, $b, 3)", a=5.0, b=4.0) == 3
    assert run("max($a, $b)", a=5.0, b=4.0) == 5.0
    assert run("abs(-$a)", a=2.5) == 2.5
    assert run("clamp($a, 0, 10)", a=12.0) == 10
    assert run("round(2.5) + round(-2.5) + floor(1.7) + ceil(1.2)") == 3 - 3 + 1 + 2
    assert run("sqrt(16)") == 4.0


def test_unit_conversion() -> None:
    assert run('convert($t, "degF", "degC")', t=212.0) == pytest.approx(100.0)
    assert run('convert($p, "bar", "kPa")', p=1.5) == pytest.approx(150.0)
    assert run('convert(10, "m3/h", "l/s")') == pytest.approx(10 / 3.6)


def test_results_carry_their_kind_and_unit() -> None:
    assert (checked("$a + 1").kind, checked("$a + 1").unit) == ("float", "m")
    assert checked("$a * $b").unit is None  # derived, not checked further
    assert checked('convert($t, "degF", "degC")').unit == "degC"
    assert checked("n + 1").kind == "int" and checked("n / 2").kind == "float"
    assert checked("$a > 1").kind == "bool"


# --- errors, each at the character it concerns ------------------------------------------------------


def test_unit_mismatch_is_refused_where_it_happens() -> None:
    e = error("$a + $p")
    assert "cannot add 'm' and 'bar'" in e.message and e.pos == 3 and "convert" in e.hint
    assert error("$t > $p").pos == 3
    assert "take max() of" in error("max($a, $p)").message


def test_kind_errors() -> None:
    assert error("$a and ok").message.startswith("'and' combines true/false values")
    assert error("ok + 1").pos == 0
    assert "compares a string with a float" in error("txt == $a").message
    assert "must be of one kind" in error("ok ? 1 : txt").message


def test_conversion_errors() -> None:
    assert "cannot be converted" in error('convert($p, "bar", "degC")').message
    assert "not in the conversion table" in error('convert($p, "bar", "furlong")').message
    assert "the value is in 'degF'" in error('convert($t, "degC", "K")').message
    assert "quoted text" in error("convert($t, degF, degC)").message


def test_syntax_errors_say_where_and_what() -> None:
    cases = {
        "$a +": (4, "expected a value, found the end"),
        "$a $b": (3, "unexpected '$b'"),
        "($a + 1": (7, "expected ')'"),
        "$a = 1": (3, "unexpected character '='"),
        "1 < $a < 3": (7, "comparisons do not chain"),
        "foo(1)": (0, "unknown function foo()"),
        "abs(1, 2)": (0, "abs() takes 1 argument"),
        "$zz": (0, "unknown name 'zz'"),
        "'open": (0, "unexpected character"),
        "": (0, "the expression is empty"),
        "$ a": (0, "unexpected character '$'"),
    }
    for text, (pos, message) in cases.items():
        e = error(text)
        assert e.pos == pos and message in e.message, (text, e.pos, e.message)


def test_size_and_depth_are_bounded() -> None:
    assert "characters long" in error("1+" * MAX_LENGTH + "1").message
    assert "nests more than" in error("(" * 100 + "1" + ")" * 100).message
    assert "nests more than" in error("1" + "+1" * 1000).message
    assert "nests more than" in error("-" * 200 + "1").message


# --- fuzzing -----------------------------------------------------------------------------------------

_ATOMS = st.sampled_from(["$a", "b", "n", "ok", "txt", "1", "2.5", '"m"', "true", "$dev/t", "0", "1e308"])
_GLUE = st.sampled_from([*list("+-*/%<>?:(),! "), "==", "!=", "<=", "and", "or", "not", "min(", "if(", "convert("])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    try:
        checked(text)
    except ExprError as exc:
        assert 0 <= exc.pos <= len(text)
        assert exc.message


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_ATOMS, _GLUE), max_size=40))
def test_token_soup_parses_or_fails_cleanly_and_evaluates_the_same_both_ways(parts: list[str]) -> None:
    text = " ".join(parts)
    try:
        c = checked(text)
    except ExprError as exc:
        assert 0 <= exc.pos <= len(text) and exc.message
        return
    values = {"dev/a": 1.5, "dev/b": -2.0, "dev/n": 3, "dev/ok": True, "dev/txt": "x", "dev/t": 50.0}
    values |= {"dev/p": 1.0}
    index = {key: i for i, key in enumerate(values)}
    slots = list(values.values())
    try:
        fast: Any = compile_closure(c, index, slots)()
    except (ArithmeticError, ValueError) as exc:
        fast = type(exc)
    try:
        slow: Any = interpret(c, values)
    except (ArithmeticError, ValueError) as exc:
        slow = type(exc)
    assert fast == slow or (isinstance(fast, float) and (math.isclose(fast, slow) or math.isnan(fast)))


def test_contract_problems_name_the_field() -> None:
    found = problems({"id": "x", "expression": "$plc1/level + $plc1/pressure", "unit": "m"})
    assert found == ["expression: cannot add 'm' and 'bar'"]


def test_only_ascii_digits_are_numbers() -> None:
    assert "unexpected character" in error("\u0663 + 1").message
    assert "unexpected character" in error("1\u00a0+ 1").message
