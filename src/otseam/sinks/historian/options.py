"""What a ``type: historian`` sink accepts in ``options``; `seam check` and the sink read this one model."""

from __future__ import annotations

from pydantic import Field

from otseam.contract.option_types import PluginOptions, Seconds, Text


class HistorianConfigError(ValueError):
    """A historian sink's options are wrong; the message says which and how to fix it."""


class Options(PluginOptions):
    #: The database file; default ``<data dir>/<sink id>.db``. Relative paths are under the data dir.
    path: Text | None = None
    #: How long to keep samples and events, e.g. "90d"; default forever.
    retention: Seconds | None = Field(None, gt=0)
