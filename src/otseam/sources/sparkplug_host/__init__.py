"""The ``sparkplug_host`` source: a Sparkplug B primary host application (see README.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from otseam.sources.sparkplug_host.options import Options

if TYPE_CHECKING:
    from otseam.contract.models import SourceSpec
    from otseam.core.plugins import PluginContext
    from otseam.sources.sparkplug_host.source import SparkplugHostSource

__all__ = ["Options", "create"]


def create(spec: SourceSpec, context: PluginContext) -> SparkplugHostSource:
    from otseam.sources.sparkplug_host.source import SparkplugHostSource

    return SparkplugHostSource(spec, context)
