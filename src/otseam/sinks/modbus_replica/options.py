"""The options of a ``modbus_replica`` sink, as ``seam check`` and the sink itself read them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` (also ``tcp://host:port``) → (host, port)."""
    text = value.strip()
    if text.startswith("tcp://"):
        text = text[len("tcp://") :]
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: write the address to serve on as host:port, e.g. 0.0.0.0:502")
    return host.strip("[]"), int(port)


class Options(BaseModel):
    """A read-only Modbus/TCP server answering from replicated values. See README.md in this folder."""

    model_config = ConfigDict(extra="forbid")

    #: host:port the IT side's Modbus clients connect to.
    listen: str = "127.0.0.1:5020"
    #: ``exception``: a value that is not good (or while the link is down) is answered with exception
    #: 04; ``last-value``: the last value is served anyway (for clients that cannot cope).
    quality_policy: Literal["exception", "last-value"] = "exception"
    #: device id → the unit id it answers as on the replica.
    units: dict[str, Annotated[int, Field(ge=0, le=255)]] = Field(default_factory=dict)
    #: point key → the address it is served at ("hr:100").
    remap: dict[str, str] = Field(default_factory=dict)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value
