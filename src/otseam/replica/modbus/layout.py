"""Where each replicated point lives in the replica's Modbus map, and how its value becomes registers.

By default a point keeps the unit id, table, address, type and byte order the contract gives it on the
OT side, so an IT client reads the replica exactly as it would have read the PLC. ``options.units``
moves a device to another unit id and ``options.remap`` moves a point to another address (for example
when two PLCs both use unit 1 and share one replica).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from otseam.contract.models import INTEGER_RANGES, Contract, Device, Point
from otseam.contract.units import ModbusAddress, ModbusTable, parse_modbus_address
from otseam.sim.encoding import encode, register_count


class LayoutError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Slot:
    key: str
    unit: int
    address: ModbusAddress
    type: str
    byte_order: str
    length: int | None
    factor: float
    offset: float

    @property
    def table(self) -> ModbusTable:
        return self.address.table

    @property
    def size(self) -> int:
        if self.address.is_bit_table or self.address.bit is not None:
            return 1
        return register_count(self.type, self.length)

    def registers(self, value: object) -> list[int] | None:
        """The raw registers for an engineering value (scaling undone); None if it cannot be represented."""
        if value is None:
            return None
        if isinstance(value, bool):
            value = int(value)  # a bool in a register is 0 or 1
        if self.type == "string":
            return encode("string", str(value), "ABCD", self.length) if isinstance(value, str) else None
        if not isinstance(value, int | float):
            return None
        raw = (float(value) - self.offset) / self.factor if self.factor else float("nan")
        if not math.isfinite(raw) and self.type not in ("float32", "float64"):
            return None
        if self.type in INTEGER_RANGES:
            low, high = INTEGER_RANGES[self.type]
            number = round(raw)
            if not low <= number <= high:
                return None
            return encode(self.type, number, self.byte_order)  # type: ignore[arg-type]
        if self.type == "float32" and math.isfinite(raw) and abs(raw) > 3.4028234663852886e38:
            return None
        return encode(self.type, raw, self.byte_order)  # type: ignore[arg-type]

    def bit(self, value: object) -> bool | None:
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and math.isfinite(value):
            return value != 0
        return None


def _slot(device: Device, point: Point, unit: int, remap: dict[str, Any]) -> Slot | None:
    key = device.key(point)
    text = remap.get(key, point.address)
    try:
        address = parse_modbus_address(text)
    except ValueError as exc:
        if key in remap:
            raise LayoutError(f"replica remap of {key}: {exc}") from None
        return None  # not a Modbus point (an OPC UA device, say): not served by this replica
    scale = point.scale
    return Slot(
        key,
        unit,
        address,
        point.type,
        point.byte_order,
        point.length,
        scale.factor if scale else 1.0,
        scale.offset if scale else 0.0,
    )


def build_layout(contract: Contract, options: dict[str, Any]) -> list[Slot]:
    units = options.get("units", {}) or {}
    remap = options.get("remap", {}) or {}
    if not isinstance(units, dict) or not isinstance(remap, dict):
        raise LayoutError("replica options 'units' and 'remap' are mappings (device → unit id, point key → address)")
    known = set(contract.point_keys())
    for key in remap:
        if key not in known:
            raise LayoutError(f"replica remap names {key!r}, which is not a point of the contract")
    slots: list[Slot] = []
    for device in contract.devices:
        unit = units.get(device.id, device.unit if device.unit is not None else 1)
        if not isinstance(unit, int) or not 0 <= unit <= 255:
            raise LayoutError(f"replica unit id for {device.id} must be 0..255, got {unit!r}")
        for point in device.points:
            slot = _slot(device, point, unit, remap)
            if slot is not None:
                slots.append(slot)
    _check_overlaps(slots)
    return slots


def _check_overlaps(slots: list[Slot]) -> None:
    taken: dict[tuple[int, str, int, int | None], str] = {}
    for slot in slots:
        for address in range(slot.address.address, slot.address.address + slot.size):
            place = (slot.unit, slot.table, address, slot.address.bit)
            other = taken.get(place) or taken.get((slot.unit, slot.table, address, None))
            if other:
                raise LayoutError(
                    f"{slot.key} and {other} both occupy unit {slot.unit} {slot.table}:{address} in the replica: "
                    "move one with options.remap or options.units"
                )
            taken[place] = slot.key
        if slot.address.address + slot.size > 65536:
            raise LayoutError(f"{slot.key} runs past the end of the Modbus address space")
