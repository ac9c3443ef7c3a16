"""Break-glass on the REST API: open a session, write through it, close its review.

Each handler is one call of :class:`~otseam.control.authority.breakglass.BreakGlass` on behalf of the
signed-in console user, who is always one person of the contract. The console role (routes.py) opens
the door; what break-glass itself demands is checked by ``BreakGlass`` against the contract in force:
only a person of the OT side, only on a node in an OT zone, a reason, at most an hour, the person's own
Ed25519 signature over the session document (made in the browser, as approvals are; the server never
sees a private key), a high-severity alert, and a review that only the seam owner closes, signed.
Everything is in the audit log first: if it cannot be written, nothing is opened, written or closed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiohttp import web

from otseam.audit.canonical import digest
from otseam.contract.models import Contract
from otseam.control.auth import Identity as ConsoleIdentity
from otseam.control.authority import keys
from otseam.control.authority.breakglass import MAX_DURATION_S, BreakGlass, BreakGlassError
from otseam.control.authority.executor import Executor
from otseam.control.authority.store import Signature
from otseam.control.authority_api import ApiError, Handler, JournalOf, body_of, signing, text_of
from otseam.control.view import NodeView


class BreakGlassAPI:
    """The routes of routes.py whose handler names start with ``breakglass_``."""

    def __init__(self, view: NodeView, clock: Callable[[], float] = time.time) -> None:
        self.view = view
        self.clock = clock
        self._glass: BreakGlass | None = None
        self._built_for: Contract | None = None

    def glass(self) -> BreakGlass:
        """Break-glass for the contract in force (built again after a reload)."""
        contract = self.view.contract()
        if self._glass is None or self._built_for is not contract:
            executor = Executor(
                self.view.contract_path(),
                self.view.data_dir(),
                node=self.view.node_id,
                clock=self.clock,
                journal=JournalOf(self.view),
            )
            if executor.contract != contract:
                raise ApiError(503, "the contract file is not the contract this node runs (a reload is pending)")
            self._glass, self._built_for = BreakGlass(executor), contract
        return self._glass

    def person(self, who: ConsoleIdentity) -> str:
        if self.view.contract().person(who.person) is None:
            raise ApiError(403, f"{who.user} is tied to '{who.person}', who is not a person of the contract in force")
        return who.person

    def handler(self, name: str) -> Handler:
        method: Handler = getattr(self, f"h_{name}")

        async def guarded(request: web.Request, who: ConsoleIdentity) -> web.StreamResponse:
            try:
                return await method(request, who)
            except ApiError as exc:
                return web.json_response({"error": str(exc)}, status=exc.status)
            except BreakGlassError as exc:
                return web.json_response({"error": str(exc)}, status=exc.status)

        return guarded

    async def h_sessions(self, request: web.Request, who: ConsoleIdentity) -> web.StreamResponse:
        glass = await asyncio.to_thread(self.glass)
        now = round(self.clock() * 1000)
        items = []
        for record in reversed(await asyncio.to_thread(glass.sessions)):
            body = record["session"]
            active = record.get("review") is None and now < body["expires"]
            items.append({**record, "active": active, "signing": signing(keys.PURPOSE_REVIEW, digest(body))})
        return web.json_response(
            {
                "items": items,
                "next": None,
                "node": self.view.node_id,
                "available": glass.available(),
                "max_duration_s": MAX_DURATION_S,
            }
        )

    async def h_prepare(self, request: web.Request, who: ConsoleIdentity) -> web.StreamResponse:
        body = await body_of(request, frozenset({"reason", "duration_s"}))
        reason = text_of(body, "reason", 2000)
        duration = body.get("duration_s")
        if isinstance(duration, bool) or not isinstance(duration, int | float):
            raise ApiError(400, f"duration_s is a number of seconds, at most {MAX_DURATION_S}")
        glass = await asyncio.to_thread(self.glass)
        session = await asyncio.to_thread(glass.prepare, self.person(who), reason, float(duration))
        return web.json_response(
            {
                "session": session,
                "sha256": digest(session),
                "signing": signing(keys.PURPOSE_BREAK_GLASS, digest(session)),
            }
        )

    async def h_open(self, request: web.Request, who: ConsoleIdentity) -> web.StreamResponse:
        body = await body_of(request, frozenset({"session", "fingerprint", "signature"}))
        session = body.get("session")
        fingerprint, signature = text_of(body, "fingerprint", 100), text_of(body, "signature", 200)
        if not isinstance(session, dict) or set(session) != {"id", "person", "reason", "opened", "expires", "node"}:
            raise ApiError(400, "session is the document prepare returned, unchanged")
        person = self.person(who)
        if session["person"] != person:
            raise ApiError(403, "a break-glass session is opened by its own person only")
        glass = await asyncio.to_thread(self.glass)
        record = await asyncio.to_thread(glass.open, session, Signature(person, fingerprint, signature))
        return web.json_response(record)

    async def h_execute(self, request: web.Request, who: ConsoleIdentity) -> web.StreamResponse:
        body = await body_of(request, frozenset({"command", "value", "observed"}))
        command = text_of(body, "command", 200)
        value, observed = body.get("value"), body.get("observed")
        for name, item in (("value", value), ("observed", observed)):
            if isinstance(item, dict | list) or item is None:
                raise ApiError(400, f"{name} is a number, true/false or text")
        glass = await asyncio.to_thread(self.glass)
        session_id = request.match_info["id"][:64]
        record = await asyncio.to_thread(glass.get, session_id)
        if record["session"]["person"] != self.person(who):
            raise ApiError(403, f"break-glass session {session_id} is not yours: open one of your own")
        outcome = await glass.execute(session_id, command, value, observed)
        return web.json_response(outcome)

    async def h_review(self, request: web.Request, who: ConsoleIdentity) -> web.StreamResponse:
        body = await body_of(request, frozenset({"note", "fingerprint", "signature"}))
        note = text_of(body, "note", 2000)
        fingerprint, signature = text_of(body, "fingerprint", 100), text_of(body, "signature", 200)
        person = self.person(who)
        glass = await asyncio.to_thread(self.glass)
        record = await asyncio.to_thread(
            glass.review, request.match_info["id"][:64], person, note, Signature(person, fingerprint, signature)
        )
        return web.json_response(record)
