"""Sender → lossy relay → receiver → IT journal, over real UDP sockets on loopback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prometheus_client import generate_latest

from otseam.core.records import Record, Sample
from otseam.diode.metrics import registry_for
from otseam.diode.receiver import DiodeReceiver
from otseam.diode.sender import CurrentValues, DiodeSender
from otseam.diode.wire import Rejected
from tests.diode.harness import KEY, events, latest_by_point, open_journal, read_all, samples, settings, through
from tests.diode.relay import Impairments, LossyRelay
from tests.support.wait import wait_until_async


async def settle(condition: Callable[[], bool], what: str = "the tail to arrive") -> None:
    """Wait for the tail to arrive and the receiver to time out what cannot complete."""
    await wait_until_async(condition, what)


async def send_in_batches(sender: DiodeSender, offsets: list[int], records: list[Record], size: int) -> None:
    for start in range(0, len(records), size):
        await sender.send_records("ot-edge", offsets[start : start + size], records[start : start + size])


async def test_clean_link_delivers_every_record_once(tmp_path: Path) -> None:
    journal = open_journal(tmp_path / "it")
    receiver = DiodeReceiver(("127.0.0.1", 0), KEY, settings(), journal)
    await receiver.start()
    sender = DiodeSender(receiver.listen, KEY, settings())
    await sender.start()
    offsets, records = samples(20_000)
    await send_in_batches(sender, offsets, records, 1000)
    await send_in_batches(sender, offsets[:500], records[:500], 500)  # a replay must not duplicate
    await sender.close()
    await settle(lambda: receiver.stats.records + receiver.stats.duplicates >= 20_500)
    await receiver.close()
    written = [r for r in read_all(journal) if isinstance(r, Sample)]
    assert written == records
    assert receiver.stats.lost == 0 and receiver.stats.duplicates == 500
    journal.close()


async def test_losses_within_the_fec_margin_are_recovered_completely(tmp_path: Path) -> None:
    journal = open_journal(tmp_path / "it")
    receiver = DiodeReceiver(("127.0.0.1", 0), KEY, settings(), journal)
    await receiver.start()
    impairments = Impairments(drop=0.01, duplicate=0.02, reorder=0.02, corrupt=0.005, truncate=0.005, seed=7)
    with LossyRelay(receiver.listen, impairments) as relay:
        sender = DiodeSender(relay.address, KEY, settings())
        await sender.start()
        offsets, records = samples(100_000)
        await send_in_batches(sender, offsets, records, 5000)
        await sender.close()
        await settle(lambda: through(sender, receiver, relay)() and receiver.stats.records >= len(records))
    await receiver.close()
    truth = relay.truth
    assert truth.dropped > 0 and truth.corrupted > 0 and truth.truncated > 0 and truth.duplicated > 0
    assert truth.lost_blocks() == []  # every block kept at least k intact fragments
    written = [r for r in read_all(journal) if isinstance(r, Sample)]
    assert written == records
    stats = receiver.stats
    assert stats.lost == 0 and stats.recovered > 0
    exported = generate_latest(registry_for(stats)).decode()
    assert f'seam_diode_blocks_total{{outcome="recovered"}} {float(stats.recovered)}' in exported
    assert 'seam_diode_blocks_total{outcome="lost"} 0.0' in exported
    assert 0 < stats.margin_used_max <= 1 and "seam_diode_fec_margin_used_max" in exported
    # Every altered datagram was refused, and none was taken for data.
    assert stats.rejected[Rejected.MAC] + stats.rejected[Rejected.SHORT] == truth.corrupted + truth.truncated
    journal.close()


async def test_losses_beyond_the_margin_are_counted_exactly_and_healed_by_a_snapshot(tmp_path: Path) -> None:
    journal = open_journal(tmp_path / "it")
    receiver = DiodeReceiver(("127.0.0.1", 0), KEY, settings(), journal)
    await receiver.start()
    current = CurrentValues()
    with LossyRelay(receiver.listen, Impairments(drop=0.15, corrupt=0.03, seed=11)) as relay:
        sender = DiodeSender(relay.address, KEY, settings())
        await sender.start()
        offsets, records = samples(30_000, points=200)
        for start in range(0, len(records), 300):
            if start == len(records) - 600:
                relay.set(drop=1.0)  # the last two blocks are lost outright: the tail must be counted too
            chunk_o, chunk_r = offsets[start : start + 300], records[start : start + 300]
            current.update("ot-edge", chunk_o, chunk_r)
            await sender.send_records("ot-edge", chunk_o, chunk_r)
        await sender.send_beacon()  # beacons are spared by the relay: it tells how many blocks were sent
        await settle(
            lambda: (
                through(sender, receiver, relay)()
                and receiver.stats.lost >= len(relay.truth.lost_blocks(sender.session))
            )
        )
        lost_truth = relay.truth.lost_blocks(sender.session)
        assert lost_truth, "the impairment was meant to exceed the FEC margin"
        assert receiver.stats.lost == len(lost_truth)

        def reported() -> int:  # a gap is reported once its journal offsets are known (or after 5 s)
            receiver._flush()
            return sum(int(e.data["blocks"]) for e in events(read_all(journal), "diode.gap"))  # type: ignore[call-overload]

        await wait_until_async(lambda: reported() >= len(lost_truth), what="every gap reported")
        gap_events = events(read_all(journal), "diode.gap")
        assert sum(e.data["blocks"] for e in gap_events) == len(lost_truth)
        assert {n for e in gap_events for n in range(e.data["first"], e.data["last"] + 1)} == set(lost_truth)
        before = latest_by_point(read_all(journal))
        assert before != latest_by_point(records)  # some current values really were missing

        relay.set(drop=0.0, corrupt=0.0)  # the snapshot crosses a clean link
        snap_offsets, snap_records = current.snapshot()
        await sender.send_records(current.source, snap_offsets, snap_records, snapshot=True)
        await sender.close()
        await settle(lambda: through(sender, receiver, relay)() and receiver.stats.healed > 0)
    await receiver.close()
    everything = read_all(journal)
    assert latest_by_point(everything) == latest_by_point(records)
    keys = [(r.point, r.gateway_ts) for r in everything if isinstance(r, Sample)]
    assert len(keys) == len(set(keys))  # the snapshot wrote nothing twice
    assert receiver.stats.healed > 0
    journal.close()


async def test_a_restarted_receiver_resynchronises(tmp_path: Path) -> None:
    state = tmp_path / "receiver-state.json"
    journal = open_journal(tmp_path / "it")
    first = DiodeReceiver(("127.0.0.1", 0), KEY, settings(), journal, state_path=state)
    await first.start()
    port = first.listen
    sender = DiodeSender(port, KEY, settings())
    await sender.start()
    current = CurrentValues()
    offsets, records = samples(6000, points=100)

    async def send(lo: int, hi: int) -> None:
        current.update("ot-edge", offsets[lo:hi], records[lo:hi])
        await sender.send_records("ot-edge", offsets[lo:hi], records[lo:hi])

    await send(0, 2000)
    await wait_until_async(lambda: first.stats.records == 2000, "the first receiver to write the first 2,000")
    await first.close()
    await send(2000, 5970)  # nobody listens: all of this is lost
    second = DiodeReceiver(port, KEY, settings(), journal, state_path=state)
    await second.start()
    await wait_until_async(lambda: second.stats.sessions == 1, "a beacon to synchronise the new receiver")
    await send(5970, 6000)  # only 30 of the 100 points change after the restart
    snap_offsets, snap_records = current.snapshot()
    await sender.send_records("ot-edge", snap_offsets, snap_records, snapshot=True)
    # Replaying what the first receiver already wrote must not duplicate it either.
    await sender.send_records("ot-edge", offsets[:2000], records[:2000])
    await sender.close()
    await settle(lambda: second.stats.duplicates >= 2000, "the replay of what the first receiver wrote")
    await second.close()
    everything = read_all(journal)
    assert second.stats.sessions == 1 and second.stats.healed > 0
    assert latest_by_point(everything) == latest_by_point(records)
    keys = [(r.point, r.gateway_ts) for r in everything if isinstance(r, Sample)]
    assert len(keys) == len(set(keys))
    journal.close()


async def test_forged_and_mismatched_senders_are_reported_and_never_decoded(tmp_path: Path) -> None:
    journal = open_journal(tmp_path / "it")
    receiver = DiodeReceiver(("127.0.0.1", 0), KEY, settings(), journal)
    await receiver.start()
    wrong_key = DiodeSender(receiver.listen, b"not-the-key-not-the-key-not-the!", settings())
    other_config = DiodeSender(receiver.listen, KEY, settings(k=32))
    for sender in (wrong_key, other_config):
        await sender.start()
        offsets, records = samples(500)
        await sender.send_records("forger", offsets, records)
        await sender.close()
    both = (wrong_key, other_config)
    await settle(lambda: receiver.stats.datagrams >= sum(s.stats.datagrams for s in both), "both senders' datagrams")
    await receiver.close()
    written = read_all(journal)
    assert not [r for r in written if isinstance(r, Sample)]
    # Only an authentic beacon is an event: anyone can send datagrams that fail the MAC, and they write
    # nothing (counted, and named in a rate-limited log line).
    mismatches = events(written, "diode.config_mismatch")
    assert [e.data["same_key"] for e in mismatches] == [True]
    assert receiver.stats.rejected[Rejected.MAC] > 0 and receiver.stats.unsynchronised > 0
    assert receiver.stats.foreign_beacons > 0 and receiver.stats.mismatches == 1
    journal.close()


async def send_with_the_middle_block_dropped(sender: DiodeSender, relay: LossyRelay) -> list[Record]:
    """Three blocks of 100 samples; the relay drops every datagram of the second. Returns the samples."""
    offsets, records = samples(300)
    # The relay is its own thread: let it pass each block before its impairment changes.
    await sender.send_records("ot-edge", offsets[:100], records[:100])
    await wait_until_async(lambda: relay.truth.forwarded >= sender.stats.datagrams, "the first block through the relay")
    relay.set(drop=1.0)
    await sender.send_records("ot-edge", offsets[100:200], records[100:200])
    await wait_until_async(
        lambda: relay.truth.forwarded + relay.truth.dropped >= sender.stats.datagrams,
        "the relay to drop the second block",
    )
    relay.set(drop=0.0)
    await sender.send_records("ot-edge", offsets[200:], records[200:])
    return records


async def test_a_lost_block_holds_up_the_blocks_behind_it_only_for_the_reorder_window(tmp_path: Path) -> None:
    journal = open_journal(tmp_path / "it")
    config = settings(block_timeout="30s")  # and the default reorder window, 20 ms
    receiver = DiodeReceiver(("127.0.0.1", 0), KEY, config, journal)
    await receiver.start()
    with LossyRelay(receiver.listen, Impairments()) as relay:
        sender = DiodeSender(relay.address, KEY, config)
        await sender.start()
        records = await send_with_the_middle_block_dropped(sender, relay)
        # Well inside the 30 s block timeout, which is not what frees the third block.
        await wait_until_async(lambda: receiver.stats.records == 200, "the third block", within=10)
        assert receiver.stats.records == 200 and receiver.stats.lost == 1
        await sender.close()
        await receiver.close()
    assert [r for r in read_all(journal) if isinstance(r, Sample)] == records[:100] + records[200:]
    journal.close()


async def test_closing_counts_what_never_completed_and_releases_what_waited_behind_it(tmp_path: Path) -> None:
    journal = open_journal(tmp_path / "it")
    patient = settings(block_timeout="30s", reorder_window="30s")  # only the close may give up here
    receiver = DiodeReceiver(("127.0.0.1", 0), KEY, patient, journal)
    await receiver.start()
    with LossyRelay(receiver.listen, Impairments()) as relay:
        sender = DiodeSender(relay.address, KEY, patient)
        await sender.start()
        records = await send_with_the_middle_block_dropped(sender, relay)
        await wait_until_async(through(sender, receiver, relay), "the third block to reach the receiver")
        assert receiver.stats.records == 100  # the third block waits behind the lost second one
        await receiver.close()
        await sender.close()
    assert receiver.stats.lost == 1
    assert [r for r in read_all(journal) if isinstance(r, Sample)] == records[:100] + records[200:]
    journal.close()
