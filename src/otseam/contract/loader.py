"""Loading `seam.yaml` with exact positions.

ruamel.yaml's round-trip loader remembers the line and column of every key and item. We keep them in a
:class:`SourceMap` (path → position) so that both schema errors and the rules of ``seam check`` can
point at the offending element, e.g. ``seam.yaml:42:7``.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from otseam.contract import plugin_options, yamltext
from otseam.contract.addresses import address_hint, check_address
from otseam.contract.models import Contract

PathKey = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


@dataclass(slots=True)
class Problem:
    """One thing wrong with a contract, with where it is and how to fix it."""

    file: str
    line: int
    column: int
    message: str
    hint: str = ""
    path: str = ""

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.column}: {self.message}"
        if self.hint:
            text += f"\n    fix: {self.hint}"
        return text


class ContractError(Exception):
    """The contract cannot be used. Carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(slots=True)
class SourceMap:
    """Positions of every mapping key and sequence item, by path from the document root. Kept as the
    reader's (line, column) pairs: a large contract has hundreds of thousands, and only the few a
    problem names become :class:`Position` s."""

    file: str
    positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    #: Where each scalar value of a mapping starts, for positions inside a value (a formula).
    values: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def value_at(self, path: Sequence[str | int]) -> Position | None:
        place = self.values.get(tuple(path))
        return Position(*place) if place is not None else None

    def locate(self, path: Sequence[str | int]) -> Position:
        """The position of ``path``, or of its nearest ancestor that has one."""
        key = tuple(path)
        positions = self.positions
        while key:
            if key in positions:
                return Position(*positions[key])
            key = key[:-1]
        return Position(*positions.get((), (1, 1)))


@dataclass(slots=True)
class LoadedContract:
    contract: Contract
    source: SourceMap
    path: Path
    raw: Any
    #: The file's text, for positions inside values (a column inside an expression).
    text: str = ""

    def at(self, path: Sequence[str | int]) -> Position:
        return self.source.locate(path)


#: A contract for a large plant is a few megabytes at most; past this the file is refused unread.
MAX_BYTES = 16 * 1024 * 1024


# Field aliases in the models (Python name → YAML key) so error paths name what the user wrote.
_ALIASES = {"from_zone": "from", "to_zone": "to", "security_level": "sl"}


def _hint_for(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    loc = error.get("loc", ())
    last = str(loc[-1]) if loc else ""
    if kind == "missing":
        return f"add the key '{last}'"
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(last, _keys_at(loc[:-1]), n=1, cutoff=0.6)
        if close:
            return f"did you mean '{close[0]}'? Otherwise remove '{last}' (see docs/contract.md for the keys)"
        known = ", ".join(sorted(_keys_at(loc[:-1])))
        return f"remove '{last}' or check its spelling; keys allowed here: {known}" if known else f"remove '{last}'"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"use one of {expected}"
    if kind in ("int_parsing", "float_parsing", "int_type", "float_type"):
        return "write a number"
    if kind in ("bool_parsing", "bool_type"):
        return "write true or false"
    if kind in ("list_type",):
        return "write a list (one '- item' per line)"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "write a mapping (key: value lines)"
    if kind == "finite_number":
        return "write a finite number: NaN and infinity are not values a plant has"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return "bring the value into the allowed range"
    if kind in ("string_type", "str_type"):
        return "write text; quote it if it looks like a number, date or true/false"
    return f"correct '{last}' as the message says; docs/contract.md describes every key" if last else ""


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Models inside an annotation such as ``list[Device]``, ``Scaling | None`` or ``Annotated[...]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            found.extend(_models_in(arg))
    return found


def _keys_at(loc: Sequence[Any]) -> list[str]:
    """The keys the model at ``loc`` (a pydantic error location) accepts, as written in YAML."""
    model: type[BaseModel] = Contract
    for part in loc:
        if not isinstance(part, str):
            continue
        fields = model.model_fields
        found = fields.get(part) or next((f for f in fields.values() if f.alias == part), None)
        if found is None:
            continue
        models = _models_in(found.annotation)
        if not models:
            return []
        model = models[0]
    return [info.alias or name for name, info in model.model_fields.items()]


def _message_for(error: dict[str, Any]) -> str:
    loc = error.get("loc", ())
    last = str(loc[-1]) if loc else ""
    if error.get("type") == "extra_forbidden":
        return f"unknown key '{last}'"
    if error.get("type") == "missing":
        return f"the required key '{last}' is missing"
    msg = str(error.get("msg", "invalid value"))
    # pydantic prefixes messages of our own validators with "Value error, ".
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg


def _clean_loc(loc: Sequence[Any]) -> PathKey:
    """pydantic locations include union/function tags; keep only real keys and indexes."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, int):
            out.append(part)
        elif isinstance(part, str):
            if "[" in part or part.startswith("function-") or part in ("float", "int", "str", "bool"):
                continue
            out.append(_ALIASES.get(part, part))
    return tuple(out)


def _describe(path: PathKey) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _address_problems(data: Any, source: SourceMap) -> list[Problem]:
    """Point addresses checked against their device's driver (the models cannot: they need both)."""
    problems: list[Problem] = []
    devices = data.get("devices") if isinstance(data, dict) else None
    if not isinstance(devices, list):
        return problems
    for d_index, device in enumerate(devices):
        if not isinstance(device, dict) or not isinstance(device.get("driver"), str):
            continue
        driver = device["driver"]
        points = device.get("points")
        if not isinstance(points, list):
            continue
        for p_index, point in enumerate(points):
            if not isinstance(point, dict) or "address" not in point:
                continue
            error = check_address(driver, point["address"])
            if error is None:
                continue
            path: PathKey = ("devices", d_index, "points", p_index, "address")
            pos = source.locate(path)
            key = f" (point {device.get('id')}/{point.get('id')})" if "id" in device and "id" in point else ""
            problems.append(
                Problem(
                    source.file,
                    pos.line,
                    pos.column,
                    f"{_describe(path)}{key}: {error}",
                    address_hint(driver),
                    _describe(path),
                )
            )
    return problems


#: No contract nests flow collections ([...] and {...}) this deep. YAML's scanner slows down
#: quadratically with nesting, so a pathological file is refused before parsing rather than after
#: minutes of work.
MAX_FLOW_DEPTH = 64


def _flow_too_deep(text: str) -> tuple[int, int] | None:
    """Line and column (1-based) where flow nesting exceeds :data:`MAX_FLOW_DEPTH`, if it does.

    Brackets inside quoted scalars and comments do not count. A quote only opens a scalar where YAML
    allows one to start, so the apostrophe in "operator's" is not mistaken for one.
    """
    depth, quote, line, col, prev = 0, "", 1, 0, "\n"
    index = 0
    while index < len(text):
        char = text[index]
        col += 1
        if char == "\n":
            line, col = line + 1, 0
        if quote:
            if quote == '"' and char == "\\":
                index += 2
                col += 1
                prev = "x"
                continue
            if char == quote:
                if quote == "'" and text[index + 1 : index + 2] == "'":
                    index += 2
                    col += 1
                    continue
                quote = ""
        elif char in "'\"" and prev in " \t\n[{,:-?":
            quote = char
        elif char == "#" and prev in " \t\n":
            end = text.find("\n", index)
            if end < 0:
                break
            index, prev = end, "x"
            col -= 1
            continue
        elif char in "[{":
            depth += 1
            if depth > MAX_FLOW_DEPTH:
                return line, col
        elif char in "]}":
            depth = max(depth - 1, 0)
        prev = char
        index += 1
    return None


#: Characters YAML does not allow in a document (YAML 1.2, 5.1): control characters (NUL among them),
#: lone UTF-16 surrogates and the two non-characters U+FFFE, U+FFFF.
UNPRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
#: What must not be inside a text value even when written as an escape ("\0", "\ud800"): a NUL ends a
#: C string in every tool downstream, a lone surrogate cannot be written out as UTF-8 at all.
_BAD_IN_TEXT = re.compile("[\x00\ud800-\udfff]")


def _describe_char(char: str) -> str:
    code = ord(char)
    if code == 0:
        return "a NUL character (U+0000)"
    if 0xD800 <= code <= 0xDFFF:
        return f"a lone surrogate (U+{code:04X}), which is not a character"
    return f"the control character U+{code:04X}"


def _unprintable(text: str, file: str) -> None:
    match = UNPRINTABLE.search(text)
    if match is None:
        return
    start = match.start()
    line = text.count("\n", 0, start) + 1
    column = start - (text.rfind("\n", 0, start) + 1) + 1
    raise ContractError(
        [
            Problem(
                file,
                line,
                column,
                f"{_describe_char(match.group())} is not allowed in a contract",
                "remove it; a contract is plain text (an editor or a copy from a binary file may have put it there)",
            )
        ]
    )


def _bad_text(node: Any, path: PathKey, source: SourceMap, out: list[Problem]) -> None:
    """Strings (keys and values) holding what an escape let through: NUL or a lone surrogate."""
    if isinstance(node, dict):
        for key, value in node.items():
            _bad_text(key, (*path, str(key)), source, out)
            _bad_text(value, (*path, str(key)), source, out)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            _bad_text(item, (*path, index), source, out)
    elif isinstance(node, str):
        match = _BAD_IN_TEXT.search(node)
        if match is not None:
            pos = source.locate(path)
            out.append(
                Problem(
                    source.file,
                    pos.line,
                    pos.column,
                    f"{_describe(path) or 'contract'}: the text holds {_describe_char(match.group())}",
                    "remove the escape that writes it (\\0, \\x00, \\uD800-\\uDFFF)",
                    _describe(path),
                )
            )


def _read_yaml(text: str, file: str) -> yamltext.Document:
    if len(text) > MAX_BYTES:
        raise ContractError(
            [Problem(file, 1, 1, "the contract text is far larger than any contract", "check the input")]
        )
    _unprintable(text, file)
    deep = _flow_too_deep(text)
    if deep is not None:
        raise ContractError(
            [
                Problem(
                    file,
                    *deep,
                    "the YAML is nested too deeply",
                    f"nest lists and mappings at most {MAX_FLOW_DEPTH} deep",
                )
            ]
        )
    try:
        return yamltext.read(text)
    except yamltext.YamlProblem as exc:
        raise ContractError([Problem(file, exc.line, exc.column, exc.message, exc.hint)]) from None


def parse_text(
    text: str, file: str = "seam.yaml", *, environment: bool = False, node: str | None = None
) -> LoadedContract:
    """Parse and validate contract text. Raises :class:`ContractError` listing every problem.

    ``environment``: also check that the files and environment variables plugin options name exist
    here, as the plugins will when they start (:func:`load` does, for a contract on this machine): for
    the plugins placed on ``node``, or on every node of a contract with at most one."""
    document = _read_yaml(text, file)
    raw = data = document.data
    source = SourceMap(file, document.keys, document.values)
    if raw is None:
        raise ContractError([Problem(file, 1, 1, "the contract is empty", "run 'seam init' for an example")])
    if not isinstance(raw, dict):
        raise ContractError([Problem(file, 1, 1, "the contract must be a mapping of sections", "start with 'site:'")])
    problems: list[Problem] = []
    _bad_text(data, (), source, problems)
    if problems:
        raise ContractError(problems)
    problems = _address_problems(data, source)
    contract: Contract | None = None
    try:
        contract = Contract.model_validate(data)
    except ValidationError as exc:
        already = {p.path for p in problems}
        for error in exc.errors():
            loc = _clean_loc(error["loc"])
            if _describe(loc) in already:
                continue  # an address the driver check has explained better
            pos = source.locate(loc)
            problems.append(
                Problem(
                    file,
                    pos.line,
                    pos.column,
                    f"{_describe(loc) or 'contract'}: {_message_for(dict(error))}",
                    _hint_for(dict(error)),
                    _describe(loc),
                )
            )
    if contract is not None and not problems:
        problems.extend(_plugin_problems(contract, source, environment, node))
    if problems or contract is None:
        problems.sort(key=lambda p: (p.line, p.column))
        raise ContractError(problems)
    return LoadedContract(contract, source, Path(file), raw, text)


def _plugin_problems(contract: Contract, source: SourceMap, environment: bool, node: str | None) -> list[Problem]:
    """Each plugin's options checked against the model the plugin itself runs with."""
    problems = []
    for path, message, hint in plugin_options.check(
        contract, environment=environment, node=node, contract_path=source.file
    ):
        pos = source.locate(path)
        problems.append(Problem(source.file, pos.line, pos.column, message, hint, _describe(path)))
    return problems


def _read_contract(file: Path) -> str:
    """The file's text, refusing what is not a regular file of a sane size before reading any of it: a
    FIFO or a device would block the reader or never end."""
    try:
        info = file.stat()
    except FileNotFoundError:
        raise ContractError(
            [Problem(str(file), 1, 1, "file not found", "check the path, or run 'seam init' to write one")]
        ) from None
    except OSError as exc:
        raise ContractError([Problem(str(file), 1, 1, f"cannot read: {exc.strerror}", "check permissions")]) from None
    if stat.S_ISDIR(info.st_mode):
        raise ContractError(
            [Problem(str(file), 1, 1, "this is a directory", "give the path of the contract file, e.g. seam.yaml")]
        )
    if not stat.S_ISREG(info.st_mode):
        raise ContractError(
            [
                Problem(
                    str(file),
                    1,
                    1,
                    "not a regular file (a FIFO, socket or device)",
                    "give the path of the contract file itself; a contract is read from a file on disk",
                )
            ]
        )
    too_big = Problem(
        str(file),
        1,
        1,
        f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB, far more than any contract",
        "check that this is the contract file",
    )
    if info.st_size > MAX_BYTES:
        raise ContractError([too_big])
    try:
        # O_NONBLOCK: should the path have been replaced by a FIFO since the stat, opening it does not wait.
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ContractError([Problem(str(file), 1, 1, "not a regular file", "give the contract file itself")])
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ContractError([Problem(str(file), 1, 1, f"cannot read: {exc.strerror}", "check permissions")]) from None
    if len(data) > MAX_BYTES:
        raise ContractError([too_big])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ContractError(
            [Problem(str(file), line, column, f"not UTF-8 text ({exc.reason})", "save the file as UTF-8")]
        ) from None


def load(path: str | Path, *, node: str | None = None) -> LoadedContract:
    """Load and validate a contract file, with the files and environment variables that the options of
    ``node``'s plugins name (every plugin's, in a contract of one node)."""
    file = Path(path)
    return parse_text(_read_contract(file), str(file), environment=True, node=node)


def iter_problems(error: ContractError) -> Iterator[Problem]:
    yield from error.problems
