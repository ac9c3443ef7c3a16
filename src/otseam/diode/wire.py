"""The diode's datagram (wire version 3): a fixed 26-byte header, a payload, an AES-256-GCM tag.

Every field is big-endian. The layout is documented with a byte table in docs/diode.md; change both
together and bump ``VERSION``, and the same numbers in ``speedups/speedups.h`` (checked at import).

The Python here is the reference; ``speedups/_speedups.c`` does the same work on the hot paths (see
:func:`speedups`), and the tests hold the two to the same bytes and the same verdicts.

    0   2  magic "SD"
    2   1  version
    3   1  type (1 data fragment, 2 parity fragment, 3 beacon)
    4   1  flags (bit 0: a snapshot of current values; bit 1: a replay of journal history)
    5   1  k, data fragments in this block (0 in a beacon)
    6   1  m, parity fragments in this block (0 in a beacon)
    7   1  fragment index, 0 .. k+m-1 (0 in a beacon)
    8   8  session id, random per sender start
    16  8  block sequence number (in a beacon: the sequence the next block will take)
    24  2  payload length
    26  n  payload
    26+n 16 AES-256-GCM tag of bytes 0 .. 26+n (associated data, nothing encrypted) under the
            session's key, HKDF-SHA256(key, info = SESSION_KEY_INFO + session id); nonce: the
            sequence (in a beacon, its beacon number), the type, the fragment index, two zero bytes

A fragment's payload is Seam's fragment header (the block length, u32) and the fragment's data; see
fec.py. Version 1 carried liberasurecode's 80-byte fragment header instead and an HMAC computed by hand;
version 2 was sealed with a truncated HMAC-SHA256. A receiver refuses both, counted as ``version`` and
logged (at a limited rate) with what to do.

The MAC is checked before any other field is trusted, and every length is checked before it is used:
the receiver faces whatever reaches its port, and a short or forged datagram is counted and dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import struct
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache, partial
from types import ModuleType
from typing import NamedTuple

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from otseam.core import columns

log = logging.getLogger(__name__)

MAGIC = b"SD"
VERSION = 3
#: Versions a receiver recognises only to refuse them with a message naming what to upgrade.
RETIRED_VERSIONS = {
    1: "Seam's diode before wire version 2 (liberasurecode fragments, hand-written HMAC)",
    2: "Seam's diode before wire version 3 (datagrams sealed with HMAC-SHA256)",
}
HEADER = struct.Struct(">2sBBBBBBQQH")
HEADER_SIZE = HEADER.size  # 26
MAC_SIZE = 16
OVERHEAD = HEADER_SIZE + MAC_SIZE
#: The largest UDP payload over IPv4. 1,472 (one Ethernet frame) is the default; larger datagrams are
#: fragmented by IP on a 1,500-byte link, where losing one fragment loses the datagram, so they pay off
#: only with jumbo frames or on loopback.
MAX_DATAGRAM = 65507

FLAG_SNAPSHOT = 0x01
#: The block re-sends a range of the OT journal on an operator's request (``seam diode replay``).
FLAG_REPLAY = 0x02


class Kind(IntEnum):
    DATA = 1
    PARITY = 2
    BEACON = 3


_DATA, _PARITY, _BEACON = int(Kind.DATA), int(Kind.PARITY), int(Kind.BEACON)


class Rejected(IntEnum):
    """Why a datagram was dropped; each reason has its own counter on the IT side."""

    SHORT = 1  # shorter than header + MAC, or than its own payload length says
    MAGIC = 2  # not ours at all
    VERSION = 3  # ours, but a wire version this receiver does not speak
    MAC = 4  # wrong key, corrupted or forged
    MALFORMED = 5  # authentic but inconsistent (type, k, m, index out of range)


class Header(NamedTuple):
    kind: int  # a Kind value
    flags: int
    k: int
    m: int
    fragment: int  # index of this fragment in its block, 0 .. k+m-1
    session: int
    sequence: int
    length: int


def pack(key: bytes, header: Header, payload: bytes) -> bytes:
    """One datagram, MAC included."""
    head = HEADER.pack(
        MAGIC,
        VERSION,
        header.kind,
        header.flags,
        header.k,
        header.m,
        header.fragment,
        header.session,
        header.sequence,
        len(payload),
    )
    body = head + payload
    return body + _mac_of(key)(body)


#: What a session's key is derived for (HKDF's info, followed by the session id, 8 bytes big-endian).
SESSION_KEY_INFO = b"seam diode wire 3: AES-256-GCM key of session "
#: Session keys a Mac keeps; more are derived again when needed.
SESSION_KEYS = 64


def session_key(key: bytes, session: int) -> bytes:
    """The AES-256 key of one sender session: HKDF-SHA256 of the master key (no salt)."""
    info = SESSION_KEY_INFO + session.to_bytes(8, "big")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)


def nonce(data: bytes | bytearray | memoryview) -> bytes:
    """The GCM nonce of a datagram (header and payload): its sequence, or in a beacon its beacon number
    (the payload's last 8 bytes), then its type, its fragment index and two zero bytes. No two datagrams
    a sender seals under one session key share it (docs/diode.md says why)."""
    counter = data[-8:] if data[3] == _BEACON and len(data) >= HEADER_SIZE + 8 else data[16:24]
    return bytes(counter) + bytes((data[3], data[7], 0, 0))


class Mac:
    """The MAC of a datagram: the AES-256-GCM tag (from ``cryptography``, i.e. OpenSSL) of its header and
    payload as associated data, nothing encrypted, under the key of the session the header names, with
    the nonce :func:`nonce` makes. ``data`` is a datagram without its MAC (at least the header)."""

    __slots__ = ("_key", "_sessions")

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("the diode key is empty")
        self._key = bytes(key)
        self._sessions: dict[int, AESGCM] = {}

    def __call__(self, data: bytes | bytearray | memoryview) -> bytes:
        if len(data) < HEADER_SIZE:
            raise ValueError("a datagram's header and payload, at least 26 bytes")
        session = int.from_bytes(data[8:16], "big")
        sealer = self._sessions.get(session)
        if sealer is None:
            if len(self._sessions) >= SESSION_KEYS:
                self._sessions.clear()
            sealer = self._sessions[session] = AESGCM(session_key(self._key, session))
        return sealer.encrypt(nonce(data), b"", bytes(data))


@lru_cache(maxsize=8)
def _mac_of(key: bytes) -> Mac:
    return Mac(key)


def pack_block_into(
    mac: Mac,
    buffer: bytearray,
    slot: int,
    flags: int,
    k: int,
    m: int,
    session: int,
    sequence: int,
    fragments: list[bytes],
) -> list[int]:
    """Write the datagrams of one block into ``buffer``, datagram ``i`` at ``i * slot``; their lengths.

    The same bytes as :func:`pack` for each fragment, without building a Python object per datagram
    beyond the MAC itself: this runs for every datagram sent.
    """
    view = memoryview(buffer)
    pack_into = HEADER.pack_into
    lengths = []
    for index, fragment in enumerate(fragments):
        start = index * slot
        size = len(fragment)
        end = start + HEADER_SIZE + size
        pack_into(
            buffer, start, MAGIC, VERSION, _DATA if index < k else _PARITY, flags, k, m, index, session, sequence, size
        )
        buffer[start + HEADER_SIZE : end] = fragment
        buffer[end : end + MAC_SIZE] = mac(view[start:end])
        lengths.append(end + MAC_SIZE - start)
    return lengths


def pack_block(
    key: bytes, flags: int, k: int, m: int, session: int, sequence: int, fragments: list[bytes]
) -> list[bytes]:
    """All datagrams of one block (data fragments first, then parity) as separate byte strings."""
    slot = HEADER_SIZE + MAC_SIZE + max(map(len, fragments), default=0)
    buffer = bytearray(slot * len(fragments))
    lengths = pack_block_into(Mac(key), buffer, slot, flags, k, m, session, sequence, fragments)
    return [bytes(buffer[i * slot : i * slot + length]) for i, length in enumerate(lengths)]


#: Builds the NamedTuple in C: this runs once per datagram received.
_new_header = partial(tuple.__new__, Header)


def parse(key: bytes, data: bytes | memoryview) -> Header | Rejected:
    """Check and decode a datagram's header. The payload is ``data[HEADER_SIZE:HEADER_SIZE + length]``."""
    size = len(data)
    if size < OVERHEAD:
        return Rejected.SHORT
    magic, version, kind, flags, k, m, index, session, sequence, length = HEADER.unpack_from(data)
    if magic != MAGIC:
        return Rejected.MAGIC
    if version != VERSION:
        return Rejected.VERSION
    end = HEADER_SIZE + length
    if end + MAC_SIZE != size:
        return Rejected.SHORT
    expected = _mac_of(key)(data[:end])
    if not hmac.compare_digest(expected, data[end:]):
        return Rejected.MAC
    if kind in (_DATA, _PARITY):
        if k < 1 or m < 1 or index >= k + m or (kind == _DATA) != (index < k) or length == 0:
            return Rejected.MALFORMED
    elif kind == _BEACON:
        if k or m or index:
            return Rejected.MALFORMED
    else:
        return Rejected.MALFORMED
    return _new_header((kind, flags, k, m, index, session, sequence, length))


def peek_beacon_fingerprint(data: bytes | memoryview) -> bytes | None:
    """The fingerprint a beacon claims, read WITHOUT checking its MAC.

    Used only to explain a MAC failure ("the other side runs a different key or configuration"): the
    value is reported, never acted upon.
    """
    if len(data) < OVERHEAD + BEACON.size:
        return None
    magic, version, kind = struct.unpack_from(">2sBB", data)
    if magic != MAGIC or version != VERSION or kind != Kind.BEACON:
        return None
    return bytes(data[HEADER_SIZE : HEADER_SIZE + FINGERPRINT_SIZE])


# --- the compiled hot path ---------------------------------------------------------------------------


#: What the C checker's ``parse_batch`` returns, item by item (see ``speedups/_speedups.c``): a run of
#: fragments with their payloads joined; a beacon; the fingerprint a beacon that failed the MAC claims;
#: a run that held every data fragment of its block, as the block itself.
ITEM_RUN, ITEM_BEACON, ITEM_FOREIGN_BEACON, ITEM_BLOCK = 1, 2, 3, 4


#: The shape of the C module's functions this file calls (its SPEEDUPS_API).
SPEEDUPS_API = 6


def _load_speedups() -> ModuleType | None:
    try:
        from otseam.diode import _speedups
    except ImportError:  # not built here (no compiler at install time): the Python above does the work
        return None
    built = (
        getattr(_speedups, "API", 1),
        _speedups.VERSION,
        _speedups.HEADER_SIZE,
        _speedups.MAC_SIZE,
        _speedups.BEACON_PAYLOAD,
        _speedups.ITEM_RUN,
        _speedups.ITEM_BEACON,
        _speedups.ITEM_FOREIGN_BEACON,
        getattr(_speedups, "ITEM_BLOCK", None),
        getattr(_speedups, "FRAGMENT_HEADER", None),
    )
    expected = (
        SPEEDUPS_API,
        VERSION,
        HEADER_SIZE,
        MAC_SIZE,
        BEACON.size,
        ITEM_RUN,
        ITEM_BEACON,
        ITEM_FOREIGN_BEACON,
        ITEM_BLOCK,
    )
    if built != (*expected, FRAGMENT_HEADER):
        raise ImportError(
            f"otseam.diode._speedups was built for another wire layout or API {built}: reinstall Seam to rebuild it"
        )
    columns.use_compiled_encoder(getattr(_speedups, "encode_columns", None))
    return _speedups


def speedups(wanted: bool | None = None, warn: bool = True) -> ModuleType | None:
    """The C implementation of this module's hot paths (``speedups/_speedups.c``), or None for pure Python.

    ``wanted``: None takes it wherever it was built, False never, True insists (an error if it is not
    built). Both give the same bytes and the same verdicts; the tests hold them to that.
    """
    if wanted is False:
        return None
    if _SPEEDUPS is None and wanted:
        raise RuntimeError(
            "the diode's C speedups are not built here: reinstall Seam with a C compiler and the headers of "
            "OpenSSL and ISA-L (Debian: libssl-dev libisal-dev)"
        )
    global _warned
    if _SPEEDUPS is None and warn and not _warned:
        _warned = True  # once per process: an operator should know, a log should not fill with it
        log.warning(
            "the diode's C speedups are not built here: running the Python reference path, at about half "
            "the throughput; reinstall Seam with a C compiler and the headers of OpenSSL and ISA-L to build them"
        )
    return _SPEEDUPS


_warned = False


# --- beacons --------------------------------------------------------------------------------------

FINGERPRINT_SIZE = 16
#: fingerprint, sender wall clock (seconds, float), blocks sent, snapshot interval (ms), beacon interval (ms),
#: beacon number (from 0 per session, one more for every beacon: a receiver acts only on a beacon whose
#: number is higher than any it has seen from that session, so a recorded beacon replayed does nothing)
BEACON = struct.Struct(">16sdQIIQ")


@dataclass(slots=True, frozen=True)
class Beacon:
    fingerprint: bytes
    sent_at: float
    blocks_sent: int
    snapshot_interval_ms: int
    beacon_interval_ms: int
    number: int


def pack_beacon(beacon: Beacon) -> bytes:
    return BEACON.pack(
        beacon.fingerprint,
        beacon.sent_at,
        beacon.blocks_sent,
        beacon.snapshot_interval_ms,
        beacon.beacon_interval_ms,
        beacon.number,
    )


def parse_beacon(payload: bytes | memoryview) -> Beacon | None:
    if len(payload) != BEACON.size:
        return None
    return Beacon(*BEACON.unpack(payload))


def fingerprint(key: bytes, settings: str) -> bytes:
    """What both sides must agree on, as a hash that reveals neither the key nor needs to.

    The key enters only through its own SHA-256, so the fingerprint can travel in clear beacons.
    """
    digest = hashlib.sha256()
    digest.update(b"seam-diode-fingerprint\x00")
    digest.update(VERSION.to_bytes(1, "big"))
    digest.update(hashlib.sha256(key).digest())
    digest.update(settings.encode())
    return digest.digest()[:FINGERPRINT_SIZE]


#: Seam's fragment header (fec.py documents it); held here too so that the C module is checked against it.
FRAGMENT_HEADER = 4

_SPEEDUPS = _load_speedups()
