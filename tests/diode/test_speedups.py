"""The compiled hot path (speedups/) against the pure-Python reference: the same bytes, the same
verdicts, the same journal, and no crash whatever it is handed."""

from __future__ import annotations

import array
import itertools
import logging
import select
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from otseam.core import columns
from otseam.core.records import Event, Quality, Record, Sample
from otseam.diode import blocks, wire
from otseam.diode.fec import Fec
from otseam.diode.receiver import DiodeReceiver
from otseam.journal import Journal
from tests.diode.harness import KEY, expected_mac, open_journal, read_all
from tests.diode.harness import settings as diode_settings

OTHER_KEY = b"0123456789abcdef0123456789abcdef"
SESSION, UNMATCHED_SESSION = 0x1111_2222_3333_4444, 0xFFFF_0000_FFFF_0000
UINT64 = st.integers(min_value=0, max_value=2**64 - 1)
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def compiled() -> ModuleType:
    module = wire.speedups(True)
    assert module is not None
    return module


def test_the_compiled_module_is_built_here_so_nothing_silently_falls_back_to_python() -> None:
    # CI runs on Linux: a missing build there would leave every other test here checking Python twice.
    assert sys.platform.startswith("linux")
    module = wire.speedups(None)
    assert module is not None
    assert all(hasattr(module, name) for name in ("Mac", "send_batch", "recv_batch", "enable_coalescing"))


# --- Mac -------------------------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.binary(min_size=1, max_size=200), st.binary(min_size=wire.HEADER_SIZE, max_size=3000))
@example(b"k" * 64, b"a 64-byte key is used as it is")
@example(b"k" * 65, b"a 65-byte key, hashed by HKDF's extract like any other")
@example(b"k", bytes(wire.HEADER_SIZE))
@example(b"k" * 32, b"SD\x03\x03" + bytes(22) + bytes(7))  # a beacon too short to carry a beacon number
@example(b"k" * 32, b"SD\x03\x03" + bytes(22) + bytes(range(8)))  # the shortest with one
def test_the_mac_is_the_gcm_tag_under_the_session_key_for_any_key_and_datagram(key: bytes, data: bytes) -> None:
    expected = expected_mac(key, data)
    mac = compiled().Mac(key)
    assert mac(data) == expected
    assert mac(bytearray(data)) == expected and mac(memoryview(data)) == expected
    assert wire.Mac(key)(data) == expected


def test_a_mac_refuses_an_empty_key_and_a_datagram_shorter_than_its_header() -> None:
    with pytest.raises(RuntimeError):
        compiled().Mac(b"")
    with pytest.raises(ValueError):
        wire.Mac(b"")
    with pytest.raises(ValueError):
        compiled().Mac(KEY)(bytes(wire.HEADER_SIZE - 1))
    with pytest.raises(ValueError):
        wire.Mac(KEY)(bytes(wire.HEADER_SIZE - 1))


def test_session_keys_survive_a_flood_of_forgeries_naming_other_sessions() -> None:
    """A Mac keeps a few session keys; forgeries naming random sessions must not evict the live one, and
    a key derived again gives the same tags."""
    mac = compiled().Mac(KEY)
    live = wire.HEADER.pack(wire.MAGIC, wire.VERSION, 1, 0, 1, 3, 0, SESSION, 5, 3) + b"abc"
    sealed = live + mac(live)
    for session in range(1, 200):
        forged = wire.HEADER.pack(wire.MAGIC, wire.VERSION, 1, 0, 1, 3, 0, session, 5, 3) + b"abc" + bytes(16)
        mac.parse_batch(sealed + forged, [0, len(sealed)], [len(sealed), len(forged)], 2, 2000)
        assert mac(live) == expected_mac(KEY, live)
    for session in range(1000, 1020):  # many live sessions: keys are derived again, with the same values
        other = wire.HEADER.pack(wire.MAGIC, wire.VERSION, 1, 0, 1, 3, 0, session, 5, 3) + b"abc"
        assert mac(other) == expected_mac(KEY, other)
    assert mac(live) == expected_mac(KEY, live)


@st.composite
def blocks_to_pack(draw: st.DrawFn) -> tuple[int, int, int, int, int, list[bytes], int]:
    k = draw(st.integers(min_value=1, max_value=12))
    m = draw(st.integers(min_value=0, max_value=6))
    fragments = draw(st.lists(st.binary(max_size=300), min_size=k + m, max_size=k + m))
    room = draw(st.integers(min_value=0, max_value=40))  # slack after the longest datagram
    slot = wire.OVERHEAD + max(map(len, fragments)) + room
    return draw(st.integers(0, 255)), k, m, draw(UINT64), draw(UINT64), fragments, slot


@settings(max_examples=300)
@given(blocks_to_pack(), st.binary(min_size=1, max_size=1))
def test_pack_block_writes_exactly_the_bytes_of_the_python_reference(
    block: tuple[int, int, int, int, int, list[bytes], int], filler: bytes
) -> None:
    flags, k, m, session, sequence, fragments, slot = block
    # Both buffers start with the same junk and a tail beyond the last slot: comparing them whole also
    # proves that nothing outside the datagrams is written.
    size = slot * len(fragments) + 17
    ours, reference = bytearray(filler * size), bytearray(filler * size)
    lengths = compiled().Mac(KEY).pack_block(ours, slot, flags, k, m, session, sequence, fragments)
    expected = wire.pack_block_into(wire.Mac(KEY), reference, slot, flags, k, m, session, sequence, fragments)
    assert lengths == expected
    assert ours == reference


def _pack(buffer: Any, slot: Any, flags: Any, k: Any, m: Any, session: Any, sequence: Any, fragments: Any) -> None:
    compiled().Mac(KEY).pack_block(buffer, slot, flags, k, m, session, sequence, fragments)


FOUR = [b"a", b"b", b"c", b"d"]


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        pytest.param((bytearray(400), 100, 0, 3, 1, 1, 1, [b"a", b"b", b"c", b"x" * 59]), ValueError, id="too-large"),
        pytest.param((bytearray(400), 100, 0, 3, 1, 1, 1, [b"a", b"b", b"c"]), ValueError, id="k+m-not-fragments"),
        pytest.param((bytearray(399), 100, 0, 3, 1, 1, 1, FOUR), ValueError, id="buffer-too-small"),
        # A slot so large that slot * 4 wraps to 0 in 64 bits: this overran the buffer before the fix.
        pytest.param((bytearray(400), 2**62, 0, 3, 1, 1, 1, FOUR), ValueError, id="slot-overflows"),
        pytest.param((bytearray(400), 41, 0, 3, 1, 1, 1, FOUR), ValueError, id="slot-below-overhead"),
        pytest.param((bytearray(400), 100, 0, 0, 4, 1, 1, FOUR), ValueError, id="k-zero"),
        pytest.param((bytearray(400), 100, 256, 3, 1, 1, 1, FOUR), ValueError, id="flags-beyond-a-byte"),
        pytest.param((bytearray(400), 100, 0, 3, -1, 1, 1, [b"a", b"b"]), ValueError, id="m-negative"),
        # Before the fix these were silently cut to 64 bits and sealed.
        pytest.param((bytearray(400), 100, 0, 3, 1, -1, 1, FOUR), ValueError, id="session-negative"),
        pytest.param((bytearray(400), 100, 0, 3, 1, 1, 2**64, FOUR), ValueError, id="sequence-beyond-64-bits"),
        pytest.param((bytearray(70_000), 70_000, 0, 1, 0, 1, 1, [b"x" * 65_536]), ValueError, id="length-field"),
        pytest.param((bytearray(400), 100, 0, 3, 1, 1, 1, [b"a", "b", b"c", b"d"]), TypeError, id="str-fragment"),
        pytest.param((bytearray(400), 100, 0, 3, 1, 1, 1, tuple(FOUR)), TypeError, id="tuple-of-fragments"),
        pytest.param((bytes(400), 100, 0, 3, 1, 1, 1, FOUR), TypeError, id="read-only-buffer"),
        pytest.param((bytearray(400), 100, 0, 3, 1, 1.0, 1, FOUR), TypeError, id="float-session"),
    ],
)
def test_pack_block_refuses_bad_arguments_with_an_exception_never_a_crash(
    arguments: tuple[Any, ...], error: type[Exception]
) -> None:
    with pytest.raises(error):
        _pack(*arguments)


# --- parse_batch, fuzzed directly ----------------------------------------------------------------


@settings(max_examples=500)
@given(
    st.binary(max_size=300),
    st.lists(st.one_of(st.integers(-50, 350), INT64), max_size=12),
    st.lists(st.one_of(st.integers(-2, 350), INT64), max_size=12),
    st.integers(-3, 14),
    st.one_of(st.integers(-2, 400), INT64),
    st.lists(st.tuples(st.integers(0, 250), st.sampled_from(["data", "beacon", "foreign"])), max_size=3),
)
@example(bytes(100), [2**63 - 10], [42], 1, 100, [])  # start + size overflowed and read far past the buffer
@example(bytes(100), [-1], [42], 1, 100, [])
def test_parse_batch_returns_or_refuses_inconsistent_arguments_whatever_it_is_given(
    data: bytes,
    starts: list[int],
    sizes: list[int],
    count: int,
    limit: int,
    planted: list[tuple[int, str]],
) -> None:
    # Authentic datagrams planted in the buffer take the checker past the MAC some of the time.
    buffer = bytearray(data)
    for position, what in planted:
        datagram = _sample_datagram(what)
        buffer[position : position + len(datagram)] = datagram
    mac = compiled().Mac(KEY)
    as_arrays = array.array("q", starts), array.array("q", sizes)  # the form recv_batch fills in place
    try:
        result = mac.parse_batch(bytes(buffer), starts, sizes, count, limit)
    except ValueError:
        with pytest.raises(ValueError):
            mac.parse_batch(bytes(buffer), *as_arrays, count, limit)
        return
    assert mac.parse_batch(bytes(buffer), *as_arrays, count, limit) == result
    received, rejected, items = result
    counted = [s for s in sizes[: max(count, 0)] if wire.OVERHEAD <= s <= limit]
    assert received == sum(counted)  # every datagram within the limit lies inside the buffer, or it raised
    assert len(rejected) == 5 and sum(rejected) <= count
    assert all(
        item[0] in (wire.ITEM_RUN, wire.ITEM_BEACON, wire.ITEM_FOREIGN_BEACON, wire.ITEM_BLOCK) for item in items
    )


def test_parse_batch_refuses_a_count_beyond_its_lists_and_a_datagram_past_the_buffer() -> None:
    mac = compiled().Mac(KEY)
    with pytest.raises(ValueError, match="count"):
        mac.parse_batch(bytes(100), [0], [42], 2, 100)
    with pytest.raises(ValueError, match="past the buffer"):
        mac.parse_batch(bytes(100), [60], [42], 1, 100)
    # Sizes outside 42 .. limit never reach their start: they are SHORT, wherever they claim to be.
    assert mac.parse_batch(bytes(10), [10**9, -5], [-1, 500], 2, 400) == (0, (2, 0, 0, 0, 0), [])


#: Beacon numbers only go up: a receiver ignores a beacon whose number it has seen (a replay).
BEACON_NUMBERS = itertools.count()


@cache
def _sample_datagram(what: str) -> bytes:
    fingerprint = diode_settings().fingerprint(KEY)
    if what == "data":
        return wire.pack(KEY, wire.Header(wire.Kind.DATA, 0, 1, 3, 0, SESSION, 0, 5), b"hello")
    beacon = wire.pack_beacon(wire.Beacon(fingerprint, 1.0, 0, 0, 200, 0))
    header = wire.Header(wire.Kind.BEACON, 0, 0, 0, 0, SESSION, 0, len(beacon))
    return wire.pack(KEY if what == "beacon" else OTHER_KEY, header, beacon)


# --- the differential test: the same stream through both checkers ---------------------------------


class Pool:
    """A short, real transmission: beacons and the fragments of real blocks, in the order sent."""

    def __init__(self) -> None:
        config = diode_settings()
        fec = Fec(config.fec)
        mac = wire.Mac(KEY)
        self.datagrams: list[bytes] = []
        self.records: list[Record] = []
        self.beacon(KEY, SESSION, 0, config.fingerprint(KEY))
        # An authentic sender with another configuration: its beacon is a mismatch, its fragments
        # unsynchronised.
        self.beacon(KEY, UNMATCHED_SESSION, 0, diode_settings(k=32).fingerprint(KEY))
        offset = 1
        sequence = 0
        for count, text in ((3, 0), (40, 0), (6, 900), (2, 5000), (25, 0)):
            records: list[Record] = [
                Sample(f"plc1/p{o % 7}", "x" * text if text else o * 0.5, Quality.GOOD, float(o), float(o))
                for o in range(offset, offset + count)
            ]
            offsets = list(range(offset, offset + count))
            offset += count
            self.records += records
            for payload in blocks.encode_split("ot-edge", offsets, records, config.fec.max_block):
                k, m, fragments = fec.encode(payload)
                buffer = bytearray(config.datagram_size * (k + m))
                flags = wire.FLAG_SNAPSHOT if sequence == 2 else 0
                lengths = wire.pack_block_into(
                    mac, buffer, config.datagram_size, flags, k, m, SESSION, sequence, fragments
                )
                for i, length in enumerate(lengths):
                    start = i * config.datagram_size
                    self.datagrams.append(bytes(buffer[start : start + length]))
                sequence += 1
        self.datagrams += wire.pack_block(KEY, 0, 1, 3, UNMATCHED_SESSION, 0, [b"u" * 90] * 4)
        self.beacon(OTHER_KEY, SESSION, sequence, diode_settings(k=16).fingerprint(OTHER_KEY))
        self.beacon(KEY, SESSION, sequence, config.fingerprint(KEY))

    def beacon(self, key: bytes, session: int, sequence: int, fingerprint: bytes) -> None:
        payload = wire.pack_beacon(wire.Beacon(fingerprint, time.time(), sequence, 0, 200, next(BEACON_NUMBERS)))
        header = wire.Header(wire.Kind.BEACON, 0, 0, 0, 0, session, sequence, len(payload))
        self.datagrams.append(wire.pack(key, header, payload))


@cache
def pool() -> Pool:
    return Pool()


def _reseal(data: bytes | bytearray, key: bytes = KEY) -> bytes:
    """Replace the MAC so that an edited header is authentic again (or sealed with another key)."""
    body = bytes(data[: -wire.MAC_SIZE])
    return body + expected_mac(key, body)


#: A datagram the kernel truncated (size -1 in a batch; in one datagram, one byte too many to be ours).
TRUNCATED = None
Datagram = bytes | None

Edit = tuple[Any, ...]
EDITS = st.one_of(
    st.tuples(st.just("drop"), st.integers(0)),
    st.tuples(st.just("duplicate"), st.integers(0), st.integers(0)),
    st.tuples(st.just("move"), st.integers(0), st.integers(0)),
    st.tuples(st.just("flip"), st.integers(0), st.integers(0), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0), st.integers(0)),
    st.tuples(st.just("extend"), st.integers(0), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("rekey"), st.integers(0)),
    st.tuples(st.just("magic"), st.integers(0), st.binary(min_size=2, max_size=2)),
    st.tuples(st.just("version"), st.integers(0), st.integers(0, 255)),
    # byte 3..7: kind, flags, k, m, fragment index; then sealed again, so the MAC passes
    st.tuples(st.just("header"), st.integers(0), st.integers(3, 7), st.integers(0, 255)),
    # a shorter payload (down to none) with its length field to match, sealed again: authentic
    st.tuples(st.just("shrink"), st.integers(0), st.integers(0)),
    st.tuples(st.just("random"), st.integers(0), st.binary(max_size=120)),
    st.tuples(st.just("kernel-truncated"), st.integers(0)),
)


def edited(stream: list[bytes], edits: list[Edit]) -> list[Datagram]:
    out: list[Datagram] = list(stream)
    for edit in edits:
        op, where = edit[0], edit[1] % (len(out) or 1)
        if not out:
            continue
        data = out[where]
        reordering = op in ("drop", "duplicate", "move", "random", "kernel-truncated")
        if not reordering and (data is None or len(data) < wire.OVERHEAD):  # no header left to edit
            continue
        if op == "drop":
            del out[where]
        elif op == "duplicate":
            out.insert(edit[2] % (len(out) + 1), data)
        elif op == "move":
            out.insert(edit[2] % len(out), out.pop(where))
        elif op == "random":
            out.insert(where, edit[2])
        elif op == "kernel-truncated":
            out.insert(where, TRUNCATED)
        else:
            assert data is not None
            changed = bytearray(data)
            if op == "flip":
                changed[edit[2] % len(changed)] ^= edit[3]
            elif op == "truncate":
                del changed[edit[2] % len(changed) :]
            elif op == "extend":
                changed += edit[2]
            elif op == "rekey":
                changed = bytearray(_reseal(changed, OTHER_KEY))
            elif op == "magic":
                changed[0:2] = edit[2]
            elif op == "version":
                changed[2] = edit[2]
            elif op == "shrink":
                payload = changed[wire.HEADER_SIZE : -wire.MAC_SIZE]
                # An authentic datagram cut short: fragments shorter than their block length claims
                # are refused by the FEC decoder, never read past.
                payload = payload[: edit[2] % (len(payload) + 1)]
                changed[24:] = struct.pack(">H", len(payload)) + payload + bytes(wire.MAC_SIZE)
                changed = bytearray(_reseal(changed))
            elif op == "header":
                changed[edit[2]] = edit[3]
                changed = bytearray(_reseal(changed))
            out[where] = bytes(changed)
    return out


def _batches(stream: list[Datagram], cuts: list[int]) -> Iterator[list[Datagram]]:
    sizes = itertools.cycle(cuts or [1])
    position = 0
    while position < len(stream):
        size = next(sizes)
        yield stream[position : position + size]
        position += size


def feed_batches(receiver: DiodeReceiver, stream: list[Datagram], cuts: list[int], gap: int, now: float) -> None:
    """As recvmmsg (or a coalesced message cut up) would lay them out: one buffer, starts and sizes."""
    for batch in _batches(stream, cuts):
        buffer, starts, sizes = bytearray(), [], []
        for data in batch:
            buffer += b"\xa5" * gap  # datagrams need not start at multiples of anything
            starts.append(len(buffer))
            sizes.append(-1 if data is None else len(data))
            buffer += data or b""
        receiver._handle(memoryview(buffer), starts, sizes, len(batch), now)


def feed_one_by_one(receiver: DiodeReceiver, stream: list[Datagram], now: float) -> None:
    too_long = bytes(receiver.settings.datagram_size + 1)
    for data in stream:
        receiver.datagram(memoryview(too_long if data is None else data), now)


#: Wall-clock readings, not counts: they differ between any two runs.
CLOCKS = {"first_write", "last_write", "lag_seconds", "record_lag_seconds"}


def outcome(receiver: DiodeReceiver, journal: Journal) -> tuple[dict[str, object], list[Record]]:
    counters = {name: value for name, value in receiver.stats.as_dict().items() if name not in CLOCKS}
    written = [r._replace(ts=0.0) if isinstance(r, Event) else r for r in read_all(journal)]
    return counters, written


def run_through(
    tmp: Path, name: str, compiled_checker: bool, feed: Callable[[DiodeReceiver, float], None]
) -> tuple[dict[str, object], list[Record]]:
    journal = open_journal(tmp / name)
    try:
        receiver = DiodeReceiver(("127.0.0.1", 0), KEY, diode_settings(), journal, compiled=compiled_checker)
        assert (receiver._checker is not None) is compiled_checker
        now = 1000.0
        feed(receiver, now)
        receiver.tick(now + 10.0)  # whatever is still incomplete is now given up, and everything written
        return outcome(receiver, journal)
    finally:
        journal.close()


_examples = itertools.count()


def differential(tmp_path: Path, stream: list[Datagram], cuts: list[int], other_cuts: list[int], gap: int) -> Any:
    tmp = tmp_path / f"example-{next(_examples)}"
    results = {
        "C, batches": run_through(tmp, "c-batch", True, lambda r, now: feed_batches(r, stream, cuts, gap, now)),
        "Python, batches": run_through(
            tmp, "py-batch", False, lambda r, now: feed_batches(r, stream, other_cuts, 0, now)
        ),
        "C, one by one": run_through(tmp, "c-single", True, lambda r, now: feed_one_by_one(r, stream, now)),
        "Python, one by one": run_through(tmp, "py-single", False, lambda r, now: feed_one_by_one(r, stream, now)),
    }
    reference = results["Python, one by one"]
    for name, result in results.items():
        assert result[0] == reference[0], name
        assert result[1] == reference[1], name
    return reference


def test_an_untouched_stream_gives_every_record_once_in_order_on_every_path(tmp_path: Path) -> None:
    # Without this, the differential test below could pass by both sides dropping everything.
    counters, written = differential(tmp_path, list(pool().datagrams), [7, 1, 30], [64], 3)
    assert [r for r in written if isinstance(r, Sample)] == pool().records
    assert counters["rejected"] == {"short": 0, "magic": 0, "version": 0, "mac": 1, "malformed": 0}
    assert counters["unsynchronised"] == 4 and counters["mismatches"] == 1 and counters["foreign_beacons"] == 1
    assert counters["snapshots"] == 1
    assert counters["lost"] == 0 and counters["sessions"] == 1


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(EDITS, max_size=14),
    st.lists(st.integers(1, 80), min_size=1, max_size=6),
    st.lists(st.integers(1, 80), min_size=1, max_size=6),
    st.integers(0, 9),
)
def test_the_compiled_checker_and_the_python_reference_agree_on_any_stream(
    tmp_path: Path, edits: list[Edit], cuts: list[int], other_cuts: list[int], gap: int
) -> None:
    """Forged, damaged, duplicated and reordered datagrams among real ones: every counter and every
    record written must be the same, whichever checker reads them and however they are batched."""
    differential(tmp_path, edited(pool().datagrams, edits), cuts, other_cuts, gap)


# --- recv_batch: cutting coalesced messages --------------------------------------------------------

UDP_SEGMENT = 103


def _pair(coalesce: bool) -> tuple[socket.socket, socket.socket]:
    receiving = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiving.bind(("127.0.0.1", 0))
    receiving.setblocking(False)
    if coalesce:
        assert compiled().enable_coalescing(receiving.fileno())
    sending = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return receiving, sending


def _segmented(sending: socket.socket, target: tuple[str, int], payload: bytes, segment: int) -> None:
    sending.sendmsg([payload], [(socket.SOL_UDP, UDP_SEGMENT, struct.pack("H", segment))], 0, target)


def _receive(receiving: socket.socket, slot: int, count: int = 8) -> tuple[list[int], list[int]]:
    starts: list[int] = []
    sizes: list[int] = []
    buffer = bytearray(slot * count)
    # Loopback delivers at once; the wait only bounds a test that would otherwise spin forever.
    select.select([receiving], [], [], 2.0)
    for _ in range(3):
        got_starts, got_sizes = compiled().recv_batch(receiving.fileno(), buffer, slot, count)
        starts += got_starts
        sizes += got_sizes
        if got_sizes:
            break
        select.select([receiving], [], [], 0.2)
    return starts, sizes


def test_recv_batch_cuts_a_coalesced_message_at_its_segment_size_with_a_shorter_last_one() -> None:
    receiving, sending = _pair(coalesce=True)
    with receiving, sending:
        payload = b"".join(bytes([i]) * 100 for i in range(5)) + b"\x09" * 60
        _segmented(sending, receiving.getsockname(), payload, 100)
        starts, sizes = _receive(receiving, 65536)
    assert starts == [0, 100, 200, 300, 400, 500]
    assert sizes == [100, 100, 100, 100, 100, 60]


def test_recv_batch_fills_arrays_in_place_as_it_fills_lists() -> None:
    receiving, sending = _pair(coalesce=True)
    slot, count = 65536, 8
    capacity = count * (slot // wire.OVERHEAD + 1)
    starts, sizes = array.array("q", bytes(8 * capacity)), array.array("q", bytes(8 * capacity))
    with receiving, sending:
        payload = b"".join(bytes([i]) * 100 for i in range(5)) + b"\x09" * 60
        _segmented(sending, receiving.getsockname(), payload, 100)
        buffer = bytearray(slot * count)
        filled = 0
        for _ in range(20):  # loopback delivers at once; this only bounds a test that would spin forever
            select.select([receiving], [], [], 0.5)
            filled = compiled().recv_batch(receiving.fileno(), buffer, slot, count, starts, sizes)
            if filled:
                break
    assert list(starts[:filled]) == [0, 100, 200, 300, 400, 500]
    assert list(sizes[:filled]) == [100, 100, 100, 100, 100, 60]
    assert buffer[500:560] == b"\x09" * 60


@pytest.mark.parametrize("entries", [0, 8 * (65536 // 42 + 1) - 1])
def test_recv_batch_refuses_arrays_too_small_for_a_batch(entries: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(ValueError, match="array"):
        compiled().recv_batch(
            sock.fileno(),
            bytearray(65536 * 8),
            65536,
            8,
            array.array("q", [0] * entries),
            array.array("q", [0] * 10**6),
        )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(ValueError, match="array"):
        compiled().recv_batch(
            sock.fileno(), bytearray(800), 100, 8, array.array("i", [0] * 100), array.array("q", [0] * 100)
        )


def test_recv_batch_without_coalescing_gives_each_segment_its_own_slot() -> None:
    receiving, sending = _pair(coalesce=False)
    with receiving, sending:
        _segmented(sending, receiving.getsockname(), bytes(100) * 3 + bytes(60), 100)
        starts, sizes = _receive(receiving, 200)
    assert starts == [0, 200, 400, 600]
    assert sizes == [100, 100, 100, 60]


def test_a_coalesced_message_of_tiny_segments_is_one_rejection_not_thousands() -> None:
    receiving, sending = _pair(coalesce=True)
    with receiving, sending:
        _segmented(sending, receiving.getsockname(), bytes(8 * 40), 8)
        starts, sizes = _receive(receiving, 65536)
    assert sizes == [-1] and starts == [0]


def test_a_datagram_longer_than_the_slot_is_reported_with_size_minus_one() -> None:
    receiving, sending = _pair(coalesce=False)
    with receiving, sending:
        sending.sendto(bytes(2000), receiving.getsockname())
        sending.sendto(bytes(500), receiving.getsockname())
        starts, sizes = _receive(receiving, 1000)
    assert sizes == [-1, 500] and starts == [0, 1000]


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param((8, 2**62), id="slot-overflows"),  # 8 * 2**62 wraps to 0: recvmmsg wrote past the buffer
        pytest.param((1025, 1), id="count-too-large"),
        pytest.param((0, 100), id="count-zero"),
        pytest.param((4, 0), id="slot-zero"),
        pytest.param((9, 100), id="buffer-too-small"),
    ],
)
def test_recv_batch_refuses_a_layout_that_does_not_fit_its_buffer(arguments: tuple[int, int]) -> None:
    count, slot = arguments
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(ValueError):
        compiled().recv_batch(sock.fileno(), bytearray(800), slot, count)


@pytest.mark.parametrize(
    ("slot", "first", "count"),
    [
        pytest.param(2**62, 0, 4, id="slot-overflows"),
        pytest.param(100, 2**63 - 2, 4, id="first-overflows"),
        pytest.param(100, 15, 2, id="past-the-lengths"),
        pytest.param(100, 0, 9, id="past-the-buffer"),
        pytest.param(100, -1, 2, id="first-negative"),
    ],
)
def test_send_batch_refuses_a_layout_that_does_not_fit_its_buffer(slot: int, first: int, count: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        address = struct.pack("=H", socket.AF_INET) + struct.pack(">H", 9) + socket.inet_aton("127.0.0.1") + bytes(8)
        with pytest.raises(ValueError):
            compiled().send_batch(sock.fileno(), address, bytes(800), slot, [50] * 16, first, count, True)


def test_without_the_compiled_module_the_diode_says_so_once_and_insisting_is_an_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Where the module could not be built (no compiler at install time), the Python path runs and an
    operator learns why the diode is slower; asking for the compiled path then is a clear error."""
    monkeypatch.setattr(wire, "_SPEEDUPS", None)
    monkeypatch.setattr(wire, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="otseam.diode.wire"):
        assert wire.speedups(None) is None
        assert wire.speedups(None) is None
        assert wire.speedups(False) is None
    assert len(caplog.records) == 1 and "not built here" in caplog.records[0].getMessage()
    with pytest.raises(RuntimeError, match="reinstall Seam"):
        wire.speedups(True)


def test_authentic_blocks_that_do_not_decode_are_counted_and_reported_on_every_path(tmp_path: Path) -> None:
    """A sender bug, not the network: blocks that pass the MAC and rebuild, but whose payload is not a
    well-formed block. Each is counted once, reported as a diode.bad_block event, and nothing of it is
    written; the good blocks around them are stored as they arrived."""
    config = diode_settings()
    fec, mac = Fec(config.fec), wire.Mac(KEY)
    good: list[Record] = [Sample(f"plc1/p{i}", "x" * 40, Quality.GOOD, 1.0, 2.0) for i in range(30)]
    valid = blocks.encode("ot-edge", list(range(1, 31)), good)
    later = blocks.encode("ot-edge", list(range(31, 61)), good)
    payloads = [
        valid,
        valid[:-1],  # columns, one byte short
        valid[:40] + b"\xff" + valid[41:],  # columns, damaged inside the point table's JSON
        b"\x01" + b'{"s": "ot-edge", "o": [61], "r": [[0, "p", 1.0, 99, 1.0, 2.0]]}',  # JSON, unknown quality
        b"\x07payload",  # an unknown format
        later,
    ]
    beacon = wire.pack_beacon(wire.Beacon(config.fingerprint(KEY), time.time(), 0, 0, 200, 0))
    stream: list[Datagram] = [
        wire.pack(KEY, wire.Header(wire.Kind.BEACON, 0, 0, 0, 0, SESSION, 0, len(beacon)), beacon)
    ]
    for sequence, payload in enumerate(payloads):
        k, m, fragments = fec.encode(payload)
        buffer = bytearray(config.datagram_size * (k + m))
        lengths = wire.pack_block_into(mac, buffer, config.datagram_size, 0, k, m, SESSION, sequence, fragments)
        stream += [
            bytes(buffer[i * config.datagram_size : i * config.datagram_size + n]) for i, n in enumerate(lengths)
        ]
    counters, written = differential(tmp_path, stream, [5, 64], [3], 1)
    assert counters["bad_blocks"] == 4 and counters["records"] == 60
    assert [r for r in written if isinstance(r, Sample)] == good + good
    assert [r.kind for r in written if isinstance(r, Event)].count("diode.bad_block") == 4


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 64 * 1426), st.sampled_from(["whole", "no first", "short", "torn header"]))
def test_a_run_holding_every_data_fragment_comes_as_the_block_and_only_then(size: int, case: str) -> None:
    """parse_batch hands a run over as the block itself (ITEM_BLOCK, copied once, the parity not at all)
    exactly when the run starts at fragment 0, holds all k data fragments, and their headers agree on a
    length they carry; the block is then what join_fragments makes of the same fragments. Otherwise the
    run comes as before, its payloads joined (ITEM_RUN), for the general path to judge."""
    module = compiled()
    sealer, fec = module.Mac(KEY), Fec(diode_settings().fec)
    block = bytes((i * 31 + size) % 251 for i in range(size))
    k, m, fragments = fec.encode(block)
    if case == "torn header" and k > 1:  # sealed as sent, but fragment 1 claims another length
        fragments[1] = (size + 1).to_bytes(4, "big") + fragments[1][4:]
    slot = len(fragments[0]) + wire.OVERHEAD
    buffer = bytearray(slot * (k + m))
    lengths = sealer.pack_block(buffer, slot, 0, k, m, SESSION, 5, fragments)
    keep = list(range(k + m))
    if case == "no first":
        keep = keep[1:]
    elif case == "short":
        keep = keep[: k - 1]
    starts, sizes = [i * slot for i in keep], [lengths[i] for i in keep]
    _, rejected, items = sealer.parse_batch(buffer, starts, sizes, len(keep), slot)
    assert rejected == (0, 0, 0, 0, 0)
    if not keep:
        assert items == []
        return
    (item,) = items
    whole = case == "whole" or (case == "torn header" and k == 1)
    if whole:
        assert item == (wire.ITEM_BLOCK, SESSION, 5, 0, k, m, k + m, block)
        assert item[7] == module.join_fragments(b"".join(fragments), len(fragments[0]), k)
    else:
        assert item[0] == wire.ITEM_RUN
        assert item[6:] == (keep[0], len(fragments[0]), b"".join(fragments[i] for i in keep))


@settings(max_examples=60, deadline=None)
@given(st.sets(st.integers(0, 47), max_size=12), st.integers(1, 1400), st.sampled_from([0, 5, 17]))
def test_macs_checked_sixteen_at_a_time_reject_exactly_the_forged_datagrams(
    forged: set[int], size: int, gap: int
) -> None:
    """Runs of equal-length datagrams are checked one after the other in C; a forged MAC anywhere in a
    run, at its edges or alone in a short tail, must be refused, and only it."""
    module = compiled()
    sealer = module.Mac(KEY)
    slot = size + wire.HEADER_SIZE + wire.MAC_SIZE + gap
    buffer = bytearray(slot * 48)
    payloads = [bytes([i]) * size for i in range(48)]
    lengths = sealer.pack_block(buffer, slot, 0, 40, 8, SESSION, 9, payloads)
    for i in forged:
        buffer[i * slot + lengths[i] - 1] ^= 0x01
    received, rejected, items = sealer.parse_batch(buffer, [i * slot for i in range(48)], lengths, 48, slot)
    assert received == sum(lengths)
    assert rejected == (0, 0, 0, len(forged), 0)
    accepted = [index for item in items for index in range(item[6], item[6] + len(item[8]) // item[7])]
    assert accepted == [i for i in range(48) if i not in forged]
    for item in items:  # every accepted payload is the one sealed at its index
        for j in range(len(item[8]) // item[7]):
            assert item[8][j * item[7] : (j + 1) * item[7]] == payloads[item[6] + j]


def test_lane_macs_equal_openssls_for_every_datagram_size() -> None:
    """For every payload size of a 1,500-byte link and a sample of jumbo sizes (GHASH works in 16-byte
    blocks: every tail length), sixteen sealed datagrams must all pass, and each with one bit of its
    payload changed must fail."""
    module = compiled()
    sealer = module.Mac(KEY)
    for size in [*range(1, 1500), *range(1500, 9000, 7)]:
        slot = size + wire.HEADER_SIZE + wire.MAC_SIZE
        buffer = bytearray(slot * 16)
        payloads = [bytes([(size + i) % 251]) * size for i in range(16)]
        lengths = sealer.pack_block(buffer, slot, 0, 13, 3, SESSION, size, payloads)
        starts = [i * slot for i in range(16)]
        assert sealer.parse_batch(buffer, starts, lengths, 16, slot)[1][3] == 0, size
        for i in range(16):
            buffer[i * slot + wire.HEADER_SIZE + (size * 7 + i) % size] ^= 1 << (i % 8)
        assert sealer.parse_batch(buffer, starts, lengths, 16, slot)[1][3] == 16, size


# --- inspect_columns: the receiver's check of a run before storing it as it came -----------------------

QUALITIES = len(Quality)
TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
#: What JSON carries without an escape.
PLAIN = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters='"\\'), max_size=40)


@st.composite
def sample_runs(draw: st.DrawFn) -> bytes:
    """Runs as senders encode them (the common shapes and some others), then perhaps damaged."""
    count = draw(st.integers(1, 30))
    keys = draw(st.lists(TEXT | st.text(max_size=8), min_size=1, max_size=5))
    value = draw(
        st.sampled_from(
            [
                st.floats(allow_nan=True),
                TEXT,
                st.text(max_size=20),
                st.integers(-5, 5),
                st.one_of(st.floats(), TEXT),
            ]
        )
    )
    records = [
        Sample(draw(st.sampled_from(keys)), draw(value), draw(st.sampled_from(list(Quality))), 1.5 * i, 2.0 * i)
        for i in range(count)
    ]
    first = draw(st.sampled_from([0, 7, 2**62, 2**63 - 1 - count]))
    offsets = list(range(first, first + count))
    if draw(st.booleans()):
        offsets = draw(st.permutations(offsets))
    payload = bytearray(columns.encode(draw(TEXT | st.text(max_size=6)), offsets, records))
    for _ in range(draw(st.integers(0, 3))):
        position = draw(st.integers(0, len(payload) - 1))
        payload[position] = draw(st.integers(0, 255))
    if draw(st.integers(0, 9)) == 0:
        payload = payload[: draw(st.integers(0, len(payload)))] + draw(st.binary(max_size=9))
    return bytes(payload)


def _reference(payload: bytes) -> columns.Summary | None:
    try:
        return columns.inspect(payload)
    except columns.ColumnsError:
        return None


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sample_runs())
def test_inspect_columns_accepts_only_what_the_reference_accepts_with_the_same_summary(payload: bytes) -> None:
    fields = compiled().inspect_columns(payload, QUALITIES)
    if fields is not None:  # compared by repr: a NaN timestamp equals itself
        assert repr(_reference(payload)) == repr(columns.Summary(*fields))


@given(st.lists(st.floats(allow_nan=False) | TEXT, min_size=1, max_size=50), PLAIN, st.integers(0, 2**40))
def test_inspect_columns_takes_the_runs_a_sender_makes(values: list[float | str], source: str, first: int) -> None:
    """Float or ASCII text values with printable ASCII keys and consecutive offsets: the C path takes them."""
    kind = type(values[0])
    samples: list[Record] = [
        Sample(f"plc/{i % 3}", v if type(v) is kind else values[0], Quality.GOOD, i, i) for i, v in enumerate(values)
    ]
    payload = columns.encode(source, list(range(first, first + len(values))), samples)
    fields = compiled().inspect_columns(payload, QUALITIES)
    assert fields is not None and columns.Summary(*fields) == columns.inspect(payload)
