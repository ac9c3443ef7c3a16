"""Per-point processing between drivers and the journal: scaling, clamping, deadband, report by
exception with a heartbeat, and limit alarms."""

from otseam.pipeline.pipeline import DeviceStats, Pipeline
from otseam.pipeline.table import PipelineConfigError, PointSlot, compile_table

__all__ = ["DeviceStats", "Pipeline", "PipelineConfigError", "PointSlot", "compile_table"]
