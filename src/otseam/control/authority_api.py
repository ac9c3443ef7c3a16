"""The authority service on the REST API: command requests, approvals, contract proposals, the audit log.

Each handler is one call of :class:`~otseam.control.authority.service.AuthorityService` (or of change
control, or of the audit log) on behalf of the signed-in console user, who is always one person of the
contract: the person's side and role in the contract are what the service checks, the console role
(routes.py) only decides who may reach the route at all.

Where signing happens. The server never sees a private key. A request is prepared on the server
(``POST /commands/prepare`` returns the canonical document, its SHA-256 and the exact bytes an
approver signs), then submitted as that document. An approver signs the text
``"otseam command approval v1\\n" + sha256`` with their Ed25519 key, on their side: in the console the
page reads the key file the approver picks and signs with the browser's own Web Crypto (the file never
leaves the browser); an API client signs with its own tool (``openssl pkeyutl -sign -rawin``) or the
approver runs ``seam command approve`` on the node. Either way only the fingerprint and the signature
are posted, and the service checks them against the key enrolled for that person on this node.

The service is built from the node's runtime (contract file, data directory, node id, clock, journal)
and built again when the contract is reloaded, so it always judges by the contract in force.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from otseam.audit.log import AuditLog, AuditUnavailable, authority_dir, node_public_key, record_login, verify_log
from otseam.contract.models import Contract
from otseam.control.auth import Identity as ConsoleIdentity
from otseam.control.authority import keys
from otseam.control.authority.document import CommandRequest, DocumentError
from otseam.control.authority.governance import ChangeControl, GovernanceError, enabled
from otseam.control.authority.service import AuthorityError, AuthorityService, Identity
from otseam.control.authority.store import Signature
from otseam.control.users import UserStore
from otseam.control.view import NodeView, historian_path

log = logging.getLogger("otseam.control.authority_api")

Handler = Callable[[web.Request, ConsoleIdentity], Awaitable[web.StreamResponse]]

STATES = ("pending", "approved", "rejected", "expired", "executed", "failed", "refused")


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class JournalOf:
    """The node's journal as the audit log writes to it (its records then cross the diode)."""

    def __init__(self, view: NodeView) -> None:
        self.view = view
        journal = view.journal()
        self.source = journal.source if journal is not None else ""

    def append(self, records: Sequence[Any]) -> int:
        self.view.append(list(records))
        return 0


async def body_of(request: web.Request, allowed: frozenset[str]) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > 256 * 1024:
        raise ApiError(413, "the request body is too large")
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(map(repr, unknown))[:200]}; the fields are {sorted(allowed)}")
    return body


def text_of(body: dict[str, Any], name: str, limit: int, required: bool = True) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > limit:
        raise ApiError(400, f"{name} is text of 1 to {limit} characters")
    return value


def _query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    values = request.query.getall(name, [])
    if not values:
        return default
    if len(values) > 1:
        raise ApiError(400, f"{name} is given {len(values)} times: give it once")
    try:
        value = int(values[0])
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}")
    return value


def _query_text(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise ApiError(400, f"{name} is given {len(values)} times: give it once")
    return values[0] if values else None


def signing(purpose: str, digest: str) -> dict[str, str]:
    """What an approver signs, said exactly (the message is UTF-8 without a trailing newline)."""
    return {"purpose": purpose, "sha256": digest, "message": keys.message(purpose, digest).decode()}


class AuthorityAPI:
    """The routes of routes.py whose handler names start with ``authority_``."""

    def __init__(self, view: NodeView, clock: Callable[[], float] = time.time) -> None:
        self.view = view
        self.clock = clock
        self._service: AuthorityService | None = None
        self._built_for: Contract | None = None
        self._audit_log: AuditLog | None = None
        self._verdict: tuple[tuple[int, int], dict[str, Any]] | None = None

    # --- the service, from the node's runtime ----------------------------------------------------

    def audit_log(self) -> AuditLog:
        if self._audit_log is None:
            self._audit_log = AuditLog(
                authority_dir(self.view.data_dir()),
                node=self.view.node_id,
                journal=JournalOf(self.view),
                clock=self.clock,
            )
        return self._audit_log

    def service(self) -> AuthorityService:
        """The service for the contract in force: built again when the node reloaded its contract."""
        contract = self.view.contract()
        if self._service is None or self._built_for is not contract:
            # The service reads the contract file (requests cite its SHA-256): it must be the contract in
            # force. After a refused reload the file on disk is another one, and nothing is decided on it.
            stale = (
                f"{self.view.contract_path()} is not the contract this node runs (its reload was refused or "
                "is still pending): requests and approvals wait until the file and the node agree"
            )
            try:
                service = AuthorityService(
                    self.view.contract_path(),
                    self.view.data_dir(),
                    node=self.view.node_id,
                    clock=self.clock,
                    journal=JournalOf(self.view),
                    audit=self.audit_log(),
                )
            except AuthorityError as exc:
                raise ApiError(503, f"{stale}: {exc}") from None
            if service.contract != contract:
                raise ApiError(503, stale)
            self._service, self._built_for = service, contract
        return self._service

    async def served(self) -> AuthorityService:
        """:meth:`service` off the event loop: building it parses the contract file (seconds for a large
        plant), and polling must not wait for that."""
        if self._service is not None and self._built_for is self.view.contract():
            return self._service
        return await asyncio.to_thread(self.service)

    def changes(self) -> ChangeControl:
        return ChangeControl(authority_dir(self.view.data_dir()), self.audit_log(), self.clock)

    def identity(self, who: ConsoleIdentity) -> Identity:
        """The console user's person, with their side and role as the contract states them."""
        person = self.view.contract().person(who.person)
        if person is None:
            raise ApiError(403, f"{who.user} is tied to '{who.person}', who is not a person of the contract in force")
        return Identity(person.id, person.side, person.role)

    def record_login(self, users: UserStore, name: str, succeeded: bool, address: str, detail: str) -> None:
        """A sign-in or a refused one, in the hash-chained audit log (and from there in the journal).
        Raises AuditUnavailable: a sign-in that cannot be recorded is refused by the caller."""
        user = users.get(name)
        record_login(
            self.audit_log(), user.person if user else name[:64], succeeded, address, f"user {name[:64]}: {detail}"
        )

    def handler(self, name: str) -> Handler:
        method: Handler = getattr(self, f"h_{name}")

        async def guarded(request: web.Request, who: ConsoleIdentity) -> web.StreamResponse:
            try:
                return await method(request, who)
            except ApiError as exc:
                return _error(exc.status, str(exc))
            except AuthorityError as exc:
                return _error(exc.status if 400 <= exc.status < 600 else 409, str(exc))
            except GovernanceError as exc:
                return _error(409, str(exc))
            except AuditUnavailable as exc:
                return _error(503, str(exc))
            except keys.KeyProblem as exc:  # the node's keyring cannot be read: nothing can be checked
                log.error("%s", exc)
                return _error(503, str(exc))

        return guarded

    # --- commands --------------------------------------------------------------------------------

    async def h_commands(self, request: web.Request, who: ConsoleIdentity) -> web.StreamResponse:
        contract = self.view.contract()
        live = {v.point: v for v in self.view.live_values()}
        items = []
        for command in contract.commands:
            device_id, _, point_id = command.point.partition("/")
            device = contract.device(device_id)
            point = next((p for p in device.points if p.id == point_id), None) if device is not None else None
            value = live.get(command.point)
            last = None if value is not None else await asyncio.to_thread(self._last_stored, contract, command.point)
            items.append(
                {
                    "id": command.id,
                    "point": command.point,
                    "unit": point.unit if point is not None else "",
                    "range": command.range.model_dump(mode="json") if command.range is not None else None,
                    "rate_per_s": command.rate,
                    "window": command.window or None,
                    "approvers": [{"side": str(a.side), "role": a.role} for a in command.approvers],
                    "zone": device.zone if device is not None else None,
                    "value": value.value if value is not None else (last[1] if last else None),
                    "quality": value.quality.label if value is not None else (last[2] if last else None),
                    "value_ts": value.source_ts if value is not None else (last[0] if last else None),
                    #: "live" when this node reads the point, "historian" when it only receives it (an IT
                    #: node behind the diode), None when it has seen no value in the last 10 minutes.
                    "value_from": "live" if value is not None else ("historian" if last else None),
                }
            )
        return web.json_response({"items": items, "next": None}, dumps=_dumps)

    def _last_stored(self, contract: Contract, key: str) -> tuple[float, Any, str] | None:
        """The newest sample of ``key`` in this node's historian within the last 10 minutes, if any."""
        from otseam.sinks.historian.query import QueryError, query

        historians = [s for s in contract.placement(self.view.node_id).sinks if s.type == "historian"]
        if not historians:
            return None
        database = historian_path(historians[0], self.view.data_dir())
        now = self.clock()
        if not database.exists():
            return None
        try:
            rows = query(database, key, now - 600, now + 1, limit=100_000).rows
        except QueryError:
            return None
        return (rows[-1].ts, rows[-1].value, rows[-1].quality.label) if rows else None

    async def h_prepare(self, request: web.Request, who: ConsoleIdentity) -> web.StreamResponse:
        body = await body_of(request, frozenset({"command", "value", "reason", "observed"}))
        command = text_of(body, "command", 200)
        reason = text_of(body, "reason", 2000)
        value, observed = body.get("value"), body.get("observed")
        for name, item in (("value", value), ("observed", observed)):
            if isinstance(item, dict | list) or item is None:
                raise ApiError(400, f"{name} is a number, true/false or text")
        service = await self.served()
        doc = await asyncio.to_thread(service.prepare, self.identity(who), command, value, reason, observed)
        return web.json_response(
            {"document": doc.body(), "sha256": doc.digest, "signing": signing(keys.PURPOSE_REQUEST, doc.digest)}
        )

    async def h_submit(self, request: web.Request, who: ConsoleIdentity) -> web.StreamResponse:
        body = await body_of(request, frozenset({"document", "fingerprint", "signature"}))
        try:
            doc = CommandRequest.from_body(body.get("document"))
        except DocumentError as exc:
            raise ApiError(422, f"the document is not a command request: {exc}") from None
        signature = None
        if body.get("signature") is not None or body.get("fingerprint") is not None:
            ident = self.identity(who)
            signature = Signature(ident.person_id, text_of(body, "fingerprint", 100), text_of(body, "signature", 200))
        try:
            view = await asyncio.to_thread((await self.served()).submit, self.identity(who), doc, signature)
        except ValueError as exc:  # the store refuses a second document under an id already taken
            raise ApiError(409, f"{exc}: a changed request is a new request (prepare it again)") from None
        return web.json_response(_with_signing(view))

    async def h_requests(self, request: web.Request, who: ConsoleIdentity) -> web.StreamResponse:
        state = _query_text(request, "state")
        if state is not None and state not in STATES:
            raise ApiError(400, f"state is one of {', '.join(STATES)}")
        command = _query_text(request, "command")
        offset = _query_int(request, "offset", 0, 0, 10**9)
        limit = _query_int(request, "limit", 100, 1, 1000)
        views = await asyncio.to_thread((await self.served()).list, self.identity(who), state)
        if command:
            views = [v for v in views if v["document"]["command"] == command]
        views.sort(key=lambda v: v["document"]["created"], reverse=True)
        page = views[offset : offset + limit]
        following = offset + limit if offset + limit < len(views) else None
        return web.json_response({"items": [_with_signing(v) for v in page], "total": len(views), "next": following})

    async def h_request(self, request: web.Request, who: ConsoleIdentity) -> web.StreamResponse:
        view = await asyncio.to_thread((await self.served()).show, self.identity(who), request.match_info["id"][:100])
        return web.json_response(_with_signing(view))

    async def h_approve(self, request: web.Request, who: ConsoleIdentity) -> web.StreamResponse:
        body = await body_of(request, frozenset({"fingerprint", "signature"}))
        fingerprint, signature = text_of(body, "fingerprint", 100), text_of(body, "signature", 200)
        view = await asyncio.to_thread(
            (await self.served()).approve, self.identity(who), request.match_info["id"][:100], fingerprint, signature
        )
        return web.json_response(_with_signing(view))

    async def h_reject(self, request: web.Request, who: ConsoleIdentity) -> web.StreamResponse:
        body = await body_of(request, frozenset({"reason", "fingerprint", "signature"}))
        reason = text_of(body, "reason", 2000)
        ident = self.identity(who)
        signature = None
        if body.get("signature") is not None or body.get("fingerprint") is not None:
            signature = Signature(ident.person_id, text_of(body, "fingerprint", 100), text_of(body, "signature", 200))
        view = await asyncio.to_thread(
            (await self.served()).reject, ident, request.match_info["id"][:100], reason, signature
        )
        return web.json_response(_with_signing(view))

    async def h_keys(self, request: web.Request, who: ConsoleIdentity) -> web.StreamResponse:
        ring = (await self.served()).keyring
        items = [
            {"person": e.person, "fingerprint": e.fingerprint, "enrolled_at": e.enrolled_at}
            for e in await asyncio.to_thread(ring.entries)
            if e.revoked_at is None
        ]
        return web.json_response({"items": items, "next": None})

    # --- contract change control -----------------------------------------------------------------

    async def h_proposals(self, request: web.Request, who: ConsoleIdentity) -> web.StreamResponse:
        control = self.changes()
        proposals = await asyncio.to_thread(control.all)
        items = [{k: v for k, v in p.items() if k != "text"} for p in reversed(proposals)]
        for item in items:
            item["signing"] = signing(keys.PURPOSE_BUNDLE, item["digest"])
        governance = enabled(control.directory)
        return web.json_response({"items": items, "next": None, "governance": governance})

    async def h_proposal(self, request: web.Request, who: ConsoleIdentity) -> web.StreamResponse:
        control = self.changes()
        revision = control.parse_revision(request.match_info["revision"][:20])
        try:
            proposal = await asyncio.to_thread(control._load, revision)
        except GovernanceError as exc:
            raise ApiError(404, str(exc)) from None
        proposal["signing"] = signing(keys.PURPOSE_BUNDLE, proposal["digest"])
        return web.json_response(proposal)

    async def h_propose(self, request: web.Request, who: ConsoleIdentity) -> web.StreamResponse:
        body = await body_of(request, frozenset({"text"}))
        text = text_of(body, "text", 200_000)
        ident = self.identity(who)
        current = await asyncio.to_thread(self.view.contract_path().read_text, encoding="utf-8")
        proposal = await asyncio.to_thread(self.changes().propose, text, current, ident.person_id)
        proposal["signing"] = signing(keys.PURPOSE_BUNDLE, proposal["digest"])
        return web.json_response({k: v for k, v in proposal.items() if k != "text"})

    async def h_approve_proposal(self, request: web.Request, who: ConsoleIdentity) -> web.StreamResponse:
        body = await body_of(request, frozenset({"fingerprint", "signature"}))
        fingerprint, signature = text_of(body, "fingerprint", 100), text_of(body, "signature", 200)
        control = self.changes()
        revision = control.parse_revision(request.match_info["revision"][:20])
        ident = self.identity(who)
        proposal = await asyncio.to_thread(
            control.approve, revision, ident.person_id, Signature(ident.person_id, fingerprint, signature)
        )
        return web.json_response({k: v for k, v in proposal.items() if k != "text"})

    # --- the audit log ---------------------------------------------------------------------------

    def _verify(self) -> dict[str, Any]:
        """The chain checked from its first record; kept until the file changes (a walk is linear)."""
        audit = self.audit_log()
        try:
            stat = os.stat(audit.path)
            key = (stat.st_size, stat.st_mtime_ns)
        except FileNotFoundError:
            key = (0, 0)
        if self._verdict is not None and self._verdict[0] == key:
            return self._verdict[1]
        try:
            public = node_public_key(audit.directory) if (audit.directory / "node.key.pub").exists() else None
        except (OSError, ValueError):
            public = None
        verdict = verify_log(audit.path, audit.head_path, public)
        result = {
            "ok": verdict.ok,
            "records": verdict.records,
            "checkpoints": verdict.checkpoints,
            "problem": verdict.problem,
            "first_bad_seq": verdict.first_bad_seq,
            "notes": list(verdict.notes),
            "signed_by": keys.fingerprint(public) if public is not None else None,
        }
        self._verdict = (key, result)
        return result

    async def h_audit(self, request: web.Request, who: ConsoleIdentity) -> web.StreamResponse:
        before = _query_int(request, "before", 2**62, 1, 2**62)
        limit = _query_int(request, "limit", 100, 1, 1000)
        kind = _query_text(request, "kind")

        def page() -> tuple[list[dict[str, Any]], int | None, dict[str, Any]]:
            verdict = self._verify()
            chosen: list[dict[str, Any]] = []
            try:
                for record in self.audit_log().records():
                    if not isinstance(record, dict) or not isinstance(record.get("seq"), int):
                        continue
                    if record["seq"] >= before or (kind and not str(record.get("kind", "")).startswith(kind)):
                        continue
                    chosen.append(record)
                    if len(chosen) > limit:
                        chosen.pop(0)
            except ValueError:
                pass  # an unreadable line: the verdict names it
            chosen.reverse()
            following = chosen[-1]["seq"] if len(chosen) == limit and chosen[-1]["seq"] > 1 else None
            return chosen, following, verdict

        items, following, verdict = await asyncio.to_thread(page)
        return web.json_response({"items": items, "next": following, "verification": verdict}, dumps=_dumps)


def _with_signing(view: dict[str, Any]) -> dict[str, Any]:
    digest = str(view.get("digest") or CommandRequest.from_body(view["document"]).digest)
    view["sha256"] = digest
    view["signing"] = signing(keys.PURPOSE_APPROVAL, digest)
    view["rejection_signing"] = signing(keys.PURPOSE_REJECTION, digest)
    return view


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)
