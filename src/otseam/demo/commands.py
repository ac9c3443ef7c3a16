"""`seam demo`: one command that shows Seam working end to end, with nothing to configure.

It starts the simulated water plant (Modbus/TCP and OPC UA on free loopback ports), writes the
contract that matches it into a working directory, and runs that contract exactly as `seam run`
would: drivers, pipeline, journal, the local historian, /health and /metrics. Nothing here is
special-cased: what the demo shows is what a plant gets.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from rich.console import Console
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from otseam.commands.run import RunOptions, serve, setup_logging
from otseam.diode.config import write_new_key
from otseam.runtime.http import HttpAddressError, check_exposure, parse_address, read_token
from otseam.runtime.supervisor import Settings, Supervisor
from otseam.sim.contract import DIODE_KEY
from otseam.sim.plant import SimListenError, SimPlant

#: The node of the simulator's contract that polls the plant: the one the demo runs.
DEMO_NODE = "ot-edge"
#: Beside the contract: the digest of the contract the demo last wrote. A contract that no longer matches
#: it was edited by someone, and the demo keeps it rather than overwrite their work.
STAMP = ".seam-demo-contract.sha256"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def edited(contract: Path) -> bool:
    """Whether ``contract`` exists and is not, byte for byte, what the demo last wrote there."""
    if not contract.exists():
        return False
    stamp = contract.parent / STAMP
    try:
        return stamp.read_text(encoding="utf-8").strip() != _digest(contract.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return True


def plant_ports(contract: Path) -> tuple[int, int]:
    """The Modbus and OPC UA ports the contract's devices poll on this machine (0: none found), so the
    simulated plant can be started where a kept contract expects it."""
    try:
        data: Any = YAML(typ="safe").load(contract.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, YAMLError):
        return 0, 0
    modbus = opcua = 0
    devices = data.get("devices") if isinstance(data, dict) else None
    for device in devices if isinstance(devices, list) else []:
        endpoint = device.get("endpoint") if isinstance(device, dict) else None
        if not isinstance(endpoint, str):
            continue
        try:
            parts = urlsplit(endpoint)
            port = parts.port or 0
        except ValueError:
            continue
        if parts.scheme == "tcp" and not modbus:
            modbus = port
        elif parts.scheme == "opc.tcp" and not opcua:
            opcua = port
    return modbus, opcua


def _guide(contract: Path, http: tuple[str, int] | None, supervisor: Supervisor) -> str:
    lines = [
        "",
        "Seam demo: a simulated water plant, polled and recorded by the edge runtime.",
        f"  contract      {contract}   (edit it: the runtime reloads it, and the next demo keeps it)",
        f"  check it      seam check {contract} --node {DEMO_NODE}",
        f"  interface     seam doc {contract} -o {contract.parent / 'interface.html'}",
        f"  history       seam query raw-water/tank1-temperature --contract {contract} --node {DEMO_NODE} "
        "--from -5min --bucket 30s",
    ]
    if http is not None:
        lines.append(f"  health        curl http://{http[0]}:{http[1]}/health")
        lines.append(f"  metrics       curl http://{http[0]}:{http[1]}/metrics")
    lines.append("  stop          Ctrl-C (the journal keeps everything; run again to continue)")
    lines.append("")
    return "\n".join(lines)


async def _demo(directory: Path, http: tuple[str, int] | None, seed: int, opcua: bool, console: Console | None) -> int:
    contract = directory / "seam.yaml"
    keep = edited(contract)
    modbus_port, opcua_port = plant_ports(contract) if keep else (0, 0)
    plant = SimPlant(modbus_port=modbus_port, opcua_port=opcua_port, seed=seed, opcua=opcua)
    try:
        await plant.start()
    except SimListenError as exc:
        typer.echo(f"seam demo: {exc}", err=True)
        if keep:
            typer.echo(
                f"seam demo: {contract} was edited, so it is kept, and the plant must listen where it says; "
                "stop what holds that port, or move the file away to start afresh",
                err=True,
            )
        return 2
    try:
        if keep:
            typer.echo(f"seam demo: keeping {contract} as edited (the plant listens on the ports it names)")
        else:
            # The ports change from run to run; the journal and the historian in the directory stay.
            text = plant.contract_yaml()
            await asyncio.to_thread(contract.write_text, text, encoding="utf-8")
            await asyncio.to_thread((directory / STAMP).write_text, _digest(text) + "\n", encoding="utf-8")
        key = directory / DIODE_KEY
        if not key.exists():
            # The edge's diode sink needs its key to start; nothing listens on the far side in the demo.
            await asyncio.to_thread(write_new_key, key)
        options = RunOptions(
            contract=contract,
            http=http,
            token=read_token(None),
            settings=Settings(drain_timeout=10.0, watch=True),
            status_interval=10.0,
            live=console is not None,
            node=DEMO_NODE,
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
