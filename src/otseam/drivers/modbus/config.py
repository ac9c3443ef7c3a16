"""The Modbus part of a device's contract entry: endpoint, options, and their validation.

The definitions live in ``options.py`` (which `seam check` reads without loading the driver); this
module is what the driver calls. Errors are :class:`ModbusConfigError` with a message that names the
device and says what to write instead; the supervisor shows it to the user, never a traceback.
"""

from __future__ import annotations

from otseam.contract import plugin_options
from otseam.contract.models import Device
from otseam.drivers.modbus.options import (
    ByteOrder,
    Endpoint,
    Framing,
    ModbusConfigError,
    Options,
    parse_endpoint,
    unit_of,
)

__all__ = [
    "ByteOrder",
    "Endpoint",
    "Framing",
    "ModbusConfigError",
    "Options",
    "parse_endpoint",
    "parse_options",
    "unit_of",
]


def parse_options(device: Device) -> Options:
    return plugin_options.parse(Options, device.options, f"device {device.id}", ModbusConfigError)
