"""What a ``type: nats`` sink accepts in ``options``; `seam check` and the sink read this one model.

The fleet ingest source reads the same connection options (servers, tls, credentials), so both ends of
the fleet are configured alike.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field, field_validator, model_validator

from otseam.contract.option_types import ExistingFile, Flag, PluginOptions, Seconds, Whole

#: A subject token: what NATS allows in one token and we allow in a prefix (no wildcards, no dots).
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
_SERVER = re.compile(r"^(nats|tls)://[^\s/]+:\d{1,5}\Z")


class TlsOptions(BaseModel, extra="forbid", frozen=True):
    """Verify the server against ``ca``; ``cert`` and ``key`` for mutual TLS. All files, never inline."""

    ca: ExistingFile | None = None
    cert: ExistingFile | None = None
    key: ExistingFile | None = None
    #: Checking the server's name against its certificate is on unless explicitly switched off.
    check_hostname: Flag = True

    @model_validator(mode="after")
    def _pair(self) -> TlsOptions:
        if (self.cert is None) != (self.key is None):
            raise ValueError("mutual TLS needs both cert (the client certificate) and key (its private key)")
        return self


def _servers(value: object) -> object:
    return [value] if isinstance(value, str) else value


class ConnectionOptions(PluginOptions):
    #: Servers tried in turn, as nats://host:port or tls://host:port (the site's leaf node for a sink).
    servers: Annotated[list[str], BeforeValidator(_servers), Field(min_length=1)]
    #: Server verification and mutual TLS, from files.
    tls: TlsOptions | None = None
    #: A user credentials file (JWT and NKey seed, as `nsc` writes it).
    credentials_file: ExistingFile | None = None
    #: An NKey seed file (a user seed, starting with "SU"), for servers configured with nkey users.
    nkey_seed_file: ExistingFile | None = None
    #: A client name the server shows in its connection list.
    name: str | None = None
    #: Seconds to wait for the server's answers (connecting, acknowledgements).
    timeout: Seconds = 10.0

    @field_validator("servers")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not _SERVER.match(url):
                raise ValueError(f"{url!r}: write a server as nats://host:port or tls://host:port")
        return value

    @model_validator(mode="after")
    def _one_identity(self) -> ConnectionOptions:
        if self.credentials_file and self.nkey_seed_file:
            raise ValueError("give credentials_file or nkey_seed_file, not both")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        return self


class Options(ConnectionOptions):
    """Publish the journal to NATS JetStream. See README.md in this folder."""

    #: The first subject token; the site's ISA-95 path follows it.
    subject_prefix: str = "seam"
    #: "device": one message per device per delivery (the journal's column format, many samples);
    #: "sample": one JSON message per sample on the point's own subject.
    message: Literal["device", "sample"] = "device"
    #: When set, every publication says which stream must store it (the server refuses it otherwise).
    stream: str | None = None
    #: Records per delivery (the sink runner reads this).
    max_batch: Whole = Field(5000, ge=1, le=1_000_000)
    #: Publications in flight before the client waits for acknowledgements.
    max_pending: Whole = Field(20000, ge=1, le=1_000_000)

    @field_validator("subject_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not all(_TOKEN.match(token) for token in value.split(".")):
            raise ValueError("tokens of letters, digits, '_' and '-' separated by dots (no wildcards)")
        return value

    @field_validator("stream")
    @classmethod
    def _stream(cls, value: str | None) -> str | None:
        if value is not None and not _TOKEN.match(value):
            raise ValueError("a stream name of letters, digits, '_' and '-'")
        return value
