"""Subcommands of this package (registered by otseam.cli): `seam fleet ingest`."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    fleet = typer.Typer(help="The fleet of sites on NATS JetStream (docs/scale.md).", no_args_is_help=True)
    app.add_typer(fleet, name="fleet")

    @fleet.command("ingest")
    def ingest(
        server: Annotated[
            list[str], typer.Option("--server", help="nats://HOST:PORT or tls://HOST:PORT of the hub; repeat")
        ],
        dsn_env: Annotated[
            str, typer.Option("--dsn-env", help="environment variable holding the PostgreSQL connection string")
        ],
        stream: Annotated[str, typer.Option("--stream", help="the hub's fleet stream")] = "FLEET",
        durable: Annotated[str, typer.Option("--durable", help="durable consumer shared by all ingest processes")] = (
            "seam-fleet-ingest"
        ),
        table_prefix: Annotated[str, typer.Option("--table-prefix")] = "fleet_",
        tls_ca: Annotated[str | None, typer.Option("--tls-ca", help="CA certificate to verify the hub")] = None,
        tls_cert: Annotated[str | None, typer.Option("--tls-cert", help="client certificate (mutual TLS)")] = None,
        tls_key: Annotated[str | None, typer.Option("--tls-key", help="client private key (mutual TLS)")] = None,
        creds: Annotated[str | None, typer.Option("--creds", help="NATS user credentials file")] = None,
        nkey_seed: Annotated[str | None, typer.Option("--nkey-seed", help="NATS NKey user seed file")] = None,
    ) -> None:
        """Store the hub's fleet stream in PostgreSQL (the fleet_ingest source without a contract)."""
        from otseam.sources.fleet_ingest.cli import run_ingest

        options: dict[str, object] = {"servers": server, "dsn_env": dsn_env, "stream": stream, "durable": durable,
                                      "table_prefix": table_prefix}  # fmt: skip
        tls = {k: v for k, v in (("ca", tls_ca), ("cert", tls_cert), ("key", tls_key)) if v}
        if tls:
            options["tls"] = tls
        if creds:
            options["credentials_file"] = creds
        if nkey_seed:
            options["nkey_seed_file"] = nkey_seed
        raise typer.Exit(run_ingest(options))
