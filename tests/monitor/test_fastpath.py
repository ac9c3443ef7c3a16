"""The capture fast path reaches exactly the per-frame analyser's alerts, inventory and counters."""

from __future__ import annotations

import struct
import subprocess
from dataclasses import astuple
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otseam.monitor.allowlist import Policy
from otseam.monitor.analyzers.modbus.fastpath import analyse_pcap
from otseam.monitor.capture import CaptureStats, read_capture
from otseam.monitor.engine import Monitor
from tests.monitor.pcapgen import Conversation, mbap, pcap_bytes
from tests.monitor.traffic import CAPTURES


def both(data: bytes, tmp_path: Path, policy: Policy | None = None) -> tuple[Monitor, Monitor]:
    path = tmp_path / "capture.pcap"
    path.write_bytes(data)
    slow = Monitor(policy, keep_records=False)
    for frame in read_capture(path):
        slow.process(frame)
    slow.finish()
    fast = Monitor(policy, keep_records=False)
    assert analyse_pcap(fast, data, CaptureStats())
    fast.finish()
    return slow, fast


def assert_same(slow: Monitor, fast: Monitor) -> None:
    assert [a.as_dict() for a in fast.detector.alerts] == [a.as_dict() for a in slow.detector.alerts]
    assert fast.detector.folded == slow.detector.folded
    assert {k: v.as_dict() for k, v in fast.inventory.assets.items()} == {
        k: v.as_dict() for k, v in slow.inventory.assets.items()
    }
    assert [astuple(c) for c in fast.inventory.changes] == [astuple(c) for c in slow.inventory.changes]
    for name in ("frames", "tcp_segments", "not_tcp", "modbus_messages", "transactions", "flows"):
        assert getattr(fast.stats, name) == getattr(slow.stats, name), name


def test_whole_captures(capture: Path, tmp_path: Path) -> None:
    slow, fast = both(capture.read_bytes(), tmp_path)
    assert_same(slow, fast)


def polling(conv: Conversation, count: int, start_tid: int = 0) -> None:
    for i in range(count):
        tid = start_tid + i
        conv.c(mbap(tid, 1, struct.pack("!BHH", 3, i, 2)))
        conv.s(mbap(tid, 1, struct.pack("!BBHH", 3, 4, i, i + 1)))


def test_mixed_simple_and_awkward_connections(tmp_path: Path) -> None:
    frames: list[bytes] = []
    plain = Conversation(cport=41000).handshake()
    polling(plain, 30)
    frames += plain.frames
    # Retransmission on one connection, pipelining on another, an exception burst and writes on a third.
    retrans = Conversation(cport=41001).handshake()
    polling(retrans, 3)
    retrans.frames.append(retrans.frames[-1])
    frames += retrans.frames
    pipelined = Conversation(cport=41002).handshake()
    pipelined.c(mbap(1, 1, b"\x03\x00\x00\x00\x01") + mbap(2, 1, b"\x03\x00\x01\x00\x01"))
    pipelined.s(mbap(1, 1, b"\x03\x02\x00\x01"))
    pipelined.s(mbap(2, 1, b"\x03\x02\x00\x02"))
    frames += pipelined.frames
    noisy = Conversation(client="10.0.0.66", cport=41003).handshake()
    for i in range(8):
        noisy.c(mbap(i, 1, struct.pack("!BHH", 3, 9000 + i, 1)))
        noisy.s(mbap(i, 1, b"\x83\x02"))
    for i in range(25):
        noisy.c(mbap(100 + i, 1, struct.pack("!BHH", 6, 40, i)))
        noisy.s(mbap(100 + i, 1, struct.pack("!BHH", 6, 40, i)))
    noisy.c(mbap(200, 1, b"\x08\x00\x04\x00\x00"))
    frames += noisy.frames
    mid = Conversation(cport=41004)  # joined mid-stream, no handshake
    polling(mid, 5, 500)
    frames += mid.frames
    # Interleave the connections frame by frame, as a span port would.
    groups = [plain.frames, retrans.frames, pipelined.frames, noisy.frames, mid.frames]
    woven: list[bytes] = []
    for i in range(max(len(g) for g in groups)):
        woven += [g[i] for g in groups if i < len(g)]
    slow, fast = both(pcap_bytes(woven), tmp_path)
    assert {a.rule.id for a in slow.detector.alerts} >= {"MB-009", "MB-019", "MB-003"}
    assert_same(slow, fast)

    policy = Policy()
    policy.add_masters(["10.0.0.10"])
    slow, fast = both(pcap_bytes(woven), tmp_path, policy)
    assert {"MB-001", "MB-002"} <= {a.rule.id for a in slow.detector.alerts}
    assert_same(slow, fast)


def test_baseline_policy_with_function_not_allowed(tmp_path: Path) -> None:
    conv = Conversation().handshake()
    polling(conv, 4)
    conv.c(mbap(9, 1, b"\x04\x00\x00\x00\x01"))
    conv.s(mbap(9, 1, b"\x04\x02\x00\x07"))
    policy = Policy()
    policy.add_baseline({("10.0.0.10", "10.0.0.20"): {3}})
    slow, fast = both(pcap_bytes(conv.frames), tmp_path, policy)
    assert [a.rule.id for a in slow.detector.alerts] == ["MB-022"]
    assert_same(slow, fast)


def test_other_files_are_left_to_the_per_frame_path() -> None:
    """Big-endian pcap and non-Ethernet link types go the per-frame way; an empty pcapng section is read."""
    section = bytes.fromhex("0a0d0d0a1c0000004d3c2b1a01000000ffffffffffffffff1c000000")
    raw_interface = struct.pack("<IIHHII", 1, 20, 101, 0, 0, 20)  # an IDB for LINKTYPE_RAW
    packet = struct.pack("<IIIIIII", 6, 32, 0, 0, 0, 0, 0) + struct.pack("<I", 32)
    big_endian_pcap = bytes.fromhex("a1b2c3d4") + struct.pack(">HHiIII", 2, 4, 0, 0, 65535, 1)
    for data in (section + raw_interface + packet, big_endian_pcap):
        monitor = Monitor(keep_records=False)
        stats = CaptureStats()
        assert not analyse_pcap(monitor, data, stats)
        assert monitor.stats.frames == 0 and stats.frames == 0 and not stats.problems
    assert analyse_pcap(Monitor(keep_records=False), section, CaptureStats())


def test_pcapng_takes_the_fast_path_and_agrees(capture: Path, tmp_path: Path) -> None:
    converted = tmp_path / "converted.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(capture), str(converted)], check=True, timeout=60)
    pcapng = converted.read_bytes()
    slow, fast = both(pcapng, tmp_path)  # both() asserts that the fast path took the file
    assert_same(slow, fast)
    assert fast.stats.frames == len(list(read_capture(capture)))
    classic_slow, _classic_fast = both(capture.read_bytes(), tmp_path)
    assert [a.as_dict() for a in fast.detector.alerts] == [a.as_dict() for a in classic_slow.detector.alerts]


@pytest.mark.parametrize("cut", [24, 30, 200, 1001, 5003, -1])
def test_truncated_captures_read_the_same(capture: Path, tmp_path: Path, cut: int) -> None:
    data = capture.read_bytes()[:cut]
    path = tmp_path / "cut.pcap"
    path.write_bytes(data)
    slow_stats, fast_stats = CaptureStats(), CaptureStats()
    slow = Monitor(keep_records=False)
    for frame in read_capture(path, slow_stats):
        slow.process(frame)
    slow.finish()
    fast = Monitor(keep_records=False)
    assert analyse_pcap(fast, data, fast_stats, name=str(path))
    fast.finish()
    assert fast_stats.problems == slow_stats.problems and fast_stats.frames == slow_stats.frames
    assert_same(slow, fast)


def flipped(capture: bytes, flips: list[int]) -> bytes:
    """``capture`` with the given bits inverted (bit ``k`` is bit ``k % 8`` of byte ``k // 8``)."""
    out = bytearray(capture)
    for bit in flips:
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def assert_alerts_at_their_frames(path: Path, monitor: Monitor) -> None:
    """Every alert carries the capture time of the frame it names, as the file records it."""
    times = {frame.number: frame.ts for frame in read_capture(path)}
    for alert in monitor.detector.alerts:
        assert alert.ts == times[alert.frame], alert.as_dict()


#: Bit positions are drawn up to 2^18 and wrapped into the chosen file's record area, so that a failing
#: draw can be replayed as reported.
_MAX_FLIP_BIT = 1 << 18


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    name=st.sampled_from(CAPTURES),
    flips=st.lists(st.integers(min_value=24 * 8, max_value=_MAX_FLIP_BIT), min_size=1, max_size=30),
)
def test_bit_flipped_captures_agree(corpus: dict[str, Path], tmp_path: Path, name: str, flips: list[int]) -> None:
    """Corrupt captures never raise in the fast path, and both paths still agree on everything."""
    check_bit_flips(corpus[name].read_bytes(), tmp_path, flips)


def check_bit_flips(capture: bytes, tmp_path: Path, flips: list[int]) -> None:
    span = len(capture) * 8 - 24 * 8  # the file header is left alone: without it there is nothing to compare
    slow, fast = both(flipped(capture, [24 * 8 + (bit - 24 * 8) % span for bit in flips]), tmp_path)
    assert fast.stats.internal_errors == 0
    assert_same(slow, fast)
    assert_alerts_at_their_frames(tmp_path / "capture.pcap", slow)


def record_starts(capture: bytes) -> list[int]:
    """Where each record header of an intact little-endian classic pcap starts."""
    starts, pos = [], 24
    while pos + 16 <= len(capture):
        starts.append(pos)
        pos += 16 + struct.unpack_from("<I", capture, pos + 8)[0]
    return starts


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    name=st.sampled_from(CAPTURES),
    hits=st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 16 + 54 + 12), st.integers(0, 255)), min_size=1, max_size=6
    ),
)
def test_overwritten_headers_agree(
    corpus: dict[str, Path], tmp_path: Path, name: str, hits: list[tuple[int, int, int]]
) -> None:
    """Bytes overwritten where decisions are made (record header, Ethernet, IPv4, TCP, MBAP): both paths agree.

    Random bit flips mostly land in payload; aiming at the headers reaches lengths, addresses, ports and
    sequence numbers far more often, which is what splits connections and leaves holes in reassembly.
    """
    check_overwrites(corpus[name].read_bytes(), tmp_path, hits)


def check_overwrites(original: bytes, tmp_path: Path, hits: list[tuple[int, int, int]]) -> None:
    capture = bytearray(original)
    starts = record_starts(bytes(capture))
    for pick, offset, value in hits:
        at = starts[pick % len(starts)] + offset
        if at < len(capture):
            capture[at] = value
    slow, fast = both(bytes(capture), tmp_path)
    assert fast.stats.internal_errors == 0
    assert_same(slow, fast)
    assert_alerts_at_their_frames(tmp_path / "capture.pcap", slow)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 0xFFFF), st.binary(min_size=1, max_size=20)), max_size=12))
def test_random_modbus_conversations_agree(tmp_path: Path, script: list[tuple[int, int, bytes]]) -> None:
    """Requests, responses, retransmissions and junk in random order: both paths agree."""
    conv = Conversation().handshake()
    for action, tid, pdu in script:
        if action == 0:
            conv.c(mbap(tid, 1, pdu))
        elif action == 1:
            conv.s(mbap(tid, 1, pdu))
        elif action == 2 and len(conv.frames) > 2:
            conv.frames.append(conv.frames[-1])
        else:
            conv.c(pdu)
    slow, fast = both(pcap_bytes(conv.frames), tmp_path)
    assert_same(slow, fast)
