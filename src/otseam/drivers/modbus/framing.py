"""Modbus application frames: request PDUs, response checks, MBAP (TCP) and RTU (serial) framing.

Everything here is pure and synchronous so it can be fuzzed directly. A response that does not match
the request exactly (function, byte count, length) raises :class:`FrameError`: a short or long answer is
never decoded, because decoding it would put wrong numbers into a plant's history.
"""

from __future__ import annotations

import struct

READ_COILS = 0x01
READ_DISCRETE_INPUTS = 0x02
READ_HOLDING_REGISTERS = 0x03
READ_INPUT_REGISTERS = 0x04
ENCAPSULATED_INTERFACE = 0x2B
READ_DEVICE_ID = 0x0E

#: The read function for each table of a point address. There is deliberately no write function here:
#: the driver has no path that could change a PLC's memory.
TABLE_FUNCTION = {
    "co": READ_COILS,
    "di": READ_DISCRETE_INPUTS,
    "hr": READ_HOLDING_REGISTERS,
    "ir": READ_INPUT_REGISTERS,
}

EXCEPTION_NAMES = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "server device failure",
    0x05: "acknowledge",
    0x06: "server device busy",
    0x08: "memory parity error",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target device failed to respond",
}
ILLEGAL_DATA_ADDRESS = 0x02
#: Exceptions that mean "the device behind the gateway did not answer": a communication failure, not
#: a statement about the point.
GATEWAY_EXCEPTIONS = frozenset({0x0A, 0x0B})


class FrameError(Exception):
    """A response that is malformed or does not answer the request that was sent."""


class ModbusException(Exception):
    """The device answered with an exception response."""

    def __init__(self, function: int, code: int) -> None:
        self.function = function
        self.code = code
        name = EXCEPTION_NAMES.get(code, "unknown exception")
        super().__init__(f"exception {code:02d} ({name}) to function {function}")


def read_request(function: int, address: int, count: int) -> bytes:
    return struct.pack(">BHH", function, address, count)


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


# --- Modbus/TCP: the MBAP header ---------------------------------------------------------------------

MBAP = struct.Struct(">HHHB")
MBAP_SIZE = MBAP.size  # 7: transaction, protocol, length, unit
#: The MBAP length field counts the unit id and the PDU; a PDU is at most 253 bytes.
MAX_MBAP_LENGTH = 254


def mbap_frame(transaction: int, unit: int, pdu: bytes) -> bytes:
    return MBAP.pack(transaction, 0, len(pdu) + 1, unit) + pdu


# --- Modbus RTU: unit, PDU, CRC-16 (polynomial 0xA001, reflected, initial 0xFFFF) ---------------------


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    crc = 0xFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def rtu_frame(unit: int, pdu: bytes) -> bytes:
    body = bytes((unit,)) + pdu
    return body + struct.pack("<H", crc16(body))


def rtu_response_length(head: bytes) -> int | None:
    """Total length of an RTU response from its first three bytes, or None if it cannot be known.

    RTU has no length field; the length follows from the function code (and the byte count for reads).
    """
    function = head[1]
    if function & 0x80:
        return 5  # unit, function, exception code, CRC
    if function in (READ_COILS, READ_DISCRETE_INPUTS, READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS):
        return 5 + head[2]  # unit, function, byte count, data, CRC
    return None


def check_rtu_crc(frame: bytes) -> None:
    if len(frame) < 4:
        raise FrameError(f"RTU frame of {len(frame)} bytes is too short")
    (received,) = struct.unpack("<H", frame[-2:])
    computed = crc16(frame[:-2])
    if received != computed:
        raise FrameError(f"RTU CRC mismatch (received {received:04x}, computed {computed:04x})")
