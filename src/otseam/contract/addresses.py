"""Which address syntax each driver speaks.

A point's ``address`` only means something to its device's driver. The loader checks the drivers it
knows here, so a mistyped register or node id is caught when the contract is read, with its position,
rather than at 3 a.m. when the gateway first polls it. Drivers not listed are not address-checked;
rule DATA-003 says so in ``seam check``.
"""

from __future__ import annotations

from collections.abc import Callable

from otseam.contract.units import parse_modbus_address, parse_node_id

#: driver name → parser that raises ValueError with a readable message.
ADDRESS_PARSERS: dict[str, Callable[[object], object]] = {
    "modbus": parse_modbus_address,
    "opcua": parse_node_id,
}

ADDRESS_EXAMPLES: dict[str, str] = {
    "modbus": "'hr:100', 'ir:0', 'co:5', 'di:12' or 'hr:100.3'",
    "opcua": "'ns=2;s=Tank.Level' or 'ns=3;i=1001'",
}


def check_address(driver: str, address: object) -> str | None:
    """The problem with ``address`` for ``driver``, or None if it is fine or the driver is unknown."""
    parser = ADDRESS_PARSERS.get(driver)
    if parser is None:
        return None
    try:
        parser(address)
    except ValueError as exc:
        return str(exc)
    return None
