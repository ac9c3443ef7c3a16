"""A command request: one canonical document, and what each value in it means.

Everything an approver decides on is in the document, and the document's SHA-256 over its canonical
encoding (canonical.py) is what each of them signs. Changing anything (the value, the reason, a time,
even the contract it was made under) changes the hash, so every signature given before no longer
verifies: an approval counts only for the exact request its author saw.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from otseam.audit.canonical import CanonicalError, decimal_text, digest
from otseam.contract.models import INTEGER_RANGES, Point

Mode = Literal["two-person", "break-glass"]
VERSION = 1


class DocumentError(ValueError):
    """A request document that is malformed (missing fields, values of the wrong kind)."""


def contract_version(path: str | Path) -> str:
    """The contract version a request is made under: the SHA-256 of the contract file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def new_id() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class CommandRequest:
    id: str
    command: str
    point: str
    #: The value to write, in engineering units, as text: "55.5", "true", "-3", or the string itself.
    value: str
    unit: str
    #: The point's value the requester saw (and so every approver): the executor stops if it drifted.
    observed: str
    reason: str
    requester: str
    #: Milliseconds since the epoch (UTC).
    created: int
    #: Approvals are accepted until then.
    approve_by: int
    #: The OT node may execute until then (once every approval is in).
    execute_by: int
    #: SHA-256 of the contract file the request was made under.
    contract: str
    mode: Mode = "two-person"
    version: int = VERSION

    def body(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def digest(self) -> str:
        return digest(self.body())

    @classmethod
    def from_body(cls, body: Any) -> CommandRequest:
        if not isinstance(body, dict):
            raise DocumentError("a request document is a JSON object")
        fields = set(cls.__dataclass_fields__)
        if set(body) != fields:
            missing, extra = fields - set(body), set(body) - fields
            raise DocumentError(
                "request document fields differ: "
                + ", ".join([*(f"missing {m}" for m in sorted(missing)), *(f"unknown {e}" for e in sorted(extra))])
            )
        for name in ("created", "approve_by", "execute_by", "version"):
            if not isinstance(body[name], int) or isinstance(body[name], bool):
                raise DocumentError(f"{name} must be an integer")
        for name in fields - {"created", "approve_by", "execute_by", "version"}:
            if not isinstance(body[name], str):
                raise DocumentError(f"{name} must be text")
        if body["mode"] not in ("two-person", "break-glass"):
            raise DocumentError("mode is two-person or break-glass")
        if body["version"] != VERSION:
            raise DocumentError(f"request document version {body['version']} is not known here (expected {VERSION})")
        return cls(**body)


_TRUE = {"true", "1", "on", "yes"}
_FALSE = {"false", "0", "off", "no"}


def normalise_value(point: Point, value: object) -> str:
    """The canonical text of ``value`` for ``point``'s type, or :class:`DocumentError` saying why not."""
    if point.type == "bool":
        text = str(value).strip().lower() if not isinstance(value, bool) else ("true" if value else "false")
        if text in _TRUE:
            return "true"
        if text in _FALSE:
            return "false"
        raise DocumentError(f"{value!r} is not a boolean for {point.id}: write true or false")
    if point.type == "string":
        if not isinstance(value, str):
            raise DocumentError(f"{point.id} is a string point; give text")
        return value
    try:
        text = decimal_text(value)
    except CanonicalError as exc:
        raise DocumentError(f"{value!r} is not a value for {point.id}: {exc}") from None
    if point.type in INTEGER_RANGES and point.scale is None:
        number = Decimal(text)
        if number != number.to_integral_value():
            raise DocumentError(f"{point.id} is an {point.type}: {text} is not a whole number")
        low, high = INTEGER_RANGES[point.type]
        if not low <= int(number) <= high:
            raise DocumentError(f"{text} does not fit an {point.type} ({low} to {high})")
    return text


def python_value(point: Point, text: str) -> bool | int | float | str:
    """The engineering value a canonical text stands for, as the drivers take it."""
    if point.type == "bool":
        return text == "true"
    if point.type == "string":
        return text
    number = Decimal(text)
    if point.type in INTEGER_RANGES and point.scale is None and number == number.to_integral_value():
        return int(number)
    return float(number)
