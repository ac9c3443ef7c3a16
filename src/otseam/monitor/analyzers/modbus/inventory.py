"""What Modbus tells the inventory: unit ids a server answers for, function codes used, and the vendor,
product code and revision a device reports by device identification (function 43, MEI 14)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from otseam.monitor.inventory import register_fields

if TYPE_CHECKING:
    from otseam.monitor.inventory import Inventory

register_fields("unit_ids", "function_codes")
_IDENTITY = ("vendor", "product_code", "revision", "product_name", "model_name")


def record(
    inventory: Inventory, client: str, server: str, unit: int, function: int, ts: float, identity: dict[str, str]
) -> None:
    """A Modbus message between ``client`` (master) and ``server``; ``identity``: a 43/14 answer's objects."""
    master = inventory.asset(client, ts)
    slave = inventory.asset(server, ts)
    if master is not None:
        master.add("function_codes", function)
    if slave is not None:
        slave.add("unit_ids", unit)
        slave.add("function_codes", function)
        known = {k: v for k, v in identity.items() if k in _IDENTITY}
        if known:
            inventory.identified(slave, ts, known, f"unit {unit}")
