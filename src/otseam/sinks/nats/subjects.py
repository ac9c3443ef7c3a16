"""Subjects under the site's ISA-95 path, and the escaping of what NATS forbids in a token.

Samples:  ``<prefix>.<enterprise>.<site>[.<area>][.<line>].<device>.<point>`` (message: sample), or
          ``<prefix>.<enterprise>.<site>[.<area>][.<line>].<device>`` (message: device)
Events:   ``<prefix>.<enterprise>.<site>[.<area>][.<line>]._events.<kind, one token per dot>``

Contract ids never contain a dot, a wildcard or white space and never start with ``_``, so ``_events``
cannot collide with a device and contract points map one to one. Point keys that arrive from elsewhere
(a Sparkplug host, a diode from another contract) may hold anything: every byte NATS forbids or gives a
meaning in a token (``.``, ``*``, ``>``, white space, control characters, non-ASCII) and ``%`` itself is
written ``%XX`` (the UTF-8 bytes in hex), so the mapping is reversible (:func:`unescape`) and a key
can never reach another point's subject or become a wildcard. ``/`` separates the levels of a point key
(``device/point``) and becomes ``.``; an empty level becomes ``%``.
"""

from __future__ import annotations

import re

_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-:+=,;@!~()[]{}'\"^&|<?#`\\")
_ESCAPED = re.compile(r"%([0-9A-F]{2})")
EVENTS = "_events"


def escape(token: str) -> str:
    """One subject token for ``token`` (any text)."""
    if token and all(c in _SAFE for c in token):
        return token
    if not token:
        return "%"
    out = []
    for char in token:
        if char in _SAFE:
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
    return "".join(out)


def unescape(token: str) -> str:
    """The text :func:`escape` made ``token`` from."""
    if token == "%":
        return ""
    if "%" not in token:
        return token
    raw = bytearray()
    position = 0
    for match in _ESCAPED.finditer(token):
        raw += token[position : match.start()].encode()
        raw.append(int(match.group(1), 16))
        position = match.end()
    raw += token[position:].encode()
    return raw.decode("utf-8", "surrogatepass")


class Subjects:
    """The subjects one site publishes on."""

    def __init__(self, prefix: str, site_path: list[str]) -> None:
        self.root = ".".join([prefix, *map(escape, site_path)])
        self._points: dict[str, str] = {}
        self._devices: dict[str, str] = {}

    def point(self, key: str) -> str:
        subject = self._points.get(key)
        if subject is None:
            subject = self._points[key] = f"{self.root}.{'.'.join(map(escape, key.split('/')))}"
        return subject

    def device(self, key: str) -> str:
        """The subject of a device's runs of samples (the first level of the point key)."""
        device = key.split("/", 1)[0]
        subject = self._devices.get(device)
        if subject is None:
            subject = self._devices[device] = f"{self.root}.{escape(device)}"
        return subject

    def event(self, kind: str) -> str:
        return f"{self.root}.{EVENTS}.{'.'.join(map(escape, kind.split('.')))}"

    def wildcard(self) -> str:
        """Everything this site publishes (the site stream's subject)."""
        return f"{self.root}.>"
