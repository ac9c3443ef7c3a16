"""Building contracts for the tests: the shipped example, changed one step at a time."""

from __future__ import annotations

import copy
import io
from typing import Any

import typer
from ruamel.yaml import YAML

from otseam.commands import contract as commands
from otseam.contract.init import example_text
from otseam.contract.loader import LoadedContract, parse_text
from otseam.contract.rules import Finding, run

_EXAMPLE: dict[str, Any] = YAML(typ="safe").load(example_text())


def example() -> dict[str, Any]:
    """A fresh, mutable copy of the example contract as plain data."""
    return copy.deepcopy(_EXAMPLE)


def to_text(data: dict[str, Any]) -> str:
    out = io.StringIO()
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    yaml.dump(data, out)
    return out.getvalue()


def load_data(data: dict[str, Any]) -> LoadedContract:
    return parse_text(to_text(data), "seam.yaml")


def findings(data: dict[str, Any]) -> list[Finding]:
    return run(load_data(data))


def rule_ids(data: dict[str, Any]) -> set[str]:
    return {f.rule for f in findings(data)}


def by_id(items: list[dict[str, Any]], item_id: str) -> dict[str, Any]:
    return next(item for item in items if item["id"] == item_id)


def cli() -> typer.Typer:
    """The contract commands on an app of their own, as `seam` registers them."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def _root() -> None:
        """seam"""

    commands.register(app)
    return app
