"""The options of a ``diode_receive`` source, as ``seam check`` and the source itself read them."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import field_validator

from otseam.diode.link_options import LinkOptions


def parse_listen(value: Any) -> tuple[str, int]:
    """``host:port`` (also ``udp://host:port`` and ``[::1]:port``) → (host, port)."""
    text = str(value).strip()
    if text.startswith("udp://"):
        text = text[len("udp://") :]
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: write the address to receive on as host:port, e.g. 0.0.0.0:7400")
    return host.strip("[]"), int(port)


class Options(LinkOptions):
    """Receive a one-way conduit into the node's journal. See README.md in this folder."""

    #: host:port to receive on (the IT end of the diode).
    listen: str
    #: Where the receiver keeps which offsets it has stored (default: beside the journal).
    state: str | None = None

    OWN: ClassVar[frozenset[str]] = frozenset({"listen", "key_file", "state"})

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    def settings_options(self) -> dict[str, Any]:
        """What DiodeSettings.from_options takes: the link settings given, nothing else."""
        return self.link_settings()
