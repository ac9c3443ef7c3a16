"""The read-only Modbus/TCP replica fed from an IT-side journal (see README.md)."""

from otseam.replica.modbus.layout import LayoutError, Slot, build_layout
from otseam.replica.modbus.server import ModbusReplica

__all__ = ["LayoutError", "ModbusReplica", "Slot", "build_layout"]
