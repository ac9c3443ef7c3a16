"""`seam` commands run in the test's own process: the same commands `seam` registers, through typer's
CliRunner, without starting an interpreter for each (most of a test's time on a busy machine)."""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import typer
from typer.testing import CliRunner

from otseam import cli


def _app() -> typer.Typer:
    app = typer.Typer(name="seam", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
    for module in dict.fromkeys(cli.COMMAND_MODULES):
        importlib.import_module(module).register(app)
    return app


APP = _app()


@contextlib.contextmanager
def _inside(directory: Path) -> Iterator[None]:
    here = Path.cwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(here)


def seam(*args: str | Path, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``seam ARGS`` in ``cwd``: its exit status, standard output and standard error."""
    words = [str(a) for a in args]
    with _inside(cwd):
        result = CliRunner().invoke(APP, words, input=stdin)
    return subprocess.CompletedProcess(["seam", *words], result.exit_code, result.stdout, result.stderr)
