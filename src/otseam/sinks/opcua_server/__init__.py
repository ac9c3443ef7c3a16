"""OPC UA server sink: ``type: opcua_server`` in the contract (see README.md)."""

from __future__ import annotations

from pydantic import ValidationError

from otseam.contract.models import SinkSpec
from otseam.core.plugins import PluginContext
from otseam.sinks.opcua_server.options import Options
from otseam.sinks.opcua_server.server import OpcUaServerError, OpcUaServerSink

__all__ = ["OpcUaServerError", "OpcUaServerSink", "Options", "create"]


def create(spec: SinkSpec, context: PluginContext) -> OpcUaServerSink:
    """Raises OpcUaServerError (a ValueError) with one clear message when the options are wrong."""
    try:
        options = Options.model_validate(spec.options)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "options"
        raise OpcUaServerError(f"opcua_server {spec.id}: {where}: {first['msg']}") from None
    return OpcUaServerSink(spec, context, options)
