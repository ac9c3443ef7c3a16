"""The OT side of the diode: records in, authenticated FEC-protected UDP datagrams out.

One-way by construction: the socket is only ever written to. Nothing here calls recv, listens or
accepts, and the socket is not connected, so not even an ICMP error from the far side is read back.
"Delivered" therefore means "sent with forward error correction"; there is no acknowledgement to wait
for, and none could arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

from otseam.core.memory import keep_freed_memory
from otseam.core.records import Record, Sample
from otseam.diode import blocks, mmsg, wire
from otseam.diode.config import DiodeSettings
from otseam.diode.fec import DirectEncoder, Fec

log = logging.getLogger(__name__)

#: The first beacons are repeated: a receiver's first packets are the likeliest to be lost (ARP,
#: a cold socket buffer), and the receiver decodes nothing until it has seen one.
START_BEACONS = 3
END_BEACONS = 3
SEND_BUFFER = 8 * 1024 * 1024
#: The token bucket's burst: BURST_SECONDS of the rate, but no more than BURST_BYTES unless that is less
#: than 10 ms of the rate (measured: bursts of 20 MB at 4 Gbit/s overflowed on the way and lost 2-11 % on
#: loopback, 5 MB did not).
BURST_SECONDS = 0.04
BURST_BYTES = 2 * 1024 * 1024


class TokenBucket:
    """Bytes per second with a small burst; callers may go into debt and then sleep it off."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp = time.monotonic()

    async def take(self, amount: int) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= amount
        if self._tokens < 0:
            # Until the bucket is half full, not merely out of debt: the rate is the same, and each
            # wake-up sends several blocks instead of one (a sleep and a wake-up of the event loop cost
            # about as much CPU as sealing a block); the other half keeps what a late wake-up would
            # otherwise lose to the cap.
            await asyncio.sleep((self.burst / 2 - self._tokens) / self.rate)


@dataclass(slots=True)
class SenderStats:
    datagrams: int = 0
    bytes: int = 0
    blocks: int = 0
    snapshots: int = 0
    records: int = 0
    send_retries: int = 0


class DiodeSender:
    def __init__(
        self,
        target: tuple[str, int],
        key: bytes,
        settings: DiodeSettings,
        bind: str | None = None,
        batched: bool | None = None,
        compiled: bool | None = None,
    ) -> None:
        """``batched``: send a block with sendmmsg (None: wherever it is available; False: sendto per
        datagram, the portable path). ``compiled``: seal datagrams (and call sendmmsg) with the C
        speedups (None: wherever they were built; False: the pure-Python reference)."""
        self.target = target
        self.settings = settings
        self._key = key
        self._mac = wire.Mac(key)
        self._compiled = compiled
        speedups = wire.speedups(compiled)
        self._sealer = speedups.Mac(key) if speedups is not None else None
        self._bind = bind
        self._batched = mmsg.available() if batched is None else batched
        self._batch: mmsg.BatchSender | None = None
        #: Where a block's datagrams are packed: the batch sender's own buffer, or this one for sendto.
        self._slot = settings.datagram_size
        self._buffer = bytearray()
        self._address: tuple[str, int] = target
        self._fec = Fec(settings.fec)
        self._direct = DirectEncoder(self._fec) if self._sealer is not None else None
        self._fingerprint = settings.fingerprint(key)
        self.session = secrets.randbits(64)
        self.next_sequence = 0
        self._beacon_number = 0
        self.stats = SenderStats()
        wire_block = (settings.fec.max_k + settings.fec.parity_for(settings.fec.max_k)) * settings.datagram_size
        # Up to 40 ms of the rate: the sender wakes up every 20 ms or so (the bucket refills to half), and
        # the receiver, which pauses as long between reads, gets one burst per wake-up. Each wake-up costs
        # both sides CPU (measured: at 400 Mbit/s, a burst of 10 ms cost the sender a third more CPU, the
        # receiver a quarter more; docs/bench/diode.md).
        burst = max(settings.rate * 0.01, min(settings.rate * BURST_SECONDS, BURST_BYTES), 2.0 * wire_block)
        self._bucket = TokenBucket(settings.rate, burst)
        self._sock: socket.socket | None = None
        self._lock = asyncio.Lock()
        self._beacons: asyncio.Task[None] | None = None

    async def start(self) -> None:
        keep_freed_memory()  # block-sized buffers without a page fault each time (core/memory.py)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        if self._bind:
            # Only chooses the source address of what we send; this socket is never read.
            sock.bind((self._bind, 0))
        # Resolved once: sendto with a host name would look it up again for every datagram.
        self._address = (socket.gethostbyname(self.target[0]), self.target[1])
        most = self.settings.fec.max_k + self.settings.fec.parity_for(self.settings.fec.max_k)
        if self._batched:
            self._batch = mmsg.BatchSender(
                sock, self._address, self._slot, most, compiled=self._compiled, segment=self.settings.offload
            )
            self._buffer = self._batch.buffer
        else:
            self._buffer = bytearray(self._slot * most)
        self._sock = sock
        for _ in range(START_BEACONS):
            await self.send_beacon()
            await asyncio.sleep(0.02)
        self._beacons = asyncio.create_task(self._beacon_loop(), name="diode-beacons")

    async def close(self) -> None:
        if self._beacons:
            self._beacons.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beacons
            self._beacons = None
        if self._sock is None:
            return
        # Repeated so that the receiver learns the last sequence number even if one is lost, and
        # can count a lost final block instead of waiting for it forever.
        for _ in range(END_BEACONS):
            await self.send_beacon()
            await asyncio.sleep(0.02)
        self._sock.close()
        self._sock = None
        self._batch = None

    async def _beacon_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.beacon_interval)
            try:
                await self.send_beacon()
            except OSError as exc:  # a link or route that is down: keep beaconing once it is back
                log.warning("diode beacon not sent: %s", exc)

    async def send_beacon(self) -> None:
        beacon = wire.Beacon(
            self._fingerprint,
            time.time(),
            self.next_sequence,
            int(self.settings.snapshot_interval * 1000),
            int(self.settings.beacon_interval * 1000),
            self._beacon_number,
        )
        self._beacon_number += 1
        header = wire.Header(wire.Kind.BEACON, 0, 0, 0, 0, self.session, self.next_sequence, wire.BEACON.size)
        datagram = wire.pack(self._key, header, wire.pack_beacon(beacon))
        async with self._lock:
            await self._bucket.take(len(datagram) + 28)
            await self._send([datagram])
            self.stats.datagrams += 1
            self.stats.bytes += len(datagram)

    async def send_records(
        self,
        source: str,
        offsets: Sequence[int],
        records: Sequence[Record],
        snapshot: bool = False,
        replay: bool = False,
    ) -> None:
        """Send records with their journal offsets; returns once every datagram has left the socket.

        Each block is encoded after the previous one has left (see blocks.iter_split); should a record
        fail to encode, the blocks before it have been sent, and the receiver drops them as duplicates
        when the batch comes again (it deduplicates by offset)."""
        for payload in blocks.iter_split(source, offsets, records, self.settings.fec.max_block):
            await self.send_block(payload, snapshot, replay)
        self.stats.records += len(records)

    async def send_block(self, payload: bytes, snapshot: bool = False, replay: bool = False) -> int:
        """Encode one block, send all its fragments; returns its sequence number."""
        direct = self._direct
        if direct is None:
            k, m, fragments = self._fec.encode(payload)
        else:
            k, m = self._fec.shape(len(payload))  # refuses a block that cannot be sent before it is numbered
        flags = (wire.FLAG_SNAPSHOT if snapshot else 0) | (wire.FLAG_REPLAY if replay else 0)
        async with self._lock:
            if self._sock is None:
                raise RuntimeError("the diode sender is not started")
            sequence = self.next_sequence
            self.next_sequence += 1
            if direct is not None:
                # FEC and sealing in one C call, straight into the datagrams (fec.DirectEncoder).
                lengths = direct.pack(
                    self._sealer, self._buffer, self._slot, flags, k, m, self.session, sequence, payload
                )
            elif self._sealer is not None:
                lengths = self._sealer.pack_block(
                    self._buffer, self._slot, flags, k, m, self.session, sequence, fragments
                )
            else:
                lengths = wire.pack_block_into(
                    self._mac, self._buffer, self._slot, flags, k, m, self.session, sequence, fragments
                )
            size = sum(lengths)
            await self._bucket.take(size + 28 * len(lengths))  # + IPv4 and UDP headers
            if self._batch is not None:
                await self._send_batch(self._batch, lengths)
            else:
                view, slot = memoryview(self._buffer), self._slot
                await self._send([view[i * slot : i * slot + length] for i, length in enumerate(lengths)])
            self.stats.datagrams += len(lengths)
            self.stats.bytes += size
            self.stats.blocks += 1
            self.stats.snapshots += snapshot
        return sequence

    async def _send_batch(self, batch: mmsg.BatchSender, lengths: list[int]) -> None:
        """A block's datagrams, already packed in the batch buffer, in as few sendmmsg calls as the
        socket's queue allows."""
        batch.set_lengths(lengths)
        first, total = 0, len(lengths)
        while first < total:
            sent = batch.send(first, total - first)
            if not sent:  # the send queue is full: let the kernel drain it
                self.stats.send_retries += 1
                await asyncio.sleep(0.0005)
            first += sent

    async def _send(self, datagrams: Sequence[bytes | memoryview]) -> None:
        """sendto, one datagram per call: beacons, and blocks where sendmmsg is not available."""
        sock = self._sock
        if sock is None:
            raise RuntimeError("the diode sender is not started")
        target = self._address
        sendto = sock.sendto
        for datagram in datagrams:
            while True:
                try:
                    sendto(datagram, target)
                    break
                except (BlockingIOError, InterruptedError):
                    self.stats.send_retries += 1
                    await asyncio.sleep(0.0005)
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise
                    self.stats.send_retries += 1
                    await asyncio.sleep(0.0005)


class CurrentValues:
    """The latest sample of every point, with its journal offset: what a snapshot sends."""

    def __init__(self) -> None:
        self.source = ""
        self._latest: dict[str, tuple[int, Sample]] = {}

    def update(self, source: str, offsets: Sequence[int], records: Sequence[Record]) -> None:
        self.source = source
        latest = self._latest
        for offset, record in zip(offsets, records, strict=True):
            if isinstance(record, Sample):
                latest[record.point] = (offset, record)

    def __len__(self) -> int:
        return len(self._latest)

    def snapshot(self) -> tuple[list[int], list[Record]]:
        items = sorted(self._latest.values(), key=lambda item: item[0])
        return [o for o, _ in items], [s for _, s in items]
