"""Subcommands of this package (registered by otseam.cli): `seam host`."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("host")
    def host(
        broker: Annotated[
            list[str], typer.Option("--broker", help="HOST:PORT or mqtts://HOST:PORT; repeat for fail-over, in order")
        ],
        host_id: Annotated[str, typer.Option("--host-id", help="Sparkplug host id: STATE goes to spBv1.0/STATE/<id>")],
        db: Annotated[str | None, typer.Option("--db", help="SQLite file to store metrics in")] = None,
        dsn: Annotated[str | None, typer.Option("--dsn", help="PostgreSQL connection string instead of --db")] = None,
        share_group: Annotated[
            str | None, typer.Option("--share-group", help="split data with other hosts (MQTT 5 shared subscription)")
        ] = None,
        mqtt_version: Annotated[str, typer.Option("--mqtt-version", help="5 or 3.1.1")] = "5",
        tls_ca: Annotated[str | None, typer.Option("--tls-ca", help="CA certificate to verify the broker")] = None,
        tls_cert: Annotated[str | None, typer.Option("--tls-cert", help="client certificate (mutual TLS)")] = None,
        tls_key: Annotated[str | None, typer.Option("--tls-key", help="client private key (mutual TLS)")] = None,
        username: Annotated[str | None, typer.Option("--username")] = None,
        password_env: Annotated[
            str | None, typer.Option("--password-env", help="environment variable holding the MQTT password")
        ] = None,
        session_expiry: Annotated[
            int,
            typer.Option(
                "--session-expiry",
                help="seconds the broker queues for this host while away; 0 (the default, as Sparkplug 3.0 "
                "requires): a clean session; more is a deviation",
            ),
        ] = 0,
        reorder_timeout: Annotated[
            float,
            typer.Option(
                "--reorder-timeout",
                help="seconds a message ahead of its seq waits for the missing ones before a rebirth is asked",
            ),
        ] = 2.0,
    ) -> None:
        """Run the IT-side Sparkplug B host application: STATE, ingestion into a historian, rebirths."""
        from otseam.host.cli import run_host

        code = run_host(
            brokers=broker,
            host_id=host_id,
            db=db,
            dsn=dsn,
            share_group=share_group,
            mqtt_version=mqtt_version,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            username=username,
            password_env=password_env,
            session_expiry=session_expiry,
            reorder_timeout=reorder_timeout,
        )
        raise typer.Exit(code)
