"""The ``capture`` source: passive OT monitoring of an interface or a capture file (see README.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from otseam.sources.capture.options import Options

if TYPE_CHECKING:
    from otseam.contract.models import SourceSpec
    from otseam.core.plugins import PluginContext
    from otseam.sources.capture.source import CaptureSource

__all__ = ["Options", "create"]


def create(spec: SourceSpec, context: PluginContext) -> CaptureSource:
    """Validates the options; opens nothing until it runs."""
    from otseam.sources.capture.source import CaptureSource

    return CaptureSource.from_spec(spec, context)
