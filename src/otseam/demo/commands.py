"""`seam demo`: one command that shows Seam working end to end, with nothing to configure.

It starts the simulated water plant (Modbus/TCP and OPC UA on free loopback ports), writes the
contract that matches it into a working directory, and runs that contract exactly as `seam run`
would: drivers, pipeline, journal, the local historian, /health and /metrics. Nothing here is
special-cased: what the demo shows is what a plant gets.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from otseam.commands.run import RunOptions, serve, setup_logging
from otseam.runtime.http import HttpAddressError, check_exposure, parse_address, read_token
from otseam.runtime.supervisor import Settings, Supervisor
from otseam.sim.plant import SimListenError, SimPlant


def _guide(contract: Path, http: tuple[str, int] | None, supervisor: Supervisor) -> str:
    lines = [
        "",
        "Seam demo: a simulated water plant, polled and recorded by the edge runtime.",
        f"  contract      {contract}   (edit it: the runtime reloads it)",
        f"  check it      seam check {contract}",
        f"  interface     seam doc {contract} -o {contract.parent / 'interface.html'}",
        f"  history       seam query raw-water/tank1-temperature --contract {contract} --from -5min --bucket 30s",
    ]
    if http is not None:
        lines.append(f"  health        curl http://{http[0]}:{http[1]}/health")
        lines.append(f"  metrics       curl http://{http[0]}:{http[1]}/metrics")
    lines.append("  stop          Ctrl-C (the journal keeps everything; run again to continue)")
    lines.append("")
    return "\n".join(lines)


async def _demo(directory: Path, http: tuple[str, int] | None, seed: int, opcua: bool, console: Console | None) -> int:
    plant = SimPlant(modbus_port=0, opcua_port=0, seed=seed, opcua=opcua)
    try:
        await plant.start()
    except SimListenError as exc:
        typer.echo(f"seam demo: {exc}", err=True)
        return 2
    try:
        contract = directory / "seam.yaml"
        # The ports change from run to run; the journal and the historian in the directory stay.
        await asyncio.to_thread(contract.write_text, plant.contract_yaml(), encoding="utf-8")
        options = RunOptions(
            contract=contract,
            http=http,
            token=read_token(None),
            settings=Settings(drain_timeout=10.0, watch=True),
            status_interval=10.0,
            live=console is not None,
        )

        def started(supervisor: Supervisor, address: tuple[str, int] | None) -> None:
            typer.echo(_guide(contract.resolve(), address, supervisor))

        return await serve(options, console, on_started=started)
    finally:
        await plant.stop()


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        directory: Annotated[
            Path, typer.Option("--dir", help="Working directory for the contract, journal and historian.")
        ] = Path("seam-demo"),
        http: Annotated[str, typer.Option("--http", help="Address of /health and /metrics, or 'off'.")] = (
            "127.0.0.1:9780"
        ),
        seed: Annotated[int, typer.Option("--seed", help="Seed of the simulated process.")] = 1,
        opcua: Annotated[bool, typer.Option("--opcua/--no-opcua", help="Run the OPC UA server too.")] = True,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    ) -> None:
        """A simulated water plant and the whole edge on it: no configuration needed."""
        address: tuple[str, int] | None = None
        if http.strip().lower() != "off":
            try:
                address = parse_address(http)
                check_exposure(address[0], read_token(None))
            except HttpAddressError as exc:
                typer.echo(f"seam demo: --http: {exc}", err=True)
                raise typer.Exit(2) from None
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            typer.echo(f"seam demo: cannot use {directory}: {exc.strerror}", err=True)
            raise typer.Exit(2) from None
        console = Console() if sys.stdout.isatty() else None
        setup_logging(verbose, console)
        try:
            code = asyncio.run(_demo(directory, address, seed, opcua, console))
        except KeyboardInterrupt:
            code = 130
        raise typer.Exit(code)
