"""Every plugin's ``options:`` checked against the plugin's own typed model, without importing the plugin.

Each driver, source and sink folder holds ``options.py`` with a pydantic model named ``Options``
(unknown keys forbidden). The plugin builds its settings from that model at run time, and `seam check`
validates the contract against the same model here, so the two cannot disagree: what ``seam run``
refuses, ``seam check`` refuses first, at the file, line and column of the offending key.

A plugin's ``options.py`` may also define ``check_device(device, options) -> list[(field, message)]``
for the device fields only the driver understands (the endpoint's form, a unit id an RTU line needs).

``options.py`` imports only light modules (pydantic, the contract's units and models): loading it must
not pull a protocol stack (asyncua, aiomqtt, psycopg) into a `seam check`.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import re
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

#: kind as written in the contract's section → package folder under otseam/.
KINDS = {"devices": "drivers", "sinks": "sinks", "sources": "sources"}
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")

M = TypeVar("M", bound=BaseModel)


@functools.lru_cache(maxsize=128)
def options_module(package: str, name: str) -> types.ModuleType | None:
    """``otseam.<package>.<name>.options``, loaded from its file so the plugin's ``__init__`` (and the
    protocol library it imports) is not run; None when the plugin has no such module."""
    module_name = name.replace("-", "_")
    if not _NAME.match(module_name):
        return None
    full = f"otseam.{package}.{module_name}.options"
    if full in sys.modules:
        return sys.modules[full]
    try:
        spec = importlib.util.find_spec(f"otseam.{package}.{module_name}")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "options.py"
    if not path.is_file():
        return None
    file_spec = importlib.util.spec_from_file_location(full, path)
    if file_spec is None or file_spec.loader is None:
        return None
    module = importlib.util.module_from_spec(file_spec)
    # Registered under its real name: when the plugin itself is imported later, it finds this very
    # module (one Options class, not two).
    sys.modules[full] = module
    try:
        file_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(full, None)
        raise
    return module


def options_model(package: str, name: str) -> type[BaseModel] | None:
    module = options_module(package, name)
    model = getattr(module, "Options", None) if module is not None else None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _keys_of(model: type[BaseModel]) -> list[str]:
    """The keys a person may write (a key that exists only to be refused with a reason is not offered)."""
    return [
        info.alias or name
        for name, info in model.model_fields.items()
        if not (isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("refused"))
    ]


def _model_at(model: type[BaseModel], loc: Sequence[Any]) -> type[BaseModel] | None:
    """The nested model an error location points into (for "did you mean" inside ``tls:``)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None or not isinstance(part, str):
            continue
        info = current.model_fields.get(part)
        if info is None:
            return current
        annotation = info.annotation
        found = None
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                found = candidate
        current = found
    return current


def _clean(loc: Sequence[Any]) -> tuple[str | int, ...]:
    return tuple(
        part
        for part in loc
        if isinstance(part, int) or (isinstance(part, str) and "[" not in part and not part.startswith("function-"))
    )


def explain(model: type[BaseModel], error: Mapping[str, Any]) -> tuple[tuple[str | int, ...], str, str]:
    """(location inside ``options``, message, hint) for one pydantic error."""
    loc = _clean(error.get("loc", ()))
    kind = error.get("type", "")
    last = str(loc[-1]) if loc else ""
    dotted = ".".join(str(part) for part in loc)
    if kind == "extra_forbidden":
        inner = _model_at(model, loc[:-1])
        keys = _keys_of(inner) if inner is not None else []
        close = difflib.get_close_matches(last, keys, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else ""
        hint = f"{hint} The options here are: {', '.join(sorted(keys))}".strip()
        return loc, f"unknown option '{dotted}'", hint
    if kind == "missing":
        return loc, f"the required option '{dotted}' is missing", f"add '{last}:' (the plugin's README describes it)"
    message = str(error.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    hint = ""
    if kind in ("int_parsing", "int_type", "int_from_float", "float_parsing", "float_type", "finite_number"):
        message, hint = f"{message}, got {error.get('input')!r}", "write a number"
    elif kind in ("bool_parsing", "bool_type"):
        message, hint = f"true or false, got {error.get('input')!r}", "write true or false"
    elif kind == "string_type":
        message, hint = f"{message}, got {error.get('input')!r}", "write text; quote it if it looks like a number"
    return loc, f"option {dotted}: {message}" if dotted else message, hint


def describe(model: type[BaseModel], exc: ValidationError, where: str) -> str:
    """All errors of ``exc`` as lines a person can act on: ``where: option <key>: message (fix: ...)``."""
    lines = []
    for error in exc.errors():
        _, message, hint = explain(model, dict(error))
        lines.append(f"{where}: {message}" + (f" ({hint})" if hint else ""))
    return "\n".join(lines)


def parse(
    model: type[M],
    raw: Mapping[str, Any],
    where: str,
    error: Callable[[str], Exception],
    *,
    contract_path: str = "",
    environment: bool = True,
) -> M:
    """The plugin side: ``raw`` validated into ``model``, or ``error(message)`` raised. Files the options
    name are found relative to ``contract_path``'s directory, as `seam check` finds them."""
    try:
        return model.model_validate(dict(raw), context={"base": _base(contract_path), "environment": environment})
    except ValidationError as exc:
        raise error(describe(model, exc, where)) from None


#: One problem found by :func:`check`: (path from the contract's root, message, hint).
Finding = tuple[tuple[str | int, ...], str, str]


def _entries(contract: Any, section: str) -> list[Any]:
    entries = getattr(contract, section, None)
    return list(entries) if isinstance(entries, list) else []


def _base(contract_path: str | Path) -> str:
    return str(Path(contract_path).parent) if str(contract_path) else ""


def _runs_here(contract: Any, entry: Any, node: str | None) -> bool:
    nodes = getattr(contract, "nodes", [])
    if node is None:
        return len(nodes) <= 1
    node_of = getattr(contract, "node_of", None)
    return callable(node_of) and node_of(entry) == node


def check(
    contract: Any, *, environment: bool = True, node: str | None = None, contract_path: str | Path = ""
) -> list[Finding]:
    """Every device's, sink's and source's ``options`` against its plugin's model, and the device
    fields its driver checks. ``environment``: also check the files and environment variables the
    options name, as the plugin will when it starts - for the plugins of ``node`` (this machine), or of
    every node when the contract has at most one (files named for another machine are not here to
    check). Plugins without ``options.py`` are left to the rules (an unknown plugin
    name is a finding there)."""
    findings: list[Finding] = []
    for section, package in KINDS.items():
        for index, entry in enumerate(_entries(contract, section)):
            name = entry.driver if section == "devices" else entry.type
            module = options_module(package, name)
            model = options_model(package, name)
            if module is None:
                continue
            if model is None:
                findings.append(
                    ((section, index, "driver" if section == "devices" else "type"), f"'{name}' is not a plugin", "")
                )
                continue
            base: tuple[str | int, ...] = (section, index, "options")
            what = "device" if section == "devices" else section[:-1]
            try:
                here = environment and _runs_here(contract, entry, node)
                options = model.model_validate(
                    dict(entry.options), context={"environment": here, "base": _base(contract_path)}
                )
            except ValidationError as exc:
                for error in exc.errors():
                    loc, message, hint = explain(model, dict(error))
                    findings.append(((*base, *loc), f"{what} {entry.id}: {message}", hint))
                continue
            hook = getattr(module, "check_device", None) if section == "devices" else None
            if callable(hook):
                for field, message in hook(entry, options):
                    findings.append(((section, index, field), f"device {entry.id}: {message}", ""))
    return findings
