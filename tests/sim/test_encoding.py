"""Register encoding in the byte orders the contract names, against hand-computed vectors."""

from __future__ import annotations

import math
import struct

from hypothesis import given
from hypothesis import strategies as st

from otseam.sim.encoding import decode, encode, register_count


def test_known_float32_vectors() -> None:
    # 1.0f is 0x3F800000; 123.456f is 0x42F6E979.
    assert encode("float32", 1.0, "ABCD") == [0x3F80, 0x0000]
    assert encode("float32", 1.0, "CDAB") == [0x0000, 0x3F80]
    assert encode("float32", 123.456, "ABCD") == [0x42F6, 0xE979]
    assert encode("float32", 123.456, "CDAB") == [0xE979, 0x42F6]
    assert encode("float32", 123.456, "BADC") == [0xF642, 0x79E9]
    assert encode("float32", 123.456, "DCBA") == [0x79E9, 0xF642]


def test_known_integer_and_string_vectors() -> None:
    assert encode("int16", -2) == [0xFFFE]
    assert encode("uint32", 0x12345678, "ABCD") == [0x1234, 0x5678]
    assert encode("uint32", 0x12345678, "CDAB") == [0x5678, 0x1234]
    assert encode("string", "AB", length=2) == [0x4142, 0x0000]
    assert decode("string", [0x5345, 0x414D]) == "SEAM"
    assert register_count("float64") == 4
    assert register_count("string", 8) == 8


@given(
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.sampled_from(["ABCD", "CDAB", "BADC", "DCBA"]),
)
def test_float32_round_trips(value: float, order: str) -> None:
    registers = encode("float32", value, order)
    assert all(0 <= r <= 0xFFFF for r in registers)
    assert decode("float32", registers, order) == value


@given(st.integers(0, 2**32 - 1), st.sampled_from(["ABCD", "CDAB", "BADC", "DCBA"]))
def test_uint32_round_trips_and_matches_struct(value: int, order: str) -> None:
    registers = encode("uint32", value, order)
    big = struct.pack(">I", value)
    expected_words = {
        "ABCD": big,
        "CDAB": big[2:] + big[:2],
        "BADC": big[1::-1] + big[3:1:-1],
        "DCBA": big[::-1],
    }[order]
    assert registers == list(struct.unpack(">2H", expected_words))
    assert decode("uint32", registers, order) == value


def test_float64_round_trips_in_word_swapped_order() -> None:
    registers = encode("float64", math.pi, "CDAB")
    assert len(registers) == 4
    assert decode("float64", registers, "CDAB") == math.pi
