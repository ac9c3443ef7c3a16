"""``seam discover modbus HOST[:PORT]`` and ``seam discover opcua URL``: what answers there, written as a
draft contract section."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from urllib.parse import urlparse

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

    from otseam.drivers.modbus.discover import discover, rate_text, render_draft, suggested_rate

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
                # Progress on stderr: the draft may be going to stdout, redirected into a file.
                progress=lambda line: typer.echo(f"  {line}", err=True),
            )
        )
    except (OSError, TimeoutError) as exc:
        raise _fail(
            f"cannot reach {endpoint.key}: {exc or 'timed out'}; check the address, port and firewall"
        ) from None
    command = f"seam discover modbus {target}" + (" --ranges" if ranges else "")
    draft = render_draft(endpoint, found, command, requests_per_second)
    if found:
        typer.echo(
            f"seam discover: the draft suggests max_request_rate {rate_text(suggested_rate(requests_per_second))}, "
            f"no more than discovery sent (at most {rate}); confirm it with the owner of each device",
            err=True,
        )
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


@discover_app.command("opcua")
def discover_opcua(
    url: str = typer.Argument(..., metavar="URL", help="The server's endpoint, opc.tcp://HOST:PORT[/path]."),
    certificate: str = typer.Option("", help="This client's certificate (DER or PEM), for a secured endpoint."),
    private_key: str = typer.Option("", help="Its private key (PEM)."),
    server_certificate: str = typer.Option("", help="The server's certificate, if it is to be checked."),
    security_policy: str = typer.Option(
        "", help="Basic256Sha256, Aes128Sha256RsaOaep, Aes256Sha256RsaPss or None (default: the best offered)."
    ),
    security_mode: str = typer.Option("", help="Sign or SignAndEncrypt (default: SignAndEncrypt)."),
    username: str = typer.Option("", help="Log in as this user."),
    password_file: str = typer.Option("", help="A file holding the password (never the password itself)."),
    max_nodes: int = typer.Option(10_000, help="Stop browsing after this many nodes."),
    timeout: float = typer.Option(10.0, help="Seconds to wait for each answer."),
    output: str = typer.Option("", "-o", "--output", help="Write the draft devices section to this file."),
) -> None:
    """Browse the server's address space (with the security it requires) and write a draft `devices:`
    section with every variable found: node id, data type, engineering units and range where the server
    has them. Every guess is marked TODO for a person to complete."""
    parsed = urlparse(url)
    if parsed.scheme != "opc.tcp" or not parsed.hostname:
        raise _fail(f"{url!r} is not an OPC UA endpoint: write opc.tcp://HOST:PORT[/path]")
    if parsed.username or parsed.password:
        raise _fail("no credentials in the URL: use --username and --password-file")
    if not 1 <= max_nodes <= 10_000_000 or timeout <= 0:
        raise _fail("--max-nodes must be 1 or more and --timeout more than zero")
    if security_policy not in ("", "None", "Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"):
        raise _fail(
            f"--security-policy {security_policy!r}: use Basic256Sha256, Aes128Sha256RsaOaep, Aes256Sha256RsaPss or None"
        )
    if security_mode not in ("", "Sign", "SignAndEncrypt", "None"):
        raise _fail(f"--security-mode {security_mode!r}: use Sign or SignAndEncrypt")
    if bool(certificate) != bool(private_key):
        raise _fail("--certificate and --private-key go together")
    password = None
    if password_file:
        try:
            password = Path(password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise _fail(f"cannot read --password-file {password_file}: {exc.strerror or exc}") from None
    if username and password is None:
        raise _fail("--username needs --password-file")

    from otseam.drivers.opcua.discover import Credentials, DiscoveryError, discover, render_draft

    credentials = Credentials(
        certificate, private_key, server_certificate, security_policy, security_mode, username, password
    )
    typer.echo(f"seam discover: browsing {url}", err=True)
    try:
        found = asyncio.run(
            discover(
                url,
                credentials,
                max_nodes=max_nodes,
                answer_within=timeout,
                progress=lambda line: typer.echo(f"  {line}", err=True),
            )
        )
    except DiscoveryError as exc:
        raise _fail(str(exc)) from None
    except (OSError, TimeoutError) as exc:
        raise _fail(f"cannot reach {url}: {exc or 'timed out'}; check the address, port and firewall") from None
    except Exception as exc:  # the server refused us (a login, a certificate): say what it said
        raise _fail(f"{url} refused the session: {exc.__class__.__name__}: {exc}") from None
    typer.echo(
        f"seam discover: {len(found.variables)} variable(s) in {found.browsed} node(s)"
        + (" (stopped at --max-nodes)" if found.truncated else ""),
        err=True,
    )
    draft = render_draft(found, f"seam discover opcua {url}")
    if output:
        try:
            Path(output).write_text(draft, encoding="utf-8")
        except OSError as exc:
            raise _fail(f"cannot write {output}: {exc.strerror or exc}") from None
        typer.echo(f"seam discover: draft written to {output}", err=True)
    else:
        typer.echo(draft, nl=False)
    if not found.variables:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(discover_app, name="discover")
