"""Every route of the node's server, called as every role: deny by default, and no route without a rule.

The route list is read from the running server's router, not from the rule table, so a route added
without a rule (or by hand, beside the table) makes this test fail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from otseam.control.roles import GRANTS, Permission, Role
from otseam.control.routes import ROUTES, Open, Route
from otseam.control.server import ControlPlane
from tests.control.inproc import Browser, Node, running
from tests.control.node import CONTRACT, USERS, add_users, seam_inline

#: Who calls: anonymous, each role (one user of each), and a read-only API token of the admin.
CALLERS = ["anonymous", *USERS, "token:read"]
ROLE_OF = {name: Role(role) for name, (_, role) in USERS.items()}
CORE_ROUTES = {"/health", "/metrics"}


def unruled(control: ControlPlane, app: web.Application) -> list[str]:
    """Routes of the server with no access rule (the two of core/http.py guard themselves)."""
    missing = []
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else "?"
        if control.rule_for(route) is None and path not in CORE_ROUTES:
            missing.append(f"{route.method} {path}")
    return missing


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    (tmp_path / "seam.yaml").write_text(CONTRACT)
    add_users(tmp_path)
    async with running(tmp_path) as started:
        yield started


def expected(route: Route, caller: str) -> set[int] | None:
    """The statuses allowed for this caller, or None for "anything but 401/403 (and never 5xx)"."""
    if route.access in (Open.PUBLIC, Open.ANONYMOUS, Open.METRICS):
        return None
    assert isinstance(route.access, Permission)
    if caller == "anonymous":
        return {401}
    # The probe token is the admin's, scoped to reading.
    granted = GRANTS[Role.ADMIN] & {Permission.READ} if caller == "token:read" else GRANTS[ROLE_OF[caller]]
    return None if route.access in granted else {403}


async def test_every_route_has_a_rule_and_every_rule_a_route(node: Node) -> None:
    assert unruled(node.control, node.app) == []
    served = {(r.method, r.resource.canonical) for r in node.app.router.routes() if r.resource is not None}
    for route in ROUTES:
        assert (route.method, route.path) in served, f"{route.method} {route.path} is in the table but not served"


async def test_a_route_added_without_a_rule_is_caught_and_refused(node: Node) -> None:
    control = ControlPlane(node.control.view)
    app = web.Application()
    control.mount(app)

    async def leak(request: web.Request) -> web.Response:
        return web.json_response({"secret": "plant data"})

    app.router.add_get("/api/v1/leak", leak)
    assert sorted(unruled(control, app)) == ["GET /api/v1/leak", "HEAD /api/v1/leak"]
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    browser = Browser(f"http://127.0.0.1:{port}")
    try:
        status, body = await browser.call("GET", "/api/v1/leak")
        assert status == 403 and "no access rule" in body["error"]
    finally:
        await browser.close()
        await runner.cleanup()


async def test_every_route_as_every_role(node: Node) -> None:
    code, token, err = seam_inline(
        "user", "token", str(node.supervisor.contract_path), "ada", "--name", "probe", "--scope", "read"
    )
    assert code == 0, err
    browsers: dict[str, Browser] = {"anonymous": await node.client()}
    for name in USERS:
        browsers[name] = await node.client(name)
    reader = await node.client()
    reader.headers["Authorization"] = f"Bearer {token.strip()}"
    browsers["token:read"] = reader
    failures = []
    try:
        # Signing out ends the session the later calls need: it goes last.
        for route in sorted(ROUTES, key=lambda r: r.handler == "logout"):
            for caller in CALLERS:
                body = {} if route.method in ("POST", "PUT", "PATCH") else None
                status, reply = await browsers[caller].call(route.method, route.sample, body)
                allowed = expected(route, caller)
                if status >= 500 or (allowed is None and status in (401, 403)) or (allowed and status not in allowed):
                    failures.append(f"{route.method} {route.sample} as {caller}: {status} {str(reply)[:120]}")
                if caller == "anonymous" and route.access not in (Open.PUBLIC, Open.METRICS) and status == 200:
                    # Open routes before signing in carry no plant data: the console's code or the banner.
                    assert route.access is Open.ANONYMOUS
    finally:
        for browser in browsers.values():
            await browser.close()
    assert not failures, "\n".join(failures)


async def test_changes_need_the_csrf_token_with_a_session(node: Node) -> None:
    browser = await node.client("ada")
    try:
        status, reply = await browser.call("POST", "/api/v1/tokens", {"name": "x"}, csrf=False)
        assert status == 403 and "X-CSRF-Token" in reply["error"]
        status, reply = await browser.call("POST", "/api/v1/tokens", {"name": "x"}, headers={"X-CSRF-Token": "forged"})
        assert status == 403
        status, reply = await browser.call("POST", "/api/v1/tokens", {"name": "x"})
        assert status == 200 and reply["secret"].startswith("seam_")
    finally:
        await browser.close()
