"""Records that flow through Seam, and the small interfaces that plugins implement."""

from otseam.core.records import Batch, Event, Quality, Record, Sample, Severity, device_state, now

__all__ = ["Batch", "Event", "Quality", "Record", "Sample", "Severity", "device_state", "now"]
