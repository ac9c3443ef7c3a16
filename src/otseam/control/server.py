"""The control plane on the node's HTTP server: REST API under /api/v1, the console at /.

Everything runs on the node's one event loop. Slow work (the historian's SQL, rendering the interface
document) runs in a worker thread so polling never waits for a person's chart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from otseam.audit.log import AuditUnavailable
from otseam.contract.formulas.lineage import Lineage, lineage
from otseam.contract.models import COMPUTED_DEVICE, Contract, Point
from otseam.control import openapi
from otseam.control.auth import COOKIE, CSRF_HEADER, Authenticator, Identity, LoginRefused, csrf_ok
from otseam.control.authority_api import AuthorityAPI
from otseam.control.breakglass_api import BreakGlassAPI
from otseam.control.events import ALERT_KINDS, EventStore
from otseam.control.live import LiveHub, cancel, sse
from otseam.control.roles import Permission
from otseam.control.routes import ROUTES, Open, Route
from otseam.control.users import UserError, UserStore
from otseam.control.view import NodeView, historian_path
from otseam.core.records import Event, Quality, Severity

log = logging.getLogger("otseam.control")

STATIC = Path(__file__).parent / "static"
STATIC_FILES = {p.name for p in STATIC.iterdir() if p.is_file()} if STATIC.is_dir() else set()
VENDOR_FILES = {"uPlot.iife.min.js", "uPlot.min.css"}
#: uPlot comes from npm (console/package.json, installed by `make console`); nothing third-party is
#: kept in the repository. SEAM_CONSOLE_MODULES points elsewhere for an installed copy.
MODULES_ENV = "SEAM_CONSOLE_MODULES"

IDENTITY = web.RequestKey("seam_identity", Identity)
_QUALITY_NAMES = {q.label: q for q in Quality}
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
}


def modules_dir() -> Path:
    configured = os.environ.get(MODULES_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[3] / "console" / "node_modules"


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _lineage(origin: Lineage) -> dict[str, Any]:
    data = origin.to_dict()
    return {key: data[key] for key in ("kind", "formula", "inputs", "sources", "owner")}


def _one(request: web.Request, name: str) -> str | None:
    """A query parameter given at most once (a repeated one is a mistake, never silently half-used)."""
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise BadRequest(400, f"{name} is given {len(values)} times: give it once")
    return values[0] if values else None


def _bool(request: web.Request, name: str) -> bool:
    text = _one(request, name)
    if text is None:
        return False
    if text not in ("true", "false"):
        raise BadRequest(400, f"{name} is true or false")
    return text == "true"


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = _one(request, name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(400, f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise BadRequest(400, f"{name} must be between {low} and {high}")
    return value


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


class ControlPlane:
    """The handlers, the live hub and the stores of one node."""

    def __init__(self, view: NodeView, *, tls: bool = False, clock: Callable[[], float] = time.time) -> None:
        self.view = view
        self.tls = tls
        self.clock = clock
        self.active = False
        self._hub_task: asyncio.Task[None] | None = None
        self._rate_task: asyncio.Task[None] | None = None
        self._rates: dict[str, tuple[float, int, float]] = {}
        self.rules: dict[int, tuple[web.AbstractRoute, Route]] = {}
        #: Command requests, approvals, change control, the audit log (handlers named authority_*).
        self.authority = AuthorityAPI(view, clock)
        #: Break-glass sessions, their writes and reviews (handlers named breakglass_*).
        self.breakglass = BreakGlassAPI(view, clock)

    def rule_for(self, route: web.AbstractRoute) -> Route | None:
        """The access rule of a route of the server, None when it has none (and is refused)."""
        entry = self.rules.get(id(route))
        return entry[1] if entry is not None and entry[0] is route else None

    def activate(self) -> None:
        """Once the node has started (its data directory and contract are known): open the stores and
        follow the journal. Until then every API route answers 503."""
        data_dir = self.view.data_dir()
        self.users = UserStore(data_dir)
        self.events = EventStore(data_dir)
        self.auth = Authenticator(self.users, self.view.contract, self.clock)
        self.hub = LiveHub(self.view, self.events, self.clock)
        self._hub_task = asyncio.create_task(self.hub.run(), name="console-live")
        self._rate_task = asyncio.create_task(self._sample_rates(), name="console-rates")
        self.active = True

    async def _sample_rates(self) -> None:
        """Delivery rates per sink, sampled every second so a page shows a rate on its first request."""
        while True:
            now = time.monotonic()
            for sink_id, count in self.view.delivered().items():
                self._rate(f"sink:{sink_id}", count, now)
            for source_id, count in self._received().items():
                self._rate(f"source:{source_id}", count, now)
            await asyncio.sleep(1.0)

    # --- wiring -------------------------------------------------------------------------------------

    def mount(self, app: web.Application) -> None:
        """Add every route of the table that the control plane serves, and the access middleware."""
        app.middlewares.append(self._access)
        for route in ROUTES:
            if not route.handler:
                continue  # /health and /metrics: served by core/http.py, listed for the access rules
            handler = self._handler(route.handler)
            resource_route = app.router.add_route(route.method, route.path, handler)
            # Keyed by identity; the route object is kept with its rule so the key cannot be reused.
            self.rules[id(resource_route)] = (resource_route, route)
        app.on_shutdown.append(self._end_streams)

    def _handler(self, name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        if name.startswith("authority_"):
            served = self.authority.handler(name.removeprefix("authority_"))
        elif name.startswith("breakglass_"):
            served = self.breakglass.handler(name.removeprefix("breakglass_"))
        else:
            method: Callable[[web.Request], Awaitable[web.StreamResponse]] = getattr(self, f"h_{name}")
            return method

        async def handler(request: web.Request) -> web.StreamResponse:
            return await served(request, request[IDENTITY])

        return handler

    async def _end_streams(self, app: web.Application) -> None:
        """The server is stopping: end every open event stream now, rather than let the server wait for
        them (aiohttp would give them a minute). The pages see the stream end and say so."""
        if self.active:
            for subscriber in list(self.hub.subscribers):
                subscriber.close()

    async def close(self) -> None:
        """Stop following the journal and close the stores (the node is stopping)."""
        await cancel(self._hub_task)
        await cancel(self._rate_task)
        self._hub_task = self._rate_task = None
        if self.active:
            self.events.close()
            self.active = False

    @web.middleware
    async def _access(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        route = request.match_info.route
        if isinstance(route, web.AbstractRoute) and route.resource is None:
            return await handler(request)  # 404/405 from the router itself: nothing to protect
        rule = self.rule_for(route) if isinstance(route, web.AbstractRoute) else None
        if rule is None:
            path = getattr(route.resource, "canonical", "?")
            if path in ("/health", "/metrics"):
                return await handler(request)  # core/http.py guards these itself
            log.error("no access rule for %s %s: refused", request.method, path)
            return _error(403, "this route has no access rule and is refused")
        try:
            response = await self._guarded(request, handler, rule)
        except BadRequest as exc:
            response = _error(exc.status, str(exc))
        for key, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    async def _guarded(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]], rule: Route
    ) -> web.StreamResponse:
        if rule.access is Open.ANONYMOUS and not rule.api:
            return await handler(request)
        if not self.active:
            return _error(503, "the node is starting", **{"Retry-After": "1"})
        if rule.access is Open.ANONYMOUS:
            return await handler(request)
        identity = self._identify(request)
        if identity is None:
            return _error(401, "sign in first", **{"WWW-Authenticate": 'Bearer realm="seam"'})
        assert isinstance(rule.access, Permission)
        if not identity.may(rule.access):
            return _error(403, f"{identity.user} ({identity.role}) may not do this ({rule.access})")
        unsafe = request.method not in ("GET", "HEAD")
        if unsafe and identity.session is not None and not csrf_ok(identity.session, request.headers.get(CSRF_HEADER)):
            return _error(403, f"missing or wrong {CSRF_HEADER} header")
        request[IDENTITY] = identity
        return await handler(request)

    def _identify(self, request: web.Request) -> Identity | None:
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, credential = header.partition(" ")
            if scheme.lower() != "bearer":
                return None
            return self.auth.from_token(credential.strip())
        cookie = request.cookies.get(COOKIE)
        return self.auth.from_session(cookie) if cookie else None

    async def _audit(self, kind: str, actor: str, subject: str, data: dict[str, Any], message: str) -> None:
        """A record of the node's hash-chained audit log (which copies it into the journal), written off
        the event loop. Raises AuditUnavailable: the caller refuses what it could not record."""
        await asyncio.to_thread(self.authority.audit_log().append, kind, actor, subject, data, Severity.INFO, message)

    # --- console files ------------------------------------------------------------------------------

    async def h_index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def h_static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            return _error(404, "no such file")
        return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    async def h_vendor(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = modules_dir() / "uplot" / "dist" / name
        if name not in VENDOR_FILES or not path.is_file():
            return _error(
                404, "uPlot is not installed on this node: run 'make console' (npm, no internet needed after)"
            )
        return web.FileResponse(path)

    # --- signing in ---------------------------------------------------------------------------------

    async def h_banner(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"banner": self.view.contract().control.banner})

    async def h_login(self, request: web.Request) -> web.StreamResponse:
        body = await _json(request, frozenset({"user", "password", "totp"}))
        name, password, code = body.get("user"), body.get("password"), body.get("totp")
        if not isinstance(name, str) or not isinstance(password, str) or not (code is None or isinstance(code, str)):
            raise BadRequest(400, "give user and password as text (and totp when asked)")
        address = request.remote or "?"
        try:
            session = await self.auth.login_async(name[:200], password[:1024], code, address)
        except LoginRefused as exc:
            if not exc.needs_totp or exc.status != 401 or code:
                # Into the hash-chained audit log (and from it into the journal); the refusal stands
                # even if it cannot be recorded.
                with contextlib.suppress(AuditUnavailable):
                    await asyncio.to_thread(
                        self.authority.record_login, self.users, name, False, address, f"refused ({exc.status}): {exc}"
                    )
            headers = {"Retry-After": str(math.ceil(exc.retry_after))} if exc.retry_after else {}
            response = _error(exc.status, str(exc), **headers)
            if exc.needs_totp:
                response = web.json_response({"error": str(exc), "totp": True}, status=exc.status)
            return response
        try:
            await asyncio.to_thread(self.authority.record_login, self.users, session.user, True, address, "signed in")
        except AuditUnavailable as exc:
            self.auth.logout(session)  # a sign-in that cannot be recorded does not happen
            return _error(503, str(exc))
        response = web.json_response(self._session_body(session.user, session.csrf))
        response.set_cookie(COOKIE, session.id, httponly=True, samesite="Strict", secure=self.tls, path="/")
        return response

    def _session_body(self, user_name: str, csrf: str | None) -> dict[str, Any]:
        user = self.users.get(user_name)
        contract = self.view.contract()
        person = contract.person(user.person) if user else None
        return {
            "user": user_name,
            "person": person.id if person else None,
            "name": person.name if person else None,
            "side": str(person.side) if person else None,
            "role": str(user.role) if user else None,
            "csrf": csrf,
            "site": contract.site.site,
            "node": self.view.node_id,
            "idle_timeout": contract.control.session_idle,
        }

    async def h_logout(self, request: web.Request) -> web.StreamResponse:
        identity: Identity = request[IDENTITY]
        if identity.session is not None:
            self.auth.logout(identity.session)
        response = web.json_response({"signed_out": identity.user})
        response.del_cookie(COOKIE, path="/")
        return response

    async def h_session(self, request: web.Request) -> web.StreamResponse:
        identity: Identity = request[IDENTITY]
        body = self._session_body(identity.user, identity.session.csrf if identity.session else None)
        body["permissions"] = sorted(str(p) for p in identity.permissions)
        return web.json_response(body)

    async def h_openapi(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(openapi.document())

    # --- the contract and the picture ---------------------------------------------------------------

    async def h_contract(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.view.contract().model_dump(mode="json", by_alias=True))

    async def h_document(self, request: web.Request) -> web.StreamResponse:
        path = self.view.contract_path()

        def render() -> str:
            from otseam.contract import rules
            from otseam.contract.doc import render_html
            from otseam.contract.loader import load

            loaded = load(path)
            return render_html(loaded, rules.run(loaded))

        try:
            text = await asyncio.to_thread(render)
        except Exception as exc:  # the file on disk may have changed since it was loaded
            return _error(409, f"the contract file cannot be rendered now: {type(exc).__name__}: {exc}")
        # Shown inside the console's Contract page: framing by the console itself is allowed; the document
        # has no scripts and needs none.
        headers = {
            "X-Frame-Options": "SAMEORIGIN",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
            "frame-ancestors 'self'",
        }
        return web.Response(text=text, content_type="text/html", headers=headers)

    def _health(self) -> dict[str, Any]:
        return dict(self.view.health())

    def _received(self) -> dict[str, int]:
        """Records each source of this node took in, where the source reports it (diode_receive does)."""
        counts = {}
        for name, entry in self._health().get("components", {}).items():
            detail = entry.get("detail") if isinstance(entry, dict) else None
            if not name.startswith("source:") or not isinstance(detail, dict):
                continue
            stats = _receiver_stats(detail)
            if isinstance(stats.get("records"), int):
                counts[name[7:]] = int(stats["records"])
        return counts

    def _device_states(self, health: dict[str, Any]) -> dict[str, str]:
        components = health.get("components", {})
        states = {}
        for name, entry in components.items():
            if name.startswith("driver:") and isinstance(entry, dict):
                states[name[7:]] = str(entry.get("device_state") or entry.get("state", "unknown"))
        return states

    def _zone_health(self, contract: Contract, health: dict[str, Any]) -> dict[str, str]:
        states = self._device_states(health)
        worst: dict[str, str] = {}
        for device in contract.devices:
            state = states.get(device.id, "unknown")
            bad = state not in ("running", "online", "ok")
            if bad or device.zone not in worst:
                worst[device.zone] = "degraded" if bad else "ok"
        return worst

    async def h_nodes(self, request: web.Request) -> web.StreamResponse:
        contract = self.view.contract()
        health = self._health()
        here = self.view.node_id
        items = [
            {"id": n.id, "zone": n.zone, "description": n.description, "host": n.host, "this": n.id == here}
            for n in contract.nodes
        ]
        if not items:  # a contract without nodes: this process is its one node
            zone = contract.devices[0].zone if contract.devices else (contract.zones[0].id if contract.zones else None)
            items = [{"id": here, "zone": zone, "description": "", "host": None, "this": True}]
        for item in items:
            # Other nodes serve their own console: this one only knows its own health.
            item["status"] = health.get("status") if item["this"] else "not known here (see that node)"
        return web.json_response({"items": items, "next": None})

    async def h_zones(self, request: web.Request) -> web.StreamResponse:
        contract = self.view.contract()
        zone_health = self._zone_health(contract, self._health())
        items = [
            {
                "id": z.id,
                "name": z.name or z.id,
                "level": z.level,
                "sl": z.security_level,
                "owner": z.owner,
                "devices": [d.id for d in contract.devices if d.zone == z.id],
                "nodes": [n.id for n in contract.nodes if n.zone == z.id],
                "health": zone_health.get(z.id, "ok"),
            }
            for z in sorted(contract.zones, key=lambda z: z.level)
        ]
        return web.json_response({"items": items, "next": None})

    def _rate(self, key: str, count: int, now: float) -> float:
        previous = self._rates.get(key)
        if previous is None or now - previous[0] < 0.5:
            if previous is None:
                self._rates[key] = (now, count, 0.0)
            return previous[2] if previous else 0.0
        rate = max(0.0, (count - previous[1]) / (now - previous[0]))
        self._rates[key] = (now, count, rate)
        return rate

    async def h_conduits(self, request: web.Request) -> web.StreamResponse:
        contract = self.view.contract()
        delivered = self.view.delivered()
        unexpected = self.events.list(kinds=("alert",), limit=500).items
        items = []
        placement = contract.placement(self.view.node_id)
        received = self._received()
        for conduit in contract.conduits:
            # What this node sends into the conduit (sinks) and takes out of it (sources).
            sinks = [s.id for s in placement.sinks if s.conduit == conduit.id]
            sources = [s.id for s in placement.sources if s.conduit == conduit.id]
            count = sum(delivered.get(s, 0) for s in sinks) + sum(received.get(s, 0) for s in sources)
            rate = sum(self._rates.get(f"sink:{s}", (0.0, 0, 0.0))[2] for s in sinks) + sum(
                self._rates.get(f"source:{s}", (0.0, 0, 0.0))[2] for s in sources
            )
            if not sinks and not sources:
                seen = "not carried by this node"
            elif count > 0:
                seen = "declared-and-seen"
            else:
                seen = "declared-not-seen"
            items.append(
                {
                    "id": conduit.id,
                    "from": conduit.from_zone,
                    "to": conduit.to_zone,
                    "direction": str(conduit.direction),
                    "transport": conduit.transport,
                    "protocols": conduit.protocols,
                    "sinks": sinks,
                    "sources": sources,
                    "records": count,
                    "rate": round(rate, 3),
                    "flow": seen,
                }
            )
        # Traffic the capture source saw that no conduit declares: its alerts name source and target.
        flows: dict[tuple[str, str], dict[str, Any]] = {}
        for alert in unexpected:
            data = alert["data"]
            src, dst = data.get("src"), data.get("dst")
            if src and dst:
                entry = flows.setdefault((src, dst), {"src": src, "dst": dst, "alerts": 0, "rules": set()})
                entry["alerts"] += 1
                entry["rules"].add(data.get("rule", alert["source"]))
        for entry in flows.values():
            items.append(
                {
                    "id": f"{entry['src']}->{entry['dst']}",
                    "flow": "seen-but-not-declared",
                    "src": entry["src"],
                    "dst": entry["dst"],
                    "alerts": entry["alerts"],
                    "rules": sorted(entry["rules"]),
                }
            )
        return web.json_response({"items": items, "next": None})

    async def h_devices(self, request: web.Request) -> web.StreamResponse:
        contract = self.view.contract()
        states = self._device_states(self._health())
        zone = _one(request, "zone")
        here = self.view.node_id
        items = [
            {
                "id": d.id,
                "driver": d.driver,
                "zone": d.zone,
                "owner": d.owner,
                "vendor": d.vendor,
                "model": d.model,
                "poll": d.poll,
                "points": len(d.points),
                "node": contract.node_of(d),
                "state": states.get(d.id)
                or ("unknown" if contract.node_of(d) == here else f"polled by node {contract.node_of(d)}"),
            }
            for d in contract.devices
            if zone is None or d.zone == zone
        ]
        return web.json_response({"items": items, "next": None})

    async def h_points(self, request: web.Request) -> web.StreamResponse:
        contract = self.view.contract()
        device_filter = _one(request, "device")
        text = (_one(request, "q") or "").lower()
        quality_text = _one(request, "quality")
        if quality_text is not None and quality_text not in _QUALITY_NAMES:
            raise BadRequest(400, f"quality is one of {', '.join(_QUALITY_NAMES)}")
        offset = _int(request, "offset", 0, 0, 10**9)
        limit = _int(request, "limit", 100, 1, 1000)
        live = {v.point: v for v in self.view.live_values()}
        now = self.clock()
        matched = []
        for device in contract.devices:
            if device_filter is not None and device.id != device_filter:
                continue
            for point in device.points:
                key = device.key(point)
                if text and text not in key.lower():
                    continue
                value = live.get(key)
                quality = value.quality.label if value else None
                if quality_text is not None and quality != quality_text:
                    continue
                matched.append((key, device.id, point, value, quality))
        computed = self._computed_points(contract)
        if device_filter in (None, COMPUTED_DEVICE):
            for key, point in computed.items():
                value = live.get(key)
                quality = value.quality.label if value else None
                if (text and text not in key.lower()) or (quality_text is not None and quality != quality_text):
                    continue
                matched.append((key, COMPUTED_DEVICE, point, value, quality))
        origins = lineage(contract) if computed else {}
        items = [
            {
                "key": key,
                "device": device_id,
                "id": point.id,
                "value": _clean(value.value) if value else None,
                "quality": quality,
                "source_ts": value.source_ts if value else None,
                "age": round(now - value.source_ts, 3) if value and value.source_ts else None,
                "unit": point.unit,
                "type": point.type,
                "writable": point.writable,
                **({"lineage": _lineage(origins[key])} if key in origins else {}),
            }
            for key, device_id, point, value, quality in matched[offset : offset + limit]
        ]
        return web.json_response({"items": items, "total": len(matched)})

    @staticmethod
    def _computed_points(contract: Contract) -> dict[str, Point]:
        """The edge's computed points, shaped as points (what the console lists beside device points)."""
        return {
            c.key: Point(id=c.id, address=COMPUTED_DEVICE, type=c.type, unit=c.unit, description=c.description)
            for c in contract.computed
        }

    async def h_history(self, request: web.Request) -> web.StreamResponse:
        from otseam.sinks.historian.query import QueryError, parse_bucket, parse_time, query

        contract = self.view.contract()
        key = f"{request.match_info['device']}/{request.match_info['point']}"
        if contract.find_point(key) is None:
            return _error(404, f"no point {key} in the contract")
        historians = [s for s in contract.placement(self.view.node_id).sinks if s.type == "historian"]
        if not historians:
            return _error(404, "this node keeps no historian (a sink of type historian)")
        database = historian_path(historians[0], self.view.data_dir())
        now = self.clock()
        try:
            start_text, end_text = _one(request, "from"), _one(request, "to")
            start = parse_time("-1h" if start_text is None else start_text, now)
            end = parse_time("now" if end_text is None else end_text, now)
            bucket_text = _one(request, "bucket")
            bucket = None if bucket_text is None else parse_bucket(bucket_text)
        except QueryError as exc:
            raise BadRequest(400, str(exc)) from None
        limit = _int(request, "limit", 100_000, 1, 500_000)
        if not database.exists() or end <= start:
            return web.json_response({"point": key, "from": start, "to": end, "bucket": None, "ts": [], "value": []})
        try:
            result = await asyncio.to_thread(query, database, key, start, end, bucket=bucket, limit=limit)
        except QueryError as exc:
            message = str(exc)
            if message.startswith(("no samples", "point")) or "holds no samples" in message:
                return web.json_response(
                    {"point": key, "from": start, "to": end, "bucket": bucket, "ts": [], "value": [], "note": message}
                )
            raise BadRequest(400, message) from None
        if bucket is None:
            body: dict[str, Any] = {
                "point": key,
                "from": start,
                "to": end,
                "bucket": None,
                "ts": [r.ts for r in result.rows],
                "value": [_clean(r.value) if isinstance(r.value, int | float) else None for r in result.rows],
                "quality": [int(r.quality) for r in result.rows],
                "truncated": result.truncated,
            }
        else:
            body = {
                "point": key,
                "from": start,
                "to": end,
                "bucket": bucket,
                "ts": [b.start for b in result.buckets],
                "min": [b.min for b in result.buckets],
                "max": [b.max for b in result.buckets],
                "avg": [b.avg for b in result.buckets],
                "count": [b.count for b in result.buckets],
                "bad": [b.bad for b in result.buckets],
            }
        return web.json_response(body, dumps=_fast_dumps)

    # --- alerts, events, inventory, the link --------------------------------------------------------

    async def h_alerts(self, request: web.Request) -> web.StreamResponse:
        severity = _one(request, "severity")
        severity = "info" if severity is None else severity
        try:
            minimum = Severity[severity.upper()]
        except KeyError:
            raise BadRequest(400, "severity is one of info, low, medium, high, critical") from None
        page = self.events.list(
            kinds=ALERT_KINDS,
            min_severity=int(minimum),
            unacknowledged=_bool(request, "unacknowledged"),
            before=_int(request, "before", 2**62, 0, 2**62) if "before" in request.query else None,
            limit=_int(request, "limit", 100, 1, 1000),
        )
        for item in page.items:
            item["needs_ack"] = _needs_ack(item)
        return web.json_response({"items": page.items, "next": page.next})

    async def h_ack(self, request: web.Request) -> web.StreamResponse:
        identity: Identity = request[IDENTITY]
        try:
            offset = int(request.match_info["offset"])
        except ValueError:
            raise BadRequest(400, "the alert is named by its journal offset, a whole number") from None
        body = await _json(request, frozenset({"comment"}))
        comment = body.get("comment")
        if not isinstance(comment, str) or not comment.strip() or len(comment) > 2000:
            raise BadRequest(400, "a comment (1 to 2000 characters) is required: say what was done or why")
        alert = self.events.get(offset) if 0 <= offset < 2**62 else None
        if alert is None or alert["kind"] not in ALERT_KINDS:
            return _error(404, f"no alert at offset {offset}")
        if not _needs_ack(alert):
            return _error(409, "this event records an alarm clearing: acknowledge the alarm it clears")
        if alert["acknowledged"] is not None:
            return _error(409, f"already acknowledged by {alert['acknowledged']['user']}")
        try:  # on record first: an acknowledgement that cannot be recorded does not happen
            await self._audit(
                "alert.ack",
                identity.person or identity.user,
                f"alert {offset}",
                {"user": identity.user, "person": identity.person, "offset": offset, "comment": comment.strip()},
                f"{identity.user} acknowledged {alert['kind']} {alert['source']}: {comment.strip()}",
            )
        except AuditUnavailable as exc:
            return _error(503, str(exc))
        updated = self.events.acknowledge(offset, identity.user, comment.strip(), self.clock())
        return web.json_response(updated)

    async def h_events(self, request: web.Request) -> web.StreamResponse:
        page = self.events.list(
            prefix=_one(request, "kind") or None,
            before=_int(request, "before", 2**62, 0, 2**62) if "before" in request.query else None,
            limit=_int(request, "limit", 100, 1, 1000),
        )
        return web.json_response({"items": page.items, "next": page.next})

    async def h_inventory(self, request: web.Request) -> web.StreamResponse:
        contract = self.view.contract()
        declared: dict[str, str] = {}
        for device in contract.devices:
            host = _endpoint_host(device.endpoint)
            if host and device.driver not in ("generator",):
                declared[host] = device.id
        assets: dict[str, dict[str, Any]] = {}
        for event in reversed(self.events.list(prefix="inventory.", limit=1000).items):
            ip = event["data"].get("ip") or event["source"].removeprefix("monitor/")
            entry = assets.setdefault(
                ip, {"ip": ip, "first_seen": event["ts"], "identity": None, "device": declared.get(ip)}
            )
            entry["last_seen"] = event["ts"]
            if event["kind"] == "inventory.identified":
                entry["identity"] = event["message"]
        for host, device_id in declared.items():
            assets.setdefault(
                host, {"ip": host, "first_seen": None, "last_seen": None, "identity": None, "device": device_id}
            )
        items = []
        for entry in assets.values():
            if entry["device"] is None:
                entry["status"] = "unknown"
            elif entry["first_seen"] is None:
                entry["status"] = "declared-not-seen"
            else:
                entry["status"] = "declared-and-seen"
            items.append(entry)
        order = {"unknown": 0, "declared-not-seen": 1, "declared-and-seen": 2}
        items.sort(key=lambda e: (order[e["status"]], e["ip"]))
        return web.json_response({"items": items, "next": None})

    async def h_link(self, request: web.Request) -> web.StreamResponse:
        contract = self.view.contract()
        placement = contract.placement(self.view.node_id)
        components = self._health().get("components", {})
        delivered = self.view.delivered()
        senders = []
        for spec in placement.sinks:
            if spec.type != "diode_send":
                continue
            entry = components.get(f"sink:{spec.id}", {})
            senders.append(
                {
                    "sink": spec.id,
                    "conduit": spec.conduit,
                    "records": delivered.get(spec.id, 0),
                    "rate": round(self._rates.get(f"sink:{spec.id}", (0.0, 0, 0.0))[2], 3),
                    "state": entry.get("delivery_state") or entry.get("state"),
                    "fec": {k: v for k, v in spec.options.items() if k in ("fec", "data_blocks", "parity_blocks")},
                }
            )
        receivers = []
        margins = []
        for source in placement.sources:
            if source.type != "diode_receive":
                continue
            entry = components.get(f"source:{source.id}", {})
            detail = entry.get("detail", {}) if isinstance(entry, dict) else {}
            detail = detail if isinstance(detail, dict) else {}
            stats = _receiver_stats(detail)
            if isinstance(stats.get("margin_used_max"), int | float):
                margins.append(stats["margin_used_max"])
            receivers.append(
                {
                    "source": source.id,
                    "conduit": source.conduit,
                    "state": detail.get("status") or entry.get("state"),
                    "problems": detail.get("problems", []),
                    "link_up": bool(detail.get("link_up", stats.get("link_up", False))),
                    "records": stats.get("records"),
                    "gaps": stats.get("gaps"),
                    "blocks_lost": detail.get("lost_blocks", stats.get("lost")),
                    "missing": detail.get("missing", []),
                    "rate": round(self._rates.get(f"source:{source.id}", (0.0, 0, 0.0))[2], 3),
                }
            )
        gaps = [
            {**event, "replay": _replay_command(contract, self.view.contract_path(), event)}
            for event in self.events.list(kinds=("diode.gap",), limit=_int(request, "limit", 100, 1, 1000)).items
        ]
        return web.json_response(
            {
                "senders": senders,
                "receivers": receivers,
                "fec_margin": margins[0] if margins else None,
                "gaps": gaps,
                "events": self.events.list(prefix="diode.", limit=50).items,
            }
        )

    async def h_health(self, request: web.Request) -> web.StreamResponse:
        body = self._health()
        body["console"] = {
            "live_offset": self.hub.offset,
            "streams": len(self.hub.subscribers),
            "messages": self.hub.messages,
            "samples": self.hub.samples,
            "resyncs": self.hub.resyncs,
            "cpu_seconds": round(self.hub.cpu, 3),
            "interval": round(self.hub.interval, 3),
            "error": self.hub.error or None,
        }
        return web.json_response(body, dumps=lambda o: json.dumps(o, default=str))

    # --- live ---------------------------------------------------------------------------------------

    async def h_stream(self, request: web.Request) -> web.StreamResponse:
        identity: Identity = request[IDENTITY]
        wanted = _one(request, "points")
        points = frozenset(p for p in wanted.split(",") if p) if wanted else None
        events = _one(request, "events") != "false"
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        subscriber = self.hub.subscribe(points, events)
        try:
            await response.write(b"retry: 2000\n\n" + self.hub.snapshot(points))
            while True:
                waiting = await subscriber.wait(5.0)
                if not self._still_valid(identity):
                    await response.write(sse("signed-out", {"message": "the session ended: sign in again"}))
                    break
                if subscriber.closed:
                    break
                began = time.thread_time()
                if subscriber.behind:
                    message = self.hub.resync(subscriber, points)
                else:
                    message = subscriber.take() if waiting else b": idle\n\n"
                # The write goes to the socket at once; it waits (and other tasks run) only when the
                # client's socket is full, which then counts their CPU too: an upper bound.
                await response.write(message)
                self.hub.cpu += time.thread_time() - began
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.hub.unsubscribe(subscriber)
        return response

    def _still_valid(self, identity: Identity) -> bool:
        """An open stream ends when its session or token does (checked without counting as activity)."""
        if identity.session is not None:
            return self.auth.from_session(identity.session.id, touch=False) is not None
        if identity.token is not None:
            current = next((t for t in self.users.tokens(identity.token.user) if t.id == identity.token.id), None)
            return current is not None and current.active(self.clock()) and self.users.get(identity.user) is not None
        return False

    # --- tokens and users ---------------------------------------------------------------------------

    async def h_tokens(self, request: web.Request) -> web.StreamResponse:
        identity: Identity = request[IDENTITY]
        mine = None if identity.may(Permission.ADMIN) else identity.user
        return web.json_response({"items": [t.public() for t in self.users.tokens(mine)], "next": None})

    async def h_create_token(self, request: web.Request) -> web.StreamResponse:
        identity: Identity = request[IDENTITY]
        if identity.session is None:
            return _error(403, "tokens are created from a signed-in session, not with another token")
        body = await _json(request, frozenset({"name", "scopes", "expires_in"}))
        name = body.get("name")
        scopes_text = body.get("scopes", ["read"])
        expires_in = body.get("expires_in")
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            raise BadRequest(400, "name (1 to 100 characters) says what the token is for")
        if not isinstance(scopes_text, list) or not all(isinstance(s, str) for s in scopes_text):
            raise BadRequest(400, 'scopes is a list such as ["read"]')
        try:
            scopes = [Permission(s) for s in scopes_text]
        except ValueError:
            raise BadRequest(400, "scopes are read and alerts.ack") from None
        if any(s not in (Permission.READ, Permission.ACK) or not identity.may(s) for s in scopes):
            return _error(403, f"{identity.role} cannot grant {', '.join(map(str, scopes))}")
        expires = None
        if expires_in is not None:
            if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or not 0 < expires_in < 10**9:
                raise BadRequest(400, "expires_in is a number of seconds")
            expires = self.clock() + float(expires_in)
        token, secret = self.users.create_token(identity.user, name.strip(), scopes, expires)
        try:
            await self._audit(
                "token.create",
                identity.person or identity.user,
                token.id,
                {"user": identity.user, "token": token.id, "name": name.strip(), "scopes": [str(s) for s in scopes]},
                f"{identity.user} created API token {token.id} ({name.strip()})",
            )
        except AuditUnavailable as exc:
            # A token that is not on record must not work: it is revoked before anyone sees its secret.
            self.users.revoke_token(token.id)
            return _error(503, f"{exc}; the token was not created")
        return web.json_response({**token.public(), "secret": secret})

    async def h_revoke_token(self, request: web.Request) -> web.StreamResponse:
        identity: Identity = request[IDENTITY]
        token_id = request.match_info["token"]
        existing = next((t for t in self.users.tokens() if t.id == token_id), None)
        if existing is None or (existing.user != identity.user and not identity.may(Permission.ADMIN)):
            return _error(404, f"no token {token_id} of yours")
        try:
            token = self.users.revoke_token(token_id)
        except UserError as exc:
            return _error(404, str(exc))
        message = f"{identity.user} revoked API token {token_id}"
        try:
            await self._audit(
                "token.revoke",
                identity.person or identity.user,
                token_id,
                {"user": identity.user, "token": token_id},
                message,
            )
        except AuditUnavailable as exc:
            # Revoking only takes access away, so it stands; the missing record is said, loudly, in the
            # journal and in the answer.
            self.view.append(
                [
                    Event(
                        self.clock(),
                        "audit.unrecorded",
                        "control",
                        Severity.HIGH,
                        f"NOT in the audit log ({exc}): {message}",
                        {"kind": "token.revoke", "token": token_id, "user": identity.user},
                    )
                ]
            )
            return web.json_response({**token.public(), "warning": f"revoked, but not on record: {exc}"})
        return web.json_response(token.public())

    async def h_users(self, request: web.Request) -> web.StreamResponse:
        items = []
        for user in self.users.users():
            entry = user.public()
            entry["locked"] = self.auth.locked(user.name)
            items.append(entry)
        return web.json_response({"items": items, "next": None})


async def _json(request: web.Request, allowed: frozenset[str]) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > 64 * 1024:
        raise BadRequest(413, "the request body is too large")
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest(400, "the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(
            400, f"unknown field(s) {', '.join(map(repr, unknown))[:200]}; the fields are {sorted(allowed)}"
        )
    return body


def _receiver_stats(detail: dict[str, Any]) -> dict[str, Any]:
    """The diode receiver's counters inside a diode_receive source's health detail."""
    inner = detail.get("receiver")
    return inner if isinstance(inner, dict) else detail


def _needs_ack(event: dict[str, Any]) -> bool:
    """Monitor alerts and raised alarms are acknowledged; an alarm's clearing is information."""
    return bool(event["kind"] == "alert" or event["data"].get("state") == "raised")


def _fast_dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False, default=str)


_HOST = re.compile(r"^[a-z+]+://\[?([^\]/:]+)\]?")


def _endpoint_host(endpoint: str) -> str | None:
    match = _HOST.match(endpoint)
    return match.group(1) if match else None


def _replay_command(contract: Contract, contract_path: Path, gap: dict[str, Any]) -> str:
    """The OT-side command that closes a gap (`seam diode replay`, run where the diode_send sink runs,
    with the same contract): by journal offsets when the gap names them, else by source time."""
    data = gap["data"]
    command = f"seam diode replay --contract {contract_path.name}"
    senders = [s for s in contract.sinks if s.type == "diode_send"]
    if len(senders) > 1:
        receiving = {s.conduit for s in contract.sources if s.type == "diode_receive"}
        matching = [s.id for s in senders if s.conduit in receiving]
        command += f" --sink {matching[0] if len(matching) == 1 else '<the diode_send sink>'}"
    first, last = data.get("first_offset"), data.get("last_offset")
    if isinstance(first, int) and isinstance(last, int) and first <= last:
        return f"{command} --from-offset {first} --to-offset {last}"
    start, end = data.get("from_ts"), data.get("to_ts")
    if isinstance(start, int | float) and isinstance(end, int | float):
        from otseam.sinks.historian.query import format_time

        return f"{command} --since {format_time(float(start))} --until {format_time(float(end))}"
    return f"{command} (the range is not known yet: see the gap's message)"
