"""The PostgreSQL historian sink (``type: postgres``): batched COPY, idempotent on (source, offset)."""

from __future__ import annotations

from otseam.contract.models import SinkSpec
from otseam.core.plugins import PluginContext
from otseam.sinks.postgres.options import PostgresConfigError
from otseam.sinks.postgres.sink import PostgresSink, PostgresSinkError


def create(spec: SinkSpec, context: PluginContext) -> PostgresSink:
    """Plugin entry point; checks the options but does not connect (that happens in ``start``)."""
    return PostgresSink(spec)


__all__ = ["PostgresConfigError", "PostgresSink", "PostgresSinkError", "create"]
