"""The datagram format: round trips, and hostile bytes that must be refused without an exception."""

from __future__ import annotations

import hmac
import logging
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otseam.diode import wire
from otseam.diode.receiver import DiodeReceiver
from tests.diode.harness import KEY
from tests.diode.harness import settings as diode_settings

HEADER = wire.Header(wire.Kind.DATA, 0, 4, 3, 2, 0x0123456789ABCDEF, 2**63 + 5, 5)


def test_round_trip_keeps_every_field() -> None:
    datagram = wire.pack(KEY, HEADER, b"hello")
    assert len(datagram) == wire.OVERHEAD + 5
    assert wire.parse(KEY, datagram) == HEADER
    assert datagram[wire.HEADER_SIZE : wire.HEADER_SIZE + 5] == b"hello"


def test_wrong_key_is_a_mac_failure() -> None:
    assert wire.parse(b"another key, quite long enough", wire.pack(KEY, HEADER, b"hello")) is wire.Rejected.MAC


@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_any_single_byte_change_is_refused(position_seed: int, flip: int) -> None:
    datagram = bytearray(wire.pack(KEY, HEADER, b"payload bytes"))
    position = position_seed % len(datagram)
    datagram[position] ^= flip or 1
    assert isinstance(wire.parse(KEY, bytes(datagram)), wire.Rejected)


@given(st.integers(min_value=0, max_value=wire.OVERHEAD + 12))
def test_every_truncation_is_refused(length: int) -> None:
    datagram = wire.pack(KEY, HEADER, b"payload bytes")
    assert isinstance(wire.parse(KEY, datagram[:length]), wire.Rejected)


@given(st.binary(max_size=200))
def test_random_bytes_are_refused(data: bytes) -> None:
    assert isinstance(wire.parse(KEY, data), wire.Rejected)


def test_authentic_but_inconsistent_headers_are_malformed() -> None:
    for bad in (
        wire.Header(wire.Kind.DATA, 0, 4, 3, 5, 1, 1, 3),  # a data index in the parity range
        wire.Header(wire.Kind.PARITY, 0, 4, 3, 1, 1, 1, 3),  # a parity index in the data range
        wire.Header(wire.Kind.DATA, 0, 0, 3, 0, 1, 1, 3),  # k = 0
        wire.Header(wire.Kind.BEACON, 0, 1, 0, 0, 1, 1, 3),  # a beacon with k
    ):
        assert wire.parse(KEY, wire.pack(KEY, bad, b"abc")) is wire.Rejected.MALFORMED


def test_fingerprint_depends_on_key_and_settings_but_does_not_contain_the_key() -> None:
    a = wire.fingerprint(KEY, "k=64")
    assert a != wire.fingerprint(KEY, "k=32")
    assert a != wire.fingerprint(KEY[::-1], "k=64")
    assert KEY[:8] not in a and len(a) == wire.FINGERPRINT_SIZE


class _Discard:
    source = "discard"

    def append(self, records: object) -> int:
        return 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=1600), max_size=20), st.integers(min_value=0, max_value=2**64 - 1))
def test_the_receiver_survives_any_datagram(datagrams: list[bytes], session: int) -> None:
    """Raw bytes, and well-formed headers with garbage after them, go through the receiver's own path."""
    receiver = DiodeReceiver(("127.0.0.1", 0), KEY, diode_settings(), _Discard())
    now = time.monotonic()
    for data in datagrams:
        receiver.datagram(memoryview(data), now)
        forged = wire.HEADER.pack(wire.MAGIC, wire.VERSION, 1, 0, 2, 3, 0, session, 7, len(data)) + data + bytes(16)
        receiver.datagram(memoryview(forged), now)
    rejected = sum(receiver.stats.rejected.values())
    assert rejected == 2 * len(datagrams)
    assert receiver.stats.records == 0


def test_a_block_packs_to_the_same_bytes_as_its_fragments_one_by_one() -> None:
    fragments = [b"one", b"two", b"three", b"four", b"five"]
    packed = wire.pack_block(KEY, wire.FLAG_SNAPSHOT, 3, 2, 77, 9, fragments)
    for index, (datagram, fragment) in enumerate(zip(packed, fragments, strict=True)):
        kind = wire.Kind.DATA if index < 3 else wire.Kind.PARITY
        header = wire.Header(kind, wire.FLAG_SNAPSHOT, 3, 2, index, 77, 9, len(fragment))
        assert datagram == wire.pack(KEY, header, fragment)
        assert wire.parse(KEY, datagram) == header


class _Kept:
    source = "kept"

    def __init__(self) -> None:
        self.records: list[object] = []

    def append(self, records: list[object]) -> int:
        self.records.extend(records)
        return len(records)


@pytest.mark.parametrize(("version", "named"), [(1, "liberasurecode"), (2, "HMAC-SHA256")])
def test_retired_wire_versions_are_refused_with_a_message_naming_them(
    caplog: pytest.LogCaptureFixture, version: int, named: str
) -> None:
    """A sender of a previous format (1: liberasurecode fragments and a hand-written SHA-256; 2: sealed
    with HMAC-SHA256), even holding the right key: every datagram counted as ``version``, nothing
    written, one log line saying what to do."""
    caplog.set_level(logging.WARNING)
    for compiled in (None, False):
        journal = _Kept()
        receiver = DiodeReceiver(("127.0.0.1", 0), KEY, diode_settings(), journal, compiled=compiled)  # type: ignore[arg-type]
        beacon = wire.pack_beacon(wire.Beacon(receiver._fingerprint, time.time(), 0, 0, 1000, 0))
        body = wire.HEADER.pack(wire.MAGIC, version, wire.Kind.BEACON, 0, 0, 0, 0, 5, 0, len(beacon)) + beacon
        old = body + hmac.digest(KEY, body, "sha256")[: wire.MAC_SIZE]  # as version 2 sealed it
        now = time.monotonic()
        for _ in range(50):
            receiver.datagram(memoryview(old), now)
        receiver._flush()
        assert receiver.stats.rejected[wire.Rejected.VERSION] == 50
        assert receiver.stats.beacons == 0 and not receiver.sessions and journal.records == []
    lines = [r.getMessage() for r in caplog.records if f"wire version {version} " in r.getMessage()]
    assert len(lines) == 2  # once per receiver, not once per datagram
    assert "upgrade the OT side" in lines[0] and named in lines[0]
