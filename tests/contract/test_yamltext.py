"""The contract's YAML reader against ruamel's round-trip loader, which the loader used before it: the
same data and the same positions, through libyaml and through the pure-Python parser alike, and a
clear, placed refusal for each way a file can be unfit."""

from __future__ import annotations

import datetime
import io
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from otseam.contract.loader import ContractError, parse_text
from otseam.contract.yamltext import YamlProblem, read

SRC = Path(__file__).resolve().parents[2] / "src" / "otseam"
CORPUS = sorted(SRC.rglob("*.yaml"))
PATHS = (False, True)  # libyaml, pure Python


def test_libyaml_is_the_parser_here() -> None:
    """The project's own dependency (ruamel.yaml.clib) is installed: the fast path is what runs."""
    from ruamel.yaml.main import CParser

    assert CParser is not None


def round_trip(text: str) -> tuple[Any, dict[tuple[Any, ...], tuple[int, int]]]:
    """What the loader read before: ruamel's round-trip containers, made plain, and their positions."""
    raw = YAML(typ="rt").load(text)
    positions: dict[tuple[Any, ...], tuple[int, int]] = {(): (1, 1)}
    seen: set[int] = set()

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        if isinstance(node, CommentedMap | CommentedSeq):
            if id(node) in seen:
                return
            seen.add(id(node))
        if isinstance(node, CommentedMap):
            for key in node:
                try:
                    line, col = node.lc.key(key)
                except KeyError:
                    continue  # merged keys have no position of their own there
                positions[(*path, str(key))] = (line + 1, col + 1)
                walk(node[key], (*path, str(key)))
        elif isinstance(node, CommentedSeq):
            for index, item in enumerate(node):
                line, col = node.lc.item(index)
                positions[(*path, index)] = (line + 1, col + 1)
                walk(item, (*path, index))

    def plain(node: Any) -> Any:
        if isinstance(node, dict):
            return {str(k): plain(v) for k, v in node.items()}
        if isinstance(node, list):
            return [plain(v) for v in node]
        return node

    walk(raw, ())
    return plain(raw), positions


def same(a: Any, b: Any) -> bool:
    """Equal, of the same kind (a bool is not an int here), NaN equal to NaN."""
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    kinds = (bool, int, float, str, datetime.datetime, datetime.date, type(None))
    kind = next(k for k in kinds if isinstance(a, k))
    return isinstance(b, kind) and a == b


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: str(p.relative_to(SRC)))
@pytest.mark.parametrize("pure", PATHS, ids=["libyaml", "python"])
def test_every_yaml_file_of_the_project_reads_as_before(path: Path, pure: bool) -> None:
    text = path.read_text()
    data, positions = round_trip(text)
    document = read(text, pure=pure)
    assert same(data, document.data)
    assert document.keys == positions


SCALARS = st.one_of(
    st.text(alphabet="0123456789.+-_eExXoObB:TZ ~", min_size=1, max_size=12),
    st.sampled_from(
        [
            "yes",
            "no",
            "on",
            "off",
            "y",
            "n",
            "true",
            "True",
            "TRUE",
            "false",
            "null",
            "Null",
            "NULL",
            "~",
            ".inf",
            "-.Inf",
            ".NaN",
            "0o17",
            "017",
            "0x1F",
            "0b101",
            "1_000",
            "1:20",
            "2026-12-07",
            "2026-12-07T10:00:00Z",
            "2026-12-07 10:00:00.5 +01:00",
            "1e3",
            "1.",
            ".5",
            "+12",
            "-0",
            "08:00",
        ]
    ),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scalar=SCALARS, pure=st.booleans())
def test_plain_scalars_resolve_as_the_round_trip_loader_did(scalar: str, pure: bool) -> None:
    """YAML 1.2 through both parsers: ``yes`` and ``08:00`` are text, ``0o17`` is 15, ``017`` is 17."""
    text = f"a: {scalar}\nb: [{scalar}]\n"
    try:
        data, _ = round_trip(text)
    except Exception:
        with pytest.raises(YamlProblem):
            read(text, pure=pure)
        return
    assert same(data, read(text, pure=pure).data), (scalar, data)


NAMES = st.text(alphabet="abcdefgh_", min_size=1, max_size=6)
LEAVES = st.one_of(st.integers(-(10**6), 10**6), st.booleans(), st.none(), NAMES, st.floats(allow_nan=False))
TREES = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(NAMES, children, max_size=4),
    max_leaves=25,
)


@settings(max_examples=150, deadline=None)
@given(tree=st.dictionaries(NAMES, TREES, min_size=1, max_size=5), flow=st.booleans(), pure=st.booleans())
def test_nested_documents_read_and_locate_as_before(tree: dict[str, Any], flow: bool, pure: bool) -> None:
    yaml = YAML(typ="rt")
    yaml.default_flow_style = flow
    out = io.StringIO()
    yaml.dump(tree, out)
    text = out.getvalue()
    data, positions = round_trip(text)
    document = read(text, pure=pure)
    assert same(data, document.data)
    assert document.keys == positions


# Characters that make YAML mean something: the places where libyaml and YAML 1.2 part ways.
TEXTS = st.text(alphabet="0123456789.+-_eExXoObB:TZ ~#'\"[]{},!&*|>?%@`\t\nab", max_size=12)


@settings(max_examples=2000, deadline=None)
@given(piece=TEXTS, frame=st.sampled_from(["a: {}\nb: [{}]\n", "- {}\n", "{}: 1\n", "a:\n  {}\n", "{}"]))
def test_libyaml_reads_what_it_is_given_as_the_pure_parser_does(piece: str, frame: str) -> None:
    """The fast path is an optimisation only: the same data, or a refusal on both paths."""
    text = frame.replace("{}", piece)
    results = []
    for pure in PATHS:
        try:
            results.append(read(text, pure=pure).data)
        except YamlProblem as exc:
            results.append(exc)
    fast, slow = results
    if isinstance(slow, YamlProblem):
        assert isinstance(fast, YamlProblem) and fast.message == slow.message, text
    else:
        assert not isinstance(fast, YamlProblem), (text, fast)
        assert same(slow, fast), text


@pytest.mark.parametrize("pure", PATHS, ids=["libyaml", "python"])
def test_aliases_expand_and_merge_keys_merge(pure: bool) -> None:
    text = "base: &b {poll: 1s, unit: 1}\ndev:\n  <<: *b\n  unit: 2\nagain: *b\n"
    document = read(text, pure=pure)
    assert document.data == {
        "base": {"poll": "1s", "unit": 1},
        "dev": {"unit": 2, "poll": "1s"},
        "again": {"poll": "1s", "unit": 1},
    }
    assert document.data["again"] is not document.data["base"]  # plain values, not shared objects
    assert document.keys[("dev", "unit")] == (4, 3)
    assert document.keys[("dev", "poll")] == (1, 11)  # a merged key is where it is written
    assert ("again", "poll") not in document.keys  # below an alias: located at the alias
    assert document.values[("base", "poll")] == (1, 17)


@pytest.mark.parametrize("pure", PATHS, ids=["libyaml", "python"])
@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("a: 1\nb: [\n", (3, 1), "YAML syntax"),
        ("a: 1\nb: 2\na: 3\n", (3, 1), "duplicate key 'a'"),
        ("a: &x 1\nb: &x 2\nc: *x\n", (2, 4), "anchor &x is defined a second time (first at line 1, column 4)"),
        ("a: &x [1, *x]\n", (1, 4), "refers to itself"),
        ("a: !python/object x\n", (1, 4), "tag !python/object has no meaning"),
        ("a: !!set {x, y}\n", (1, 4), "has no meaning"),
        ("? [1, 2]\n: x\n", (1, 3), "a key that is a list"),
        ("a: 1\n---\nb: 2\n", (2, 1), "YAML syntax"),
        ("%YAML 1.1\n---\na: yes\n", (1, 1), "asks for YAML 1.1"),
        ("d:\n  <<: [1]\n", (2, 8), "merges mappings only"),
        ("a: -_\n", (1, 4), "'-_' looks like a whole number but is not one"),
        ("a: 0x_\n", (1, 4), "looks like a whole number"),
        ("a: ._\n", (1, 4), "looks like a number"),
        ("a: !!bool maybe\n", (1, 4), "'maybe' looks like a boolean but is not one"),
        ("a: !!timestamp 2020-13-45\n", (1, 4), "looks like a date or time"),
    ],
)
def test_unfit_yaml_is_refused_at_its_place(pure: bool, text: str, where: tuple[int, int], words: str) -> None:
    with pytest.raises(YamlProblem) as exc:
        read(text, pure=pure)
    assert (exc.value.line, exc.value.column) == where, exc.value.message
    assert words in exc.value.message and exc.value.hint


def test_a_lone_surrogate_escape_is_refused_by_the_loader_on_both_paths() -> None:
    """libyaml refuses the escape itself; the pure parser reads it and the loader refuses the text."""
    with pytest.raises(ContractError, match="surrogate"):
        parse_text('site: "x\\ud800"\n')


def test_a_version_1_2_directive_is_accepted() -> None:
    assert read("%YAML 1.2\n---\na: yes\n").data == {"a": "yes"}


@pytest.mark.parametrize("pure", PATHS, ids=["libyaml", "python"])
def test_an_alias_bomb_is_refused_before_it_expands(pure: bool) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    with pytest.raises(YamlProblem, match="too many elements"):
        read("\n".join(lines) + "\n", pure=pure)


def test_deep_block_nesting_is_refused_not_crashed() -> None:
    depth = 3000
    text = "".join(" " * i + "a:\n" for i in range(depth)) + " " * depth + "1\n"
    for pure in PATHS:
        with pytest.raises(YamlProblem, match="nested too deeply"):
            read(text, pure=pure)
