"""Publisher to NATS JetStream for a fleet of sites: ``type: nats`` in the contract (see README.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from otseam.sinks.nats.options import Options

if TYPE_CHECKING:
    from otseam.contract.models import SinkSpec
    from otseam.core.plugins import PluginContext
    from otseam.sinks.nats.sink import NatsSink

__all__ = ["Options", "create"]


def create(spec: SinkSpec, context: PluginContext) -> NatsSink:
    """Validates the options (files named must exist); connects only when it first delivers.
    Raises MissingExtra naming ``otseam[nats]`` when the NATS client is not installed."""
    from otseam.core.extras import load

    load("nats", f"the nats sink {spec.id}", "nats")
    from otseam.sinks.nats.sink import NatsSink, parse_options

    return NatsSink(spec, context, parse_options(spec.options, sink_id=spec.id, contract_path=context.contract_path))
