"""The health and metrics endpoint of Seam's long-running processes (`seam run`, `seam diode receive`).

``GET /health`` is unauthenticated on purpose: a service manager or load balancer must be able to ask
"is it alive, and is anything failing" without a secret. It reveals component states and error
messages, never data values or configuration secrets. ``GET /metrics`` needs ``Authorization: Bearer
<token>`` when a token is configured. The token is compared in constant time and never logged.

Deny by default: without a token, the endpoint may only listen on a loopback address, where only
processes on the same machine can reach it. Anything wider needs a token (:func:`check_exposure`).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger("otseam.http")


#: Where the bearer token comes from when no --token-file is given.
TOKEN_ENV = "SEAM_API_TOKEN"


class HttpAddressError(ValueError):
    pass


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def read_token(token_file: Path | None) -> str | None:
    """The bearer token from ``token_file``, else from ``$SEAM_API_TOKEN``; None when neither is set.
    Raises :class:`HttpAddressError` with a message for the user when the file cannot be used."""
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise HttpAddressError(f"cannot read the token file {token_file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise HttpAddressError(f"the token file {token_file} is not UTF-8 text") from None
        if not token:
            raise HttpAddressError(f"the token file {token_file} is empty")
        return token
    return os.environ.get(TOKEN_ENV, "").strip() or None


def check_exposure(host: str, token: str | None) -> None:
    """Refuse to serve metrics beyond this machine without a token."""
    if token is None and not is_loopback(host):
        raise HttpAddressError(
            f"refusing to serve /metrics on {host} without a token: set {TOKEN_ENV} or --token-file, "
            "or listen on a loopback address such as 127.0.0.1"
        )


def parse_address(text: str) -> tuple[str, int]:
    """``"127.0.0.1:9780"`` → (host, port); ``"[::1]:9780"`` for IPv6."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise HttpAddressError(f"{text!r} is not an address: write host:port, e.g. 127.0.0.1:9780")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise HttpAddressError(f"{text!r}: the port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise HttpAddressError(f"{text!r}: the port must be between 0 and 65535")
    return host, port


class _OneLineBadRequests(logging.Filter):
    """aiohttp logs a malformed request (a port scan, a too-long header) with a full traceback. To an
    operator that reads like Seam crashed; it did not. One warning line says what happened instead,
    with the client's text cut short so hostile input cannot flood the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and not logging.getLogger().isEnabledFor(logging.DEBUG):
            exc = record.exc_info[1]
            detail = _printable(f"{type(exc).__name__}: {exc}")[:200]
            try:
                said = record.getMessage()
            except (TypeError, ValueError):
                said = str(record.msg)
            # The finished line, with no arguments left to format: nothing later can turn it back into
            # a template, whatever the client sent.
            record.msg = f"{_printable(said)[:200]} ({detail}); the connection was closed"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.WARNING
            record.levelname = "WARNING"
        return True


_FILTER = _OneLineBadRequests()


def _printable(text: str) -> str:
    """Client-controlled text made safe for one log line: control characters and undecodable bytes
    shown as escapes, never as line breaks or terminal controls."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _unauthorized() -> web.Response:
    return web.Response(
        status=401,
        text="a bearer token is required for /metrics\n",
        headers={"WWW-Authenticate": 'Bearer realm="seam"'},
    )


class HttpServer:
    """``/health`` from ``health()`` and ``/metrics`` from ``registry``, on one address."""

    def __init__(
        self,
        health: Callable[[], Mapping[str, Any]],
        registry: CollectorRegistry,
        host: str,
        port: int,
        token: str | None,
        extend: Callable[[web.Application], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        check_exposure(host, token)
        #: Adds routes beside /health and /metrics (the control plane's API and console).
        self.extend = extend
        self.ssl_context = ssl_context
        self.health = health
        self.host = host
        self.port = port
        self._expected = f"Bearer {token}".encode() if token else None
        self.registry = registry
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Listen; returns the port actually bound (useful with port 0)."""
        server_log = logging.getLogger("aiohttp.server")
        if _FILTER not in server_log.filters:
            server_log.addFilter(_FILTER)
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        if self.extend is not None:
            self.extend(app)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response(dict(self.health()))

    async def _metrics(self, request: web.Request) -> web.Response:
        if self._expected is not None:
            # Header bytes that are not ASCII reach us as undecodable text; no token we issue has them,
            # so they are simply wrong credentials (never an exception that drops the connection).
            try:
                given = request.headers.get("Authorization", "").encode("ascii")
            except UnicodeEncodeError:
                return _unauthorized()
            if not hmac.compare_digest(given, self._expected):
                return _unauthorized()
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
