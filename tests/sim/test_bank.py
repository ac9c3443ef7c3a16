"""The Modbus application protocol of the register bank, PDU in, PDU out (no sockets)."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from otseam.sim.bank import RegisterBank, Unit


def make_bank() -> tuple[RegisterBank, list[tuple[int, str, int, int]]]:
    writes: list[tuple[int, str, int, int]] = []
    unit = Unit.sized(1, coils=20, discrete_inputs=20, holding=10, inputs=10)
    unit.set_registers("hr", 0, range(100, 110))
    unit.set_registers("ir", 0, range(200, 210))
    unit.coils[[0, 2, 9]] = True
    unit.discrete_inputs[[1, 8]] = True
    unit.mark_writable("hr", 4, 3)
    unit.mark_writable("co", 10, 5)
    bank = RegisterBank([unit], on_write=lambda *w: writes.append(w))
    return bank, writes


def test_reads_of_all_four_tables() -> None:
    bank, _ = make_bank()
    assert bank.handle_pdu(1, bytes.fromhex("03 0000 0003")) == bytes.fromhex("03 06 0064 0065 0066")
    assert bank.handle_pdu(1, bytes.fromhex("04 0008 0002")) == bytes.fromhex("04 04 00d0 00d1")
    # Coils 0..9: bits 0, 2 and 9 set → 0b00000101, 0b00000010, least significant bit first.
    assert bank.handle_pdu(1, bytes.fromhex("01 0000 000a")) == bytes.fromhex("01 02 05 02")
    assert bank.handle_pdu(1, bytes.fromhex("02 0001 0008")) == bytes.fromhex("02 01 81")


def test_quantity_and_address_limits() -> None:
    bank, _ = make_bank()
    assert bank.handle_pdu(1, bytes.fromhex("03 0000 0000")) == bytes.fromhex("83 03")
    assert bank.handle_pdu(1, bytes.fromhex("03 0000 007e")) == bytes.fromhex("83 03")  # 126 > 125
    assert bank.handle_pdu(1, bytes.fromhex("01 0000 07d1")) == bytes.fromhex("81 03")  # 2001 > 2000
    assert bank.handle_pdu(1, bytes.fromhex("03 0008 0003")) == bytes.fromhex("83 02")  # past the map
    assert bank.handle_pdu(1, bytes.fromhex("04 ffff 0001")) == bytes.fromhex("84 02")
    assert bank.handle_pdu(1, bytes.fromhex("03 0000")) == bytes.fromhex("83 03")  # truncated


def test_unknown_functions_and_units() -> None:
    bank, _ = make_bank()
    assert bank.handle_pdu(1, bytes.fromhex("07")) == bytes.fromhex("87 01")
    assert bank.handle_pdu(1, bytes.fromhex("2b 0d 01 00")) == bytes.fromhex("ab 01")  # CANopen MEI
    assert bank.handle_pdu(9, bytes.fromhex("03 0000 0001")) is None
    assert bank.handle_pdu(1, b"") is None


def test_writes_only_where_writable() -> None:
    bank, writes = make_bank()
    unit = bank.units[1]
    assert bank.handle_pdu(1, bytes.fromhex("06 0004 abcd")) == bytes.fromhex("06 0004 abcd")
    assert unit.get_registers("hr", 4, 1) == [0xABCD]
    assert bank.handle_pdu(1, bytes.fromhex("06 0003 0001")) == bytes.fromhex("86 02")
    assert bank.handle_pdu(1, bytes.fromhex("10 0004 0003 06 0001 0002 0003")) == bytes.fromhex("10 0004 0003")
    assert unit.get_registers("hr", 4, 3) == [1, 2, 3]
    # One register of the range is not writable: nothing is written.
    assert bank.handle_pdu(1, bytes.fromhex("10 0005 0003 06 0009 0009 0009")) == bytes.fromhex("90 02")
    assert unit.get_registers("hr", 5, 2) == [2, 3]
    assert bank.handle_pdu(1, bytes.fromhex("05 000a ff00")) == bytes.fromhex("05 000a ff00")
    assert unit.get_bit("co", 10)
    assert bank.handle_pdu(1, bytes.fromhex("05 0000 0000")) == bytes.fromhex("85 02")
    assert bank.handle_pdu(1, bytes.fromhex("05 000a 1234")) == bytes.fromhex("85 03")
    assert bank.handle_pdu(1, bytes.fromhex("0f 000b 0004 01 05")) == bytes.fromhex("0f 000b 0004")
    assert [unit.get_bit("co", a) for a in range(11, 15)] == [True, False, True, False]
    # Byte count that does not match the quantity.
    assert bank.handle_pdu(1, bytes.fromhex("0f 000b 0004 02 05 00")) == bytes.fromhex("8f 03")
    assert bank.handle_pdu(1, bytes.fromhex("10 0004 0002 02 0001")) == bytes.fromhex("90 03")
    assert writes == [(1, "hr", 4, 1), (1, "hr", 4, 3), (1, "co", 10, 1), (1, "co", 11, 4)]


def test_device_identification() -> None:
    bank, _ = make_bank()
    unit = bank.units[1]
    unit.identity.vendor = "Acme"
    unit.identity.product_code = "PLC-9"
    unit.identity.revision = "2.3"
    basic = bank.handle_pdu(1, bytes.fromhex("2b 0e 01 00"))
    assert basic is not None
    assert basic[:7] == bytes.fromhex("2b 0e 01 82 00 00 03")
    assert basic[7:] == b"\x00\x04Acme\x01\x05PLC-9\x02\x032.3"
    regular = bank.handle_pdu(1, bytes.fromhex("2b 0e 02 00"))
    assert regular is not None and regular[6] == 7
    assert bank.handle_pdu(1, bytes.fromhex("2b 0e 04 02")) == bytes.fromhex("2b 0e 04 82 00 00 01 02 03") + b"2.3"
    assert bank.handle_pdu(1, bytes.fromhex("2b 0e 04 50")) == bytes.fromhex("ab 02")
    assert bank.handle_pdu(1, bytes.fromhex("2b 0e 05 00")) == bytes.fromhex("ab 03")


def test_identification_that_does_not_fit_one_pdu_continues() -> None:
    bank, _ = make_bank()
    identity = bank.units[1].identity
    identity.vendor_url = "u" * 60
    identity.product_name = "p" * 60
    identity.model_name = "m" * 60
    identity.application_name = "a" * 60
    first = bank.handle_pdu(1, bytes.fromhex("2b 0e 02 00"))
    assert first is not None and len(first) <= 253
    more, next_id, count = first[4], first[5], first[6]
    assert (more, count) == (0xFF, next_id) and 3 <= next_id < 7
    rest = bank.handle_pdu(1, bytes([0x2B, 0x0E, 0x02, next_id]))
    assert rest is not None and rest[4:6] == b"\x00\x00"
    # Between the two answers, every object once, in order.
    ids = []
    for answer in (first, rest):
        at = 7
        for _ in range(answer[6]):
            ids.append(answer[at])
            at += 2 + answer[at + 1]
    assert ids == list(range(7))


def test_unmapped_holes_and_exception_ranges() -> None:
    bank, _ = make_bank()
    unit = bank.units[1]
    unit.add_unmapped("hr", 3, 2)
    unit.add_exception("ir", 5, 1, 0x04)
    assert bank.handle_pdu(1, bytes.fromhex("03 0000 0003")) == bytes.fromhex("03 06 0064 0065 0066")
    assert bank.handle_pdu(1, bytes.fromhex("03 0002 0002")) == bytes.fromhex("83 02")
    assert bank.handle_pdu(1, bytes.fromhex("03 0005 0002")) == bytes.fromhex("03 04 0069 006a")
    assert bank.handle_pdu(1, bytes.fromhex("04 0000 000a")) == bytes.fromhex("84 04")
    assert bank.handle_pdu(1, bytes.fromhex("04 0000 0005")) is not None
    # A writable register inside a hole is not writable while the hole is there.
    assert bank.handle_pdu(1, bytes.fromhex("06 0004 0001")) == bytes.fromhex("86 02")
    unit.clear_faults()
    assert bank.handle_pdu(1, bytes.fromhex("03 0002 0002")) == bytes.fromhex("03 04 0066 0067")


@settings(max_examples=1500, deadline=None)
@given(st.integers(0, 255), st.binary(min_size=0, max_size=253))
def test_any_pdu_gets_a_well_formed_answer_or_none(unit_id: int, pdu: bytes) -> None:
    bank, _ = make_bank()
    answer = bank.handle_pdu(unit_id, pdu)
    if unit_id != 1 or not pdu:
        assert answer is None
        return
    assert answer is not None and 2 <= len(answer) <= 253
    assert answer[0] in (pdu[0], (pdu[0] | 0x80) & 0xFF)
    if answer[0] & 0x80:
        assert len(answer) == 2 and answer[1] in (1, 2, 3, 4)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([1, 2, 3, 4, 5, 6, 15, 16, 43]), st.binary(min_size=0, max_size=252))
def test_known_functions_with_random_bodies(function: int, body: bytes) -> None:
    bank, _ = make_bank()
    answer = bank.handle_pdu(1, bytes([function]) + body)
    assert answer is not None
    if function in (3, 4) and not answer[0] & 0x80:
        (quantity,) = struct.unpack(">H", body[2:4])
        assert answer[1] == 2 * quantity == len(answer) - 2
