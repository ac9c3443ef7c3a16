"""The simulated devices' memory, and the Modbus application protocol on top of it.

A :class:`RegisterBank` holds one :class:`Unit` per Modbus unit id, each with its own four tables
(coils, discrete inputs, holding registers, input registers). :meth:`RegisterBank.handle_pdu` is pure
protocol: a request PDU in, the response PDU out (or ``None`` when a serial device would stay silent),
with no framing and no I/O. The TCP server wraps it in MBAP framing; an RTU server can wrap the same
bank in RTU framing without touching this module.

Registers are stored as big-endian ``uint16`` numpy arrays, so a read is a slice copied straight onto
the wire. Table sizes are the device's register map: an address past the end is exception 02, as a
real PLC answers for memory it does not have.

Fault knobs that belong to the protocol live here too (they shape the PDU, so an RTU server gets them
for free): :meth:`Unit.add_unmapped` (exception 02 for a hole in the map, so a driver's block
splitting can be tested) and :meth:`Unit.add_exception` (a chosen exception code for an address range).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from otseam.protocols.modbus.tables import (
    ILLEGAL_DATA_ADDRESS,
    ILLEGAL_DATA_VALUE,
    ILLEGAL_FUNCTION,
    MAX_PDU,
    MAX_READ_BITS,
    MAX_READ_REGISTERS,
    MAX_WRITE_BITS,
    MAX_WRITE_REGISTERS,
    READ_DEVICE_ID,
    READ_TABLE,
)
from otseam.protocols.modbus.tables import exception_pdu as exception

Table = Literal["co", "di", "hr", "ir"]
TABLES: Final[tuple[Table, ...]] = ("co", "di", "hr", "ir")

_READ_TABLE: Final[dict[int, Table]] = READ_TABLE  # type: ignore[assignment]

#: Called after a client changed memory: (unit id, table, first address, count).
WriteHook = Callable[[int, Table, int, int], None]

RegisterArray = npt.NDArray[np.uint16]
BitArray = npt.NDArray[np.bool_]


@dataclass(slots=True)
class Identity:
    """What function 43/14 (read device identification) reports."""

    vendor: str = "Seam"
    product_code: str = "SEAM-SIM"
    revision: str = "1.0"
    vendor_url: str = "https://example.invalid/seam"
    product_name: str = "Seam simulated plant"
    model_name: str = "sim"
    application_name: str = ""

    def objects(self) -> list[bytes]:
        """Objects 0x00..0x06 (basic and regular categories), each at most 60 bytes."""
        texts = (
            self.vendor,
            self.product_code,
            self.revision,
            self.vendor_url,
            self.product_name,
            self.model_name,
            self.application_name,
        )
        return [t.encode("ascii", "replace")[:60] for t in texts]


@dataclass(slots=True)
class AddressRange:
    table: Table
    start: int
    stop: int  # exclusive
    code: int = ILLEGAL_DATA_ADDRESS

    def overlaps(self, table: Table, start: int, stop: int) -> bool:
        return self.table == table and start < self.stop and self.start < stop


def _check_table(table: str) -> Table:
    if table not in TABLES:
        raise ValueError(f"{table!r} is not a Modbus table: use one of co, di, hr, ir")
    return table


@dataclass(eq=False)
class Unit:
    """One Modbus device: four tables, a writable mask, identity and protocol faults."""

    unit_id: int
    coils: BitArray
    discrete_inputs: BitArray
    holding: RegisterArray
    inputs: RegisterArray
    identity: Identity = field(default_factory=Identity)
    writable_coils: BitArray = field(init=False)
    writable_holding: BitArray = field(init=False)
    unmapped: list[AddressRange] = field(default_factory=list)
    exceptions: list[AddressRange] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.writable_coils = np.zeros(len(self.coils), dtype=np.bool_)
        self.writable_holding = np.zeros(len(self.holding), dtype=np.bool_)

    @classmethod
    def sized(cls, unit_id: int, coils: int = 0, discrete_inputs: int = 0, holding: int = 0, inputs: int = 0) -> Unit:
        """A unit whose map has exactly these many addresses in each table, all zero."""
        for name, size in (("coils", coils), ("discrete_inputs", discrete_inputs), ("holding", holding)):
            if not 0 <= size <= 65536:
                raise ValueError(f"{name}: a Modbus table has 0 to 65536 addresses, not {size}")
        if not 0 <= inputs <= 65536:
            raise ValueError(f"inputs: a Modbus table has 0 to 65536 addresses, not {inputs}")
        return cls(
            unit_id,
            np.zeros(coils, dtype=np.bool_),
            np.zeros(discrete_inputs, dtype=np.bool_),
            np.zeros(holding, dtype=">u2"),
            np.zeros(inputs, dtype=">u2"),
        )

    # --- memory access for the simulation (not through the protocol) ---------------------------------

    def registers(self, table: Table) -> RegisterArray:
        if table == "hr":
            return self.holding
        if table == "ir":
            return self.inputs
        raise ValueError(f"{table!r} is a bit table, not a register table")

    def bits(self, table: Table) -> BitArray:
        if table == "co":
            return self.coils
        if table == "di":
            return self.discrete_inputs
        raise ValueError(f"{table!r} is a register table, not a bit table")

    def set_registers(self, table: Table, address: int, values: Iterable[int]) -> None:
        data = list(values)
        self.registers(table)[address : address + len(data)] = data

    def get_registers(self, table: Table, address: int, count: int) -> list[int]:
        return [int(v) for v in self.registers(table)[address : address + count]]

    def set_bit(self, table: Table, address: int, value: bool) -> None:
        self.bits(table)[address] = value

    def get_bit(self, table: Table, address: int) -> bool:
        return bool(self.bits(table)[address])

    def set_register_bit(self, table: Table, address: int, bit: int, value: bool) -> None:
        array = self.registers(table)
        word = int(array[address])
        array[address] = (word | (1 << bit)) if value else (word & ~(1 << bit))

    # --- configuration ------------------------------------------------------------------------------

    def mark_writable(self, table: Table, address: int, count: int = 1) -> None:
        """Let clients write here (setpoints). Everything else answers writes with exception 02."""
        if table == "co":
            self.writable_coils[address : address + count] = True
        elif table == "hr":
            self.writable_holding[address : address + count] = True
        else:
            raise ValueError(
                f"{table!r} is read-only in Modbus: only coils (co) and holding registers (hr) are writable"
            )

    def add_unmapped(self, table: str, address: int, count: int) -> None:
        """A hole in the map: any request touching it gets exception 02 (illegal data address)."""
        self.unmapped.append(AddressRange(_check_table(table), address, address + count))

    def add_exception(self, table: str, address: int, count: int, code: int) -> None:
        """Any request touching this range gets exception ``code`` (e.g. 04, server device failure)."""
        if not 1 <= code <= 255:
            raise ValueError(f"exception code {code} is outside 1..255")
        self.exceptions.append(AddressRange(_check_table(table), address, address + count, code))

    def clear_faults(self) -> None:
        self.unmapped.clear()
        self.exceptions.clear()

    def fault(self, table: Table, start: int, stop: int) -> int:
        """The exception code a protocol fault imposes on this range, or 0."""
        for hole in self.unmapped:
            if hole.overlaps(table, start, stop):
                return ILLEGAL_DATA_ADDRESS
        for rule in self.exceptions:
            if rule.overlaps(table, start, stop):
                return rule.code
        return 0


class RegisterBank:
    """All units behind one server, and the protocol that reads and writes them."""

    def __init__(self, units: Iterable[Unit] = (), on_write: WriteHook | None = None) -> None:
        self.units: dict[int, Unit] = {}
        self.on_write = on_write
        for unit in units:
            self.add(unit)

    def add(self, unit: Unit) -> Unit:
        if not 0 <= unit.unit_id <= 255:
            raise ValueError(f"unit id {unit.unit_id} is outside 0..255")
        self.units[unit.unit_id] = unit
        return unit

    def __contains__(self, unit_id: int) -> bool:
        return unit_id in self.units

    def handle_pdu(self, unit_id: int, pdu: bytes) -> bytes | None:
        """Answer one request PDU. ``None`` means no answer (a unit id nobody here has)."""
        unit = self.units.get(unit_id)
        if unit is None or not pdu:
            return None
        function = pdu[0]
        data = pdu[1:]
        if function in _READ_TABLE:
            return _read(unit, function, data)
        if function == 5:
            return self._write_coil(unit, pdu)
        if function == 6:
            return self._write_register(unit, pdu)
        if function == 15:
            return self._write_coils(unit, data)
        if function == 16:
            return self._write_registers(unit, data)
        if function == 43:
            return _device_identification(unit, data)
        return exception(function, ILLEGAL_FUNCTION)

    def _notify(self, unit: Unit, table: Table, address: int, count: int) -> None:
        if self.on_write is not None:
            self.on_write(unit.unit_id, table, address, count)

    def _write_coil(self, unit: Unit, pdu: bytes) -> bytes:
        if len(pdu) != 5:
            return exception(5, ILLEGAL_DATA_VALUE)
        address, value = struct.unpack_from(">HH", pdu, 1)
        if value not in (0x0000, 0xFF00):
            return exception(5, ILLEGAL_DATA_VALUE)
        code = _writable(unit, "co", address, 1)
        if code:
            return exception(5, code)
        unit.coils[address] = value == 0xFF00
        self._notify(unit, "co", address, 1)
        return pdu

    def _write_register(self, unit: Unit, pdu: bytes) -> bytes:
        if len(pdu) != 5:
            return exception(6, ILLEGAL_DATA_VALUE)
        address, value = struct.unpack_from(">HH", pdu, 1)
        code = _writable(unit, "hr", address, 1)
        if code:
            return exception(6, code)
        unit.holding[address] = value
        self._notify(unit, "hr", address, 1)
        return pdu

    def _write_coils(self, unit: Unit, data: bytes) -> bytes:
        if len(data) < 5:
            return exception(15, ILLEGAL_DATA_VALUE)
        address, quantity, byte_count = struct.unpack_from(">HHB", data)
        payload = data[5:]
        if not 1 <= quantity <= MAX_WRITE_BITS or byte_count != (quantity + 7) // 8 or len(payload) != byte_count:
            return exception(15, ILLEGAL_DATA_VALUE)
        code = _writable(unit, "co", address, quantity)
        if code:
            return exception(15, code)
        bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8), bitorder="little")[:quantity]
        unit.coils[address : address + quantity] = bits.astype(np.bool_)
        self._notify(unit, "co", address, quantity)
        return struct.pack(">BHH", 15, address, quantity)

    def _write_registers(self, unit: Unit, data: bytes) -> bytes:
        if len(data) < 5:
            return exception(16, ILLEGAL_DATA_VALUE)
        address, quantity, byte_count = struct.unpack_from(">HHB", data)
        payload = data[5:]
        if not 1 <= quantity <= MAX_WRITE_REGISTERS or byte_count != 2 * quantity or len(payload) != byte_count:
            return exception(16, ILLEGAL_DATA_VALUE)
        code = _writable(unit, "hr", address, quantity)
        if code:
            return exception(16, code)
        unit.holding[address : address + quantity] = np.frombuffer(payload, dtype=">u2")
        self._notify(unit, "hr", address, quantity)
        return struct.pack(">BHH", 16, address, quantity)


def _read(unit: Unit, function: int, data: bytes) -> bytes:
    if len(data) != 4:
        return exception(function, ILLEGAL_DATA_VALUE)
    address, quantity = struct.unpack(">HH", data)
    table = _READ_TABLE[function]
    is_bits = function <= 2
    limit = MAX_READ_BITS if is_bits else MAX_READ_REGISTERS
    if not 1 <= quantity <= limit:
        return exception(function, ILLEGAL_DATA_VALUE)
    stop = address + quantity
    size = len(unit.bits(table)) if is_bits else len(unit.registers(table))
    if stop > size:
        return exception(function, ILLEGAL_DATA_ADDRESS)
    if unit.unmapped or unit.exceptions:
        code = unit.fault(table, address, stop)
        if code:
            return exception(function, code)
    if is_bits:
        packed = np.packbits(unit.bits(table)[address:stop], bitorder="little").tobytes()
        return bytes((function, len(packed))) + packed
    return bytes((function, 2 * quantity)) + unit.registers(table)[address:stop].tobytes()


def _writable(unit: Unit, table: Table, address: int, quantity: int) -> int:
    """0 if a client may write this range, else the exception code to answer."""
    mask = unit.writable_coils if table == "co" else unit.writable_holding
    stop = address + quantity
    if stop > len(mask) or not bool(mask[address:stop].all()):
        return ILLEGAL_DATA_ADDRESS
    return unit.fault(table, address, stop)


_MEI_DEVICE_ID: Final = READ_DEVICE_ID
_CONFORMITY_REGULAR: Final = 0x82  # regular identification, stream and individual access


def _device_identification(unit: Unit, data: bytes) -> bytes:
    if len(data) != 3:
        return exception(43, ILLEGAL_DATA_VALUE)
    mei_type, read_code, object_id = data
    if mei_type != _MEI_DEVICE_ID:
        return exception(43, ILLEGAL_FUNCTION)
    objects = unit.identity.objects()
    if read_code == 4:
        if object_id >= len(objects):
            return exception(43, ILLEGAL_DATA_ADDRESS)
        wanted = [object_id]
    elif read_code in (1, 2, 3):
        last = 3 if read_code == 1 else len(objects)
        # An object id outside the category restarts the stream at 0, as the specification asks.
        first = object_id if object_id < last else 0
        wanted = list(range(first, last))
    else:
        return exception(43, ILLEGAL_DATA_VALUE)
    # A PDU holds 253 bytes: objects that do not fit are announced with "more follows" and the id to
    # ask for next, and the client asks again from there.
    room = MAX_PDU - 7
    sent: list[bytes] = []
    next_id = 0
    for index in wanted:
        item = bytes((index, len(objects[index]))) + objects[index]
        if len(item) > room:
            next_id = index
            break
        sent.append(item)
        room -= len(item)
    more = 0xFF if next_id else 0x00
    header = bytes((43, _MEI_DEVICE_ID, read_code, _CONFORMITY_REGULAR, more, next_id, len(sent)))
    return header + b"".join(sent)
