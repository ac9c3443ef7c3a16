"""The file sink: records appended to a JSON-lines file, exactly once per (source, offset)."""

from __future__ import annotations

from otseam.contract.models import SinkSpec
from otseam.core.plugins import PluginContext
from otseam.sinks.file.sink import FileSink, FileSinkConfigError, record_to_json


def create(spec: SinkSpec, context: PluginContext) -> FileSink:
    """Plugin entry point (``type: file`` in the contract)."""
    return FileSink(spec, context.data_dir)


__all__ = ["FileSink", "FileSinkConfigError", "create", "record_to_json"]
