"""The OpenAPI 3 description of the REST API, built from the route table so the two cannot drift."""

from __future__ import annotations

from typing import Any

from otseam import __version__
from otseam.control.routes import ROUTES, Open

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}

#: What the authority service answers besides (otseam.control.authority.service.AuthorityError).
AUTHORITY_ERRORS = {
    status: {"description": text, "content": {"application/json": {"schema": ERROR}}}
    for status, text in (
        ("409", "Not in this state (expired, already approved, superseded)"),
        ("413", "Body too large"),
        ("422", "Not a valid request (undeclared command, value out of range, not a document)"),
        ("503", "The audit log cannot be written: nothing was done"),
    )
}


def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        if not route.api:
            continue
        operation: dict[str, Any] = {
            "operationId": route.handler,
            "summary": route.summary,
            "parameters": list(route.params),
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {
                        ("text/html" if route.response.get("type") == "string" else "application/json"): {
                            "schema": route.response
                        }
                    },
                },
                "400": {"description": "Bad request", "content": {"application/json": {"schema": ERROR}}},
                "401": {"description": "Not signed in", "content": {"application/json": {"schema": ERROR}}},
                "403": {"description": "Not allowed", "content": {"application/json": {"schema": ERROR}}},
                "404": {"description": "Not found", "content": {"application/json": {"schema": ERROR}}},
            },
        }
        if route.access is Open.ANONYMOUS:
            operation["security"] = []
        else:
            operation["x-seam-permission"] = str(route.access)
        if route.method == "POST" and route.handler == "login":
            operation["responses"]["429"] = {"description": "Throttled or locked out"}
        if route.handler.startswith(("authority_", "breakglass_")):
            operation["responses"].update(AUTHORITY_ERRORS)
        if route.body is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": route.body}}}
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Seam control plane",
            "version": __version__,
            "description": "The REST API of a Seam node. Sign in at /api/v1/login (session cookie; send the "
            "CSRF token as X-CSRF-Token on changes) or use an API token as 'Authorization: Bearer seam_...'.",
        },
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "seam_session"},
                "token": {"type": "http", "scheme": "bearer"},
            }
        },
        "security": [{"session": []}, {"token": []}],
        "paths": paths,
    }
