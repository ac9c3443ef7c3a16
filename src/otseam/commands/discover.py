"""``seam discover modbus HOST[:PORT]``: what answers there, written as a draft contract section."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import typer

from otseam.contract.units import parse_duration, parse_rate
from otseam.drivers.modbus.config import Endpoint, ModbusConfigError, parse_endpoint

discover_app = typer.Typer(help="Find devices on the network and draft their contract section.", no_args_is_help=True)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"seam discover: {message}", err=True)
    return typer.Exit(2)


def parse_units(text: str) -> list[int]:
    """``"1-247"``, ``"1,2,10-12"`` → unit ids, each 0..247, in the given order without repeats."""
    units: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d{1,3})\s*(?:-\s*(\d{1,3})\s*)?", part)
        if not match:
            raise ValueError(f"{text!r} is not a list of unit ids: write e.g. '1-247' or '1,2,10-12'")
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if not 0 <= low <= high <= 247:
            raise ValueError(f"{part.strip()!r}: unit ids run from 0 to 247, low to high")
        units += [u for u in range(low, high + 1) if u not in units]
    return units


def parse_target(text: str) -> Endpoint:
    """``host``, ``host:port``, or an endpoint URL (``tcp://``, ``rtu+tcp://``)."""
    if "://" not in text:
        text = f"tcp://{text}"
    endpoint = parse_endpoint(text)
    if endpoint.framing == "rtu":
        raise ModbusConfigError("discovery works over TCP (tcp:// or rtu+tcp://), not on a serial line")
    return endpoint


@discover_app.command("modbus")
def discover_modbus(
    target: str = typer.Argument(..., metavar="HOST[:PORT]", help="Where to look; the port defaults to 502."),
    units: str = typer.Option("1-247", help="Unit ids to try, e.g. 1-247 or 1,2,10-12."),
    ranges: bool = typer.Option(False, "--ranges", help="Also probe which address ranges of each table answer."),
    max_address: int = typer.Option(1000, help="With --ranges: probe addresses below this one."),
    rate: str = typer.Option("20/s", help="Never send more requests than this (e.g. 20/s, 5/s)."),
    timeout: str = typer.Option("500ms", help="How long to wait for each answer."),
    output: str = typer.Option("", "-o", "--output", help="Write the draft devices section to this file."),
) -> None:
    """Find responding unit ids, read their identification (43/14), optionally probe address ranges,
    and write a draft `devices:` section for a person to complete."""
    try:
        endpoint = parse_target(target)
        unit_ids = parse_units(units)
        requests_per_second = parse_rate(rate)
        answer_within = parse_duration(timeout)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if requests_per_second <= 0 or answer_within <= 0:
        raise _fail("--rate and --timeout must be more than zero")
    if not 1 <= max_address <= 65536:
        raise _fail("--max-address must be 1 to 65536")

    from otseam.drivers.modbus.discover import discover, render_draft

    typer.echo(f"seam discover: asking {endpoint.key}, units {units}, at most {rate}", err=True)
    try:
        found = asyncio.run(
            discover(
                endpoint,
                unit_ids,
                ranges=ranges,
                rate=requests_per_second,
                answer_within=answer_within,
                max_address=max_address,
                progress=lambda line: typer.echo(f"  {line}"),
            )
        )
    except (OSError, TimeoutError) as exc:
        raise _fail(
            f"cannot reach {endpoint.key}: {exc or 'timed out'}; check the address, port and firewall"
        ) from None
    command = f"seam discover modbus {target}" + (" --ranges" if ranges else "")
    draft = render_draft(endpoint, found, command)
    if output:
        try:
            Path(output).write_text(draft)
        except OSError as exc:
            raise _fail(f"cannot write {output}: {exc.strerror or exc}") from None
        typer.echo(f"seam discover: {len(found)} unit(s) answered; draft written to {output}", err=True)
    else:
        typer.echo(draft, nl=False)
    if not found:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(discover_app, name="discover")
