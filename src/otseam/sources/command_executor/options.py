"""The options of a ``command_executor`` source, as ``seam check`` and the source itself read them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from otseam.contract.option_types import ExistingFile


def parse_address(value: Any) -> tuple[str, int]:
    text = str(value).strip()
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: write the DMZ node's address as host:port, e.g. 10.30.0.5:8443")
    return host.strip("[]"), int(port)


class Options(BaseModel):
    """Fetch approved commands from the DMZ node and execute them here. See README.md in this folder."""

    model_config = ConfigDict(extra="forbid")

    #: host:port of the DMZ node's command_outbox. This node connects; it never listens.
    connect: str
    #: The name the DMZ node's certificate carries, when it differs from the host in ``connect``.
    server_name: str | None = None
    #: This node's certificate and key, and the CA (PEM files).
    cert: ExistingFile
    key: ExistingFile
    ca: ExistingFile
    #: Seconds between two fetches.
    interval: Annotated[float, Field(gt=0, le=3600)] = 2.0
    #: IANA time zone the commands' windows are read in (default: this machine's).
    timezone: str | None = None

    @field_validator("connect")
    @classmethod
    def _connect(cls, value: str) -> str:
        parse_address(value)
        return value
