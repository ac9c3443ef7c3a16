"""Data rules (DATA-*): a point's declaration makes sense for its driver and its own other settings."""

from __future__ import annotations

from collections.abc import Iterator

from otseam.contract.addresses import ADDRESS_PARSERS, parser_for
from otseam.contract.loader import LoadedContract
from otseam.contract.rules.registry import Hit, Severity, rule
from otseam.contract.units import parse_modbus_address

#: Registers (16 bits each) a Modbus value of each type occupies.
REGISTER_WIDTH = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4, "float64": 4}


def _width(data_type: str, length: int | None) -> int:
    """Registers a value occupies: its type's width, or its declared length for a string."""
    if data_type == "string":
        return length or 1
    return REGISTER_WIDTH.get(data_type, 1)


@rule(
    "DATA-001",
    Severity.ERROR,
    "A Modbus point's type fits its address",
    "coils, discrete inputs and register bits ('hr:7.3') are 'bool'; a 'string' needs 'length' in registers",
)
def modbus_type_fits(loaded: LoadedContract) -> Iterator[Hit]:
    for i, device in enumerate(loaded.contract.devices):
        if device.driver != "modbus":
            continue
        for j, point in enumerate(device.points):
            address = parse_modbus_address(point.address)  # the loader has already refused bad ones
            bit_sized = address.is_bit_table or address.bit is not None
            if bit_sized and point.type != "bool":
                yield Hit(
                    ("devices", i, "points", j, "type"),
                    f"point '{device.key(point)}' at '{address}' is a single bit but is declared '{point.type}'",
                )
            elif point.type == "string" and point.length is None:
                yield Hit(("devices", i, "points", j), f"string point '{device.key(point)}' has no 'length'")
            elif not bit_sized and address.address + _width(point.type, point.length) > 65536:
                yield Hit(
                    ("devices", i, "points", j, "address"),
                    f"point '{device.key(point)}' ({point.type}) runs past the last register 65535",
                )


@rule(
    "DATA-002",
    Severity.ERROR,
    "A deadband given in percent has a range to be a percentage of",
    "add 'range: {low: ..., high: ...}' to the point, or give the deadband in the point's unit",
)
def percent_deadband_needs_range(loaded: LoadedContract) -> Iterator[Hit]:
    for i, device in enumerate(loaded.contract.devices):
        for j, point in enumerate(device.points):
            if point.deadband and point.deadband.percent is not None and point.range is None:
                yield Hit(
                    ("devices", i, "points", j, "deadband"),
                    f"point '{device.key(point)}' has a percent deadband but no range",
                )


@rule(
    "DATA-003",
    Severity.WARNING,
    "Every device uses a driver whose addresses Seam can check",
    f"built in: {', '.join(sorted(ADDRESS_PARSERS))}; a driver package can expose parse_address(text) to be checked "
    "too; until then the driver validates its addresses when it starts",
)
def driver_addresses_checked(loaded: LoadedContract) -> Iterator[Hit]:
    for i, device in enumerate(loaded.contract.devices):
        if device.points and parser_for(device.driver) is None:
            yield Hit(
                ("devices", i, "driver"),
                f"addresses of device '{device.id}' (driver '{device.driver}') were not checked",
            )


@rule(
    "DATA-004",
    Severity.WARNING,
    "A command's value range lies inside its point's range and clamp",
    "narrow the command's range, or correct the point's 'range'/'clamp'",
)
def command_range_inside_point(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    for i, command in enumerate(contract.commands):
        found = contract.find_point(command.point)
        if command.range is None or found is None:
            continue
        point = found[1]
        for name, bounds in (("range", point.range), ("clamp", point.clamp)):
            if bounds and (command.range.low < bounds.low or command.range.high > bounds.high):
                yield Hit(
                    ("commands", i, "range"),
                    f"command '{command.id}' allows {command.range.low:g}..{command.range.high:g}, outside the "
                    f"{name} {bounds.low:g}..{bounds.high:g} of '{command.point}'",
                )
