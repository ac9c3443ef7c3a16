"""``seam discover opcua URL``: browse an OPC UA server and draft the contract section of its variables."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlparse

import typer


def _fail(message: str) -> typer.Exit:
    typer.echo(f"seam discover: {message}", err=True)
    return typer.Exit(2)


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
    # `seam discover` is one group whatever the protocol: the Modbus driver created it, this adds to it.
    from otseam.drivers.modbus.commands import discover_app

    discover_app.command("opcua")(discover_opcua)
