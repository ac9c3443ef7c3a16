"""The ``command_outbox`` source: the DMZ end of the command conduit (see README.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from otseam.sources.command_outbox.options import Options

if TYPE_CHECKING:
    from otseam.contract.models import SourceSpec
    from otseam.core.plugins import PluginContext
    from otseam.sources.command_outbox.source import CommandOutboxSource

__all__ = ["Options", "create"]


def create(spec: SourceSpec, context: PluginContext) -> CommandOutboxSource:
    from otseam.sources.command_outbox.source import CommandOutboxSource

    return CommandOutboxSource(spec, context)
