"""Hostile input never crashes the monitor: random bytes, truncated and bit-flipped real captures."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otseam.monitor.analyzers.modbus.fastpath import index_capture
from otseam.monitor.analyzers.modbus.parser import Message, ModbusStream, StreamFault, decode_pdu
from otseam.monitor.analyzers.opcua.parser import UaChannel, UaMessage, UaStream
from otseam.monitor.capture import LINKTYPE_ETHERNET, CaptureError, CaptureStats, Frame, iter_frames
from otseam.monitor.engine import Monitor
from otseam.monitor.packet import decode_tcp
from tests.monitor.pcapgen import Conversation, mbap, pcap_bytes

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_capture(data: bytes) -> Monitor:
    """Everything a capture file can do to us: at most a CaptureError for an unreadable header."""
    monitor = Monitor()
    stats = CaptureStats()
    try:
        for frame in iter_frames(data, stats):
            monitor.process(frame)
    except CaptureError:
        pass
    monitor.finish()
    assert monitor.stats.internal_errors == 0, monitor.stats.errors
    return monitor


@FAST
@given(st.binary(max_size=2048))
def test_random_bytes_as_a_capture(data: bytes) -> None:
    run_capture(data)


@FAST
@given(st.binary(max_size=600))
def test_random_bytes_after_a_valid_pcap_header(data: bytes) -> None:
    run_capture(pcap_bytes([])[:24] + data)


@FAST
@given(st.binary(max_size=600))
def test_random_bytes_after_a_pcapng_section_header(data: bytes) -> None:
    shb = bytes.fromhex("0a0d0d0a1c0000004d3c2b1a01000000ffffffffffffffff1c000000")
    idb = bytes.fromhex("01000000140000000100000000000400" + "14000000")
    run_capture(shb + idb + data)


@FAST
@given(st.binary(max_size=300))
def test_random_frames(data: bytes) -> None:
    decode_tcp(LINKTYPE_ETHERNET, data)
    monitor = Monitor()
    monitor.process(Frame(1, 0.0, LINKTYPE_ETHERNET, data))
    assert monitor.stats.internal_errors == 0


@FAST
@given(st.binary(min_size=1, max_size=260), st.booleans())
def test_random_pdus(pdu: bytes, is_request: bool) -> None:
    msg = Message(1, 0.0, 0, 1, pdu[0], is_request, len(pdu) + 1)
    decode_pdu(msg, pdu)
    assert msg.function == pdu[0] & 0x7F


@FAST
@given(st.lists(st.binary(max_size=400), max_size=8), st.booleans())
def test_random_modbus_stream(chunks: list[bytes], synced: bool) -> None:
    stream = ModbusStream(True, synced)
    out: list[Message] = []
    faults: list[StreamFault] = []
    for i, chunk in enumerate(chunks):
        stream.feed(chunk, i + 1, 0.0, out, faults)
        assert len(stream._buf) <= 7 + 254


@FAST
@given(st.lists(st.binary(max_size=400), max_size=8), st.booleans())
def test_random_opcua_stream(chunks: list[bytes], synced: bool) -> None:
    stream = UaStream(UaChannel(), synced)
    out: list[UaMessage] = []
    problems: list[str] = []
    for i, chunk in enumerate(chunks):
        stream.feed(chunk, i + 1, 0.0, out, problems)


@FAST
@given(st.lists(st.sampled_from([b"HEL", b"MSG", b"OPN", b"ERR", b"CLO", b"F", b"C", b"\x00" * 4]), max_size=30))
def test_opcua_like_tokens(tokens: list[bytes]) -> None:
    stream = UaStream(UaChannel(), True)
    stream.feed(b"".join(tokens), 1, 0.0, [], [])


@pytest.fixture(scope="module")
def fixtures(corpus: dict[str, Path]) -> list[bytes]:
    return [corpus[name].read_bytes() for name in sorted(corpus)]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(st.data())
def test_truncated_real_captures(fixtures: list[bytes], data: st.DataObject) -> None:
    capture = data.draw(st.sampled_from(fixtures))
    cut = data.draw(st.integers(min_value=0, max_value=len(capture)))
    run_capture(capture[:cut])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(st.data())
def test_bit_flipped_real_captures(fixtures: list[bytes], data: st.DataObject) -> None:
    capture = bytearray(data.draw(st.sampled_from(fixtures)))
    flips = data.draw(st.lists(st.integers(min_value=0, max_value=len(capture) * 8 - 1), min_size=1, max_size=40))
    for bit in flips:
        capture[bit // 8] ^= 1 << (bit % 8)
    run_capture(bytes(capture))


@FAST
@given(
    st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 255), st.binary(min_size=1, max_size=253)), max_size=6)
)
def test_random_pdus_over_tcp_are_all_framed(pdus: list[tuple[int, int, bytes]]) -> None:
    """Whatever the PDUs say, correct MBAP framing yields exactly one message per ADU, in order."""
    conv = Conversation().handshake()
    for tid, unit, pdu in pdus:
        conv.c(mbap(tid, unit, pdu))
    monitor = run_capture(pcap_bytes(conv.frames))
    assert monitor.stats.modbus_messages == len(pdus)
    assert [(m.tid, m.unit) for _e, m in monitor.modbus_messages] == [(t, u) for t, u, _p in pdus]


def _pcapng_block(block_type: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


_SECTION = _pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
_ETHERNET_IDB = _pcapng_block(1, struct.pack("<HHI", 1, 0, 262144))


@FAST
@given(
    st.lists(
        st.one_of(
            st.builds(
                lambda payload, ts, iface: _pcapng_block(
                    6, struct.pack("<IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(payload), len(payload)) + payload
                ),
                st.binary(max_size=120).map(lambda b: b + bytes(-len(b) % 4)),
                st.integers(0, 2**63),
                st.integers(0, 2),
            ),
            st.binary(max_size=40),
            st.just(_ETHERNET_IDB),
        ),
        max_size=12,
    )
)
def test_random_pcapng_blocks_read_the_same_both_ways(blocks: list[bytes]) -> None:
    """Well-formed, wrong-interface and garbage blocks: the per-frame reader and the fast path's index
    never raise, and agree on every frame they accept and on why they stopped."""
    data = _SECTION + _ETHERNET_IDB + b"".join(blocks)
    slow_stats, fast_stats = CaptureStats(), CaptureStats()
    frames = list(iter_frames(data, slow_stats))
    indexed = index_capture(data, fast_stats, "capture")
    if indexed is None:  # another link type among the packets: the per-frame path reads it
        assert any(f.linktype != LINKTYPE_ETHERNET for f in frames)
        return
    starts, lengths, times = indexed
    assert [bytes(f.data) for f in frames] == [data[s : s + n] for s, n in zip(starts, lengths, strict=True)]
    assert [f.ts for f in frames] == list(times)
    assert slow_stats == fast_stats
