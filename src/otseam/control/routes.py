"""Every route of the node's HTTP server and who may call it: one table, deny by default.

A handler is reachable only through this table: :func:`otseam.control.server.mount` registers each
entry with its rule, and the access middleware refuses any route it finds no rule for. The test
``tests/control/test_access.py`` walks the server's router and calls every route as every role, so a
route added any other way fails the suite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from otseam.control.roles import Permission


class Open(StrEnum):
    #: No authentication at all: /health only (a service manager must reach it without a secret).
    PUBLIC = "public"
    #: Reachable before signing in, and returns no plant data: the console's own code, the login
    #: banner, the login itself.
    ANONYMOUS = "anonymous"
    #: /metrics: its own bearer token (core/http.py), unchanged by the console.
    METRICS = "metrics-token"


Access = Permission | Open


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: str
    access: Access
    summary: str
    #: A concrete path the access test calls (for paths with parameters).
    example: str = ""
    params: tuple[dict[str, Any], ...] = ()
    body: dict[str, Any] | None = None
    response: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    #: Excluded from the OpenAPI document (static files, the event stream).
    api: bool = True

    @property
    def sample(self) -> str:
        return self.example or self.path


def _q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _p(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


#: The times the historian query understands (otseam.sinks.historian.query.parse_time).
TIME: dict[str, Any] = {
    "type": "string",
    "pattern": r"^(now|[-+][0-9]{1,6}(ms|s|min|h|d)|[0-9]{1,10}(\.[0-9]{1,6})?|[0-9]{4}-(0[1-9]|1[0-2])-"
    r"(0[1-9]|1[0-9]|2[0-8])(T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?(Z|[+-]0[0-9]:00)?)?)$",
}
LIMIT = _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "Items per page.")
BEFORE = _q(
    "before", {"type": "integer", "minimum": 0, "maximum": 2**62}, "Journal offset: items older than this (next page)."
)
OBJ: dict[str, Any] = {"type": "object"}
LIST_PAGE: dict[str, Any] = {
    "type": "object",
    "required": ["items"],
    "properties": {"items": {"type": "array", "items": OBJ}, "next": {"type": ["integer", "null"]}},
}
POINT: dict[str, Any] = {
    "type": "object",
    "required": ["key", "device", "id", "quality"],
    "properties": {
        "key": {"type": "string"},
        "device": {"type": "string"},
        "id": {"type": "string"},
        "value": {},
        "quality": {"type": ["string", "null"]},
        "source_ts": {"type": ["number", "null"]},
        "age": {"type": ["number", "null"]},
        "unit": {"type": "string"},
        "lineage": {
            "type": "object",
            "description": "For a computed point: its formula, the points it reads, and who owns the formula.",
            "properties": {
                "kind": {"type": "string"},
                "formula": {"type": "string"},
                "inputs": {"type": "array", "items": {"type": "string"}},
                "sources": {"type": "array", "items": {"type": "string"}},
                "owner": {"type": ["string", "null"]},
            },
        },
    },
}

API = "/api/v1"

#: A signature made on the signer's side (the server never holds a private key); see authority_api.py.
SIGNED: dict[str, Any] = {
    "type": "object",
    "required": ["fingerprint", "signature"],
    "additionalProperties": False,
    "properties": {
        "fingerprint": {"type": "string", "minLength": 1, "maxLength": 100},
        "signature": {"type": "string", "minLength": 1, "maxLength": 200},
    },
}
SCALAR: dict[str, Any] = {"type": ["number", "string", "boolean"]}
_TEXT: dict[str, Any] = {"type": "string", "maxLength": 2000}
_MS: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": 2**53}
#: The canonical request document (otseam.control.authority.document.CommandRequest), as prepare returns it.
DOCUMENT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": [
        "id", "command", "point", "value", "unit", "observed", "reason", "requester",
        "created", "approve_by", "execute_by", "contract", "mode", "version",
    ],
    "properties": {
        **{name: _TEXT for name in ("id", "command", "point", "value", "unit", "observed", "reason", "requester")},
        **{name: _MS for name in ("created", "approve_by", "execute_by")},
        "contract": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "mode": {"type": "string", "enum": ["two-person"]},
        "version": {"type": "integer", "minimum": 1, "maximum": 1},
    },
}  # fmt: skip
REQUEST_ID = _p("id", "The request id.")
REVISION = _p("revision", "The proposal's revision, e.g. r3.")

#: Handlers named ``authority_*`` are served by otseam.control.authority_api.
AUTHORITY_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        f"{API}/commands",
        "authority_commands",
        Permission.READ,
        "The commands the contract declares, with their approvers and the point's live value.",
        response=LIST_PAGE,
    ),
    Route(
        "GET",
        f"{API}/commands/requests",
        "authority_requests",
        Permission.READ,
        "Command requests, newest first, with their state and the approvals still missing.",
        params=(
            _q(
                "state",
                {
                    "type": "string",
                    "enum": ["pending", "approved", "rejected", "expired", "executed", "failed", "refused"],
                },
                "Only requests in this state.",
            ),
            _q("command", {"type": "string"}, "Only this command."),
            _q("offset", {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0}, "Skip this many."),
            LIMIT,
        ),
        response=LIST_PAGE,
    ),
    Route(
        "POST",
        f"{API}/commands/prepare",
        "authority_prepare",
        Permission.COMMAND_REQUEST,
        "The canonical document a request would be, its SHA-256 and what a signer signs (nothing is stored).",
        body={
            "type": "object",
            "required": ["command", "value", "reason", "observed"],
            "additionalProperties": False,
            "properties": {
                "command": {"type": "string", "minLength": 1, "maxLength": 200},
                "value": SCALAR,
                "observed": SCALAR,
                "reason": {"type": "string", "minLength": 1, "maxLength": 2000, "pattern": r"\S"},
            },
        },
    ),
    Route(
        "POST",
        f"{API}/commands/requests",
        "authority_submit",
        Permission.COMMAND_REQUEST,
        "Submit a prepared document as a request (optionally signed by the requester).",
        body={
            "type": "object",
            "required": ["document"],
            "additionalProperties": False,
            "properties": {
                "document": DOCUMENT,
                "fingerprint": {"type": "string", "maxLength": 100},
                "signature": {"type": "string", "maxLength": 200},
            },
        },
    ),
    Route(
        "GET",
        f"{API}/commands/requests/{{id}}",
        "authority_request",
        Permission.READ,
        "One request: the document, its SHA-256, approvals, rejection and the OT node's outcome.",
        example=f"{API}/commands/requests/nosuchrequest",
        params=(REQUEST_ID,),
    ),
    Route(
        "POST",
        f"{API}/commands/requests/{{id}}/approve",
        "authority_approve",
        Permission.COMMAND_APPROVE,
        "Approve: the approver's Ed25519 signature of the request's SHA-256, made on their side.",
        example=f"{API}/commands/requests/nosuchrequest/approve",
        params=(REQUEST_ID,),
        body=SIGNED,
    ),
    Route(
        "POST",
        f"{API}/commands/requests/{{id}}/reject",
        "authority_reject",
        Permission.COMMAND_REQUEST,
        "Stop a pending or approved request, with a reason (optionally signed).",
        example=f"{API}/commands/requests/nosuchrequest/reject",
        params=(REQUEST_ID,),
        body={
            "type": "object",
            "required": ["reason"],
            "additionalProperties": False,
            "properties": {
                "reason": {"type": "string", "minLength": 1, "maxLength": 2000, "pattern": r"\S"},
                "fingerprint": {"type": "string", "maxLength": 100},
                "signature": {"type": "string", "maxLength": 200},
            },
        },
    ),
    Route(
        "GET",
        f"{API}/keys",
        "authority_keys",
        Permission.READ,
        "The public keys enrolled on this node, by person and fingerprint.",
        response=LIST_PAGE,
    ),
    Route(
        "GET",
        f"{API}/contract/proposals",
        "authority_proposals",
        Permission.READ,
        "Contract proposals, newest first: changes in words, who must approve, who has.",
        response=LIST_PAGE,
    ),
    Route(
        "POST",
        f"{API}/contract/proposals",
        "authority_propose",
        Permission.CONTRACT_CHANGE,
        "Propose a changed contract (its full text); a new revision voids approvals of earlier ones.",
        body={
            "type": "object",
            "required": ["text"],
            "additionalProperties": False,
            "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 200000}},
        },
    ),
    Route(
        "GET",
        f"{API}/contract/proposals/{{revision}}",
        "authority_proposal",
        Permission.READ,
        "One proposal with its text and the bundle hash its approvers sign.",
        example=f"{API}/contract/proposals/r999999",
        params=(REVISION,),
    ),
    Route(
        "POST",
        f"{API}/contract/proposals/{{revision}}/approve",
        "authority_approve_proposal",
        Permission.CONTRACT_CHANGE,
        "Approve a proposal: the approver's signature of its bundle hash.",
        example=f"{API}/contract/proposals/r999999/approve",
        params=(REVISION,),
        body=SIGNED,
    ),
    Route(
        "GET",
        f"{API}/audit",
        "authority_audit",
        Permission.READ,
        "The hash-chained audit log, newest first, and whether the chain verifies.",
        params=(
            _q("kind", {"type": "string"}, "Kinds starting with this, e.g. 'command.' or 'login'."),
            _q("before", {"type": "integer", "minimum": 1, "maximum": 2**62}, "Records before this sequence number."),
            LIMIT,
        ),
        response={
            "type": "object",
            "required": ["items", "verification"],
            "properties": {
                "items": {"type": "array", "items": OBJ},
                "next": {"type": ["integer", "null"]},
                "verification": OBJ,
            },
        },
    ),
)

SESSION_ID = _p("id", "The break-glass session id.")
#: The session document break-glass prepare returns (otseam.control.authority.breakglass.session_body).
SESSION: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "person", "reason", "opened", "expires", "node"],
    "properties": {
        **{name: _TEXT for name in ("id", "person", "reason", "node")},
        **{name: _MS for name in ("opened", "expires")},
    },
}
_SIGNED_PROPS = SIGNED["properties"]
_REASON: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 2000, "pattern": r"\S"}


def _strict(properties: dict[str, Any]) -> dict[str, Any]:
    """A JSON body of exactly these fields, all required."""
    return {"type": "object", "required": list(properties), "additionalProperties": False, "properties": properties}


#: Handlers named ``breakglass_*`` are served by otseam.control.breakglass_api (on an OT node; elsewhere
#: they answer 403, as break-glass itself refuses).
BREAKGLASS_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        f"{API}/breakglass",
        "breakglass_sessions",
        Permission.READ,
        "Break-glass sessions on this node, newest first: active ones, and reviews still open.",
        response=LIST_PAGE,
    ),
    Route(
        "POST",
        f"{API}/breakglass/prepare",
        "breakglass_prepare",
        Permission.BREAK_GLASS,
        "The session document an OT person signs to open break-glass (nothing is stored).",
        body=_strict({"reason": _REASON, "duration_s": {"type": "number", "minimum": 1, "maximum": 3600}}),
    ),
    Route(
        "POST",
        f"{API}/breakglass",
        "breakglass_open",
        Permission.BREAK_GLASS,
        "Open a break-glass session: the document signed by its person; raises a high-severity alert.",
        body=_strict({"session": SESSION, **_SIGNED_PROPS}),
    ),
    Route(
        "POST",
        f"{API}/breakglass/{{id}}/execute",
        "breakglass_execute",
        Permission.BREAK_GLASS,
        "Write a declared command through one's own open session (range checked, read before and back).",
        example=f"{API}/breakglass/nosuchsession/execute",
        params=(SESSION_ID,),
        body=_strict(
            {"command": {"type": "string", "minLength": 1, "maxLength": 200}, "value": SCALAR, "observed": SCALAR}
        ),
    ),
    Route(
        "POST",
        f"{API}/breakglass/{{id}}/review",
        "breakglass_review",
        Permission.BREAK_GLASS_REVIEW,
        "Close the review of a session: the seam owner's note and signature over the session document.",
        example=f"{API}/breakglass/nosuchsession/review",
        params=(SESSION_ID,),
        body=_strict({"note": _REASON, **_SIGNED_PROPS}),
    ),
)

ROUTES: tuple[Route, ...] = (
    # --- open --------------------------------------------------------------------------------------
    Route("GET", "/health", "", Open.PUBLIC, "Liveness and component states (no data values).", api=False),
    Route("GET", "/metrics", "", Open.METRICS, "Prometheus metrics (bearer token when configured).", api=False),
    Route("GET", "/", "index", Open.ANONYMOUS, "The console.", api=False),
    Route("GET", "/static/{name}", "static", Open.ANONYMOUS, "The console's own files.", "/static/app.js", api=False),
    Route(
        "GET",
        "/vendor/uplot/{name}",
        "vendor",
        Open.ANONYMOUS,
        "uPlot, from npm.",
        "/vendor/uplot/uPlot.min.css",
        api=False,
    ),
    Route(
        "GET",
        f"{API}/banner",
        "banner",
        Open.ANONYMOUS,
        "The login banner (no plant data).",
        response={"type": "object", "required": ["banner"], "properties": {"banner": {"type": "string"}}},
    ),
    Route(
        "POST",
        f"{API}/login",
        "login",
        Open.ANONYMOUS,
        "Sign in; sets the session cookie, returns the CSRF token.",
        body={
            "type": "object",
            "required": ["user", "password"],
            "additionalProperties": False,
            "properties": {"user": {"type": "string"}, "password": {"type": "string"}, "totp": {"type": "string"}},
        },
    ),
    # --- signed in ---------------------------------------------------------------------------------
    Route("POST", f"{API}/logout", "logout", Permission.READ, "End this session."),
    Route("GET", f"{API}/session", "session", Permission.READ, "Who is signed in, their role and CSRF token."),
    Route("GET", f"{API}/openapi.json", "openapi", Permission.READ, "This description."),
    Route("GET", f"{API}/contract", "contract", Permission.READ, "The contract in force, as JSON."),
    Route(
        "GET",
        f"{API}/contract/document",
        "document",
        Permission.READ,
        "The interface document of `seam doc` (HTML).",
        response={"type": "string"},
    ),
    Route("GET", f"{API}/nodes", "nodes", Permission.READ, "The nodes and their health.", response=LIST_PAGE),
    Route("GET", f"{API}/zones", "zones", Permission.READ, "Zones by Purdue level, with health.", response=LIST_PAGE),
    Route(
        "GET",
        f"{API}/conduits",
        "conduits",
        Permission.READ,
        "Conduits with direction, live rate and whether traffic is declared and seen.",
        response=LIST_PAGE,
    ),
    Route(
        "GET",
        f"{API}/devices",
        "devices",
        Permission.READ,
        "Devices with their state.",
        response=LIST_PAGE,
        params=(_q("zone", {"type": "string"}, "Only this zone."),),
    ),
    Route(
        "GET",
        f"{API}/points",
        "points",
        Permission.READ,
        "Points with live value, quality and age.",
        params=(
            _q("device", {"type": "string"}, "Only this device."),
            _q("q", {"type": "string"}, "Text the key contains."),
            _q(
                "quality",
                {"type": "string", "enum": ["good", "stale", "uncertain", "bad-comm", "bad-config", "bad-device"]},
                "Only this quality.",
            ),
            _q("offset", {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0}, "Skip this many."),
            LIMIT,
        ),
        response={
            "type": "object",
            "required": ["items", "total"],
            "properties": {"items": {"type": "array", "items": POINT}, "total": {"type": "integer"}},
        },
    ),
    Route(
        "GET",
        f"{API}/points/{{device}}/{{point}}/history",
        "history",
        Permission.READ,
        "History of one point from the node's historian: raw rows, or min/max/avg per bucket.",
        example=f"{API}/points/nosuch/point/history",
        params=(
            _p("device", "Device id."),
            _p("point", "Point id."),
            _q("from", TIME, "Start: ISO-8601 (UTC without an offset), '-1h', 'now' or Unix seconds (default -1h)."),
            _q("to", TIME, "End, exclusive (default now); a range that ends before it starts is empty."),
            _q(
                "bucket",
                {"type": "string", "pattern": r"^[1-9][0-9]{0,3}(ms|s|min|h|d)$"},
                "Bucket width, e.g. '1min'; raw rows without it.",
            ),
            _q("limit", {"type": "integer", "minimum": 1, "maximum": 500000, "default": 100000}, "Raw rows at most."),
        ),
    ),
    Route(
        "GET",
        f"{API}/alerts",
        "alerts",
        Permission.READ,
        "Monitor alerts and process alarms, newest first.",
        params=(
            _q("unacknowledged", {"type": "boolean"}, "Only those not acknowledged."),
            _q("severity", {"type": "string", "enum": ["info", "low", "medium", "high", "critical"]}, "At least."),
            BEFORE,
            LIMIT,
        ),
        response=LIST_PAGE,
    ),
    Route(
        "POST",
        f"{API}/alerts/{{offset}}/ack",
        "ack",
        Permission.ACK,
        "Acknowledge an alert, with a comment.",
        example=f"{API}/alerts/999999999/ack",
        params=(
            {
                "name": "offset",
                "in": "path",
                "required": True,
                "schema": {"type": "integer", "minimum": 0, "maximum": 2**62},
            },
        ),
        body={
            "type": "object",
            "required": ["comment"],
            "additionalProperties": False,
            "properties": {"comment": {"type": "string", "minLength": 1, "maxLength": 2000, "pattern": r"\S"}},
        },
    ),
    Route(
        "GET",
        f"{API}/events",
        "events",
        Permission.READ,
        "Every event the journal carried, newest first.",
        params=(_q("kind", {"type": "string"}, "Kinds starting with this, e.g. 'diode.'."), BEFORE, LIMIT),
        response=LIST_PAGE,
    ),
    Route(
        "GET",
        f"{API}/inventory",
        "inventory",
        Permission.READ,
        "Assets seen on the network against the devices declared; unknown assets first.",
        response=LIST_PAGE,
    ),
    Route("GET", f"{API}/link", "link", Permission.READ, "The diode link: rate, FEC margin, gaps and replays."),
    Route("GET", f"{API}/health", "health", Permission.READ, "Health of this node's components."),
    Route(
        "GET",
        f"{API}/stream",
        "stream",
        Permission.READ,
        "Server-sent events: values, events, and a tick every second.",
        api=False,
    ),
    Route("GET", f"{API}/tokens", "tokens", Permission.TOKENS, "Your API tokens (every token for an admin)."),
    Route(
        "POST",
        f"{API}/tokens",
        "create_token",
        Permission.TOKENS,
        "Create an API token; the secret is shown once.",
        body={
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": r"\S"},
                "scopes": {"type": "array", "items": {"type": "string", "enum": ["read", "alerts.ack"]}},
                "expires_in": {"type": "number", "minimum": 1, "maximum": 999_999_999},
            },
        },
    ),
    Route(
        "DELETE",
        f"{API}/tokens/{{token}}",
        "revoke_token",
        Permission.TOKENS,
        "Revoke an API token.",
        example=f"{API}/tokens/0000000000000000",
        params=(_p("token", "Token id."),),
    ),
    Route("GET", f"{API}/users", "users", Permission.ADMIN, "The node's users.", response=LIST_PAGE),
    # --- the authority: command requests, approvals, change control and the audit log -------------
    *AUTHORITY_ROUTES,
    # --- break-glass (OT node) --------------------------------------------------------------------
    *BREAKGLASS_ROUTES,
)


def by_key() -> dict[tuple[str, str], Route]:
    return {(r.method, r.path): r for r in ROUTES}
