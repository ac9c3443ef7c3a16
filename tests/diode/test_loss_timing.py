"""When the receiver gives up on a block: soon once the sender has sent all of it (everything behind the
block waits for it), late only while the block may still be on its way; and what a late fragment does.

Driven by hand, with the receiver's clock passed in: the decisions, not their timing on this machine."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from otseam.core.records import Quality, Record, Sample
from otseam.diode import blocks, wire
from otseam.diode.config import DiodeConfigError
from otseam.diode.fec import Fec
from otseam.diode.receiver import DiodeReceiver
from otseam.journal import Journal
from tests.diode.harness import KEY, events, open_journal, read_all
from tests.diode.harness import settings as diode_settings

SESSION = 0x5EA0_0000_0000_0007
T0 = 1000.0


def block(sequence: int, first_offset: int, count: int = 20) -> tuple[list[bytes], int]:
    """The datagrams of one real block of ``count`` samples, in the order the sender sends them; and m.
    Text values, so that the block spans several data fragments (k > m)."""
    config = diode_settings()
    offsets = list(range(first_offset, first_offset + count))
    records: list[Record] = [Sample(f"plc1/p{o % 5}", "t" * 400, Quality.GOOD, float(o), float(o)) for o in offsets]
    (payload,) = blocks.encode_split("ot-edge", offsets, records, config.fec.max_block)
    k, m, fragments = Fec(config.fec).encode(payload)
    assert k > m + 1  # dropping m + 1 leaves some fragments: a block begun, not complete
    return wire.pack_block(KEY, 0, k, m, SESSION, sequence, fragments), m


BEACON_NUMBERS = itertools.count()


def beacon(blocks_sent: int) -> bytes:
    fingerprint = diode_settings().fingerprint(KEY)
    payload = wire.pack_beacon(wire.Beacon(fingerprint, time.time(), blocks_sent, 0, 200, next(BEACON_NUMBERS)))
    return wire.pack(KEY, wire.Header(wire.Kind.BEACON, 0, 0, 0, 0, SESSION, blocks_sent, len(payload)), payload)


def feed(receiver: DiodeReceiver, datagrams: list[bytes], now: float) -> None:
    for data in datagrams:
        receiver.datagram(memoryview(data), now)


def feed_all_but_too_many(receiver: DiodeReceiver, sequence: int, now: float) -> list[bytes]:
    """Block ``sequence`` (20 samples from offset 1 + 20 * sequence) short of one fragment more than its
    parity can replace; returns the fragments held back."""
    datagrams, m = block(sequence, 1 + 20 * sequence)
    feed(receiver, datagrams[: -(m + 1)], now)
    return datagrams[-(m + 1) :]


def samples_written(journal: Journal) -> list[float]:
    return [r.gateway_ts for r in read_all(journal) if isinstance(r, Sample)]


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    opened = open_journal(tmp_path / "it")
    yield opened
    opened.close()


def receiver_for(journal: Journal, **options: object) -> DiodeReceiver:
    receiver = DiodeReceiver(("127.0.0.1", 0), KEY, diode_settings(**options), journal)
    feed(receiver, [beacon(0)], T0)
    return receiver


def test_a_block_sent_whole_is_given_up_after_the_reorder_window_not_the_block_timeout(journal: Journal) -> None:
    receiver = receiver_for(journal, block_timeout="30s", reorder_window="20ms")
    feed(receiver, block(0, 1)[0], T0)
    feed_all_but_too_many(receiver, 1, T0)
    feed(receiver, block(2, 41)[0], T0 + 0.001)  # the sender has moved on: all of block 1 was sent
    receiver.tick(T0 + 0.015)
    assert receiver.stats.lost == 0 and samples_written(journal) == [float(o) for o in range(1, 21)]
    receiver.tick(T0 + 0.022)
    assert receiver.stats.lost == 1
    assert samples_written(journal) == [float(o) for o in range(1, 21)] + [float(o) for o in range(41, 61)]
    (gap,) = events(read_all(journal), "diode.gap")
    assert (gap.data["first"], gap.data["last"]) == (1, 1)


def test_a_tick_that_could_not_empty_the_socket_gives_nothing_up(journal: Journal) -> None:
    """The tick loop reads the socket for one tick at most; when the socket still holds datagrams after
    that (a sender above what the receiver sustains), their blocks may be among them: nothing is given
    up for lost until a tick finds the socket empty."""
    receiver = receiver_for(journal, block_timeout="30s", reorder_window="20ms")
    feed(receiver, block(0, 1)[0], T0)
    feed_all_but_too_many(receiver, 1, T0)
    feed(receiver, block(2, 41)[0], T0 + 0.001)
    receiver.tick(T0 + 0.5, check_losses=False)
    assert receiver.stats.lost == 0 and samples_written(journal) == [float(o) for o in range(1, 21)]
    receiver.tick(T0 + 0.5)
    assert receiver.stats.lost == 1


def test_a_block_still_arriving_waits_the_whole_block_timeout(journal: Journal) -> None:
    """Nothing later has arrived: the rest of the block may still be on its way (a sender paused in the
    middle of it), so the reorder window does not apply."""
    receiver = receiver_for(journal, block_timeout="500ms", reorder_window="20ms")
    rest = feed_all_but_too_many(receiver, 0, T0)
    receiver.tick(T0 + 0.1)
    assert receiver.stats.lost == 0
    feed(receiver, rest, T0 + 0.2)  # the sender goes on: the block completes
    receiver.tick(T0 + 0.3)
    assert receiver.stats.lost == 0 and receiver.stats.direct + receiver.stats.recovered == 1
    assert samples_written(journal) == [float(o) for o in range(1, 21)]


def test_the_block_timeout_still_ends_the_wait_for_a_last_block_nothing_follows(journal: Journal) -> None:
    receiver = receiver_for(journal, block_timeout="500ms", reorder_window="20ms")
    feed_all_but_too_many(receiver, 0, T0)
    receiver.tick(T0 + 0.45)
    assert receiver.stats.lost == 0
    receiver.tick(T0 + 0.51)
    assert receiver.stats.lost == 1


def test_a_beacon_that_counts_the_block_starts_the_reorder_window(journal: Journal) -> None:
    receiver = receiver_for(journal, block_timeout="30s", reorder_window="20ms")
    feed_all_but_too_many(receiver, 0, T0)
    feed(receiver, [beacon(1)], T0 + 0.5)  # sent after every datagram of block 0
    receiver.tick(T0 + 0.515)
    assert receiver.stats.lost == 0
    receiver.tick(T0 + 0.521)
    assert receiver.stats.lost == 1


def test_a_late_fragment_widens_the_window_and_is_reported(journal: Journal) -> None:
    receiver = receiver_for(journal, block_timeout="1s", reorder_window="20ms")
    late = feed_all_but_too_many(receiver, 0, T0)
    feed(receiver, block(1, 21)[0], T0 + 0.001)
    receiver.tick(T0 + 0.03)
    assert receiver.stats.lost == 1
    feed(receiver, late, T0 + 0.04)  # held back somewhere on the link, not lost
    assert receiver.stats.late == len(late)
    assert receiver.reorder_window == pytest.approx(0.04) and receiver.stats.reorder_window == pytest.approx(0.04)
    receiver.tick(T0 + 0.05)
    (reorder,) = events(read_all(journal), "diode.reorder")
    assert reorder.data["block"] == 0 and reorder.data["reorder_window_seconds"] == pytest.approx(0.04)
    # The next block sent whole now has 40 ms, and the window never grows past block_timeout.
    late = feed_all_but_too_many(receiver, 2, T0 + 0.1)
    feed(receiver, block(3, 61)[0], T0 + 0.1)
    receiver.tick(T0 + 0.13)
    assert receiver.stats.lost == 1
    receiver.tick(T0 + 0.141)
    assert receiver.stats.lost == 2
    for step in range(10):
        feed(receiver, late, T0 + 0.2 + step)
    assert receiver.reorder_window == pytest.approx(0.08)  # one widening per late block, however many came
    assert receiver.stats.late == 11 * len(late)


def test_the_window_never_grows_past_the_block_timeout(journal: Journal) -> None:
    receiver = receiver_for(journal, block_timeout="50ms", reorder_window="40ms")
    sequence, now = 0, T0
    for _ in range(3):
        late = feed_all_but_too_many(receiver, sequence, now)
        feed(receiver, block(sequence + 1, 21 + 20 * sequence)[0], now)
        receiver.tick(now + 0.06)
        feed(receiver, late, now + 0.07)
        sequence, now = sequence + 2, now + 1.0
    assert receiver.stats.lost == 3 and receiver.reorder_window == pytest.approx(0.05)


def test_a_reorder_window_longer_than_the_block_timeout_is_refused_with_both_values() -> None:
    with pytest.raises(DiodeConfigError, match=r"reorder_window .* at most block_timeout \(0.1s\), got 0.2s"):
        diode_settings(block_timeout="100ms", reorder_window="200ms")
    with pytest.raises(DiodeConfigError, match="reorder_window"):
        diode_settings(reorder_window="0s")
