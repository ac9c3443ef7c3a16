"""What the receiver acts on is authentic and fresh, and it knows exactly which blocks it missed.

Real sockets on loopback: a sender, a tap that forwards its datagrams to the receiver and keeps a copy
(what an attacker on the link could record), the receiver writing a real IT journal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
from prometheus_client import generate_latest

from otseam.contract.models import Contract, Device, Point, Site
from otseam.core.records import Quality, Sample
from otseam.diode import wire
from otseam.diode.metrics import registry_for
from otseam.diode.receiver import DiodeReceiver
from otseam.diode.sender import DiodeSender
from otseam.replica.modbus import ModbusReplica
from otseam.runtime.sinkrunner import SinkStats, run_sink
from tests.diode.harness import KEY, events, open_journal, read_all, samples, settings
from tests.replica.test_modbus_replica import mbpoll, values
from tests.support.wait import wait_until_async


class Tap(asyncio.DatagramProtocol):
    """Forwards every datagram to ``target`` and keeps a copy; ``send`` injects recorded ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.recorded: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.forwarding = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.recorded.append(data)
        if self.forwarding:
            self.send(data)

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data, self.target)

    def beacons(self) -> list[bytes]:
        return [d for d in self.recorded if d[3] == wire.Kind.BEACON]


async def open_tap(target: tuple[str, int]) -> tuple[Tap, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    transport, tap = await loop.create_datagram_endpoint(lambda: Tap(target), local_addr=("127.0.0.1", 0))
    return tap, transport.get_extra_info("sockname")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- issue 14.3: every block never received is counted, with its journal offsets and time span ---------


async def test_a_backlog_sent_before_the_receiver_started_is_counted_with_its_offsets(tmp_path: Path) -> None:
    port = free_udp_port()  # nothing listens there yet: what is sent now is lost
    sender = DiodeSender(("127.0.0.1", port), KEY, settings())
    await sender.start()
    offsets, records = samples(3000)
    for start in range(0, 1500, 300):
        await sender.send_records("ot-edge", offsets[start : start + 300], records[start : start + 300])
    missed_blocks = sender.next_sequence
    journal = open_journal(tmp_path / "it")
    receiver = DiodeReceiver(("127.0.0.1", port), KEY, settings(), journal, state_path=tmp_path / "state")
    await receiver.start()
    await sender.send_beacon()
    for start in range(1500, 3000, 300):
        await sender.send_records("ot-edge", offsets[start : start + 300], records[start : start + 300])
    await sender.send_beacon()

    def gaps() -> list[dict[str, object]]:
        receiver._flush()
        return [e.data for e in events(read_all(journal), "diode.gap")]

    await wait_until_async(lambda: bool(gaps()), what="the gap event")
    await sender.close()
    await receiver.close()
    (gap,) = gaps()
    assert receiver.stats.lost == receiver.stats.missed_offline == missed_blocks > 0
    assert (gap["first"], gap["last"], gap["blocks"]) == (0, missed_blocks - 1, missed_blocks)
    assert gap["reason"] == "sent while this receiver was not listening"
    # Nothing came before it: the range runs from the start of the journal to the first offset received.
    assert gap["first_offset"] is None and gap["last_offset"] == 1500 and gap["to_ts"] == 1501.0
    written = [r for r in read_all(journal) if isinstance(r, Sample)]
    assert written == records[1500:]
    health = receiver.health()
    assert health["missing"] == [gap] and health["missed_while_not_listening"] == missed_blocks
    exposition = generate_latest(registry_for(receiver.stats)).decode()
    assert f"seam_diode_blocks_missed_offline_total {float(missed_blocks)}" in exposition
    journal.close()


async def test_blocks_sent_while_the_receiver_restarted_are_counted_exactly(tmp_path: Path) -> None:
    port = free_udp_port()
    sender = DiodeSender(("127.0.0.1", port), KEY, settings())
    journal = open_journal(tmp_path / "it")
    state = tmp_path / "state"
    first = DiodeReceiver(("127.0.0.1", port), KEY, settings(), journal, state_path=state)
    await first.start()
    await sender.start()
    offsets, records = samples(6000)

    async def send(lo: int, hi: int) -> None:
        for start in range(lo, hi, 200):
            await sender.send_records("ot-edge", offsets[start : start + 200], records[start : start + 200])

    await send(0, 2000)
    await wait_until_async(lambda: first.stats.records == 2000, what="the first 2000 records")
    await first.close()
    before = sender.next_sequence
    await send(2000, 4000)  # the receiver is down
    missed = sender.next_sequence - before
    second = DiodeReceiver(("127.0.0.1", port), KEY, settings(), journal, state_path=state)
    await second.start()
    await sender.send_beacon()
    await send(4000, 6000)
    await sender.send_beacon()

    def gaps() -> list[dict[str, object]]:
        second._flush()
        return [e.data for e in events(read_all(journal), "diode.gap")]

    await wait_until_async(lambda: bool(gaps()) and second.stats.records == 2000, what="the gap and the last records")
    await sender.close()
    await second.close()
    (gap,) = gaps()
    assert second.stats.lost == second.stats.missed_offline == missed
    assert (gap["first"], gap["last"]) == (before, before + missed - 1)
    # Exactly the offsets and source times sent while it was down (samples' times equal their offsets).
    assert (gap["first_offset"], gap["last_offset"]) == (2001, 4000)
    assert (gap["from_ts"], gap["to_ts"]) == (2000.0, 4001.0)
    session_events = events(read_all(journal), "diode.session")
    assert len(session_events) == 2 and session_events[1].data["missed"] == missed
    journal.close()


# --- issue 14.5: authentic and fresh ------------------------------------------------------------------


async def test_a_replayed_beacon_neither_keeps_the_link_up_nor_repeats_an_event(tmp_path: Path) -> None:
    journal = open_journal(tmp_path / "it")
    state = tmp_path / "state"
    diode = settings(beacon_interval="100ms")
    receiver = DiodeReceiver(("127.0.0.1", 0), KEY, diode, journal, state_path=state)
    await receiver.start()
    tap, tap_address = await open_tap(receiver.listen)
    sender = DiodeSender(tap_address, KEY, diode)
    await sender.start()
    offsets, records = samples(500)
    await sender.send_records("ot-edge", offsets, records)
    await wait_until_async(lambda: receiver.stats.link_up and receiver.stats.records == 500, what="the link up")
    await sender.close()  # the sender is gone; an attacker replays what it recorded, again and again
    tap.forwarding = False
    recorded = tap.beacons() + [d for d in tap.recorded if d[3] != wire.Kind.BEACON]
    assert len(tap.beacons()) >= 3

    async def replay_until(condition: object) -> None:
        async def loop() -> None:
            while True:
                for datagram in recorded:
                    tap.send(datagram)
                await asyncio.sleep(0.02)

        task = asyncio.create_task(loop())
        try:
            await wait_until_async(condition, within=10, what="the condition while replaying")  # type: ignore[arg-type]
        finally:
            task.cancel()

    await replay_until(lambda: not receiver.stats.link_up and receiver.stats.replayed_beacons > 50)
    await receiver.close()
    assert receiver.stats.records == 500 and receiver.stats.surplus > 0  # replayed fragments: nothing written
    # A restarted receiver remembers the session: its recorded beacons open nothing.
    second = DiodeReceiver(("127.0.0.1", 0), KEY, diode, journal, state_path=state)
    await second.start()
    tap.target = second.listen
    await replay_until(lambda: second.stats.replayed_beacons > 50)
    second.tick(time.monotonic())
    assert not second.sessions and not second.stats.link_up and second.stats.beacons == 0
    await second.close()
    written = read_all(journal)
    assert len(events(written, "diode.session")) == 1
    assert [e.data["state"] for e in events(written, "diode.link")] == ["up", "down"]
    journal.close()


async def test_a_beacon_of_an_unknown_old_session_is_refused(tmp_path: Path) -> None:
    """A session the receiver never saw (older than what it remembers) whose sender clock is older than
    the beacons already seen: a recorded beacon replayed, refused and logged once."""
    journal = open_journal(tmp_path / "it")
    receiver = DiodeReceiver(("127.0.0.1", 0), KEY, settings(), journal)
    fingerprint = receiver._fingerprint
    sealer = wire.Mac(KEY)

    def beacon(session: int, sent_at: float, number: int) -> bytes:
        body = wire.pack_beacon(wire.Beacon(fingerprint, sent_at, 0, 0, 1000, number))
        head = wire.HEADER.pack(wire.MAGIC, wire.VERSION, wire.Kind.BEACON, 0, 0, 0, 0, session, 0, len(body))
        return head + body + sealer(head + body)

    now = time.monotonic()
    receiver.datagram(memoryview(beacon(1, time.time(), 0)), now)
    receiver.datagram(memoryview(beacon(2, time.time() - 3600, 0)), now)
    receiver.datagram(memoryview(beacon(2, time.time() - 3600, 1)), now)
    assert set(receiver.sessions) == {1} and receiver.stats.stale_beacons == 2
    journal.close()


async def test_unauthenticated_datagrams_write_nothing_and_cost_bounded_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Beacon-shaped datagrams without the key, each claiming another fingerprint, by the thousand."""
    caplog.set_level(logging.WARNING)
    journal = open_journal(tmp_path / "it")
    receiver = DiodeReceiver(("127.0.0.1", 0), KEY, settings(), journal)
    await receiver.start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    count = 5000
    for i in range(count):
        body = wire.pack_beacon(wire.Beacon(os.urandom(16), time.time(), i, 0, 1000, i))
        head = wire.HEADER.pack(wire.MAGIC, wire.VERSION, wire.Kind.BEACON, 0, 0, 0, 0, i, i, len(body))
        sock.sendto(head + body + os.urandom(16), receiver.listen)
        if i % 200 == 0:
            await asyncio.sleep(0)  # let the receiver drain
    sock.close()
    await wait_until_async(lambda: receiver.stats.rejected[wire.Rejected.MAC] >= count * 0.9, what="the forgeries read")
    await receiver.close()
    assert not read_all(journal)  # not one event, not one record
    assert not receiver.sessions and not receiver._mismatch_reported
    assert receiver.stats.foreign_beacons == receiver.stats.rejected[wire.Rejected.MAC]
    lines = [r for r in caplog.records if "failed authentication" in r.getMessage()]
    assert len(lines) == 1  # one line a minute at most
    journal.close()


async def test_an_absurd_authentic_block_count_is_counted_at_once_without_stalling(tmp_path: Path) -> None:
    """A (buggy) sender holding the key claims 2^40 blocks sent: one gap, counted exactly, in one step."""
    journal = open_journal(tmp_path / "it")
    receiver = DiodeReceiver(("127.0.0.1", 0), KEY, settings(), journal)
    fingerprint = receiver._fingerprint
    sealer = wire.Mac(KEY)

    def beacon(blocks: int, number: int) -> bytes:
        body = wire.pack_beacon(wire.Beacon(fingerprint, time.time(), blocks, 0, 1000, number))
        head = wire.HEADER.pack(wire.MAGIC, wire.VERSION, wire.Kind.BEACON, 0, 0, 0, 0, 9, blocks, len(body))
        return head + body + sealer(head + body)

    now = time.monotonic()
    receiver.datagram(memoryview(beacon(0, 0)), now)
    receiver.datagram(memoryview(beacon(2**40, 1)), now)
    receiver.tick(now + 1.0)
    receiver._bound_gaps(None)
    assert receiver.stats.lost == 2**40 and receiver.sessions[9].next_sequence == 2**40
    receiver.datagram(memoryview(beacon(2**64 - 1, 2)), now + 1)
    receiver.tick(now + 2.0)
    assert receiver.stats.lost == 2**64 - 1
    journal.close()


def plant() -> Contract:
    return Contract(
        site=Site(enterprise="acme", site="works"),
        devices=[
            Device(
                id="plc1",
                driver="modbus",
                endpoint="tcp://10.0.0.5:502",
                zone="cell",
                unit=1,
                points=[Point(id="level", address="hr:100")],
            )
        ],
    )


async def test_the_replica_refuses_every_value_once_the_sender_is_gone_despite_replayed_beacons(
    tmp_path: Path,
) -> None:
    it = open_journal(tmp_path / "it")
    diode = settings(beacon_interval="100ms")
    receiver = DiodeReceiver(("127.0.0.1", 0), KEY, diode, it)
    await receiver.start()
    tap, tap_address = await open_tap(receiver.listen)
    replica = ModbusReplica(plant(), it, port=0)
    stop = asyncio.Event()
    feeding = asyncio.create_task(run_sink(replica, it.reader("replica"), stats=SinkStats("replica"), stop=stop))
    sender = DiodeSender(tap_address, KEY, diode)
    sender.session = secrets.randbits(64)
    await sender.start()
    await sender.send_records("ot-edge", [1], [Sample("plc1/level", 42.5, Quality.GOOD, 1.0, time.time())])
    read = ("-p", "0", "-a", "1", "-0", "-r", "100", "-c", "1", "-t", "4:float", "-B", "127.0.0.1")

    async def served() -> tuple[int, str]:
        args = list(read)
        args[1] = str(replica.port)
        return await mbpoll(*args)

    answer: tuple[int, str] = (1, "")

    async def poll_until(check: Callable[[tuple[int, str]], bool], within: float) -> None:
        async def answered() -> bool:
            nonlocal answer
            answer = await served()
            return check(answer)

        await wait_until_async(
            answered, "the replica's answer", within, interval=0.05, detail=lambda: f"it still answers {answer}"
        )

    await poll_until(lambda a: values(a[1]) == {100: "42.5"}, within=15)
    await sender.close()
    tap.forwarding = False
    beacons = tap.beacons()
    replaying = True

    async def replay() -> None:
        while replaying:
            for datagram in beacons:
                tap.send(datagram)
            await asyncio.sleep(0.02)

    task = asyncio.create_task(replay())
    try:
        # Link timeout: 3 beacon intervals (0.3 s) and the replica's cursor; exception 04 after that.
        await poll_until(lambda a: a[0] != 0 and "failure" in a[1].lower(), within=15)
    finally:
        replaying = False
        await task
    stop.set()
    await feeding
    await receiver.close()
    assert not replica.link_up and receiver.stats.replayed_beacons > 0
    it.close()


SEAM = str(Path(sys.executable).parent / "seam")


#: A flooder, as a process of its own: it sends the datagrams of a file (each behind a 2-byte length)
#: round after round until killed, and says so after its 200th round.
_FLOODER = """
import socket, sys
host, port, data = sys.argv[1], int(sys.argv[2]), open(sys.argv[3], "rb").read()
datagrams, i = [], 0
while i < len(data):
    size = int.from_bytes(data[i : i + 2], "big")
    datagrams.append(data[i + 2 : i + 2 + size])
    i += 2 + size
sock, rounds = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), 0
while True:
    for datagram in datagrams:
        try:
            sock.sendto(datagram, (host, port))
        except OSError:
            pass
    rounds += 1
    if rounds == 200:
        print("flooding", flush=True)
"""


def _flood(port: int, datagrams: list[bytes], path: Path, count: int) -> list[subprocess.Popen[str]]:
    """``count`` flooder processes sending ``datagrams`` to 127.0.0.1:``port``, each past its 200th round
    when this returns: together they send faster than one receiver reads, whatever the machine."""
    path.write_bytes(b"".join(len(d).to_bytes(2, "big") + d for d in datagrams))
    flooders = [
        subprocess.Popen(
            [sys.executable, "-c", _FLOODER, "127.0.0.1", str(port), str(path)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(count)
    ]
    started = all(flooder.stdout is not None and flooder.stdout.readline() == "flooding\n" for flooder in flooders)
    if not started:  # one died before its 200th round: none is left behind
        _stop(flooders)
        pytest.fail("a flooder did not start")
    return flooders


def _stop(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        process.kill()
        process.wait()


@pytest.mark.parametrize("state", ["idle", "flooded with forgeries", "an absurd gap, flooded with authentic data"])
def test_sigterm_stops_the_receiver_within_5_seconds(tmp_path: Path, state: str) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(secrets.token_hex(32))
    key = key_file.read_bytes().strip()
    port = free_udp_port()
    # The 5 s bound is the receiver's, not the coverage tracer's: `make test` measures coverage in
    # subprocesses too, which slows their Python several times over, so this one runs untraced.
    untraced = {k: v for k, v in os.environ.items() if not k.startswith(("COVERAGE_", "COV_CORE_"))}
    process = subprocess.Popen(
        [SEAM, "diode", "receive", "--journal", str(tmp_path / "it"), "--key-file", str(key_file),
         "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=untraced,
    )  # fmt: skip
    assert process.stdout is not None
    ready = False
    for line in process.stdout:  # the receiver says when it listens
        if "diode receive: listening on" in line:
            ready = True
            break
    assert ready, "the receiver did not start"
    diode = settings(block_timeout="500ms", beacon_interval="1s")  # the receive command's defaults
    sealer = wire.Mac(key)
    datagrams: list[bytes] = []
    if state == "flooded with forgeries":
        for i in range(64):
            body = wire.pack_beacon(wire.Beacon(os.urandom(16), time.time(), i, 0, 1000, i))
            head = wire.HEADER.pack(wire.MAGIC, wire.VERSION, wire.Kind.BEACON, 0, 0, 0, 0, i, i, len(body))
            datagrams.append(head + body + os.urandom(16))
    elif state != "idle":
        fingerprint = diode.fingerprint(key)
        for number, blocks in enumerate((0, 2**40)):
            body = wire.pack_beacon(wire.Beacon(fingerprint, time.time(), blocks, 0, 200, number))
            head = wire.HEADER.pack(wire.MAGIC, wire.VERSION, wire.Kind.BEACON, 0, 0, 0, 0, 7, blocks, len(body))
            datagrams.append(head + body + sealer(head + body))
        # Fragments of blocks far beyond the gap, each a block begun and never completed.
        for sequence in range(2**40 + 10, 2**40 + 200):
            datagrams += wire.pack_block(key, 0, 8, 3, 7, sequence, [bytes(100)])[:1]
    # Two flooders, each on a core of its own if it can: the receiver cannot keep up, and its socket
    # never empties while they run (its tick once read until it did, and SIGTERM waited for that).
    flooders: list[subprocess.Popen[str]] = []
    try:
        flooders = _flood(port, datagrams, tmp_path / "flood", 2) if datagrams else []
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=5)
    finally:
        _stop(flooders)
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0


def test_blocks_held_behind_a_missing_one_are_bounded(tmp_path: Path) -> None:
    """An authentic sender that never completes block 0 but sends thousands after it: the receiver holds
    at most MAX_PENDING blocks, giving up the earliest, and writes the rest in order."""
    from otseam.diode import blocks as diode_blocks
    from otseam.diode.fec import Fec
    from otseam.diode.receiver import MAX_PENDING

    journal = open_journal(tmp_path / "it")
    config = settings(block_timeout="60s", reorder_window="60s")  # only the bound may give up here
    receiver = DiodeReceiver(("127.0.0.1", 0), KEY, config, journal)
    fec = Fec(config.fec)
    sealer = wire.Mac(KEY)
    body = wire.pack_beacon(wire.Beacon(receiver._fingerprint, time.time(), 0, 0, 1000, 0))
    head = wire.HEADER.pack(wire.MAGIC, wire.VERSION, wire.Kind.BEACON, 0, 0, 0, 0, 3, 0, len(body))
    now = time.monotonic()
    receiver.datagram(memoryview(head + body + sealer(head + body)), now)
    total = MAX_PENDING + 500
    for sequence in range(total):
        offsets, records = samples(2, first_offset=1 + 2 * sequence)
        (payload,) = diode_blocks.encode_split("ot-edge", offsets, records, config.fec.max_block)
        k, m, fragments = fec.encode(payload)
        datagrams = wire.pack_block(KEY, 0, k, m, 3, sequence, fragments)
        for datagram in [] if sequence == 0 else datagrams:  # block 0 never arrives
            receiver.datagram(memoryview(datagram), now)
        session = receiver.sessions[3]
        assert len(session.pending) + len(session.done) <= MAX_PENDING
    assert receiver.stats.lost == 1 and receiver.stats.records == 2 * (total - 1)
    journal.close()
