"""What a ``type: file`` sink accepts in ``options``; `seam check` and the sink read this one model."""

from __future__ import annotations

from otseam.contract.option_types import Flag, PluginOptions, Text


class FileSinkConfigError(ValueError):
    """A file sink's options are wrong; the message says which and how to fix it."""


class Options(PluginOptions):
    #: The file to append to; relative paths are inside the data directory.
    path: Text
    #: Flush to disk before a delivery counts.
    fsync: Flag = True
