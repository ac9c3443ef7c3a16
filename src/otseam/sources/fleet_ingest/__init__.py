"""The ``fleet_ingest`` source: the hub's NATS fleet stream into PostgreSQL (see README.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from otseam.sources.fleet_ingest.options import Options

if TYPE_CHECKING:
    from otseam.contract.models import SourceSpec
    from otseam.core.plugins import PluginContext
    from otseam.sources.fleet_ingest.source import FleetIngestSource

__all__ = ["Options", "create"]


def create(spec: SourceSpec, context: PluginContext) -> FleetIngestSource:
    """Validates the options; connects only when it runs. Raises MissingExtra naming ``otseam[nats]``
    when the NATS client or the PostgreSQL driver is not installed."""
    from otseam.core.extras import load

    load("nats", f"the fleet_ingest source {spec.id}", "nats")
    load("psycopg", f"the fleet_ingest source {spec.id}", "nats")
    from otseam.sources.fleet_ingest.source import FleetIngestSource

    return FleetIngestSource(spec, context)
