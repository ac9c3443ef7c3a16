"""The extras in pyproject.toml install exactly what the code imports, and a missing extra is named right.

Read from the source tree and the installed distributions' metadata, without installing anything: every
third-party module the package imports comes from a runtime dependency or from an extra; every extra
brings a module the code imports (no dead dependency left behind when the code stops using one); and
the map otseam.core.extras uses to name the missing extra agrees with pyproject.toml.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path

import pytest

from otseam.core.extras import EXTRAS, MissingExtra, extra_for

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
#: Extras that gather others (they bring nothing of their own).
GATHERING = {"all", "dev"}
#: Modules the code imports that a declared dependency brings and versions in lockstep with itself.
COMES_WITH = {"pydantic_core": "pydantic"}


def distribution(requirement: str) -> str:
    """The canonical distribution name of a requirement ("psycopg[binary]>=3.3" -> "psycopg")."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name, requirement
    return re.sub(r"[-_.]+", "-", name.group(0)).lower()


RUNTIME = {distribution(r) for r in PROJECT["dependencies"]}
OWN_EXTRAS = {
    extra: {distribution(r) for r in requirements}
    for extra, requirements in PROJECT["optional-dependencies"].items()
    if extra not in GATHERING
}


def is_extras_load(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "load"
        and bool(node.args)
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    )


@functools.cache
def imported_modules() -> dict[str, set[str]]:
    """Top-level third-party modules imported anywhere in the package, each with the files importing it."""
    found: dict[str, set[str]] = {}
    for path in (REPO / "src" / "otseam").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif is_extras_load(node):  # otseam.core.extras.load("nkeys", ...): an import by name
                names = [node.args[0].value]  # type: ignore[attr-defined]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "otseam" and top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


@functools.cache
def providers() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distributions_of(module: str) -> set[str]:
    """The distributions that install top-level ``module`` (from the installed metadata)."""
    providers_of = {distribution(d) for d in providers().get(module, [])}
    assert providers_of, f"no installed distribution provides {module!r}"
    return providers_of


def test_every_imported_module_is_declared() -> None:
    declared = RUNTIME.union(*OWN_EXTRAS.values())
    for module, files in imported_modules().items():
        if module in COMES_WITH:
            assert COMES_WITH[module] in RUNTIME, module
            continue
        assert distributions_of(module) & declared, f"{module} (imported by {sorted(files)}) is in no dependency"


@pytest.mark.parametrize("extra", sorted(OWN_EXTRAS))
def test_every_extra_brings_what_the_code_imports(extra: str) -> None:
    used = set().union(*(distributions_of(m) for m in imported_modules() if m not in COMES_WITH))
    unused = OWN_EXTRAS[extra] - used
    assert not unused, f"the {extra} extra installs {sorted(unused)}, which nothing in src/otseam imports"


def test_all_gathers_every_extra() -> None:
    (everything,) = PROJECT["optional-dependencies"]["all"]
    gathered = set(re.search(r"\[(.*)\]", everything).group(1).split(","))  # type: ignore[union-attr]
    assert gathered == set(OWN_EXTRAS)


def test_the_missing_extra_map_agrees_with_pyproject() -> None:
    assert set(EXTRAS) == set(OWN_EXTRAS)
    for extra, modules in EXTRAS.items():
        for module in modules:
            top = module.split(".")[0]
            assert distributions_of(top) & OWN_EXTRAS[extra], f"the {extra} extra does not install {module}"
            assert not distributions_of(top) & RUNTIME, f"{module} is a runtime dependency, never missing extra"
    for module in imported_modules():
        extras = [e for e, dists in OWN_EXTRAS.items() if distributions_of(module) & dists]
        if extras and not distributions_of(module) & RUNTIME:
            assert extra_for(module) in extras, f"a missing {module} would not name an extra that installs it"


def test_a_missing_module_names_the_extra_that_installs_it() -> None:
    assert extra_for("asyncua.client") == "opcua"
    assert extra_for("google.protobuf") == "sparkplug"
    assert extra_for("nkeys") == "nats"
    assert extra_for("aiomqtt", prefer="sparkplug") == "sparkplug"  # the sparkplug sink without aiomqtt
    assert extra_for("aiomqtt", prefer="uns_json") == "mqtt"
    assert extra_for("aiomqtt", prefer="host") == "sparkplug"  # seam host
    assert extra_for("google") == "sparkplug"  # no google namespace at all: the import fails on its parent
    assert extra_for("numpy") is None  # a runtime dependency: a broken install, not a missing extra
    message = str(MissingExtra("the opcua driver", "opcua", "asyncua"))
    assert message == "the opcua driver needs the extra: pip install 'otseam[opcua]' (no module named 'asyncua')"
