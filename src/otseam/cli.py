"""The `seam` command.

Each capability registers its own subcommands from its own package (``<package>/commands.py`` with a
``register(app)`` function), so this file only lists them.

Start-up is kept cheap: a command imports only the package that provides it (``seam check`` never loads
the diode's FEC, the HTTP server or numpy), and ``seam --help`` lists the commands from
:data:`COMMAND_INDEX` without importing any of them. The index is checked against what the modules
really register by a test, so it cannot drift; a module missing from it still works, loaded eagerly.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer

from otseam.core.extras import MissingExtra, extra_for

app = typer.Typer(
    name="seam",
    help="Seam: the defined interface between a plant's OT and its IT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Packages that contribute subcommands, in the order they appear in --help.
COMMAND_MODULES = [
    "otseam.commands.contract",  # check, init, doc
    "otseam.commands.sim",  # sim
    "otseam.demo.commands",  # demo
    "otseam.commands.run",  # run
    "otseam.commands.query",  # query
    "otseam.commands.discover",  # discover
    "otseam.commands.host",  # host
    "otseam.commands.diode",  # diode send / receive
    "otseam.commands.monitor",  # watch, inventory
    "otseam.commands.authority",  # command, contract, audit
    "otseam.commands.users",  # user
    "otseam.commands.fleet",  # fleet ingest
]

#: command name -> (module that registers it, the first line of its help), for a start-up that imports
#: nothing it does not run. tests/test_cli.py checks it against the modules.
COMMAND_INDEX: dict[str, tuple[str, str]] = {
    "check": (
        "otseam.commands.contract",
        "Check a contract against every rule. Exit 0: clean (or info only); 1: findings; 2: unusable file.",
    ),
    "init": (
        "otseam.commands.contract",
        "Write a commented example contract (a small water works) that passes `seam check`.",
    ),
    "doc": (
        "otseam.commands.contract",
        "Render the interface as one self-contained HTML page (diagram, owners, constraints, commands).",
    ),
    "sim": (
        "otseam.commands.sim",
        "Run a simulated water plant: Modbus/TCP PLCs and an OPC UA server, or a scale test rig.",
    ),
    "demo": (
        "otseam.demo.commands",
        "A simulated water plant, its OT and IT nodes and their consoles: no configuration needed.",
    ),
    "run": (
        "otseam.commands.run",
        "Run the contract: drivers, pipeline, journal and sinks, supervised. SIGHUP reloads, SIGTERM stops.",
    ),
    "query": (
        "otseam.commands.query",
        "Show what the local historian recorded for POINT: raw rows, or min/max/avg per --bucket. Times in UTC.",
    ),
    "discover": ("otseam.commands.discover", "Find devices on the network and draft their contract section."),
    "host": (
        "otseam.commands.host",
        "Run the IT-side Sparkplug B host application: STATE, ingestion into a historian, rebirths.",
    ),
    "fleet": (
        "otseam.commands.fleet",
        "The fleet of sites on NATS JetStream (docs/scale.md).",
    ),
    "diode": (
        "otseam.commands.diode",
        "A one-way link: send the journal through a data diode (OT side), receive it (IT side).",
    ),
    "watch": (
        "otseam.commands.monitor",
        "Passive OT monitoring: decode Modbus/TCP and OPC UA from a capture or a span port, raise alerts.",
    ),
    "inventory": (
        "otseam.commands.monitor",
        "The assets a capture shows: role, unit ids, function codes, vendor/product/revision, first/last seen.",
    ),
    "command": (
        "otseam.commands.authority",
        "Two-person commands: keys, requests, approvals, break-glass.",
    ),
    "contract": ("otseam.commands.authority", "Contract change control: propose, diff, approve, status."),
    "audit": ("otseam.commands.authority", "The tamper-evident audit log: verify, export."),
    "user": ("otseam.commands.users", "The console's users: who may sign in to this node, and as which person."),
}


def version() -> str:
    """The installed distribution's version (the source tree's when run from a checkout)."""
    from importlib import metadata

    try:
        return metadata.version("otseam")
    except metadata.PackageNotFoundError:
        from otseam import __version__

        return __version__


def _show_version(value: bool) -> None:
    if value:
        print(f"seam {version()}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_show_version, is_eager=True
    ),
    log_format: str = typer.Option(
        "text", "--log-format", help="Logs of every command: text, or json (one JSON object per line)."
    ),
) -> None:
    """Seam: the defined interface between a plant's OT and its IT."""
    from otseam.runtime import logfmt

    try:
        logfmt.use(log_format)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _unindexed() -> list[str]:
    indexed = {module for module, _ in COMMAND_INDEX.values()}
    return [name for name in COMMAND_MODULES if name not in indexed]


def _register(modules: list[str]) -> None:
    for name in dict.fromkeys(modules):
        importlib.import_module(name).register(app)


def _register_listing() -> None:
    """For the command list only (``seam``, ``seam --help``): each indexed command as a stand-in that
    carries its help line; the real command is loaded when it is run."""
    for name, (_module, summary) in COMMAND_INDEX.items():

        def stand_in() -> None:  # never run: a command named on the line is loaded for real
            raise typer.Exit(2)

        app.command(name, help=summary)(stand_in)
    _register(_unindexed())


def _command_name(argv: list[str]) -> str | None:
    """The subcommand named on the command line (the first word that is not an option)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _ROOT_OPTIONS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


#: Options of `seam` itself (before the command) that take a value.
_ROOT_OPTIONS_WITH_VALUE = frozenset({"--log-format"})


def _register_all() -> None:
    """Every command, imported (for tools that inspect the whole command tree)."""
    _register(COMMAND_MODULES)


def main(argv: list[str] | None = None) -> Any:
    args = sys.argv[1:] if argv is None else argv
    name = _command_name(args)
    try:
        if name in COMMAND_INDEX:
            _register([COMMAND_INDEX[name][0]])
        elif name is None:
            _register_listing()
        else:  # a command the index does not know (yet): load everything, so click finds it or says so
            _register_all()
        return app(args)
    except (ModuleNotFoundError, MissingExtra) as exc:
        # An optional part used without its extra: one line that names the extra, exit 2 (a usage error).
        if isinstance(exc, ModuleNotFoundError):
            extra = extra_for(exc.name, prefer=name)
            if extra is None:
                raise
            exc = MissingExtra(f"seam {name}" if name else "seam", extra, exc.name)
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
