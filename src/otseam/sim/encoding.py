"""Process values ↔ 16-bit Modbus registers, in the byte orders the contract names.

The letters name the bytes of the value from most to least significant (``A`` first): ``ABCD`` sends
them big-endian, as the Modbus specification does for a single register; ``CDAB`` swaps the two
16-bit words, as many PLCs do for 32-bit values; ``BADC`` swaps the bytes inside each word; ``DCBA`` is
fully little-endian. For 64-bit values the same rule is applied to all four words (``CDAB`` reverses
word order).
"""

from __future__ import annotations

import struct
from typing import Literal

ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]

_FORMATS = {
    "int16": ("h", 1),
    "uint16": ("H", 1),
    "int32": ("i", 2),
    "uint32": ("I", 2),
    "int64": ("q", 4),
    "uint64": ("Q", 4),
    "float32": ("f", 2),
    "float64": ("d", 4),
}


def register_count(data_type: str, length: int | None = None) -> int:
    """How many registers a value of ``data_type`` occupies (``length`` for strings)."""
    if data_type == "string":
        return length or 1
    if data_type == "bool":
        return 1
    return _FORMATS[data_type][1]


def _reorder(big_endian: bytes, order: ByteOrder) -> bytes:
    """Rearrange big-endian bytes into wire order (the operation is its own inverse)."""
    words = [big_endian[i : i + 2] for i in range(0, len(big_endian), 2)]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    if order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    return b"".join(words)


def encode(data_type: str, value: float | int | str, order: ByteOrder = "ABCD", length: int | None = None) -> list[int]:
    """A value as the registers a device would hold for it."""
    if data_type == "string":
        count = length or 1
        raw = str(value).encode("ascii", "replace")[: count * 2].ljust(count * 2, b"\x00")
        return list(struct.unpack(f">{count}H", raw))
    code, count = _FORMATS[data_type]
    number: float | int = float(value) if code in "fd" else int(value)
    wire = _reorder(struct.pack(f">{code}", number), order)
    return list(struct.unpack(f">{count}H", wire))


def decode(data_type: str, registers: list[int], order: ByteOrder = "ABCD") -> float | int | str:
    """The inverse of :func:`encode`."""
    raw = struct.pack(f">{len(registers)}H", *registers)
    if data_type == "string":
        return raw.rstrip(b"\x00").decode("ascii", "replace")
    code, _ = _FORMATS[data_type]
    value: float | int = struct.unpack(f">{code}", _reorder(raw, order))[0]
    return value
