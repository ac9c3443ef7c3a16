"""The ``diode_receive`` source: the IT end of a one-way conduit (see README.md and docs/diode.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from otseam.sources.diode_receive.options import Options

if TYPE_CHECKING:
    from otseam.contract.models import SourceSpec
    from otseam.core.plugins import PluginContext
    from otseam.sources.diode_receive.source import DiodeReceiveSource

__all__ = ["Options", "create"]


def create(spec: SourceSpec, context: PluginContext) -> DiodeReceiveSource:
    """Validates the options and reads the key file; binds nothing until it runs."""
    from otseam.sources.diode_receive.source import DiodeReceiveSource

    return DiodeReceiveSource(spec, context)
