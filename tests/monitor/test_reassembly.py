"""TCP reassembly and Modbus framing on captures built byte by byte for each situation."""

from __future__ import annotations

import struct
from pathlib import Path

from otseam.monitor.analyzers.modbus.analyzer import Transaction
from otseam.monitor.capture import read_capture
from otseam.monitor.engine import Monitor
from otseam.monitor.reassembly import MAX_PENDING_SEGMENTS, Chunk, TcpDirection
from tests.monitor.pcapgen import Conversation, mbap, write_pcap


def read_request(tid: int, address: int, count: int) -> bytes:
    return mbap(tid, 1, struct.pack("!BHH", 3, address, count))


def read_response(tid: int, values: list[int]) -> bytes:
    return mbap(tid, 1, struct.pack(f"!BB{len(values)}H", 3, 2 * len(values), *values))


def analyse(path: Path, **options: object) -> Monitor:
    monitor = Monitor(**options)  # type: ignore[arg-type]
    for frame in read_capture(path):
        monitor.process(frame)
    monitor.finish()
    assert monitor.stats.internal_errors == 0, monitor.stats.errors
    return monitor


def matched(monitor: Monitor) -> list[tuple[int, int | None, list[int] | None]]:
    out = []
    for t in monitor.transactions:
        assert t.request is not None and t.response is not None, t.as_dict()
        out.append((t.request.tid, t.request.address, t.response.values))
    return out


def test_several_pdus_in_one_segment(tmp_path: Path) -> None:
    conv = Conversation().handshake()
    conv.c(read_request(1, 100, 2) + read_request(2, 200, 1) + read_request(3, 300, 1))
    conv.s(read_response(1, [11, 12]) + read_response(2, [21]) + read_response(3, [31]))
    monitor = analyse(write_pcap(tmp_path / "multi.pcap", conv.frames))
    assert matched(monitor) == [(1, 100, [11, 12]), (2, 200, [21]), (3, 300, [31])]
    # All three requests end in the same frame (3, after the two handshake frames), as tshark reports.
    assert {t.request.frame for t in monitor.transactions if t.request} == {3}


def test_pdu_split_across_segments(tmp_path: Path) -> None:
    conv = Conversation().handshake()
    request = read_request(7, 40, 3)
    conv.c(request[:3])
    conv.c(request[3:9])
    conv.c(request[9:])
    response = read_response(7, [1, 2, 3])
    conv.s(response[:8])
    conv.s(response[8:])
    monitor = analyse(write_pcap(tmp_path / "split.pcap", conv.frames))
    assert matched(monitor) == [(7, 40, [1, 2, 3])]
    transaction = monitor.transactions[0]
    assert transaction.request is not None and transaction.request.frame == 5  # completed by the third piece
    assert transaction.response is not None and transaction.response.frame == 7


def test_retransmission_is_not_decoded_twice(tmp_path: Path) -> None:
    conv = Conversation().handshake()
    seq = conv.cseq
    request = read_request(1, 10, 1)
    conv.c(request)
    conv.c(request, seq=seq)  # the same bytes again
    conv.s(read_response(1, [5]))
    monitor = analyse(write_pcap(tmp_path / "retrans.pcap", conv.frames))
    assert matched(monitor) == [(1, 10, [5])]
    assert monitor.stats.modbus_messages == 2


def test_overlapping_retransmission_keeps_only_new_bytes(tmp_path: Path) -> None:
    conv = Conversation().handshake()
    first, second = read_request(1, 10, 1), read_request(2, 20, 1)
    seq = conv.cseq
    conv.c(first[:6], seq=seq)
    conv.c(first + second, seq=seq)  # re-sent with more data: the first 6 bytes overlap
    conv.cseq = seq + len(first) + len(second)
    conv.s(read_response(1, [1]) + read_response(2, [2]))
    monitor = analyse(write_pcap(tmp_path / "overlap.pcap", conv.frames))
    assert matched(monitor) == [(1, 10, [1]), (2, 20, [2])]


def test_out_of_order_segments_are_reordered(tmp_path: Path) -> None:
    conv = Conversation().handshake()
    a, b, c = read_request(1, 1, 1), read_request(2, 2, 1), read_request(3, 3, 1)
    base = conv.cseq
    stream = a + b + c
    # Sent as three segments that do not align with the PDUs, delivered last, first, middle.
    pieces = [(0, 5), (5, 20), (20, len(stream))]
    for start, end in (pieces[2], pieces[0], pieces[1]):
        conv.c(stream[start:end], seq=base + start)
    conv.cseq = base + len(stream)
    conv.s(read_response(1, [10]) + read_response(2, [20]) + read_response(3, [30]))
    path = write_pcap(tmp_path / "ooo.pcap", conv.frames)
    monitor = analyse(path)
    assert matched(monitor) == [(1, 1, [10]), (2, 2, [20]), (3, 3, [30])]
    # Each request is reported at the frame that brought its last byte, and at that frame's time, even
    # when that frame arrived early and waited for the hole before it to be filled: 1 ends in the middle
    # piece (frame 5), 2 and 3 in the last piece, which came first (frame 3).
    times = {f.number: f.ts for f in read_capture(path)}
    requests = [t.request for t in monitor.transactions if t.request]
    assert [(r.frame, r.ts) for r in requests] == [(5, times[5]), (3, times[3]), (3, times[3])]


def test_flow_joined_mid_stream_resynchronises(tmp_path: Path) -> None:
    conv = Conversation()  # no handshake: the capture starts in the middle of a conversation
    whole = read_request(1, 10, 1)
    conv.c(whole[4:])  # the tail of a request whose start we never saw
    conv.c(read_request(2, 20, 2))
    conv.s(read_response(2, [7, 8]))
    monitor = analyse(write_pcap(tmp_path / "mid.pcap", conv.frames))
    assert matched(monitor) == [(2, 20, [7, 8])]
    # Joining mid-stream is normal on a span port: no malformed-frame alert for the partial head.
    assert [a.rule.id for a in monitor.detector.alerts] == []


def test_lost_segment_is_a_gap_then_decoding_continues(tmp_path: Path) -> None:
    conv = Conversation().handshake()
    conv.c(read_request(1, 10, 1))
    lost = read_request(2, 20, 1)
    conv.cseq += len(lost)  # never captured
    for tid in range(3, 3 + MAX_PENDING_SEGMENTS + 2):
        conv.c(read_request(tid, tid, 1))
    monitor = analyse(write_pcap(tmp_path / "gap.pcap", conv.frames))
    tids = [t.request.tid for t in monitor.transactions if t.request]
    assert 1 in tids and 2 not in tids
    assert set(range(3, 3 + MAX_PENDING_SEGMENTS + 2)) <= set(tids)


def test_unanswered_and_unsolicited_are_reported_unmatched(tmp_path: Path) -> None:
    conv = Conversation().handshake()
    conv.c(read_request(1, 10, 1))
    conv.s(read_response(9, [1]))
    monitor = analyse(write_pcap(tmp_path / "unmatched.pcap", conv.frames))
    records = [t.as_dict() for t in monitor.transactions]
    assert {(r["tid"], r["matched"]) for r in records} == {(1, False), (9, False)}


def test_flow_table_is_bounded(tmp_path: Path) -> None:
    frames = []
    for i in range(30):
        conv = Conversation(cport=20000 + i).handshake()
        conv.c(read_request(i, i, 1))
        conv.s(read_response(i, [i]))
        frames.extend(conv.frames)
    monitor = analyse(write_pcap(tmp_path / "flows.pcap", frames), max_flows=4)
    assert monitor.stats.flows == 30
    assert monitor.stats.evicted_flows >= 26
    assert len(monitor.transactions) == 30 and all(isinstance(t, Transaction) for t in monitor.transactions)


def test_direction_bounds_pending_memory() -> None:
    direction = TcpDirection()
    direction.syn(0)
    delivered = []
    # A peer that only ever sends segments beyond a hole: held up to the bound, then the hole is given up.
    for i in range(MAX_PENDING_SEGMENTS * 3):
        delivered.extend(direction.feed(1000 + i * 10, b"x" * 10, i + 1, float(i)))
    assert len(direction._pending) <= MAX_PENDING_SEGMENTS
    assert direction.gaps >= 1
    assert any(chunk.gap for chunk in delivered)
    # What the given-up hole lets go still carries the frame and time of the segment that brought it.
    assert [(c.frame, c.ts) for c in delivered] == [(i + 1, float(i)) for i in range(len(delivered))]


def test_sequence_wraps_around() -> None:
    direction = TcpDirection()
    direction.syn(0xFFFFFFF0)
    first = direction.feed(0xFFFFFFF1, b"a" * 20, 2, 0.5)
    second = direction.feed((0xFFFFFFF1 + 20) % (1 << 32), b"b" * 5, 3, 0.75)
    assert first == [Chunk(b"a" * 20, False, 2, 0.5)] and second == [Chunk(b"b" * 5, False, 3, 0.75)]


def test_identical_retransmission_is_no_conflict(tmp_path: Path) -> None:
    conv = Conversation().handshake()
    seq = conv.cseq
    request = read_request(1, 10, 1)
    conv.c(request)
    conv.c(request, seq=seq)
    conv.c(request[4:], seq=seq + 4)  # an overlap with the same bytes
    monitor = analyse(write_pcap(tmp_path / "same.pcap", conv.frames))
    assert monitor.stats.tcp_conflicts == 0
    assert not [a for a in monitor.detector.alerts if a.rule.id == "TCP-001"]


def test_retransmission_with_other_bytes_raises_an_evasion_alert(tmp_path: Path) -> None:
    """The first copy reads register 10; the retransmission of the same range writes register 10.
    Which one the PLC executed depends on its TCP stack: the monitor must say it cannot know."""
    conv = Conversation().handshake()
    seq = conv.cseq
    read = read_request(1, 10, 1)
    write = mbap(1, 1, struct.pack("!BHH", 6, 10, 0xDEAD))
    assert len(read) == len(write)
    conv.c(read)
    conv.c(write, seq=seq)
    conv.s(read_response(1, [5]))
    monitor = analyse(write_pcap(tmp_path / "evasion.pcap", conv.frames))
    assert monitor.stats.tcp_conflicts == 1
    (alert,) = [a for a in monitor.detector.alerts if a.rule.id == "TCP-001"]
    assert alert.frame == 4 and alert.rule.severity.name == "HIGH"
    assert "client side retransmitted 12 bytes" in alert.message and "3 of them different" in alert.message


def test_conflicting_out_of_order_copies_and_overlaps(tmp_path: Path) -> None:
    conv = Conversation().handshake()
    base = conv.cseq
    a, b = read_request(1, 1, 1), read_request(2, 2, 1)
    conv.c(b, seq=base + len(a))  # held: the hole before it is a's
    conv.c(read_request(2, 3, 1), seq=base + len(a))  # a second held copy, one byte different
    conv.c(a, seq=base)
    # An overlap across the boundary: a's last 2 bytes (changed) then b's first 4 (unchanged).
    conv.c(a[-2:-1] + b"\xff" + b[:4], seq=base + len(a) - 2)
    monitor = analyse(write_pcap(tmp_path / "held.pcap", conv.frames))
    assert monitor.stats.tcp_conflicts == 2


def test_conflicts_are_found_only_within_the_bytes_kept() -> None:
    direction = TcpDirection()
    direction.syn(0)
    direction.feed(1, b"x" * 40_000, 1, 0.0)
    direction.feed(1, b"y" * 100, 2, 0.0)  # 40,000 bytes back: beyond what is kept, not compared
    assert direction.conflicts == [] and direction.duplicates == 1
    direction.feed(40_001 - 10, b"x" * 9 + b"z", 3, 0.0)
    assert [(c.differing, c.compared, c.frame) for c in direction.conflicts] == [(1, 10, 3)]
