"""The options of a ``fleet_ingest`` source, as ``seam check`` and the source itself read them."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from otseam.contract.option_types import Seconds, Text, Whole
from otseam.sinks.nats.options import ConnectionOptions

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,40}\Z")
_STREAM = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


class Options(ConnectionOptions):
    """Store the hub's fleet stream in PostgreSQL. See README.md in this folder."""

    #: The hub's stream that sources every site's stream.
    stream: str = "FLEET"
    #: The durable consumer; every process with the same name shares the work.
    durable: str = "seam-fleet-ingest"
    #: Only these subjects (e.g. "seam.acme.>"); all of the stream when unset.
    filter_subject: str | None = None
    #: A libpq connection string; prefer dsn_env so the password stays out of the contract.
    dsn: Text | None = None
    #: The name of an environment variable holding the connection string.
    dsn_env: Text | None = None
    #: The PostgreSQL schema for the tables; default the user's search path (usually public).
    schema_: str | None = Field(None, alias="schema")
    table_prefix: str = "fleet_"
    #: Messages per fetch (one transaction).
    fetch_batch: Whole = Field(200, ge=1, le=10000)
    #: Seconds the server waits for an acknowledgement before it delivers a message again.
    ack_wait: Seconds = 30.0
    #: Messages delivered and not yet acknowledged, over all processes sharing the consumer.
    max_ack_pending: Whole = Field(20000, ge=1, le=10_000_000)

    @field_validator("schema_", "table_prefix")
    @classmethod
    def _sql_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError("lower-case letters, digits and '_', at most 41, starting with a letter or '_'")
        return value

    @field_validator("stream", "durable")
    @classmethod
    def _stream(cls, value: str) -> str:
        if not _STREAM.match(value):
            raise ValueError("letters, digits, '_' and '-' (a JetStream name)")
        return value

    @model_validator(mode="after")
    def _one_dsn(self) -> Options:
        if bool(self.dsn) == bool(self.dsn_env):
            raise ValueError(
                "give exactly one of 'dsn' or 'dsn_env' (the name of an environment variable holding the "
                "connection string, which keeps the password out of the contract)"
            )
        if self.ack_wait < 1:
            raise ValueError("ack_wait must be at least 1 s (the time to store a fetch)")
        return self
