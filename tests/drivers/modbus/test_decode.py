"""Decoding and framing, checked against independent encodings and fuzzed."""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from otseam.drivers.modbus.decode import Decoder, Slot
from otseam.drivers.modbus.framing import (
    FrameError,
    ModbusException,
    check_rtu_crc,
    parse_device_id,
    rtu_response_length,
)
from otseam.drivers.modbus.transport import LinkClosed, RequestTimeout, RtuLink
from otseam.protocols.modbus.framing import crc16, rtu_frame
from tests.drivers.modbus.helpers import encode

RANGES = {
    "int16": st.integers(-(2**15), 2**15 - 1),
    "uint16": st.integers(0, 2**16 - 1),
    "int32": st.integers(-(2**31), 2**31 - 1),
    "uint32": st.integers(0, 2**32 - 1),
    "int64": st.integers(-(2**63), 2**63 - 1),
    "uint64": st.integers(0, 2**64 - 1),
    "float32": st.floats(width=32, allow_nan=False),
    "float64": st.floats(allow_nan=False),
}
ORDERS = st.sampled_from(["ABCD", "CDAB", "BADC", "DCBA"])


@st.composite
def typed_values(draw: st.DrawFn) -> tuple[str, str, float]:
    type_ = draw(st.sampled_from(sorted(RANGES)))
    return type_, draw(ORDERS), draw(RANGES[type_])


@given(st.lists(typed_values(), min_size=1, max_size=30), st.integers(0, 3))
def test_any_mix_of_types_and_orders_decodes_to_what_was_encoded(items: list[tuple[str, str, float]], pad: int) -> None:
    registers: list[int] = [0] * pad
    slots = []
    for i, (type_, order, value) in enumerate(items):
        words = encode(value, type_, order)
        slots.append(Slot(f"d/p{i}", len(registers), type_, order, None, len(words)))
        registers += words
    data = b"".join(r.to_bytes(2, "big") for r in registers)
    decoder = Decoder(slots, bit_table=False)
    decoded = dict(zip(decoder.keys, decoder.decode(data), strict=True))
    for i, (type_, _, value) in enumerate(items):
        got = decoded[f"d/p{i}"]
        if type_ == "float32":
            assert got == struct.unpack(">f", struct.pack(">f", value))[0] or (math.isinf(value) and got == value)
        else:
            assert got == value


@given(st.lists(st.booleans(), min_size=1, max_size=2000), st.data())
def test_bits_of_coils_and_registers(bits: list[bool], data: st.DataObject) -> None:
    packed = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            packed[i // 8] |= 1 << (i % 8)
    wanted = data.draw(st.lists(st.integers(0, len(bits) - 1), min_size=1, max_size=20))
    decoder = Decoder([Slot(f"d/b{i}", i, "bool") for i in wanted], bit_table=True)
    assert decoder.decode(bytes(packed)) == [bits[i] for i in wanted]
    register = data.draw(st.integers(0, 0xFFFF))
    slots = [Slot(f"d/r{b}", 0, "bool", bit=b) for b in range(16)] + [Slot("d/any", 0, "bool")]
    values = Decoder(slots, bit_table=False).decode(register.to_bytes(2, "big"))
    assert values == [bool(register >> b & 1) for b in range(16)] + [register != 0]


def test_strings_in_both_byte_orders() -> None:
    plain = b"PUMP-7\x00\x00"
    swapped = b"UPPM7-\x00\x00"
    decoder = Decoder(
        [Slot("d/a", 0, "string", "ABCD", None, 4), Slot("d/b", 4, "string", "BADC", None, 4)], bit_table=False
    )
    assert decoder.decode(plain + swapped) == ["PUMP-7", "PUMP-7"]


def test_rtu_crc_matches_the_specification_example() -> None:
    # Read holding register 0, one register, unit 1: the CRC bytes on the wire are 84 0A.
    assert rtu_frame(1, bytes.fromhex("0300000001")) == bytes.fromhex("010300000001840a")
    assert crc16(bytes.fromhex("0103000000 01".replace(" ", ""))) == 0x0A84
    check_rtu_crc(bytes.fromhex("010300000001840a"))


@given(st.binary(min_size=3, max_size=300))
def test_rtu_helpers_never_crash_on_garbage(frame: bytes) -> None:
    length = rtu_response_length(frame[:3])
    assert length is None or 5 <= length <= 260
    with contextlib.suppress(FrameError):
        check_rtu_crc(frame)


@given(st.binary(max_size=260))
def test_device_identification_parser_never_crashes(pdu: bytes) -> None:
    try:
        objects, _, _ = parse_device_id(pdu)
    except (FrameError, ModbusException):
        return
    assert all(isinstance(v, bytes) for v in objects.values())


@settings(max_examples=150, deadline=None)
@given(reply=st.lists(st.binary(min_size=1, max_size=40), max_size=4))
def test_rtu_link_takes_only_a_whole_checked_frame_from_random_bytes(reply: list[bytes]) -> None:
    """Random bytes arriving in random pieces after a read: a clean answer or a clear error, never more."""

    async def scenario() -> None:
        sent: list[bytes] = []
        link = RtuLink(sent.append, "fuzz", silence=0.001)
        loop = asyncio.get_running_loop()
        for i, piece in enumerate(reply):
            loop.call_later(0.001 * (i + 1), link.feed, piece)
        try:
            pdu = await link.request(9, bytes.fromhex("0300000002"), 0.02)
        except (FrameError, RequestTimeout, LinkClosed):
            return
        finally:
            link.close()
        assert sent == [rtu_frame(9, bytes.fromhex("0300000002"))]
        stream = b"".join(reply)
        assert stream.startswith(bytes((9,)) + pdu) and len(stream) == len(pdu) + 3
        check_rtu_crc(stream)

    asyncio.run(scenario())


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=2), cuts=st.lists(st.integers(1, 8), max_size=3))
def test_rtu_link_reassembles_a_valid_answer_from_any_pieces(values: list[int], cuts: list[int]) -> None:
    body = bytes((3, 4)) + b"".join(v.to_bytes(2, "big") for v in values)
    frame = rtu_frame(9, body)
    pieces, rest = [], frame
    for cut in cuts:
        pieces.append(rest[:cut])
        rest = rest[cut:]
    pieces.append(rest)

    async def scenario() -> bytes:
        link = RtuLink(lambda data: None, "pieces", silence=0.001)
        loop = asyncio.get_running_loop()
        for i, piece in enumerate(p for p in pieces if p):
            loop.call_later(0.001 * (i + 1), link.feed, piece)
        try:
            return await link.request(9, bytes.fromhex("0300000002"), 0.5)
        finally:
            link.close()

    assert asyncio.run(scenario()) == body
