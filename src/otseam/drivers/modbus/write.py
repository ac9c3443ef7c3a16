"""The Modbus write path, for the command executor only.

Nothing in the polling driver calls this module: a value reaches a PLC only as an approved command,
executed on the OT node (otseam.control.authority). A write is one request, so a multi-register value
lands whole or not at all: function 6 for one register, 16 for several, 5 for a coil. Every data type
and byte/word order the driver reads can be written, encoded exactly as the driver decodes it
(decode.wire_positions). A bit inside a register (``hr:10.3``) is refused: changing it takes a read
and a write, and another master could change the register in between.

Values here are raw (before the contract's scaling); the executor converts engineering units.
"""

from __future__ import annotations

import math
import struct
from contextlib import ExitStack
from types import TracebackType

from otseam.contract.models import INTEGER_RANGES, Device, Point
from otseam.contract.units import parse_modbus_address
from otseam.core.records import Value
from otseam.drivers.modbus.config import parse_endpoint, parse_options, unit_of
from otseam.drivers.modbus.connection import Connection, LineSettings, Unavailable, registry
from otseam.drivers.modbus.decode import wire_positions
from otseam.drivers.modbus.framing import (
    FrameError,
    ModbusException,
    parse_read_response,
    parse_write_response,
    read_request,
    write_multiple_registers_request,
    write_single_coil_request,
    write_single_register_request,
)
from otseam.drivers.modbus.planner import plan
from otseam.drivers.modbus.transport import LinkClosed, RequestTimeout

_PACK = {
    "int16": ">h",
    "uint16": ">H",
    "int32": ">i",
    "uint32": ">I",
    "float32": ">f",
    "int64": ">q",
    "uint64": ">Q",
    "float64": ">d",
}


class WriteError(Exception):
    """The write could not be made, or its outcome is unknown; the message says which and why."""


def _order(device: Device, point: Point) -> str:
    return point.byte_order if "byte_order" in point.model_fields_set else parse_options(device).byte_order


def encode(device: Device, point: Point, value: Value) -> bytes:
    """The request PDU that writes raw ``value`` to ``point``, or :class:`WriteError` saying why not."""
    where = f"{device.id}/{point.id}"
    try:
        address = parse_modbus_address(point.address)
    except ValueError as exc:
        raise WriteError(f"{where}: {exc}") from None
    if address.table in ("ir", "di"):
        raise WriteError(f"{where}: {point.address} is in a read-only table (input registers or discrete inputs)")
    if address.table == "co":
        if not isinstance(value, bool):
            raise WriteError(f"{where}: a coil takes true or false")
        return write_single_coil_request(address.address, value)
    if address.bit is not None:
        raise WriteError(
            f"{where}: {point.address} is one bit of a register; writing it would need a read and a write that "
            "another master could come between, so Seam does not"
        )
    if point.type == "bool":
        if not isinstance(value, bool):
            raise WriteError(f"{where}: a bool point takes true or false")
        return write_single_register_request(address.address, 1 if value else 0)
    order = _order(device, point)
    if point.type == "string":
        if not isinstance(value, str) or point.length is None:
            raise WriteError(f"{where}: a string point takes text and declares its length")
        data = value.encode("utf-8")
        if len(data) > point.length * 2:
            raise WriteError(f"{where}: {len(data)} bytes do not fit {point.length} registers")
        data = data.ljust(point.length * 2, b"\x00")
        if order in ("BADC", "DCBA"):
            swapped = bytearray(data)
            swapped[0::2], swapped[1::2] = data[1::2], data[0::2]
            data = bytes(swapped)
        return write_multiple_registers_request(address.address, list(struct.unpack(f">{point.length}H", data)))
    big = _pack(where, point.type, value)
    # The same byte placement the read path undoes (a 16-bit value in BADC order has its bytes swapped).
    wire = bytearray(len(big))
    for i, position in enumerate(wire_positions(order, len(big))):
        wire[position] = big[i]
    registers = list(struct.unpack(f">{len(big) // 2}H", bytes(wire)))
    if len(registers) == 1:
        return write_single_register_request(address.address, registers[0])
    return write_multiple_registers_request(address.address, registers)


def _pack(where: str, kind: str, value: Value) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WriteError(f"{where}: a {kind} point takes a number, not {value!r}")
    if kind in INTEGER_RANGES:
        if isinstance(value, float):
            if not value.is_integer():
                raise WriteError(f"{where}: {value!r} is not a whole number for a {kind} register")
            value = int(value)
        low, high = INTEGER_RANGES[kind]
        if not low <= value <= high:
            raise WriteError(f"{where}: {value} does not fit a {kind} ({low} to {high})")
        return struct.pack(_PACK[kind], value)
    number = float(value)
    if not math.isfinite(number):
        raise WriteError(f"{where}: {value!r} is not a finite number")
    try:
        return struct.pack(_PACK[kind], number)
    except OverflowError:
        raise WriteError(f"{where}: {value!r} is beyond the range of a {kind}") from None


class ModbusWriter:
    """Reads and writes single points of one device, over the connection the poller shares."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.endpoint = parse_endpoint(device.endpoint, device.id)
        self.unit = unit_of(device, self.endpoint)
        constraints = device.constraints
        self.timeout = constraints.timeout
        self.settings = LineSettings(
            pause_after_connect=constraints.pause_after_connect,
            pause_between_requests=constraints.pause_between_requests,
            connect_timeout=constraints.timeout,
            # Sharing the poller's connection merges settings by taking the strictest; the writer sends
            # one request at a time anyway, so it must not lower the poller's pipelining window.
            max_in_flight=64,
        )
        self._stack = ExitStack()
        self._connection: Connection | None = None

    async def __aenter__(self) -> ModbusWriter:
        self._connection = self._stack.enter_context(registry().use(self.endpoint, self.settings))
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()
        self._connection = None

    def _point(self, point_id: str) -> Point:
        point = next((p for p in self.device.points if p.id == point_id), None)
        if point is None:
            raise WriteError(f"device {self.device.id} has no point {point_id}")
        return point

    async def _exchange(self, pdu: bytes) -> bytes:
        assert self._connection is not None, "use the writer as 'async with'"
        try:
            return await self._connection.request(self.unit, pdu, self.timeout)
        except (RequestTimeout, LinkClosed, Unavailable) as exc:
            raise WriteError(f"{self.device.id}: no answer ({exc or f'nothing within {self.timeout:g}s'})") from None

    async def read(self, point_id: str) -> Value:
        """The raw value of one point, read now (not from the poller's last cycle)."""
        point = self._point(point_id)
        blocks = plan(self.device.model_copy(update={"points": [point]}))
        block = blocks[0]
        try:
            pdu = await self._exchange(read_request(block.function, block.start, block.count))
            return block.decoder.decode(parse_read_response(block.function, block.count, pdu))[0]
        except (ModbusException, FrameError) as exc:
            raise WriteError(f"{self.device.id}/{point_id}: reading it failed: {exc}") from None

    async def write(self, point_id: str, value: Value) -> None:
        """Write raw ``value``. :class:`WriteError` when refused or when no answer came (outcome unknown)."""
        point = self._point(point_id)
        request = encode(self.device, point, value)
        pdu = await self._exchange(request)
        try:
            parse_write_response(request, pdu)
        except (ModbusException, FrameError) as exc:
            raise WriteError(f"{self.device.id}/{point_id}: the device refused the write: {exc}") from None


__all__ = ["ModbusWriter", "WriteError", "encode"]
