"""sendmmsg/recvmmsg batches and the one-datagram-per-call fallback carry the same data, either way round."""

from __future__ import annotations

import contextlib
import random
import socket
import struct
from pathlib import Path

import pytest

from otseam.core.records import Quality, Record, Sample
from otseam.diode import mmsg, wire
from otseam.diode.receiver import DiodeReceiver
from otseam.diode.sender import END_BEACONS, DiodeSender
from otseam.diode.wire import Rejected
from tests.diode.harness import KEY, open_journal, read_all, samples, settings, through
from tests.diode.relay import Impairments, LossyRelay
from tests.support.wait import wait_until_async


def test_batches_are_available_on_this_linux_machine() -> None:
    # Otherwise the batched runs below would silently test the fallback twice.
    assert mmsg.available()


@pytest.mark.parametrize(
    ("send_batched", "receive_batched"), [(True, True), (False, False), (True, False), (False, True)]
)
async def test_both_paths_deliver_the_same_records_through_the_lossy_relay(
    tmp_path: Path, send_batched: bool, receive_batched: bool
) -> None:
    journal = open_journal(tmp_path / "it")
    receiver = DiodeReceiver(("127.0.0.1", 0), KEY, settings(), journal, batched=receive_batched)
    await receiver.start()
    assert (receiver._batch is not None) is receive_batched
    impairments = Impairments(drop=0.01, duplicate=0.02, reorder=0.02, corrupt=0.005, truncate=0.005, seed=3)
    with LossyRelay(receiver.listen, impairments) as relay:
        sender = DiodeSender(relay.address, KEY, settings(), batched=send_batched)
        await sender.start()
        assert (sender._batch is not None) is send_batched
        offsets, records = samples(40_000)
        for start in range(0, len(records), 4000):
            await sender.send_records("ot-edge", offsets[start : start + 4000], records[start : start + 4000])
        await sender.close()
        await wait_until_async(lambda: through(sender, receiver, relay)() and receiver.stats.records >= len(records))
    await receiver.close()
    truth = relay.truth
    assert truth.dropped and truth.corrupted and truth.truncated and truth.duplicated and truth.reordered
    assert truth.lost_blocks() == []
    assert [r for r in read_all(journal) if isinstance(r, Sample)] == records
    stats = receiver.stats
    assert stats.lost == 0 and stats.recovered > 0
    assert stats.rejected[Rejected.MAC] + stats.rejected[Rejected.SHORT] == truth.corrupted + truth.truncated
    # Every datagram the relay forwarded was read, whichever way it was read.
    assert stats.datagrams == truth.forwarded
    journal.close()


@pytest.mark.parametrize("batched", [True, False])
async def test_a_datagram_longer_than_ours_is_refused_whole_on_both_paths(tmp_path: Path, batched: bool) -> None:
    journal = open_journal(tmp_path / "it")
    receiver = DiodeReceiver(("127.0.0.1", 0), KEY, settings(), journal, batched=batched)
    await receiver.start()
    header = wire.Header(wire.Kind.DATA, 0, 1, 3, 0, 5, 0, 0)
    oversized = wire.pack(KEY, header._replace(length=3000), b"x" * 3000)  # authentic, but 3,042 bytes
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(3):
            sock.sendto(oversized, receiver.listen)
            sock.sendto(b"SD", receiver.listen)
        await wait_until_async(lambda: receiver.stats.datagrams >= 6, "the six datagrams at the receiver")
    await receiver.close()
    assert receiver.stats.datagrams == 6
    assert receiver.stats.rejected[Rejected.SHORT] == 6  # never read as a 1,473-byte truncated piece
    journal.close()


@pytest.mark.parametrize(("batched", "segmented"), [(True, False), (True, True), (False, False), (False, True)])
def test_the_relay_drops_the_same_datagrams_on_both_of_its_paths(batched: bool, segmented: bool) -> None:
    """A seeded benchmark run must lose the same datagrams for every tool and whatever the relay's path;
    ``segmented``: sent 50 at a time as one segmented message (as the diode's sender sends), which the
    batched relay receives coalesced and forwards as runs, cut again by the kernel."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as src,
    ):
        sink.bind(("127.0.0.1", 0))
        arrived: list[int] = []

        def collect(wait: float) -> None:
            # Read as we go: the sink's socket buffer holds only a few hundred of these.
            sink.settimeout(wait)
            with contextlib.suppress(TimeoutError):
                while True:
                    data = sink.recv(2000)
                    number = int.from_bytes(data[:4], "big")
                    assert data == number.to_bytes(4, "big") * 100  # whole, and cut where it was sent
                    arrived.append(number)

        impairments = Impairments(drop=0.05, spare_beacons=False, seed=7)
        with LossyRelay(sink.getsockname(), impairments, keep_truth=False, batched=batched) as relay:
            for number in range(0, 2000, 50):
                datagrams = [n.to_bytes(4, "big") * 100 for n in range(number, number + 50)]
                if segmented:
                    src.sendmsg([b"".join(datagrams)], [(17, 103, struct.pack("=H", 400))], 0, relay.address)
                else:
                    for datagram in datagrams:
                        src.sendto(datagram, relay.address)
                collect(0.02)
            collect(0.5)
    reference = random.Random(7)
    expected = []
    for number in range(2000):
        if reference.random() < 0.05:
            continue
        expected.append(number)
        for _ in range(4):
            reference.random()
    assert arrived == expected and relay.truth.dropped == 2000 - len(expected)


def mixed_records(count: int) -> tuple[list[int], list[Record]]:
    """Small floats and long strings, interleaved: blocks of one fragment and blocks of many."""
    offsets = list(range(1, count + 1))
    records: list[Record] = [
        Sample(f"plc1/p{o % 13}", "text " * (o % 700) if o % 3 == 0 else o * 0.125, Quality.GOOD, float(o), float(o))
        for o in offsets
    ]
    return offsets, records


@pytest.mark.parametrize(
    ("send_offload", "receive_offload", "send_compiled", "receive_compiled"),
    [
        (True, True, None, None),
        (True, False, None, None),
        (False, True, None, None),
        (False, False, None, None),
        (True, True, False, None),
        (True, True, None, False),
    ],
)
async def test_segmentation_and_coalescing_deliver_every_record_once_in_order_in_any_combination(
    tmp_path: Path, send_offload: bool, receive_offload: bool, send_compiled: bool | None, receive_compiled: bool | None
) -> None:
    """Straight over loopback (no relay, whose own sockets would undo the coalescing)."""
    journal = open_journal(tmp_path / "it")
    receive_settings = settings(offload=receive_offload)
    receiver = DiodeReceiver(("127.0.0.1", 0), KEY, receive_settings, journal, compiled=receive_compiled)
    await receiver.start()
    assert receiver._batch is not None
    # Offload needs the compiled module; where it is asked for and built, this kernel must grant it.
    assert receiver._batch.coalescing is (receive_offload and receive_compiled is not False)
    sender = DiodeSender(receiver.listen, KEY, settings(offload=send_offload), compiled=send_compiled)
    await sender.start()
    assert sender._batch is not None
    offsets, records = mixed_records(3000)
    for start in range(0, len(records), 500):
        await sender.send_records("ot-edge", offsets[start : start + 500], records[start : start + 500])
    # The route never refused a segmented message (which would have turned it off for good).
    assert sender._batch.segmenting is (send_offload and send_compiled is not False)
    sent = sender.stats.datagrams
    await sender.close()
    await wait_until_async(lambda: receiver.stats.records >= len(records), "every record at the receiver")
    await receiver.close()
    assert [r for r in read_all(journal) if isinstance(r, Sample)] == records
    stats = receiver.stats
    assert sum(stats.rejected.values()) == 0 and stats.lost == 0 and stats.records == len(records)
    # Each datagram counted once: coalesced messages were cut back into exactly the datagrams sent
    # (+ the closing beacons, sent after ``sent`` was read).
    assert stats.datagrams == sent + END_BEACONS
    journal.close()
