"""The `seam` command's start-up: the lazy command index matches the modules, and a command loads only
what it runs (start-up CPU is measured in bench/bench_cli.py, not asserted here)."""

from __future__ import annotations

import importlib
import importlib.resources
import subprocess
import sys

import typer

from otseam import __version__, cli


def registered(module: str) -> dict[str, str]:
    """Command name -> first help line, as ``module`` really registers them."""
    app = typer.Typer()
    importlib.import_module(module).register(app)
    out: dict[str, str] = {}
    for command in app.registered_commands:
        assert command.callback is not None
        name = command.name or command.callback.__name__.replace("_", "-")
        out[name] = (command.help or command.callback.__doc__ or "").strip().splitlines()[0]
    for group in app.registered_groups:
        info = group.typer_instance.info if group.typer_instance else None
        name = group.name or (info.name if info else None)
        assert isinstance(name, str)
        out[name] = str(group.help or (info.help if info else "")).strip().splitlines()[0]
    return out


def test_the_index_lists_exactly_what_the_modules_register() -> None:
    real = {name: (module, line) for module in cli.COMMAND_MODULES for name, line in registered(module).items()}
    assert real == cli.COMMAND_INDEX


def loaded_after(*args: str) -> tuple[str, set[str]]:
    code = (
        "import sys\nfrom otseam import cli\ntry:\n    cli.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(('otseam', 'numpy', 'asyncua', 'aiohttp')))))"
    )
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    lines = result.stdout.strip().splitlines()
    return "\n".join(lines[:-1]), set(lines[-1].split())


def test_help_lists_every_command_without_loading_any() -> None:
    text, modules = loaded_after("--help")
    for name in cli.COMMAND_INDEX:
        assert f" {name} " in text
    assert not {m for m in modules if m.startswith("otseam.commands.")}
    assert not modules & {"numpy", "asyncua", "aiohttp"}


def test_check_loads_only_what_it_needs(tmp_path: object) -> None:
    text, modules = loaded_after("check", str(importlib.resources.files("otseam.contract") / "example.yaml"))
    assert "no findings" in text
    assert "otseam.commands.contract" in modules
    assert not {m for m in modules if m.startswith("otseam.commands.")} - {"otseam.commands.contract"}
    assert not modules & {"numpy", "asyncua", "aiohttp"}


def test_version() -> None:
    result = subprocess.run([sys.executable, "-m", "otseam.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip().startswith("seam ")
    assert result.stdout.split()[1] in {__version__, cli.version()}


def test_an_unknown_command_is_exit_2() -> None:
    result = subprocess.run([sys.executable, "-m", "otseam.cli", "no-such-command"], capture_output=True, text=True)
    assert result.returncode == 2 and "No such command" in result.stderr
