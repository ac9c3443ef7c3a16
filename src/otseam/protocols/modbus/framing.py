"""The two framings of Modbus: MBAP (Modbus/TCP) and RTU (serial: unit, PDU, CRC-16)."""

from __future__ import annotations

import struct
from typing import Final

# --- Modbus/TCP: the MBAP header (Modbus Messaging on TCP/IP Implementation Guide V1.0b) -------------

#: Transaction id, protocol id (0 for Modbus), length (unit id + PDU), unit id; big-endian.
MBAP: Final = struct.Struct(">HHHB")
MBAP_SIZE: Final = MBAP.size  # 7
#: The MBAP length field counts the unit id and the PDU; a PDU is at most 253 bytes.
MAX_MBAP_LENGTH: Final = 254
_U16: Final = struct.Struct(">H")


def mbap_frame(transaction: int, unit: int, pdu: bytes) -> bytes:
    return MBAP.pack(transaction, 0, len(pdu) + 1, unit) + pdu


def plausible_mbap(buf: bytes | bytearray | memoryview, pos: int = 0) -> bool:
    """An MBAP header at ``pos`` that could start a Modbus/TCP frame: protocol id 0, length 2 to 254, a
    function code (exception bit aside) that is not 0; the header and the function code must be there."""
    if pos + MBAP_SIZE + 1 > len(buf):
        return False
    if buf[pos + 2] or buf[pos + 3]:
        return False
    length = _U16.unpack_from(buf, pos + 4)[0]
    return 2 <= length <= MAX_MBAP_LENGTH and buf[pos + 7] & 0x7F != 0


# --- Modbus RTU: unit, PDU, CRC-16 (polynomial 0xA001, reflected, initial 0xFFFF) ---------------------


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE: Final = _crc_table()


def crc16(data: bytes) -> int:
    crc = 0xFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def rtu_frame(unit: int, pdu: bytes) -> bytes:
    body = bytes((unit,)) + pdu
    return body + struct.pack("<H", crc16(body))


def rtu_crc_ok(frame: bytes) -> bool:
    """Whether the last two bytes of an RTU frame are the CRC-16 of the rest (little-endian)."""
    return len(frame) >= 4 and struct.unpack("<H", frame[-2:])[0] == crc16(frame[:-2])
