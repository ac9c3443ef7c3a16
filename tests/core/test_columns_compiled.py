"""The C encoder of the columnar format (``_speedups.encode_columns``) against the Python reference.

The C encoder writes the common runs (all values floats, or all str) and returns None for everything
else, which the Python encoder then does. Whatever it returns must be byte for byte what the Python
gives, and it must say None rather than guess wherever the Python would do something else.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otseam.core import columns
from otseam.core.records import Quality, Sample
from otseam.diode import wire

speedups = wire.speedups(True)
assert speedups is not None


def test_loading_the_diodes_module_hands_its_encoder_to_the_core() -> None:
    assert columns._COMPILED is speedups.encode_columns


class Text(str):
    pass


class Number(float):
    pass


def _reference(source: Any, offsets: Any, samples: Any) -> tuple[str, Any]:
    """What the Python encoder gives: ("ok", payload) or ("error", exception type)."""
    try:
        return "ok", columns.encode(source, offsets, samples, compiled=False)
    except Exception as exc:  # every failure of the reference is a case to compare
        return "error", type(exc)


def _compare(source: Any, offsets: Any, samples: Any) -> bytes | None:
    """Holds ``columns.encode`` (C first) to the reference; returns what the C encoder gave."""
    fast = speedups.encode_columns(source, offsets, samples)
    outcome, expected = _reference(source, offsets, samples)
    if fast is not None:
        assert (outcome, fast) == ("ok", expected)
    try:
        assert ("ok", columns.encode(source, offsets, samples)) == (outcome, expected)
    except Exception as exc:
        assert ("error", type(exc)) == (outcome, expected)
    return fast


#: Text that JSON must escape, non-ASCII of every UTF-8 length, and lone surrogates.
_tricky = st.text(
    alphabet=st.one_of(
        st.sampled_from(['"', "\\", "\b", "\f", "\n", "\r", "\t", "\x00", "\x1f", "\x7f", "é", "€", "😀", "\ud800"]),
        st.characters(),
    ),
    max_size=40,
)
_floats = st.floats(allow_nan=True, allow_infinity=True)
_keys = st.one_of(st.sampled_from(["plc/p1", "plc/p2", "é/ü", 'a"b', "tab\there"]), _tricky)


@st.composite
def _runs(draw: st.DrawFn) -> tuple[str, list[int], list[Sample]]:
    count = draw(st.integers(min_value=1, max_value=25))
    kind = draw(st.sampled_from(["float", "text", "mixed"]))
    plain_values = _floats if kind == "float" else _tricky if kind == "text" else st.nothing()
    odd_values = st.one_of(
        _floats,
        _tricky,
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.none(),
        _tricky.map(Text),
        _floats.map(Number),
    )
    # Mostly one plain kind; now and then one odd value in the run.
    values = draw(st.lists(plain_values if kind != "mixed" else odd_values, min_size=count, max_size=count))
    if kind != "mixed" and draw(st.integers(0, 4)) == 0:
        values[draw(st.integers(0, count - 1))] = draw(odd_values)
    stamps = st.one_of(_floats, st.integers(min_value=0, max_value=2**40)) if draw(st.booleans()) else _floats
    qualities = st.one_of(st.sampled_from(list(Quality)), st.integers(min_value=-2, max_value=300), st.booleans())
    samples = [
        Sample(draw(_keys), value, draw(qualities), draw(stamps), draw(stamps))  # type: ignore[arg-type]
        for value in values
    ]
    offsets = draw(
        st.lists(st.integers(min_value=-(2**64), max_value=2**64), min_size=count, max_size=count)
        | st.just(list(range(count)))
    )
    return draw(_tricky), offsets, samples


@settings(max_examples=600, deadline=None)
@given(_runs())
def test_the_c_encoder_gives_the_reference_bytes_or_leaves_the_run_to_it(
    run: tuple[str, list[int], list[Sample]],
) -> None:
    _compare(*run)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.text(max_size=200), st.text(alphabet=st.characters(max_codepoint=127), max_size=2000)),
        min_size=1,
        max_size=40,
    ),
    st.integers(min_value=1, max_value=9),
)
def test_clean_text_runs_are_encoded_in_c(texts: list[str], points: int) -> None:
    samples = [Sample(f"plc/p{i % points}", t, Quality(i % 4), 1.5e9 + i, 1.6e9 + i) for i, t in enumerate(texts)]
    payload = _compare("edge-é", list(range(100, 100 + len(texts))), samples)
    if not any(0xD800 <= ord(c) <= 0xDFFF for t in texts for c in t):
        assert payload is not None and payload[columns._HEAD.size - 1] == columns.VALUES_TEXT
        assert columns.decode(payload).records == samples


@settings(max_examples=200, deadline=None)
@given(st.lists(_floats, min_size=1, max_size=60))
def test_float_runs_are_encoded_in_c_with_their_exact_bits(values: list[float]) -> None:
    samples = [Sample(f"plc/p{i % 3}", v, Quality.GOOD, v, -v) for i, v in enumerate(values)]
    payload = _compare("edge", list(range(len(values))), samples)
    assert payload is not None and payload[columns._HEAD.size - 1] == columns.VALUES_FLOAT
    decoded = [r.value for r in columns.decode(payload).records]  # type: ignore[union-attr]
    assert [math.copysign(1, d) for d in decoded] == [math.copysign(1, v) for v in values]
    assert [d if d == d else "nan" for d in decoded] == [v if v == v else "nan" for v in values]


@pytest.mark.parametrize(
    "value",
    [True, 3, None, Text("x"), Number(1.0), "lone \ud800 surrogate"],
    ids=["bool", "int", "none", "str subclass", "float subclass", "lone surrogate"],
)
def test_runs_the_python_encoder_must_decide_are_left_to_it(value: Any) -> None:
    first = "text" if isinstance(value, str) else 1.0
    samples = [Sample("p", first, Quality.GOOD, 1.0, 2.0), Sample("p", value, Quality.GOOD, 1.0, 2.0)]
    assert _compare("edge", [1, 2], samples) is None


@pytest.mark.parametrize(
    ("source", "offsets", "samples"),
    [
        ("edge", [1], []),
        ("edge", [], []),
        ("edge", [1, 2], [Sample("p", 1.0, Quality.GOOD, 1.0, 2.0)]),
        (b"edge", [1], [Sample("p", 1.0, Quality.GOOD, 1.0, 2.0)]),
        ("edge", 5, [Sample("p", 1.0, Quality.GOOD, 1.0, 2.0)]),
        ("edge", [1], 7),
        ("edge", [1], [("p", 1.0, 0, 1.0)]),
        ("edge", [1], [["p", 1.0, 0, 1.0, 2.0]]),
        ("edge", [1], [("p", 1.0, "good", 1.0, 2.0)]),
        ("edge", [1], [(7, 1.0, 0, 1.0, 2.0)]),
        ("edge", [2**63], [("p", 1.0, 0, 1.0, 2.0)]),
        ("edge", [1.0], [("p", 1.0, 0, 1.0, 2.0)]),
        ("edge", [1], [("p", 1.0, 0, "1.0", 2.0)]),
        ("edge\ud800", [1], [("p", 1.0, 0, 1.0, 2.0)]),
        ("edge", [1], [("p\udfff", 1.0, 0, 1.0, 2.0)]),
    ],
)
def test_odd_input_is_refused_as_the_python_encoder_refuses_it(source: Any, offsets: Any, samples: Any) -> None:
    assert _compare(source, offsets, samples) is None


def test_plain_tuples_and_negative_offsets_are_encoded_as_the_python_encoder_does() -> None:
    samples = [("p", 1.0, 0, 1.0, 2.0), ("q", 2.0, 5, 3.0, 4.0)]
    assert _compare("edge", [-(2**63), 2**63 - 1], samples) is not None
