"""The node's runtime started inside the test's event loop: the real supervisor, HTTP server and
control plane, as `seam run` wires them, so a test can also look at the server's router."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from otseam.control.server import ControlPlane
from otseam.control.view import SupervisorView
from otseam.runtime.http import HttpServer
from otseam.runtime.metrics import build_registry
from otseam.runtime.supervisor import Settings, Supervisor
from tests.control.node import PASSWORD


@dataclass
class Node:
    base: str
    supervisor: Supervisor
    control: ControlPlane
    http: HttpServer

    @property
    def app(self) -> web.Application:
        runner = self.http._runner
        assert runner is not None
        return runner.app

    async def restart_http(self) -> None:
        """Stop the web server (every open connection drops) and start it again on the same port."""
        port = self.http.port
        await self.http.stop()
        self.http = HttpServer(self.supervisor.health, self.http.registry, "127.0.0.1", port, None, self.control.mount)
        await self.http.start()

    async def stopped_http(self) -> None:
        await self.http.stop()

    async def client(self, user: str | None = None, totp: str | None = None) -> Browser:
        browser = Browser(self.base)
        if user is not None:
            status, body = await browser.login(user, totp=totp)
            assert status == 200, body
        return browser


class Browser:
    """An HTTP client that keeps cookies like a browser and sends the CSRF token on changes."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf: str | None = None
        self.headers: dict[str, str] = {}

    async def login(self, user: str, password: str = PASSWORD, totp: str | None = None) -> tuple[int, Any]:
        body: dict[str, Any] = {"user": user, "password": password}
        if totp is not None:
            body["totp"] = totp
        status, reply = await self.call("POST", "/api/v1/login", body)
        if status == 200:
            self.csrf = reply["csrf"]
        return status, reply

    async def call(
        self, method: str, path: str, body: Any = None, *, csrf: bool = True, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        sent = dict(self.headers)
        if csrf and self.csrf and method not in ("GET", "HEAD"):
            sent["X-CSRF-Token"] = self.csrf
        sent.update(headers or {})
        async with self.session.request(method, self.base + path, json=body, headers=sent) as response:
            if path.endswith("/stream") and response.status == 200:
                return response.status, await response.content.readuntil(b"\n\n")
            text = await response.read()
            try:
                import json

                return response.status, json.loads(text)
            except ValueError:
                return response.status, text

    async def close(self) -> None:
        await self.session.close()


@contextlib.asynccontextmanager
async def running(workdir: Path) -> AsyncIterator[Node]:
    supervisor = Supervisor(workdir / "seam.yaml", Settings(watch=False, drain_timeout=5.0))
    control = ControlPlane(SupervisorView(supervisor))
    http = HttpServer(supervisor.health, build_registry(supervisor), "127.0.0.1", 0, None, control.mount)
    port = await http.start()
    await supervisor.start()
    control.activate()
    task = asyncio.create_task(supervisor.run())
    try:
        yield Node(f"http://127.0.0.1:{port}", supervisor, control, http)
    finally:
        supervisor.request_stop()
        await task
        await control.close()
        await http.stop()
