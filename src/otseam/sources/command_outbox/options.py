"""The options of a ``command_outbox`` source, as ``seam check`` and the source itself read them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from otseam.contract.option_types import ExistingFile


def parse_address(value: Any, what: str = "listen on") -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) → (host, port)."""
    text = str(value).strip()
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: write the address to {what} as host:port, e.g. 10.30.0.5:8443")
    return host.strip("[]"), int(port)


class Options(BaseModel):
    """Serve approved commands to the OT node over mutual TLS. See README.md in this folder."""

    model_config = ConfigDict(extra="forbid")

    #: host:port this DMZ node listens on for the OT node (a port of the command conduit).
    listen: str
    #: This node's certificate and key, and the CA both ends' certificates come from (PEM files).
    cert: ExistingFile
    key: ExistingFile
    ca: ExistingFile
    #: Certificate names (CN) of the OT nodes allowed to fetch; the node ids, by convention.
    allowed_peers: list[str] = Field(min_length=1)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_address(value)
        return value
