"""Turning the bytes of one read into point values, a whole block at a time.

Per block, the points are grouped by how they decode (type and byte order). Each group holds a
precomputed index array that gathers every value's bytes from the response in little-endian order, so
decoding is one numpy fancy-index, one ``view`` and one ``tolist`` per group, never a Python loop per
point. This is what makes 250,000 points/s on one core possible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from otseam.core.records import Value

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

#: Registers each type occupies; strings take their declared length.
WIDTHS = {
    "bool": 1,
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "int64": 4,
    "uint64": 4,
    "float64": 4,
}
_DTYPES = {
    "int16": "<i2",
    "uint16": "<u2",
    "int32": "<i4",
    "uint32": "<u4",
    "float32": "<f4",
    "int64": "<i8",
    "uint64": "<u8",
    "float64": "<f8",
}


def wire_positions(order: str, nbytes: int) -> list[int]:
    """Where on the wire each byte of a big-endian value sits, for a byte/word order.

    ABCD: words and bytes most significant first. CDAB: the least significant word first (word swap).
    BADC: bytes swapped inside each word. DCBA: everything reversed. The same rule extends to 64 bits.
    """
    words = nbytes // 2
    swap_words = order in ("CDAB", "DCBA")
    swap_bytes = order in ("BADC", "DCBA")
    positions = []
    for i in range(nbytes):
        word, byte = divmod(i, 2)
        if swap_words:
            word = words - 1 - word
        if swap_bytes:
            byte = 1 - byte
        positions.append(2 * word + byte)
    return positions


@dataclass(frozen=True, slots=True)
class Slot:
    """One point inside a block: where it starts (registers or bits from the block start) and how to decode."""

    key: str
    offset: int
    type: str
    order: str = "ABCD"
    bit: int | None = None
    length: int = 1


class Decoder:
    """Decodes one block's response into values in the order of :attr:`keys`."""

    __slots__ = ("_bit_table", "_groups", "keys")

    def __init__(self, slots: Sequence[Slot], bit_table: bool) -> None:
        import numpy as np  # here, not at the top: `seam check` plans requests without loading numpy

        self._bit_table = bit_table
        # Each group: (kind, index array, extra) where kind selects the decode path.
        self._groups: list[tuple[str, npt.NDArray[np.intp], object]] = []
        keys: list[str] = []
        if bit_table:
            self._groups.append(("bits", np.array([s.offset for s in slots], dtype=np.intp), None))
            keys.extend(s.key for s in slots)
            self.keys = keys
            return
        by_kind: dict[tuple[str, str], list[Slot]] = {}
        strings: list[Slot] = []
        for slot in slots:
            if slot.type == "string":
                strings.append(slot)
            elif slot.type == "bool":
                by_kind.setdefault(("bool", ""), []).append(slot)
            else:
                by_kind.setdefault((slot.type, slot.order), []).append(slot)
        for (kind, order), members in by_kind.items():
            if kind == "bool":
                offsets = np.array([s.offset for s in members], dtype=np.intp)
                # A bool without a bit index is "register is non-zero", encoded as mask 0xFFFF.
                masks = np.array([(1 << s.bit) if s.bit is not None else 0xFFFF for s in members], dtype=np.uint16)
                self._groups.append(("regbits", offsets, masks))
            else:
                nbytes = WIDTHS[kind] * 2
                # Little-endian gather: byte k of the native value is big-endian byte nbytes-1-k.
                little = wire_positions(order, nbytes)[::-1]
                starts = np.array([s.offset * 2 for s in members], dtype=np.intp)
                index = starts[:, None] + np.array(little, dtype=np.intp)[None, :]
                self._groups.append(("num", index, np.dtype(_DTYPES[kind])))
            keys.extend(s.key for s in members)
        for slot in strings:
            self._groups.append(("str", np.array([slot.offset * 2, slot.length * 2], dtype=np.intp), slot.order))
            keys.append(slot.key)
        self.keys = keys

    def decode(self, data: bytes) -> list[Value]:
        import numpy as np  # loaded by __init__ already: a dictionary lookup

        values: list[Value] = []
        raw = np.frombuffer(data, dtype=np.uint8)
        for kind, index, extra in self._groups:
            if kind == "num":
                assert isinstance(extra, np.dtype)
                values.extend(raw[index].view(extra).ravel().tolist())
            elif kind == "bits":
                bits = np.unpackbits(raw, bitorder="little")
                values.extend(bits[index].astype(bool).tolist())
            elif kind == "regbits":
                assert isinstance(extra, np.ndarray)
                registers = raw.view(">u2")
                values.extend(((registers[index] & extra) != 0).tolist())
            else:
                start, size = int(index[0]), int(index[1])
                values.append(decode_string(data[start : start + size], str(extra)))
        return values


def decode_string(chunk: bytes, order: str) -> str:
    """Two characters per register, first character in the high byte unless the order swaps bytes."""
    if order in ("BADC", "DCBA"):
        swapped = bytearray(chunk)
        swapped[0::2], swapped[1::2] = chunk[1::2], chunk[0::2]
        chunk = bytes(swapped)
    return chunk.split(b"\x00", 1)[0].rstrip(b" ").decode("utf-8", errors="replace")
