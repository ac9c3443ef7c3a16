"""The diode sender as a sink: journal records out through a one-way UDP link (see docs/diode.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from otseam.sinks.diode_send.sink import DiodeSendSink, sink_from_options

if TYPE_CHECKING:
    from otseam.contract.models import SinkSpec
    from otseam.core.plugins import PluginContext

__all__ = ["DiodeSendSink", "create", "sink_from_options"]


def create(spec: SinkSpec, context: PluginContext) -> DiodeSendSink:
    from otseam.journal import Journal
    from otseam.runtime.sinkrunner import RecordFilter
    from otseam.sinks.diode_send.replay import replay_dir

    # The node's journal, when it is one this process can read (inside ``seam run``): replay requests.
    journal = context.journal if isinstance(context.journal, Journal) else None
    return sink_from_options(
        dict(spec.options),
        name=spec.id,
        contract_path=context.contract_path,
        journal=journal,
        replays=replay_dir(context.data_dir, spec.id) if journal is not None else None,
        record_filter=RecordFilter(spec.points, spec.events),
    )
