"""The diode sender as a sink: journal records out through a one-way UDP link (see docs/diode.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from otseam.sinks.diode_send.sink import DiodeSendSink, sink_from_options

if TYPE_CHECKING:
    from otseam.contract.models import SinkSpec
    from otseam.core.plugins import PluginContext

__all__ = ["DiodeSendSink", "create", "sink_from_options"]


def create(spec: SinkSpec, context: PluginContext) -> DiodeSendSink:
    from otseam.core.plugins import beside_contract

    options = dict(spec.options)
    if isinstance(options.get("key_file"), str):
        options["key_file"] = beside_contract(options["key_file"], context.contract_path)
    return sink_from_options(options, name=spec.id)
