"""The driver's Modbus frames: request PDUs and the strict checks of each response.

The protocol's tables and its MBAP and RTU framings are in :mod:`otseam.protocols.modbus`, shared with
the simulator, the replica and the monitor.

Everything here is pure and synchronous so it can be fuzzed directly. A response that does not match
the request exactly (function, byte count, length) raises :class:`FrameError`: a short or long answer is
never decoded, because decoding it would put wrong numbers into a plant's history.
"""

from __future__ import annotations

import struct

from otseam.protocols.modbus.framing import crc16
from otseam.protocols.modbus.tables import (
    ENCAPSULATED_INTERFACE,
    EXCEPTION_TEXT,
    MAX_WRITE_REGISTERS,
    READ_COILS,
    READ_DEVICE_ID,
    READ_DISCRETE_INPUTS,
    READ_HOLDING_REGISTERS,
    READ_INPUT_REGISTERS,
    WRITE_MULTIPLE_REGISTERS,
    WRITE_SINGLE_COIL,
    WRITE_SINGLE_REGISTER,
)


class FrameError(Exception):
    """A response that is malformed or does not answer the request that was sent."""


class ModbusException(Exception):
    """The device answered with an exception response."""

    def __init__(self, function: int, code: int) -> None:
        self.function = function
        self.code = code
        name = EXCEPTION_TEXT.get(code, "unknown exception")
        super().__init__(f"exception {code:02d} ({name}) to function {function}")


def read_request(function: int, address: int, count: int) -> bytes:
    return struct.pack(">BHH", function, address, count)


def write_single_register_request(address: int, value: int) -> bytes:
    """Function 6: one 16-bit register."""
    return struct.pack(">BHH", WRITE_SINGLE_REGISTER, address, value)


def write_single_coil_request(address: int, on: bool) -> bytes:
    """Function 5: one coil, FF00 for on and 0000 for off (the only two values the protocol allows)."""
    return struct.pack(">BHH", WRITE_SINGLE_COIL, address, 0xFF00 if on else 0x0000)


def write_multiple_registers_request(address: int, registers: list[int]) -> bytes:
    """Function 16: consecutive registers in one request, so a 32- or 64-bit value never lands half."""
    count = len(registers)
    if not 1 <= count <= MAX_WRITE_REGISTERS:
        raise ValueError(f"function 16 writes 1 to {MAX_WRITE_REGISTERS} registers, not {count}")
    return struct.pack(f">BHHB{count}H", WRITE_MULTIPLE_REGISTERS, address, count, 2 * count, *registers)


def parse_write_response(request: bytes, pdu: bytes) -> None:
    """Check a write's answer: functions 5 and 6 echo the request, 16 echoes its address and count."""
    if not pdu:
        raise FrameError("empty response")
    function = request[0]
    check_exception(function, pdu)
    expected = request if function in (WRITE_SINGLE_COIL, WRITE_SINGLE_REGISTER) else request[:5]
    if pdu != expected:
        raise FrameError(f"the answer to write function {function} does not echo the request ({pdu.hex()})")


def device_id_request(read_code: int = 1, object_id: int = 0) -> bytes:
    """43/14: Read Device Identification, ``read_code`` 1 basic, 2 regular, 3 extended."""
    return bytes((ENCAPSULATED_INTERFACE, READ_DEVICE_ID, read_code, object_id))


def expected_data_length(function: int, count: int) -> int:
    if function in (READ_COILS, READ_DISCRETE_INPUTS):
        return (count + 7) // 8
    return count * 2


def check_exception(function: int, pdu: bytes) -> None:
    """Raise :class:`ModbusException` if ``pdu`` is an exception response to ``function``."""
    if len(pdu) >= 1 and pdu[0] == (function | 0x80):
        if len(pdu) != 2:
            raise FrameError(f"exception response of {len(pdu)} bytes, expected 2")
        raise ModbusException(function, pdu[1])


def parse_read_response(function: int, count: int, pdu: bytes) -> bytes:
    """The data bytes of a read response, after checking it answers ``function`` for ``count`` items."""
    if not pdu:
        raise FrameError("empty response")
    check_exception(function, pdu)
    if pdu[0] != function:
        raise FrameError(f"response to function {pdu[0]}, expected {function}")
    expected = expected_data_length(function, count)
    if len(pdu) < 2 or pdu[1] != expected or len(pdu) != 2 + expected:
        got = pdu[1] if len(pdu) >= 2 else None
        raise FrameError(f"response announces {got} data bytes and carries {max(len(pdu) - 2, 0)}, expected {expected}")
    return pdu[2:]


def parse_device_id(pdu: bytes) -> tuple[dict[int, bytes], bool, int]:
    """Objects of a 43/14 response, whether more follow, and the next object id."""
    check_exception(ENCAPSULATED_INTERFACE, pdu)
    if len(pdu) < 7 or pdu[0] != ENCAPSULATED_INTERFACE or pdu[1] != READ_DEVICE_ID:
        raise FrameError("not a device identification response")
    more, next_id, count = pdu[4] == 0xFF, pdu[5], pdu[6]
    objects: dict[int, bytes] = {}
    pos = 7
    for _ in range(count):
        if pos + 2 > len(pdu):
            raise FrameError("device identification response ends inside an object header")
        object_id, length = pdu[pos], pdu[pos + 1]
        value = pdu[pos + 2 : pos + 2 + length]
        if len(value) != length:
            raise FrameError("device identification object is shorter than announced")
        objects[object_id] = value
        pos += 2 + length
    return objects, more, next_id


# --- Modbus RTU ----------------------------------------------------------------------------------


def rtu_response_length(head: bytes) -> int | None:
    """Total length of an RTU response from its first three bytes, or None if it cannot be known.

    RTU has no length field; the length follows from the function code (and the byte count for reads).
    """
    function = head[1]
    if function & 0x80:
        return 5  # unit, function, exception code, CRC
    if function in (READ_COILS, READ_DISCRETE_INPUTS, READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS):
        return 5 + head[2]  # unit, function, byte count, data, CRC
    if function in (WRITE_SINGLE_COIL, WRITE_SINGLE_REGISTER, WRITE_MULTIPLE_REGISTERS):
        return 8  # unit, function, address, value or count, CRC (approved commands only, write.py)
    return None


def check_rtu_crc(frame: bytes) -> None:
    """Raise :class:`FrameError` unless the frame ends with the CRC-16 of the rest."""
    if len(frame) < 4:
        raise FrameError(f"RTU frame of {len(frame)} bytes is too short")
    (received,) = struct.unpack("<H", frame[-2:])
    computed = crc16(frame[:-2])
    if received != computed:
        raise FrameError(f"RTU CRC mismatch (received {received:04x}, computed {computed:04x})")
