"""`seam check`, `seam init` and `seam doc`."""

from __future__ import annotations

import re
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from otseam.contract.init import AnswersEnded, example_key, example_text, interview
from otseam.contract.loader import ContractError, LoadedContract, Problem, load, parse_text
from otseam.contract.report import (
    EXIT_CLEAN,
    EXIT_FINDINGS,
    EXIT_UNUSABLE,
    exit_status,
    print_findings,
    print_problems,
    problems_as_findings,
    to_json,
)
from otseam.contract.rules import iter_rules, run
from otseam.diode.config import write_new_key


class OutputFormat(StrEnum):
    HUMAN = "human"
    JSON = "json"


def _console(stderr: bool = False) -> Console:
    # soft_wrap: never break a file:line:column line in the middle when output goes to a pipe or log.
    return Console(stderr=stderr, soft_wrap=True, highlight=False)


_ENTRY = re.compile(r"^(device|source|sink) ([A-Za-z][A-Za-z0-9_-]*): ")
_SECTIONS = {"device": "devices", "source": "sources", "sink": "sinks"}


def plan_problems(loaded: LoadedContract, node: str | None) -> list[Problem]:
    """What `seam run` would still refuse once the contract loads: the run side's own plan for the node
    (the pipeline compiled, every plugin placed on it created as at start), at the position of the
    entry each refusal names. Only for a node that is this machine: one given, or the only one."""
    from otseam.runtime.supervisor import StartupError, Supervisor

    nodes = [n.id for n in loaded.contract.nodes]
    if node is None and len(nodes) > 1:
        return []
    try:
        Supervisor(loaded.path, node=node, fixed=loaded).prepare()
    except StartupError as exc:
        problems = []
        for line in str(exc).splitlines():
            match = _ENTRY.match(line)
            path: tuple[str | int, ...] = ()
            if match:
                section = _SECTIONS[match.group(1)]
                entries = getattr(loaded.contract, section)
                index = next((i for i, e in enumerate(entries) if e.id == match.group(2)), None)
                path = (section, index) if index is not None else ()
            at = loaded.at(path)
            problems.append(
                Problem(
                    str(loaded.path),
                    at.line,
                    at.column,
                    line,
                    "seam run refuses this when it starts: fix it here first",
                    ".".join(str(p) for p in path),
                )
            )
        return problems
    return []


def check(
    contract: Annotated[str, typer.Argument(help="The contract file, e.g. seam.yaml.")] = "seam.yaml",
    output: Annotated[OutputFormat, typer.Option("--format", help="human, or json for machines.")] = OutputFormat.HUMAN,
    list_rules: Annotated[bool, typer.Option("--list-rules", help="List every rule and exit.")] = False,
    node: Annotated[
        str | None,
        typer.Option(
            "--node",
            help="The node this machine is: the files and environment variables its plugins' options name "
            "are checked here too, as 'seam run --node' would (with one node, always).",
        ),
    ] = None,
) -> None:
    """Check a contract against every rule. Exit 0: clean (or info only); 1: findings; 2: unusable file."""
    console = _console()
    if list_rules:
        for item in iter_rules():
            console.print(f"{item.id}  {item.severity:<7}  {item.title}")
        raise typer.Exit(EXIT_CLEAN)
    try:
        loaded = load(contract, node=node)
    except ContractError as exc:
        if output == OutputFormat.JSON:
            print(to_json(problems_as_findings(exc.problems)))
        else:
            print_problems(_console(stderr=True), exc.problems)
        raise typer.Exit(EXIT_UNUSABLE) from None
    nodes = [n.id for n in loaded.contract.nodes]
    if node is not None and node not in nodes:
        _console(stderr=True).print(
            f"[red]--node {node}: no such node in {contract}[/red]; its nodes are {', '.join(nodes) or 'none'}"
        )
        raise typer.Exit(EXIT_UNUSABLE)
    refused = plan_problems(loaded, node)
    if refused:
        if output == OutputFormat.JSON:
            print(to_json(problems_as_findings(refused)))
        else:
            print_problems(_console(stderr=True), refused)
        raise typer.Exit(EXIT_UNUSABLE)
    if node is None and len(nodes) > 1 and output == OutputFormat.HUMAN:
        _console(stderr=True).print(
            f"note: files and environment variables named in options were not checked (the contract has "
            f"{len(nodes)} nodes): run 'seam check {contract} --node ID' on each node's machine"
        )
    findings = run(loaded)
    if output == OutputFormat.JSON:
        print(to_json(findings))
    else:
        print_findings(console, findings, contract)
    raise typer.Exit(exit_status(findings))


def init(
    path: Annotated[Path, typer.Argument(help="Where to write the contract.")] = Path("seam.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    interactive: Annotated[
        bool, typer.Option("--interactive", "-i", help="Ask the questions both teams answer together first.")
    ] = False,
) -> None:
    """Write a commented example contract (a small water works) that passes `seam check`."""
    err = _console(stderr=True)
    if path.exists() and not force:
        err.print(f"[red]{path} already exists[/red]; nothing written. Use --force to overwrite it.")
        raise typer.Exit(EXIT_FINDINGS)
    if interactive:
        try:
            text = interview(lambda question, default: str(typer.prompt(question, default=default or None)), err.print)
        except (AnswersEnded, typer.Abort, EOFError) as exc:
            err.print(
                f"[red]stopped before all questions were answered[/red] ({exc or 'end of input'}); nothing written"
            )
            raise typer.Exit(EXIT_UNUSABLE) from None
    else:
        text = example_text()
    key = example_key(path)
    # What we write must load and pass: a starting point that fails its own check teaches the wrong habit.
    findings = run(parse_text(text, str(path)))
    try:
        path.write_text(text, encoding="utf-8")
        wrote_key = not key.exists()
        if wrote_key:
            # The example's diode sink needs its key to run; a fresh random one, readable by the owner only.
            write_new_key(key)
    except OSError as exc:
        err.print(f"[red]cannot write {exc.filename or path}: {exc.strerror}[/red]")
        raise typer.Exit(EXIT_UNUSABLE) from None
    err.print(f"wrote {path}" + (f" and the diode key {key}" if wrote_key else "") + ".")
    err.print(f"Next: edit it with the other team, then run 'seam check {path}'.")
    if findings:
        print_findings(err, findings, str(path))


def doc(
    contract: Annotated[str, typer.Argument(help="The contract file.")] = "seam.yaml",
    out: Annotated[Path | None, typer.Option("-o", "--output", help="Write the HTML here instead of stdout.")] = None,
) -> None:
    """Render the interface as one self-contained HTML page (diagram, owners, constraints, commands)."""
    if out is not None and out.resolve() == Path(contract).resolve():
        _console(stderr=True).print(f"[red]-o {out} is the contract itself[/red]; nothing written. Name an .html file.")
        raise typer.Exit(EXIT_UNUSABLE)
    try:
        loaded = load(contract)
    except ContractError as exc:
        print_problems(_console(stderr=True), exc.problems)
        raise typer.Exit(EXIT_UNUSABLE) from None
    # The page says "passes seam check" only for a contract `seam run` would accept.
    refused = plan_problems(loaded, None)
    if refused:
        print_problems(_console(stderr=True), refused)
        raise typer.Exit(EXIT_UNUSABLE)
    from otseam.contract.doc import render_html  # here: `seam check` never loads the page renderer

    page = render_html(loaded, run(loaded))
    if out is None:
        sys.stdout.write(page)
        return
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        _console(stderr=True).print(f"[red]cannot write {out}: {exc.strerror}[/red]")
        raise typer.Exit(EXIT_UNUSABLE) from None


def register(app: typer.Typer) -> None:
    app.command("check")(check)
    app.command("init")(init)
    app.command("doc")(doc)
