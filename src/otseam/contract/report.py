"""How `seam check` shows findings: grouped by severity for people, a flat JSON list for machines."""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape

from otseam.contract.loader import Problem
from otseam.contract.rules.registry import SEVERITY_ORDER, Finding, Severity

#: Exit status of `seam check`: warnings count as findings, info alone does not.
EXIT_CLEAN, EXIT_FINDINGS, EXIT_UNUSABLE = 0, 1, 2

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
_HEADING = {Severity.ERROR: "errors", Severity.WARNING: "warnings", Severity.INFO: "information"}


def exit_status(findings: Sequence[Finding]) -> int:
    return EXIT_FINDINGS if any(f.severity != Severity.INFO for f in findings) else EXIT_CLEAN


def problems_as_findings(problems: Sequence[Problem]) -> list[Finding]:
    """Loading problems in the same shape as findings, so a machine reads one format (rule "LOAD")."""
    return [Finding("LOAD", Severity.ERROR, p.file, p.line, p.column, p.path, p.message, p.hint) for p in problems]


def to_json(findings: Sequence[Finding]) -> str:
    return json.dumps([f.to_dict() for f in findings], indent=2, ensure_ascii=False)


def print_findings(console: Console, findings: Sequence[Finding], file: str) -> None:
    if not findings:
        console.print(f"[green]{escape(file)}: no findings[/green]")
        return
    for severity in (Severity.ERROR, Severity.WARNING, Severity.INFO):
        group = [f for f in findings if f.severity == severity]
        if not group:
            continue
        console.print(f"[{_STYLE[severity]}]{_HEADING[severity]} ({len(group)})[/]")
        for f in group:
            console.print(
                f"  {escape(f.file)}:{f.line}:{f.column}  [{_STYLE[severity]}]{f.rule}[/]  {escape(f.message)}"
            )
            if f.hint:
                console.print(f"      fix: {escape(f.hint)}", style="dim")
    n_errors, n_warnings, n_info = (sum(1 for f in findings if f.severity == s) for s in SEVERITY_ORDER)
    counts = (
        f"{n_errors} error{'s' if n_errors != 1 else ''}, {n_warnings} warning{'s' if n_warnings != 1 else ''}, "
        f"{n_info} info"
    )
    console.print(f"{escape(file)}: {counts}")


def print_problems(console: Console, problems: Sequence[Problem]) -> None:
    """Problems that make a contract unusable (it could not be loaded)."""
    for p in problems:
        console.print(f"[bold red]{escape(p.file)}:{p.line}:{p.column}[/]  {escape(p.message)}")
        if p.hint:
            console.print(f"      fix: {escape(p.hint)}", style="dim")
    console.print(f"[bold red]the contract cannot be used: {len(problems)} problem(s)[/]")
