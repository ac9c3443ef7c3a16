"""What a ``type: postgres`` sink accepts in ``options``; `seam check` and the sink read this one model."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from otseam.contract.option_types import PluginOptions, Text, Whole

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,40}\Z")


class PostgresConfigError(ValueError):
    """A postgres sink's options are wrong; the message says which and how to fix it."""


class Options(PluginOptions):
    #: A libpq connection string or URI; prefer dsn_env so the password stays out of the contract.
    dsn: Text | None = None
    #: The name of an environment variable holding the connection string (read when the sink connects).
    dsn_env: Text | None = None
    #: The PostgreSQL schema for the tables; default the user's search path (usually public).
    schema_: str | None = Field(None, alias="schema")
    #: Prefix of the table names.
    table_prefix: str = "seam_"
    #: Seconds to wait for the server.
    connect_timeout: Whole = Field(10, ge=1, le=3600)

    @field_validator("schema_", "table_prefix")
    @classmethod
    def _sql_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError("lower-case letters, digits and '_', at most 41, starting with a letter or '_'")
        return value

    @field_validator("dsn")
    @classmethod
    def _parsable(cls, value: str | None) -> str | None:
        if value is None:
            return value
        # psycopg's own parser, imported only when a contract has a dsn: the same check the sink makes.
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        try:
            conninfo_to_dict(value)
        except psycopg.ProgrammingError:
            raise ValueError("not a valid PostgreSQL connection string or URI") from None
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Options:
        if bool(self.dsn) == bool(self.dsn_env):
            raise ValueError(
                "give exactly one of 'dsn' or 'dsn_env' (the name of an environment variable holding the "
                "connection string, which keeps the password out of the contract)"
            )
        return self
