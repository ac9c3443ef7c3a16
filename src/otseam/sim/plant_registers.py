"""The water plant's values in Modbus memory, and Modbus writes back into the plant's setpoints."""

from __future__ import annotations

import logging
import math

from otseam.sim.bank import RegisterBank, Table, Unit
from otseam.sim.encoding import decode, encode, register_count
from otseam.sim.layout import POINTS, UNITS, PlantPoint
from otseam.sim.process import WaterPlant

log = logging.getLogger(__name__)


def _raw(point: PlantPoint, value: float | int | bool | str) -> list[int]:
    """An engineering value as the registers of ``point`` (engineering = raw * factor)."""
    if point.type == "string":
        return encode("string", str(value), length=point.length)
    number = float(value)
    if point.type in ("int16", "uint16", "int32", "uint32"):
        raw = round(number / point.factor)
        bits = 16 if point.type.endswith("16") else 32
        if point.type.startswith("u"):
            raw = min(max(raw, 0), 2**bits - 1)
        else:
            raw = min(max(raw, -(2 ** (bits - 1))), 2 ** (bits - 1) - 1)
        return encode(point.type, raw, point.byte_order)
    return encode(point.type, number / point.factor, point.byte_order)


def _engineering(point: PlantPoint, registers: list[int]) -> float | str:
    raw = decode(point.type, registers, point.byte_order)
    return raw if isinstance(raw, str) else float(raw) * point.factor


class PlantRegisters:
    """Builds the three plant units in a bank, refreshes them each tick, applies client writes."""

    def __init__(self, plant: WaterPlant, bank: RegisterBank) -> None:
        self.plant = plant
        self.bank = bank
        for info in UNITS:
            unit = bank.add(Unit.sized(info.unit, info.coils, info.discrete_inputs, info.holding, info.inputs))
            unit.identity.model_name = info.model
            unit.identity.application_name = info.description
        for point in POINTS:
            if point.writable and point.unit is not None:
                count = 1 if point.type == "bool" else register_count(point.type, point.length)
                bank.units[point.unit].mark_writable(point.table, point.address, count)
        bank.on_write = self.client_wrote
        self.refresh()

    def refresh(self) -> None:
        """Copy every process value into its registers and bits."""
        values = self.plant.values()
        for point in POINTS:
            if point.unit is None:
                continue
            unit = self.bank.units[point.unit]
            value = values[point.name]
            if point.type == "bool" and point.bit is not None:
                unit.set_register_bit(point.table, point.address, point.bit, bool(value))
            elif point.type == "bool":
                unit.set_bit(point.table, point.address, bool(value))
            else:
                unit.set_registers(point.table, point.address, _raw(point, value))

    def client_wrote(self, unit_id: int, table: Table, address: int, count: int) -> None:
        """A Modbus client changed memory: hand every setpoint it touched to the plant."""
        stop = address + count
        for point in POINTS:
            if not point.writable or point.unit != unit_id or point.table != table:
                continue
            size = 1 if point.type == "bool" else register_count(point.type, point.length)
            if point.address >= stop or address >= point.address + size:
                continue
            unit = self.bank.units[unit_id]
            value: float | bool | str
            if point.type == "bool":
                value = unit.get_bit(table, point.address)
            else:
                value = _engineering(point, unit.get_registers(table, point.address, size))
            if isinstance(value, float) and not math.isfinite(value):
                log.warning("ignored a non-finite write to %s", point.name)
                continue
            if isinstance(value, str):
                continue
            applied = self.plant.set(point.name, value)
            log.info("Modbus client set %s to %s", point.name, applied)
        # Show the value actually applied (clamped), as a PLC would after its next scan.
        self.refresh()
