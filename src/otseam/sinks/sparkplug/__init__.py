"""Sparkplug B 3.0 edge node sink: ``type: sparkplug`` in the contract (see README.md)."""

from __future__ import annotations

from otseam.contract.models import SinkSpec
from otseam.core.plugins import PluginContext
from otseam.sinks.sparkplug.edge import SparkplugSink
from otseam.sinks.sparkplug.settings import parse_options

__all__ = ["SparkplugSink", "create"]


def create(spec: SinkSpec, context: PluginContext) -> SparkplugSink:
    """Raises MqttConfigError (a ValueError) with a clear message when the options are wrong."""
    return SparkplugSink(
        spec, context, parse_options(spec.options, sink_id=spec.id, contract_path=context.contract_path)
    )
