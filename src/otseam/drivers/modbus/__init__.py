"""Modbus driver: Modbus/TCP, RTU over a serial line, and RTU framing over TCP.

The plugin entry points are :func:`create` (the core calls it for every device with
``driver: modbus``) and :func:`requests_per_second` (the contract rules use it to check polling stays
within a device's declared ``max_request_rate``). See README.md in this folder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from otseam.contract.models import Device
from otseam.core.plugins import Driver, PluginContext
from otseam.drivers.modbus.config import ModbusConfigError
from otseam.drivers.modbus.planner import requests_per_second

if TYPE_CHECKING:
    from otseam.drivers.modbus.driver import ModbusDriver

__all__ = ["ModbusConfigError", "ModbusDriver", "create", "requests_per_second"]


def create(device: Device, ctx: PluginContext) -> Driver:
    """A driver for ``device``; raises :class:`ModbusConfigError` (a ``ValueError``) for a bad contract entry."""
    from otseam.drivers.modbus.driver import ModbusDriver  # here: `seam check` needs only the planner

    return ModbusDriver(device, ctx.data_dir)


def __getattr__(name: str) -> object:
    if name == "ModbusDriver":
        from otseam.drivers.modbus.driver import ModbusDriver

        return ModbusDriver
    raise AttributeError(name)


def open_writer(device: Device) -> object:
    """The write path for approved commands (see write.py); only the command executor calls it."""
    from otseam.drivers.modbus.write import ModbusWriter

    return ModbusWriter(device)
