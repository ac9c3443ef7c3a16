"""What OPC UA tells the inventory: the services a server was asked for and its channels' security."""

from __future__ import annotations

from typing import TYPE_CHECKING

from otseam.monitor.inventory import register_fields

if TYPE_CHECKING:
    from otseam.monitor.inventory import Inventory

register_fields("opcua_services", "opcua_security")


def record(inventory: Inventory, client: str, server: str, service: str | None, security: str, ts: float) -> None:
    slave = inventory.asset(server, ts)
    if slave is not None:
        slave.add("opcua_security", security)
        if service:
            slave.add("opcua_services", service)
    inventory.asset(client, ts)
