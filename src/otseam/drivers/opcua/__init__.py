"""OPC UA driver: subscriptions (default) or polling of an OPC UA server's variables.

The plugin entry points are :func:`create` (the core calls it for every device with
``driver: opcua``), :func:`requests_per_second` (the contract rules compare it with a device's
declared ``max_request_rate``) and :func:`parse_address` (node ids are checked when the contract is
loaded). See README.md in this folder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from otseam.contract.models import Device
from otseam.contract.units import NodeId, parse_node_id
from otseam.core.plugins import Driver, PluginContext
from otseam.drivers.opcua.config import OpcUaConfigError, requests_per_second

if TYPE_CHECKING:
    from otseam.drivers.opcua.driver import OpcUaDriver

__all__ = ["OpcUaConfigError", "OpcUaDriver", "create", "parse_address", "requests_per_second"]


def create(device: Device, ctx: PluginContext) -> Driver:
    """A driver for ``device``; raises :class:`OpcUaConfigError` (a ``ValueError``) for a bad contract entry."""
    # Imported here, not at the top: `seam check` validates an OPC UA device without asyncua (an extra).
    from otseam.core.extras import load

    driver: Any = load("otseam.drivers.opcua.driver", "the opcua driver", "opcua")
    return driver.OpcUaDriver(device, ctx.contract_path if ctx is not None else "")  # type: ignore[no-any-return]


def __getattr__(name: str) -> object:
    if name == "OpcUaDriver":
        from otseam.drivers.opcua.driver import OpcUaDriver

        return OpcUaDriver
    raise AttributeError(name)


def parse_address(text: object) -> NodeId:
    """A point's address: an OPC UA node id such as ``ns=2;s=Tank1.Level`` or ``ns=3;i=1001``."""
    return parse_node_id(text)


def open_writer(device: Device) -> object:
    """The write path for approved commands (see write.py); only the command executor calls it."""
    from otseam.drivers.opcua.write import OpcUaWriter

    return OpcUaWriter(device)
