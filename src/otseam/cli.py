"""The `seam` command.

Each capability registers its own subcommands from its own package (``<package>/commands.py`` with a
``register(app)`` function), so this file only lists them.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="seam",
    help="Seam: the defined interface between a plant's OT and its IT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Packages that contribute subcommands, in the order they appear in --help.
COMMAND_MODULES = [
    "otseam.contract.commands",  # check, init, doc
    "otseam.sim.commands",  # sim
    "otseam.demo.commands",  # demo
    "otseam.core.commands",  # run
    "otseam.sinks.historian.commands",  # query
    "otseam.drivers.modbus.commands",  # discover
    "otseam.drivers.opcua.commands",  # discover opcua
    "otseam.sinks.sparkplug.commands",  # host
    "otseam.diode.commands",  # diode send / receive
    "otseam.monitor.commands",  # watch, inventory
]


def _register_all() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)


@app.callback()
def _root() -> None:
    """Seam: the defined interface between a plant's OT and its IT."""


def main() -> None:
    _register_all()
    app()


if __name__ == "__main__":
    main()
