"""The one byte encoding of a signed document.

Two parties that sign or check "the same request" must hash the same bytes, so a document is encoded
the way RFC 8785 (JSON Canonicalization Scheme) does for the values we allow: object keys sorted by
their UTF-16 code units, no insignificant whitespace, strings escaped as ECMAScript's JSON.stringify
does. Floats are refused outright: their text form is where implementations disagree (RFC 8785 needs an
exact shortest round-trip printer), so every number a signed document carries is either an integer
(times in milliseconds) or a decimal written as a string ("55.5").
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal, InvalidOperation
from typing import Any

#: The largest integer every JSON reader represents exactly (IEEE 754 double), per RFC 8785 and I-JSON.
MAX_SAFE_INTEGER = 2**53 - 1


class CanonicalError(ValueError):
    """A value that has no canonical encoding (a float, a non-string key, a huge integer...)."""


def _sort_key(key: str) -> list[int]:
    # RFC 8785 3.2.3: sort by UTF-16 code units, not by code points.
    data = key.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise CanonicalError(f"integer {value} is beyond 2**53-1; write it as a decimal string")
        out.append(str(value))
    elif isinstance(value, float):
        raise CanonicalError(f"float {value!r} in a signed document; write it as a decimal string")
    elif isinstance(value, str):
        # ensure_ascii=False keeps non-ASCII as UTF-8, as RFC 8785 asks; json escapes the rest alike.
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    elif isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise CanonicalError(f"object key {key!r} is not a string")
        out.append("{")
        for i, key in enumerate(sorted(value, key=_sort_key)):
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _encode(value[key], out)
        out.append("}")
    else:
        raise CanonicalError(f"{type(value).__name__} has no canonical JSON form")


def canonical(value: Any) -> bytes:
    """The canonical UTF-8 JSON bytes of ``value``."""
    out: list[str] = []
    _encode(value, out)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate is not Unicode text
        raise CanonicalError(f"text that is not valid Unicode: {exc.reason}") from None


def digest(value: Any) -> str:
    """SHA-256 of the canonical encoding, as lowercase hex."""
    return hashlib.sha256(canonical(value)).hexdigest()


def decimal_text(value: object) -> str:
    """A number as the canonical decimal string signed documents carry: "55.5", "-3", "100".

    Accepts ints, decimal strings and floats given by a user (a float is turned into the shortest
    decimal that reads back as it, so 0.1 stays "0.1"). Refuses NaN and infinities.
    """
    if isinstance(value, bool):
        raise CanonicalError("a boolean is not a number")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        raise CanonicalError(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise CanonicalError(f"{value!r} is not a finite number")
    if number == 0:
        return "0"
    text = format(number.normalize(), "f")
    return text
