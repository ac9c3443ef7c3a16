"""The request planner: as few reads as possible, within what the device allows.

Points of one device are grouped by table and poll interval, sorted by address and merged into blocks
of at most 125 registers (2,000 bits) where the gap between neighbours is at most ``max_gap``. A device
that refuses part of a block with exception 02 gets the block split (see :meth:`Block.split`); the
caller replaces the block in the plan, so the split is remembered for as long as the driver runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from otseam.contract.models import Device, Point
from otseam.contract.units import parse_modbus_address
from otseam.drivers.modbus.config import ModbusConfigError, Options, parse_options
from otseam.drivers.modbus.decode import WIDTHS, Decoder, Slot
from otseam.protocols.modbus.tables import TABLE_FUNCTION


@dataclass(slots=True)
class Block:
    """One read request: a table, a start address, a count, and the points it feeds."""

    table: str
    start: int
    count: int
    interval: float
    slots: list[Slot]
    _decoder: Decoder | None = field(init=False, default=None, repr=False, compare=False)

    @property
    def decoder(self) -> Decoder:
        """Built on first use: planning alone (``seam check``) never needs it, or numpy."""
        if self._decoder is None:
            self._decoder = Decoder(self.slots, self.table in ("co", "di"))
        return self._decoder

    @property
    def function(self) -> int:
        return TABLE_FUNCTION[self.table]

    @property
    def label(self) -> str:
        return f"{self.table}:{self.start}+{self.count}"

    def split(self) -> list[Block]:
        """Smaller blocks that avoid whatever part of this one the device refused.

        First split at every gap that was filled (the unmapped addresses are the usual culprits); if
        there is none, split in two halves at a point boundary. A single point cannot be split.
        """
        runs: list[list[Slot]] = [[self.slots[0]]]
        end = self.slots[0].offset + self.slots[0].length
        for slot in self.slots[1:]:
            if slot.offset > end:
                runs.append([slot])
            else:
                runs[-1].append(slot)
            end = max(end, slot.offset + slot.length)
        if len(runs) == 1:
            starts = sorted({s.offset for s in self.slots})
            if len(starts) < 2:
                return [self]
            middle = starts[len(starts) // 2]
            runs = [[s for s in self.slots if s.offset < middle], [s for s in self.slots if s.offset >= middle]]
        return [_block_from(self.table, self.start, self.interval, run) for run in runs]


def _block_from(table: str, base: int, interval: float, slots: Sequence[Slot]) -> Block:
    first = min(s.offset for s in slots)
    last = max(s.offset + s.length for s in slots)
    moved = [Slot(s.key, s.offset - first, s.type, s.order, s.bit, s.length) for s in slots]
    return Block(table, base + first, last - first, interval, moved)


@dataclass(frozen=True, slots=True)
class _Placed:
    address: int
    slot: Slot


def _slot(device: Device, point: Point, options: Options) -> tuple[str, _Placed]:
    where = f"device {device.id}, point {point.id}"
    try:
        address = parse_modbus_address(point.address)
    except ValueError as exc:
        raise ModbusConfigError(f"{where}: {exc}") from None
    order = point.byte_order if "byte_order" in point.model_fields_set else options.byte_order
    if address.is_bit_table:
        if point.type != "bool":
            raise ModbusConfigError(f"{where}: {address} is a single bit, so its type must be bool, not {point.type}")
        length = 1
    elif point.type == "string":
        if point.length is None:
            raise ModbusConfigError(f"{where}: a string needs 'length', the number of registers it occupies")
        length = point.length
    else:
        if address.bit is not None and point.type != "bool":
            raise ModbusConfigError(f"{where}: {address} names one bit, so its type must be bool, not {point.type}")
        length = WIDTHS[point.type]
    if address.address + length > 65536:
        raise ModbusConfigError(f"{where}: {address} with {length} register(s) runs past address 65535")
    slot = Slot(device.key(point), address.address, point.type, order, address.bit, length)
    return address.table, _Placed(address.address, slot)


def plan(device: Device, options: Options | None = None) -> list[Block]:
    """All blocks of a device, grouped by table and poll interval, in address order."""
    options = options or parse_options(device)
    groups: dict[tuple[str, float], list[_Placed]] = {}
    seen: set[str] = set()
    for point in device.points:
        if point.id in seen:
            raise ModbusConfigError(f"device {device.id}: point id {point.id!r} appears twice")
        seen.add(point.id)
        table, item = _slot(device, point, options)
        interval = point.poll if point.poll is not None else device.poll
        if interval <= 0:
            raise ModbusConfigError(f"device {device.id}, point {point.id}: the poll interval must be positive")
        groups.setdefault((table, interval), []).append(item)
    blocks: list[Block] = []
    for (table, interval), placed in sorted(groups.items()):
        limit = options.max_bits_per_read if table in ("co", "di") else options.max_registers_per_read
        placed.sort(key=lambda p: (p.address, p.slot.length))
        current: list[_Placed] = []
        start = end = 0
        for item in placed:
            item_end = item.address + item.slot.length
            if item.slot.length > limit:
                raise ModbusConfigError(
                    f"device {device.id}: point {item.slot.key} needs {item.slot.length} registers, more than one read ({limit})"
                )
            if current and item.address - end <= options.max_gap and max(end, item_end) - start <= limit:
                current.append(item)
                end = max(end, item_end)
                continue
            if current:
                blocks.append(_make(table, interval, start, current))
            current, start, end = [item], item.address, item_end
        if current:
            blocks.append(_make(table, interval, start, current))
    return blocks


def _make(table: str, interval: float, start: int, placed: list[_Placed]) -> Block:
    slots = [Slot(p.slot.key, p.address - start, p.slot.type, p.slot.order, p.slot.bit, p.slot.length) for p in placed]
    return _block_from(table, start, interval, slots)


def requests_per_second(device: Device) -> float:
    """Read requests per second the driver will send to ``device`` when every read succeeds.

    The contract rules compare this with the device's declared ``max_request_rate``.
    """
    return sum(1.0 / block.interval for block in plan(device))
