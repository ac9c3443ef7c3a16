"""Which address syntax each driver speaks.

A point's ``address`` only means something to its device's driver. The loader checks addresses while
reading the contract, so a mistyped register or node id is caught with its position rather than at
3 a.m. when the gateway first polls it.

Modbus and OPC UA syntaxes are built in. Any other driver package may expose
``parse_address(text) -> object`` raising ``ValueError`` with a readable message, and the loader uses
it: adding a protocol means adding a folder, not editing this file. Drivers with neither are not
address-checked; rule DATA-003 says so.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable

from otseam.contract.units import parse_modbus_address, parse_node_id

AddressParser = Callable[[object], object]

#: driver name → parser that raises ValueError with a readable message.
ADDRESS_PARSERS: dict[str, AddressParser] = {
    "modbus": parse_modbus_address,
    "opcua": parse_node_id,
}

ADDRESS_EXAMPLES: dict[str, str] = {
    "modbus": "'hr:100', 'ir:0', 'co:5', 'di:12' or 'hr:100.3'",
    "opcua": "'ns=2;s=Tank.Level' or 'ns=3;i=1001'",
}

#: Only names that can be a driver package are imported: the name comes straight from the file.
_MODULE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")


@functools.lru_cache(maxsize=64)
def parser_for(driver: str) -> AddressParser | None:
    """The address parser of ``driver``, or None when Seam cannot check its addresses."""
    if driver in ADDRESS_PARSERS:
        return ADDRESS_PARSERS[driver]
    if not _MODULE_NAME.match(driver):
        return None
    try:
        module = importlib.import_module(f"otseam.drivers.{driver}")
    except Exception:  # no such driver, or one that does not import: the rules report it
        return None
    hook = getattr(module, "parse_address", None)
    return hook if callable(hook) else None


def address_hint(driver: str) -> str:
    if driver in ADDRESS_EXAMPLES:
        return f"a '{driver}' device takes addresses such as {ADDRESS_EXAMPLES[driver]}"
    return f"see the README of the '{driver}' driver for the form of its addresses"


def check_address(driver: str, address: object) -> str | None:
    """The problem with ``address`` for ``driver``, or None if it is fine or cannot be checked."""
    parser = parser_for(driver)
    if parser is None:
        return None
    try:
        parser(address)
    except ValueError as exc:
        return str(exc)
    except Exception:  # a driver's own parser failing is its bug, not the user's; the driver reports it
        return None
    return None
