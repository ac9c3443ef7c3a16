"""`seam run`: run a contract (registered by otseam.cli)."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.logging import RichHandler

from otseam.contract.units import parse_duration
from otseam.runtime import logfmt, sdnotify
from otseam.runtime.http import (
    TOKEN_ENV,
    HttpAddressError,
    HttpServer,
    check_exposure,
    is_loopback,
    parse_address,
    read_token,
)
from otseam.runtime.metrics import build_registry
from otseam.runtime.status import StatusView
from otseam.runtime.supervisor import Settings, StartupError, Supervisor

log = logging.getLogger("otseam.run")


@dataclass(slots=True)
class RunOptions:
    contract: Path
    http: tuple[str, int] | None
    token: str | None
    settings: Settings
    status_interval: float
    live: bool
    node: str | None = None
    #: Serve the control plane (REST API and console) beside /health and /metrics.
    console: bool = True
    #: Certificate and key files (PEM): serve HTTPS.
    tls: tuple[Path, Path] | None = None


def _fail(message: str) -> typer.Exit:
    typer.echo(f"seam run: {message}", err=True)
    return typer.Exit(2)


def setup_logging(verbose: bool, console: Console | None, log_format: str | None = None) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger()
    root.handlers.clear()
    if (log_format or logfmt.chosen) == "json":  # one JSON object per line, for a log collector
        handler: logging.Handler = logfmt.json_handler()
    elif console is not None:
        handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries talk a lot at INFO; their warnings are enough unless debugging.
    for noisy in ("aiohttp", "asyncua", "pymodbus", "aiomqtt"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


async def serve(
    options: RunOptions,
    console: Console | None,
    on_started: Callable[[Supervisor, tuple[str, int] | None], None] | None = None,
) -> int:
    """Run one supervisor until it stops; ``on_started`` is called once everything runs (``seam demo``)."""
    registry = CollectorRegistry(auto_describe=False)
    supervisor = Supervisor(options.contract, options.settings, node=options.node, registry=registry)
    http: HttpServer | None = None
    bound_address: tuple[str, int] | None = None
    control = None
    if options.http is not None:
        host, port = options.http
        extend = None
        ssl_context = None
        if options.tls is not None:
            import ssl

            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                ssl_context.load_cert_chain(*options.tls)
            except (OSError, ssl.SSLError) as exc:
                typer.echo(f"seam run: cannot use the TLS certificate and key: {exc}", err=True)
                return 2
        if options.console:
            from otseam.control.server import ControlPlane
            from otseam.control.view import SupervisorView

            if ssl_context is None and not is_loopback(host):
                typer.echo(
                    f"seam run: the console on {host} needs TLS (--tls-cert and --tls-key): passwords and session "
                    "cookies must not cross the network in clear. Or listen on 127.0.0.1, or use --no-console.",
                    err=True,
                )
                return 2
            control = ControlPlane(SupervisorView(supervisor), tls=ssl_context is not None)
            extend = control.mount
        try:
            http = HttpServer(
                supervisor.health, build_registry(supervisor, registry), host, port, options.token, extend, ssl_context
            )
        except HttpAddressError as exc:
            typer.echo(f"seam: {exc}", err=True)
            return 2
        try:
            bound = await http.start()
        except OSError as exc:
            hint = ""
            if exc.errno == errno.EADDRINUSE:
                hint = (
                    f"; another process listens there: use --http {host}:0 (any free port, printed at start) "
                    "or --http off"
                )
            typer.echo(
                f"seam: cannot listen on {host}:{port} for /health and /metrics: {exc.strerror or exc}{hint}", err=True
            )
            return 2
        bound_address = (host, bound)
        scheme = "https" if options.tls else "http"
        log.info(
            "health on %s://%s:%d/health, metrics on %s://%s:%d/metrics%s%s",
            scheme,
            host,
            bound,
            scheme,
            host,
            bound,
            " (bearer token required)" if options.token else "",
            f", console on {scheme}://{host}:{bound}/" if control is not None else "",
        )
    view = StatusView(supervisor, console=console if options.live else None, interval=options.status_interval)
    supervisor.on_tick.append(view.update)
    try:
        supervisor.install_signal_handlers()
        try:
            await supervisor.start()
        except StartupError as exc:
            typer.echo(f"seam run: cannot start {options.contract}:\n{exc}", err=True)
            return 2
        # Everything built at start-up (contract models, compiled tables, plugins) lives as long as the
        # process. Moving it out of the collector's reach keeps full collections from walking it again
        # and again: measured on the Modbus benchmark, without this they took over half the CPU.
        gc.collect()
        gc.freeze()
        if control is not None:
            control.activate()
        elif supervisor.journal is not None:
            # Without the console nobody reads its cursor: a leftover one must not hold the journal back.
            supervisor.journal.remove_cursor("console")
        if on_started is not None:
            on_started(supervisor, bound_address)
        view.start()
        # Everything is started: tell systemd (Type=notify), and keep its watchdog fed from this loop.
        sdnotify.notify(f"READY=1\nSTATUS=running {options.contract}")
        watchdog = asyncio.create_task(sdnotify.watchdog())
        try:
            await supervisor.run()
        finally:
            sdnotify.notify("STOPPING=1")
            watchdog.cancel()
    finally:
        view.stop()
        if control is not None:
            await control.close()
        if http is not None:
            await http.stop()
    return 0


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        contract: Annotated[Path, typer.Argument(help="The contract to run (seam.yaml).")],
        node: Annotated[
            str | None,
            typer.Option("--node", help="The node of the contract this machine runs (optional with one node)."),
        ] = None,
        http: Annotated[
            str,
            typer.Option("--http", help="Address of /health and /metrics (host:port, port 0 for any), or 'off'."),
        ] = "127.0.0.1:9780",
        token_file: Annotated[
            Path | None,
            typer.Option("--token-file", help=f"File holding the bearer token for /metrics (else ${TOKEN_ENV})."),
        ] = None,
        drain_timeout: Annotated[
            str,
            typer.Option("--drain-timeout", help="On stop, how long sinks may take to deliver what the journal holds."),
        ] = "30s",
        status_interval: Annotated[
            str, typer.Option("--status-interval", help="Without a terminal: how often a status line is logged.")
        ] = "10s",
        watch: Annotated[
            bool, typer.Option("--watch/--no-watch", help="Reload when the contract file changes.")
        ] = True,
        verbose: Annotated[
            bool, typer.Option("--verbose", "-v", help="Debug logging, with plugin tracebacks.")
        ] = False,
        log_format: Annotated[
            str | None, typer.Option("--log-format", help="text, or json: one JSON object per line.")
        ] = None,
        serve_console: Annotated[
            bool, typer.Option("--console/--no-console", help="Serve the REST API (/api/v1) and the web console.")
        ] = True,
        tls_cert: Annotated[
            Path | None, typer.Option("--tls-cert", help="Certificate chain (PEM) to serve HTTPS with.")
        ] = None,
        tls_key: Annotated[Path | None, typer.Option("--tls-key", help="Its private key (PEM).")] = None,
    ) -> None:
        """Run the contract: drivers, pipeline, journal and sinks, supervised. SIGHUP reloads, SIGTERM stops."""
        try:
            drain = parse_duration(drain_timeout)
            interval = parse_duration(status_interval)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        address: tuple[str, int] | None = None
        if http.strip().lower() != "off":
            try:
                address = parse_address(http)
            except HttpAddressError as exc:
                raise _fail(f"--http: {exc}") from None
        try:
            token = read_token(token_file)
            if address is not None:
                check_exposure(address[0], token)
        except HttpAddressError as exc:
            raise _fail(str(exc)) from None
        if log_format is not None and log_format not in logfmt.FORMATS:
            raise _fail(f"--log-format must be one of {', '.join(logfmt.FORMATS)}, not {log_format!r}")
        if (tls_cert is None) != (tls_key is None):
            raise _fail("--tls-cert and --tls-key go together")
        tls = (tls_cert, tls_key) if tls_cert is not None and tls_key is not None else None
        live = sys.stdout.isatty()
        console = Console() if live else None
        setup_logging(verbose, console, log_format)
        options = RunOptions(
            contract,
            address,
            token,
            Settings(drain_timeout=drain, watch=watch),
            interval,
            live,
            node,
            serve_console,
            tls,
        )
        try:
            code = asyncio.run(serve(options, console))
        except KeyboardInterrupt:
            code = 130
        raise typer.Exit(code)
