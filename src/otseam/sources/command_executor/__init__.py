"""The ``command_executor`` source: the OT end of the command conduit (see README.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from otseam.sources.command_executor.options import Options

if TYPE_CHECKING:
    from otseam.contract.models import SourceSpec
    from otseam.core.plugins import PluginContext
    from otseam.sources.command_executor.source import CommandExecutorSource

__all__ = ["Options", "create"]


def create(spec: SourceSpec, context: PluginContext) -> CommandExecutorSource:
    from otseam.sources.command_executor.source import CommandExecutorSource

    return CommandExecutorSource(spec, context)
