"""Helpers shared by the diode tests: records to send, and reading back what reached the IT journal."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from otseam.core.records import Event, Quality, Record, Sample
from otseam.diode.config import DiodeSettings
from otseam.journal import Journal

if TYPE_CHECKING:
    from otseam.diode.receiver import DiodeReceiver
    from otseam.diode.sender import DiodeSender
    from tests.diode.relay import LossyRelay

KEY = b"a3f1c29e0b7d4e65a3f1c29e0b7d4e65"


def expected_mac(key: bytes, data: bytes | bytearray | memoryview) -> bytes:
    """The MAC docs/diode.md specifies, computed apart from wire.Mac: HKDF-SHA256 as RFC 5869 writes it
    (Python's hmac), then the GCM tag of ``data`` as associated data with nothing encrypted."""
    data = bytes(data)
    session = data[8:16]
    prk = hmac.digest(bytes(hashlib.sha256().digest_size), key, "sha256")  # extract, no salt: HashLen zeros
    info = b"seam diode wire 3: AES-256-GCM key of session " + session
    session_key = hmac.digest(prk, info + b"\x01", "sha256")  # expand: one block is 32 bytes
    counter = data[-8:] if data[3] == 3 and len(data) >= 34 else data[16:24]
    nonce = counter + bytes((data[3], data[7], 0, 0))
    tagger = Cipher(algorithms.AES(session_key), modes.GCM(nonce)).encryptor()
    tagger.authenticate_additional_data(data)
    tagger.finalize()
    return tagger.tag


def settings(**options: object) -> DiodeSettings:
    base: dict[str, object] = {
        "rate": "200Mbit/s",
        "block_timeout": "200ms",
        "beacon_interval": "200ms",
        "snapshot_interval": "0s",
    }
    base.update(options)
    return DiodeSettings.from_options(base)


def samples(count: int, points: int = 50, first_offset: int = 1) -> tuple[list[int], list[Record]]:
    """Samples whose gateway timestamp equals their offset, so 'newest' is unambiguous on both sides."""
    offsets = list(range(first_offset, first_offset + count))
    records: list[Record] = [
        Sample(f"plc1/p{o % points}", float(o) * 0.25, Quality.GOOD, float(o), float(o)) for o in offsets
    ]
    return offsets, records


def read_all(journal: Journal) -> list[Record]:
    """Everything in the journal from the start, without moving any cursor."""
    reader = journal.reader("test-check")
    out: list[Record] = []
    position = journal.first_offset
    while True:
        batch = reader._read(position, 100_000)
        if not batch.records:
            return out
        out.extend(batch.records)
        position = batch.last_offset + 1


def open_journal(path: Path) -> Journal:
    return Journal.open(path, max_size=256 * 1024 * 1024, sync="none")


def latest_by_point(records: list[Record]) -> dict[str, Sample]:
    latest: dict[str, Sample] = {}
    for record in records:
        if isinstance(record, Sample) and (
            record.point not in latest or record.gateway_ts > latest[record.point].gateway_ts
        ):
            latest[record.point] = record
    return latest


def events(records: list[Record], kind: str) -> list[Event]:
    return [r for r in records if isinstance(r, Event) and r.kind == kind]


def through(sender: DiodeSender, receiver: DiodeReceiver, relay: LossyRelay | None = None) -> Callable[[], bool]:
    """A condition for the wait helper: every datagram ``sender`` has sent so far was consumed by the relay
    (forwarded or dropped; the relay releases what it held back once the link is idle) and every datagram
    forwarded reached ``receiver``."""

    def check() -> bool:
        sent = sender.stats.datagrams
        if relay is None:
            return receiver.stats.datagrams >= sent
        truth = relay.truth
        consumed = truth.forwarded - truth.duplicated + truth.dropped
        return consumed >= sent and receiver.stats.datagrams >= truth.forwarded

    return check


async def started_link(path: Path) -> tuple[Journal, DiodeReceiver, DiodeSender]:
    """A receiver writing a fresh IT journal at ``path`` and a sender to it, both started, default settings."""
    from otseam.diode.receiver import DiodeReceiver
    from otseam.diode.sender import DiodeSender

    journal = open_journal(path)
    receiver = DiodeReceiver(("127.0.0.1", 0), KEY, settings(), journal)
    await receiver.start()
    sender = DiodeSender(receiver.listen, KEY, settings())
    await sender.start()
    return journal, receiver, sender
