"""Contract text to plain data, with the line and column of every key, item and value.

ruamel.yaml composes the node tree: through libyaml when ruamel.yaml.clib is installed, in pure Python
otherwise (the same nodes, tagged by the same YAML 1.2 resolver, so ``yes`` and ``08:00`` stay text
either way). This module builds plain dicts and lists from the nodes and notes positions on the way.
It replaces ruamel's round-trip loader, which keeps comments and layout for a rewrite the contract
loader never does, at several times the cost per point (docs/benchmarks.md, "Reading a contract").

Every way a YAML file can be unfit for a contract is a :class:`YamlProblem` with a position: syntax,
a duplicate key, an anchor defined twice, an alias bomb or an alias loop, a tag a contract has no use
for, a key that is not a scalar.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import ConstructorError, SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, ReusedAnchorWarning, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

PathKey = tuple[str | int, ...]
#: 1-based (line, column).
Place = tuple[int, int]

#: A contract for a large plant has a few hundred thousand nodes. Past this, the file is an alias bomb
#: (anchors referring to anchors, a small file expanding to billions of nodes) and is refused before
#: anything is expanded.
MAX_NODES = 1_000_000

_TAG = "tag:yaml.org,2002:"
_STR, _MAP, _SEQ, _MERGE = _TAG + "str", _TAG + "map", _TAG + "seq", _TAG + "merge"
#: What a scalar that failed to construct looked like, and how to write one that does.
_KINDS = {
    _TAG + "int": ("whole number", "write the whole number in full"),
    _TAG + "float": ("number", "write the number in full"),
    _TAG + "bool": ("boolean", "write true or false"),
    _TAG + "null": ("null", "write null"),
    _TAG + "timestamp": ("date or time", "write it as 2026-12-08 or 2026-12-08T06:30:00Z"),
}
_SCALAR_TAGS = frozenset(_TAG + name for name in ("str", "int", "float", "bool", "null", "timestamp"))


class YamlProblem(Exception):
    def __init__(self, line: int, column: int, message: str, hint: str) -> None:
        super().__init__(message)
        self.line, self.column, self.message, self.hint = line, column, message, hint


class Document:
    """The plain data of a contract file and where each part of it is written."""

    __slots__ = ("data", "keys", "values")

    def __init__(self, data: Any, keys: dict[PathKey, Place], values: dict[PathKey, Place]) -> None:
        self.data = data
        #: Where each mapping key and each list item starts; () is the top of the file.
        self.keys = keys
        #: Where each scalar value of a mapping starts (for positions inside a formula).
        self.values = values


def _place(node: Node) -> Place:
    mark = node.start_mark
    return mark.line + 1, mark.column + 1


def read(text: str, *, pure: bool = False) -> Document:
    """Raises :class:`YamlProblem`. ``pure``: the pure-Python parser even where libyaml is installed."""
    _refuse_other_versions(text)
    root, scalars = _compose(text, pure)
    keys: dict[PathKey, Place] = {(): (1, 1)}
    if root is None:
        return Document(None, keys, {})
    try:
        _expanded_size(root, {}, set())
        builder = _Builder(keys, scalars)
        data = builder.build(root, ())
    except RecursionError:
        raise YamlProblem(1, 1, "the YAML is nested too deeply", "flatten the structure") from None
    return Document(data, keys, builder.values)


_DIRECTIVE = re.compile(r"^%YAML[ \t]+([^\s#]*)", re.MULTILINE)
_DOCUMENT_START = re.compile(r"^---", re.MULTILINE)


def _refuse_other_versions(text: str) -> None:
    """A contract is YAML 1.2, where ``yes``, ``on`` and ``08:00`` are text. One file that asked for 1.1
    would read ``on`` as true where every other contract reads it as text, and libyaml would not switch
    rules at all: a ``%YAML`` directive for another version is refused."""
    start = _DOCUMENT_START.search(text)
    if start is None:
        return  # directives come before an explicit '---' only
    for found in _DIRECTIVE.finditer(text, 0, start.start()):
        if found.group(1) != "1.2":
            line = text.count("\n", 0, found.start()) + 1
            raise YamlProblem(
                line,
                1,
                f"YAML: the contract asks for YAML {found.group(1) or '(no version)'}; Seam reads contracts as YAML 1.2",
                "remove the '%YAML' line (in YAML 1.2 yes/no/on/off are text: write true or false)",
            )


#: What libyaml reads differently from YAML 1.2, or not at all, begins with one of these: node
#: properties (anchors, aliases, tags; libyaml allows fewer characters in their names), a complex key,
#: a directive, a block scalar header, a tab (libyaml takes one inside plain text, where ruamel refuses
#: it). A file with none of them is read by libyaml exactly as by the pure parser (a property-based test
#: holds the two to that); any other file, and any file libyaml refuses (it also refuses ``[08:00]``,
#: which YAML 1.2 allows), is read by the pure parser, whose reading and wording decide. Quoted text may
#: match too: that costs speed, never a different reading.
_BEYOND_LIBYAML = re.compile(
    r"(?:^|[\s\[\]{},])(?:[&*][^\s]|!|\?)"
    r"|^%|\t"
    r"|(?:^[ \t]*|:[ \t]+|-[ \t]+|[\[{,][ \t]*)[|>](?![-+1-9]*(?:[ \t]+#.*|[ \t]*)$)",
    re.MULTILINE,
)


def _compose(text: str, pure: bool) -> tuple[Node | None, SafeConstructor]:
    if not pure and _BEYOND_LIBYAML.search(text) is None:
        fast = YAML(typ="safe", pure=False)
        try:
            return fast.compose(text), fast.constructor
        except (YAMLError, RecursionError):
            pass  # the pure parser decides, and words the problem as ruamel always has
    yaml = YAML(typ="safe", pure=True)
    try:
        with warnings.catch_warnings():
            # ruamel only warns of an anchor defined twice; in a contract an alias that means
            # "whichever anchor of that name came last" is a mistake to fix, like a duplicate key.
            warnings.simplefilter("error", ReusedAnchorWarning)
            return yaml.compose(text), yaml.constructor
    except ReusedAnchorWarning as exc:
        raise _reused_anchor(str(exc)) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        raise YamlProblem(
            line,
            col,
            f"YAML syntax: {problem}",
            "check indentation (spaces, not tabs) and quoting around this position",
        ) from None
    except YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid YAML"
        raise YamlProblem(1, 1, f"YAML syntax: {first}", "fix the YAML syntax") from None
    except RecursionError:
        raise YamlProblem(1, 1, "the YAML is nested too deeply", "flatten the structure") from None


_ANCHOR_REPORT = re.compile(
    r"duplicate anchor '(?P<name>[^']*)'.*?line (?P<l1>\d+), column (?P<c1>\d+).*?line (?P<l2>\d+), column (?P<c2>\d+)",
    re.DOTALL,
)


def _reused_anchor(report: str) -> YamlProblem:
    """ruamel's warning text names both places; the problem points at the second."""
    found = _ANCHOR_REPORT.search(report)
    if found is None:
        return YamlProblem(1, 1, "YAML: an anchor is defined twice", "give each anchor (&name) its own name")
    name = found["name"]
    return YamlProblem(
        int(found["l2"]),
        int(found["c2"]),
        f"YAML: the anchor &{name} is defined a second time (first at line {found['l1']}, column {found['c1']})",
        f"give each anchor its own name: an alias *{name} would mean whichever came last",
    )


def _expanded_size(node: Node, memo: dict[int, int], active: set[int]) -> int:
    """How many nodes ``node`` becomes once aliases are expanded, counted without expanding them."""
    if isinstance(node, ScalarNode):
        return 1
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise YamlProblem(
            *_place(node), "an anchor refers to itself", "a contract cannot contain recursive aliases (&x ... *x)"
        )
    active.add(key)
    if isinstance(node, MappingNode):
        total = 1 + sum(_expanded_size(value, memo, active) for _key, value in node.value)
    else:
        total = 1 + sum(_expanded_size(child, memo, active) for child in node.value)
    active.discard(key)
    if total > MAX_NODES:
        raise YamlProblem(*_place(node), "the contract expands to too many elements", "avoid chains of YAML aliases")
    memo[key] = total
    return total


class _Builder:
    """Plain data from nodes. A container reached again through an alias is built again (the data are
    plain values, not shared objects) but its positions are those of the anchor: elements below an alias
    are located at the alias itself."""

    def __init__(self, keys: dict[PathKey, Place], scalars: SafeConstructor) -> None:
        self.keys = keys
        self.values: dict[PathKey, Place] = {}
        self._located: set[int] = set()
        #: ruamel's own constructor for YAML 1.2 numbers, booleans, nulls and timestamps.
        self._scalars = scalars

    def scalar(self, node: ScalarNode) -> Any:
        tag = node.tag
        if tag == _STR:
            return node.value
        if tag not in _SCALAR_TAGS:
            raise _tag_problem(node)
        try:
            return self._scalars.construct_object(node)
        except (ConstructorError, ValueError, IndexError, OverflowError, KeyError):
            # ruamel's own constructors fail on some plain scalars its resolver calls numbers ("-_"), and
            # its boolean constructor looks an explicitly tagged value up in a table ("!!bool maybe").
            kind, how = _KINDS.get(tag, ("value", "write it in full"))
            raise YamlProblem(
                *_place(node),
                f"YAML: {node.value!r} looks like a {kind} but is not one",
                f"quote it if it is text ('{node.value}'), or {how}",
            ) from None

    def build(self, node: Node, path: PathKey) -> Any:
        if isinstance(node, ScalarNode):
            return self.scalar(node)
        locate = id(node) not in self._located
        self._located.add(id(node))
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ:
                raise _tag_problem(node)
            items = []
            for index, item in enumerate(node.value):
                here = (*path, index)
                if locate:
                    self.keys[here] = _place(item)
                items.append(self.build(item, here))
            return items
        assert isinstance(node, MappingNode)
        if node.tag != _MAP:
            raise _tag_problem(node)
        mapping: dict[str, Any] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merges.append(value_node)
                continue
            self.entry(mapping, key_node, value_node, path, locate, duplicate_is_error=True)
        # ``<<: *base`` (or a list of them): keys written here win, then earlier merged mappings.
        for merged in merges:
            sources = merged.value if isinstance(merged, SequenceNode) else [merged]
            for source in sources:
                if not isinstance(source, MappingNode):
                    raise YamlProblem(*_place(source), "YAML: '<<' merges mappings only", "merge an alias of a mapping")
                for key_node, value_node in source.value:
                    self.entry(mapping, key_node, value_node, path, locate, duplicate_is_error=False)
        return mapping

    def entry(
        self,
        mapping: dict[str, Any],
        key_node: Node,
        value_node: Node,
        path: PathKey,
        locate: bool,
        *,
        duplicate_is_error: bool,
    ) -> None:
        if not isinstance(key_node, ScalarNode):
            raise YamlProblem(*_place(key_node), "YAML: a key that is a list or a mapping", "use plain keys (text)")
        key = str(self.scalar(key_node))
        if key in mapping:
            if duplicate_is_error:
                raise YamlProblem(
                    *_place(key_node),
                    f"YAML syntax: duplicate key '{key}'",
                    "each key may appear once in a mapping: remove or rename the repeated key",
                )
            return
        here = (*path, key)
        if locate and here not in self.keys:
            self.keys[here] = _place(key_node)
            if isinstance(value_node, ScalarNode):
                self.values[here] = _place(value_node)
        mapping[key] = self.build(value_node, here)


def _tag_problem(node: Node) -> YamlProblem:
    return YamlProblem(
        *_place(node),
        f"YAML: the tag {node.tag} has no meaning in a contract",
        "remove the tag (the text starting with '!')",
    )
