"""``seam sim``: run the simulated plant, or print its contract."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import sys

import typer

from otseam.contract.units import parse_duration

STATUS_EVERY = 10.0  # seconds between status lines


def _fail(message: str) -> typer.Exit:
    typer.echo(f"seam sim: {message}", err=True)
    return typer.Exit(2)


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 7] → "1-3, 7": a scale-mode sim has up to 247 unit ids."""
    parts: list[str] = []
    for number in numbers:
        if parts and number - 1 == int(parts[-1].rpartition("-")[2]):
            first = parts[-1].partition("-")[0]
            parts[-1] = f"{first}-{number}"
        else:
            parts.append(str(number))
    return ", ".join(parts)


def _status(plant: object) -> str:
    from otseam.sim.plant import SimPlant

    assert isinstance(plant, SimPlant)
    stats = plant.modbus.stats
    text = f"tick {plant.ticks}: {stats.connections} Modbus client(s), {stats.requests} request(s)"
    if plant.scale is not None:
        return f"{text}, cycle {plant.scale.cycle}"
    values = plant.process.values()
    pumps = "+".join(p for p in ("P1", "P2") if values[f"Pump{p[1]}.Running"]) or "none"
    return (
        f"{text}; Tank1 {values['Tank1.Level']:.2f} m, Tank2 {values['Tank2.Level']:.2f} m, "
        f"pumps running: {pumps}, chlorine {values['Dosing.Residual']:.2f} mg/L"
    )


async def _serve(plant: object) -> None:
    from otseam.sim.plant import SimPlant

    assert isinstance(plant, SimPlant)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with plant:
        units = _ranges(plant.unit_ids)
        typer.echo(f"seam sim: Modbus/TCP on {plant.host}:{plant.modbus_port}, unit ids {units}", err=True)
        if plant.opcua_endpoint:
            typer.echo(
                f"seam sim: OPC UA on {plant.opcua_endpoint} (namespace urn:seam:sim, security policy None)",
                err=True,
            )
        typer.echo(
            f"seam sim: seed {plant.seed}, tick {plant.tick}s; 'seam sim --contract' prints the matching "
            "contract. Ctrl-C stops.",
            err=True,
        )
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), STATUS_EVERY)
            typer.echo(f"seam sim: {_status(plant)}", err=True)
    typer.echo("seam sim: stopped", err=True)


def sim(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    modbus_port: int = typer.Option(5020, help="Modbus/TCP port (0: let the OS choose)."),
    opcua_port: int = typer.Option(4840, help="OPC UA port (0: let the OS choose)."),
    seed: int = typer.Option(1, help="Seed of the process noise: the same seed gives the same series."),
    tick: str = typer.Option("1s", "--tick", "--cycle", help="Process step / scale-mode cycle, e.g. 500ms, 1s."),
    devices: int = typer.Option(0, help="Scale mode: this many Modbus unit ids (1..247)..."),
    points: int = typer.Option(0, help="...each with this many float32 points, all changing every cycle."),
    no_opcua: bool = typer.Option(False, "--no-opcua", help="Serve Modbus only (starts faster)."),
    contract: bool = typer.Option(False, "--contract", help="Print the matching contract (YAML) and exit."),
) -> None:
    """Run a simulated water plant: Modbus/TCP PLCs and an OPC UA server, or a scale test rig."""
    try:
        tick_seconds = parse_duration(tick)
    except ValueError as exc:
        raise _fail(f"--tick: {exc}") from None
    if tick_seconds <= 0:
        raise _fail("--tick must be longer than 0")
    for name, port in (("--modbus-port", modbus_port), ("--opcua-port", opcua_port)):
        if not 0 <= port <= 65535:
            raise _fail(f"{name} must be 0 to 65535, not {port}")
    if contract and (modbus_port == 0 or (opcua_port == 0 and not no_opcua)):
        raise _fail("--contract needs fixed ports: the contract must name the port the sim will listen on")

    from otseam.sim.plant import SimListenError, SimPlant

    try:
        plant = SimPlant(
            host,
            modbus_port,
            opcua_port,
            seed=seed,
            tick=tick_seconds,
            devices=devices,
            points=points,
            opcua=not no_opcua,
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if contract:
        sys.stdout.write(plant.contract_yaml())
        return
    logging.basicConfig(level=logging.WARNING, format="seam sim: %(levelname)s %(name)s: %(message)s")
    logging.getLogger("otseam.sim").setLevel(logging.INFO)
    # asyncua warns at start-up that the None security policy is in use: the banner already says so.
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    try:
        asyncio.run(_serve(plant))
    except SimListenError as exc:
        option = "--opcua-port" if exc.what == "OPC UA" else "--modbus-port"
        if exc.errno == errno.EADDRINUSE:
            hint = f"is another sim running? Choose another port with {option}"
        elif exc.errno == errno.EACCES:
            hint = f"ports below 1024 need privileges: choose a higher one with {option}"
        else:
            hint = "check --host: it must be an address of this machine, such as 127.0.0.1"
        raise _fail(f"{exc.strerror}; {hint}") from None
    except OSError as exc:
        raise _fail(f"{exc.strerror or exc}") from None
    except KeyboardInterrupt:
        pass


def register(app: typer.Typer) -> None:
    app.command("sim")(sim)
