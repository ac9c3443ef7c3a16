"""Connecting to NATS with what the options name: servers, TLS files, a creds or NKey seed file."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, Any

from otseam.core.extras import load

if TYPE_CHECKING:
    import nats.aio.client

    from otseam.sinks.nats.options import ConnectionOptions

log = logging.getLogger("otseam.nats")


def ssl_context(options: ConnectionOptions) -> ssl.SSLContext | None:
    tls = options.tls
    if tls is None and not any(url.startswith("tls://") for url in options.servers):
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca if tls else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls is not None:
        context.check_hostname = tls.check_hostname
        if tls.cert and tls.key:
            context.load_cert_chain(tls.cert, tls.key)
    return context


def connect_arguments(options: ConnectionOptions, default_name: str) -> dict[str, Any]:
    """Keyword arguments for ``nats.connect``. Secrets stay in their files: the client reads the creds
    or seed file itself when it signs the server's challenge, and nothing here is logged."""
    arguments: dict[str, Any] = {
        "servers": list(options.servers),
        "name": options.name or default_name,
        "connect_timeout": options.timeout,
        # Reconnect for ever: a site's link may be down for hours; the journal keeps the backlog.
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 1.0,
    }
    context = ssl_context(options)
    if context is not None:
        arguments["tls"] = context
    if options.credentials_file:
        arguments["user_credentials"] = options.credentials_file
    if options.nkey_seed_file:
        arguments["nkeys_seed"] = options.nkey_seed_file
    return arguments


class NatsConnectError(ConnectionError):
    """No server of the list accepted the connection in time; the message names the last reason."""


async def connect(options: ConnectionOptions, default_name: str, part: str) -> nats.aio.client.Client:
    """A connected client, or :class:`NatsConnectError` after ``options.timeout`` seconds.

    Once connected the client reconnects for ever by itself; the first connection is bounded here,
    because the client would otherwise retry a refused login (a wrong key) without end and say nothing."""
    module = load("nats.aio.client", part, "nats")
    if options.credentials_file or options.nkey_seed_file:
        load("nkeys", part, "nats")
    last: list[Exception] = []

    async def remember(exc: Exception) -> None:
        # The client reports every failed reconnection; the sink's or source's health says it once.
        last[:] = [exc]
        log.debug("nats: %s", exc)

    client: nats.aio.client.Client = module.Client()
    try:
        await asyncio.wait_for(
            client.connect(**connect_arguments(options, default_name), error_cb=remember), options.timeout
        )
    except (TimeoutError, OSError) as exc:
        await client.close()
        reason = last[0] if last else exc
        raise NatsConnectError(
            f"{part}: no connection to {', '.join(options.servers)} within {options.timeout:g} s "
            f"(last error: {reason or type(reason).__name__})"
        ) from None
    return client
