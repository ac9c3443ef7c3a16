"""Unified Namespace publisher: ``type: uns_json`` in the contract (see README.md)."""

from __future__ import annotations

from otseam.contract.models import SinkSpec
from otseam.core.plugins import PluginContext
from otseam.sinks.uns_json.sink import UnsJsonSink, parse_options

__all__ = ["UnsJsonSink", "create"]


def create(spec: SinkSpec, context: PluginContext) -> UnsJsonSink:
    """Raises MqttConfigError (a ValueError) with a clear message when the options are wrong."""
    return UnsJsonSink(spec, context, parse_options(spec.options, sink_id=spec.id, contract_path=context.contract_path))
