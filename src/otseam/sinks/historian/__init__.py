"""The local historian sink (``type: historian``): samples and events in an embedded SQLite database.

Query it with ``seam query POINT --from -1h --to now [--bucket 1min]``.
"""

from __future__ import annotations

from otseam.contract.models import SinkSpec
from otseam.core.plugins import PluginContext
from otseam.sinks.historian.options import HistorianConfigError
from otseam.sinks.historian.sink import HistorianSink


def create(spec: SinkSpec, context: PluginContext) -> HistorianSink:
    """Plugin entry point; validates the options without touching the disk (that happens in ``start``)."""
    return HistorianSink(spec, context.data_dir)


__all__ = ["HistorianConfigError", "HistorianSink", "create"]
