"""The diode sender as a sink: journal records out through a one-way UDP link (see docs/diode.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from otseam.sinks.diode_send.sink import DiodeSendSink, sink_from_options

if TYPE_CHECKING:
    from otseam.contract.models import SinkSpec
    from otseam.core.plugins import PluginContext

__all__ = ["DiodeSendSink", "create", "sink_from_options"]


def create(spec: SinkSpec, context: PluginContext) -> DiodeSendSink:
    return sink_from_options(dict(spec.options), name=spec.id, contract_path=context.contract_path)
