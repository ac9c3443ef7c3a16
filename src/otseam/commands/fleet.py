"""`seam fleet ingest`: the fleet_ingest source on its own, without a contract (registered by otseam.cli)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import tempfile
from collections.abc import Sequence
from typing import Annotated

import typer

from otseam.core.extras import MissingExtra
from otseam.core.records import Record


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


def run_ingest(options: dict[str, object]) -> int:
    """Returns the exit code: 0 after a clean stop, 2 for options that cannot work (one line on stderr)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    from otseam.contract.models import Contract, Site, SourceSpec
    from otseam.core.plugins import PluginContext, create_source

    context = PluginContext(
        contract=Contract(site=Site(enterprise="fleet", site="ingest")), data_dir=tempfile.gettempdir()
    )
    try:
        source = create_source(SourceSpec(id="fleet-ingest", type="fleet_ingest", options=options), context)
    except (ValueError, MissingExtra) as exc:
        print(f"seam fleet ingest: {exc}", file=sys.stderr)
        return 2
    from otseam.sources.fleet_ingest.source import FleetIngestSource

    assert isinstance(source, FleetIngestSource)

    async def emit(records: Sequence[Record]) -> None:
        for record in records:
            logging.getLogger("otseam.fleet").error("%s", record)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, source.stop)
        print("seam fleet ingest: running", flush=True)
        await source.run(emit)

    asyncio.run(main())
    return 0
