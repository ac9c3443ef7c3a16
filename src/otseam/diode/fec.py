"""Forward error correction: a block becomes k data + m parity fragments; any k of them rebuild it.

Reed-Solomon from pyeclib (BSD licence) with Intel ISA-L's Cauchy backend, which the pyeclib wheels
bundle. Cauchy, not ISA-L's Vandermonde backend: with a Vandermonde matrix some sets of k fragments
cannot be inverted once m > 4 (measured here with k = 57, m = 8: about one random pattern of seven
losses in 1,500 could not be rebuilt, by pyeclib or otherwise), so a block within its FEC margin could
still be lost. Every square submatrix of a Cauchy matrix is invertible: any k fragments rebuild it. liberasurecode prefixes every fragment with an 80-byte header of its own (original
size, checksum); we keep it because it lets ``decode`` return exactly the bytes that were encoded.

k is chosen per block from its size, so a block of three samples costs 1 + ``min_parity`` small
datagrams rather than a full 64-fragment stripe; m is ``ceil(k * overhead)`` but never below
``min_parity``, which keeps small blocks as robust as large ones.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from otseam.diode import isal, wire

with warnings.catch_warnings():
    # pyeclib warns about Jerasure's deprecation at import time; we never use Jerasure.
    warnings.simplefilter("ignore", FutureWarning)
    from pyeclib.ec_iface import ECDriver, ECDriverError

BACKEND = "isa_l_rs_cauchy"
#: Bytes liberasurecode adds to each fragment (measured with the bundled ISA-L backend, checked at start).
FRAGMENT_HEADER = 80
MAX_FRAGMENTS = 255  # k + m travel as one byte each and the index as one byte


class FecError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class FecSettings:
    """What both sides must share; part of the configuration fingerprint."""

    max_k: int = 64
    overhead: float = 0.125
    min_parity: int = 3
    #: Largest fragment (liberasurecode header included) that fits one datagram.
    fragment_size: int = 1430

    def __post_init__(self) -> None:
        if not 1 <= self.max_k <= 128:
            raise FecError(f"k must be between 1 and 128, got {self.max_k}")
        if not 0 <= self.overhead <= 1:
            raise FecError(f"overhead must be between 0 and 1 (a fraction of k), got {self.overhead}")
        if not 1 <= self.min_parity <= 32:
            raise FecError(f"min_parity must be between 1 and 32, got {self.min_parity}")
        if self.max_k + self.parity_for(self.max_k) > MAX_FRAGMENTS:
            raise FecError("k plus its parity fragments must not exceed 255")
        if self.fragment_size <= FRAGMENT_HEADER + 16:
            raise FecError(f"fragment size {self.fragment_size} leaves no room for data")
        if self.max_block < 4096:
            # Below this even one event explaining an oversized record would not fit a block.
            raise FecError(
                f"k × fragment data ({self.max_block} bytes) must be at least 4096: raise k or datagram_size"
            )

    @property
    def capacity(self) -> int:
        """Data bytes one fragment carries."""
        return self.fragment_size - FRAGMENT_HEADER

    @property
    def max_block(self) -> int:
        """The largest block (serialised records) one stripe carries."""
        return self.max_k * self.capacity

    def parity_for(self, k: int) -> int:
        return max(self.min_parity, math.ceil(k * self.overhead - 1e-9))

    def describe(self) -> str:
        return f"{BACKEND};k={self.max_k};overhead={self.overhead:g};min_parity={self.min_parity};fragment={self.fragment_size}"


_SIZE_FIELD = slice(4, 8)  # liberasurecode's header: u32 index, u32 data size, ... (little-endian)


def _as_long_as_claimed(fragments: list[bytes]) -> bool:
    """Is every fragment exactly as long as its own header says, and all of one length?

    pyeclib trusts each fragment's header for its size and copies that many bytes: a fragment shorter
    than it claims (only a sender holding the key could make one: a bug, never the network) would hand
    back whatever lies beyond it in memory. Checked here on every block pyeclib sees.
    """
    length = len(fragments[0])
    if length < FRAGMENT_HEADER or any(len(f) != length for f in fragments):
        return False
    claimed = (length - FRAGMENT_HEADER).to_bytes(4, "little")
    return all(f[_SIZE_FIELD] == claimed for f in fragments)


class Fec:
    """Encoder and decoder, with one pyeclib driver per (k, m) pair actually used."""

    def __init__(self, settings: FecSettings) -> None:
        self.settings = settings
        self._drivers: dict[tuple[int, int], ECDriver] = {}
        # (k, m) by block size in fragments, worked out once: shape() runs for every block sent.
        self._capacity, self._max_block = settings.capacity, settings.max_block
        self._shapes = [(k, settings.parity_for(k)) for k in range(settings.max_k + 1)]
        probe = self._driver(1, 1).encode(b"\x00" * settings.capacity)
        if len(probe[0]) != settings.fragment_size:
            raise FecError(
                f"the installed erasure-code backend adds {len(probe[0]) - settings.capacity} bytes per fragment, "
                f"not {FRAGMENT_HEADER}: this pyeclib build is not the one Seam was built for"
            )
        self._recovery = isal.available()
        if self._recovery is not None:
            # Rebuilding with ISA-L directly must give exactly what pyeclib gives, or it is not used.
            block = os.urandom(settings.max_block - 7)
            k, m, fragments = self.encode(block)
            if not isal.agrees(self._recovery, block, k, m, fragments):
                self._recovery = None

    @property
    def direct_recovery(self) -> bool:
        """True when lost data fragments are rebuilt with cached ISA-L tables rather than by pyeclib."""
        return self._recovery is not None

    def _driver(self, k: int, m: int) -> ECDriver:
        driver = self._drivers.get((k, m))
        if driver is None:
            driver = ECDriver(k=k, m=m, ec_type=BACKEND)
            self._drivers[(k, m)] = driver
        return driver

    def shape(self, size: int) -> tuple[int, int]:
        """k and m for a block of ``size`` bytes."""
        if not size:
            raise FecError("an empty block cannot be encoded")
        if size > self._max_block:
            raise FecError(f"block of {size} bytes exceeds the stripe's {self._max_block}")
        return self._shapes[-(-size // self._capacity)]

    def encode(self, block: bytes) -> tuple[int, int, list[bytes]]:
        """Split ``block`` into k data fragments followed by m parity fragments."""
        k, m = self.shape(len(block))
        fragments: list[bytes] = self._driver(k, m).encode(block)
        return k, m, fragments

    def _coder(self, speedups: ModuleType) -> Any | None:
        """The compiled ISA-L coder, or None where it is not built or the library cannot be loaded."""
        coder_type = getattr(speedups, "Coder", None)
        # The library the decoder already loaded and checked against pyeclib (looking for it again
        # would run ldconfig).
        library = getattr(self._recovery, "_lib", None)
        if coder_type is None or library is None:
            return None
        header = self._driver(1, 1).encode(b"\x00")[0][:FRAGMENT_HEADER]
        try:
            return coder_type(library._name, header)
        except OSError:
            return None

    def direct(self, speedups: ModuleType) -> DirectEncoder | None:
        """An encoder that seals straight into the datagrams (see :class:`DirectEncoder`), or None where
        ISA-L cannot be loaded or does not give exactly pyeclib's fragments here."""
        coder = self._coder(speedups)
        if coder is None:
            return None
        encoder = DirectEncoder(self, coder)
        return encoder if encoder.agrees(speedups.Mac(b"self-check")) else None

    def compile_recovery(self, speedups: ModuleType) -> bool:
        """Rebuild blocks in one C call (``Coder.rebuild``) from now on, if it gives exactly what pyeclib
        gives here (checked now, on a random block, with no loss and with losses); True if it does."""
        coder = self._coder(speedups)
        recovery = self._recovery
        if coder is None or recovery is None:
            return False
        recovery.rebuild = coder.rebuild
        block = os.urandom(self.settings.max_block - 7)
        k, m, fragments = self.encode(block)
        if not isal.agrees(recovery, block, k, m, fragments):
            recovery.rebuild = None
        return recovery.rebuild is not None

    def decode(self, k: int, m: int, fragments: dict[int, bytes]) -> bytes | None:
        """Rebuild a block from at least k fragments (by index); None if they do not fit together."""
        if len(fragments) < k or k + m > MAX_FRAGMENTS or k > self.settings.max_k:
            return None
        if self._recovery is not None:
            # Also with every data fragment present: the same concatenation pyeclib would do, without
            # its per-call overhead and a copy of the whole block (measured: 7% of the receiver's CPU).
            rebuilt = self._recovery.decode(k, m, fragments)
            if rebuilt is not None:
                return rebuilt
        # Data fragments first: with all k of them present pyeclib only concatenates.
        chosen = [fragments[i] for i in sorted(fragments)[:k]]
        if not _as_long_as_claimed(chosen):
            return None
        try:
            block: bytes = self._driver(k, m).decode(chosen)
        except (ECDriverError, ValueError):
            return None
        return block


class DirectEncoder:
    """pyeclib's encode and ``Mac.pack_block`` in one C call (``Mac.pack_payload``), without a copy.

    pyeclib copies a block into buffers it allocates, computes the parity, and copies every fragment
    again into a bytes object, which sealing copies once more into its datagram: encoding and sealing a
    full block took 176 us, this takes 132 us with the same (OpenSSL) sealing. ``pack_payload``
    copies the block once, into the datagrams, has ISA-L (the library the pyeclib wheels bundle, as
    liberasurecode calls it) write the parity in place, and writes liberasurecode's fragment headers
    from a template taken from pyeclib's own output. The receiver is unchanged: the bytes are the same,
    which :meth:`agrees` checks before this is used, and a test checks on random blocks.
    """

    def __init__(self, fec: Fec, coder: Any) -> None:
        self._fec = fec
        self._coder = coder
        self._tables: dict[tuple[int, int], bytes] = {}

    def pack(
        self,
        sealer: Any,
        buffer: bytearray,
        slot: int,
        flags: int,
        k: int,
        m: int,
        session: int,
        sequence: int,
        block: bytes,
    ) -> list[int]:
        """Seal ``block``'s k + m fragments (k and m from :meth:`Fec.shape`) into ``buffer``, datagram i at
        i * slot; their lengths."""
        tables = self._tables.get((k, m))
        if tables is None:
            tables = self._tables[(k, m)] = self._coder.tables(k, m)
        lengths: list[int] = sealer.pack_payload(
            buffer, slot, flags, k, m, session, sequence, block, self._coder, tables
        )
        return lengths

    def agrees(self, sealer: Any) -> bool:
        """Does it give pyeclib's datagrams, byte for byte, for blocks of the sizes that matter?"""
        capacity, largest = self._fec.settings.capacity, self._fec.settings.max_block
        slot = wire.OVERHEAD + self._fec.settings.fragment_size
        for size in {1, 2, capacity - 1, capacity, capacity + 1, 3 * capacity + 7, largest - 1, largest}:
            if not 0 < size <= largest:
                continue
            block = os.urandom(size)
            k, m, fragments = self._fec.encode(block)
            expected, actual = bytearray(slot * (k + m)), bytearray(slot * (k + m))
            lengths = sealer.pack_block(expected, slot, 0, k, m, 1, 2, fragments)
            if self.pack(sealer, actual, slot, 0, k, m, 1, 2, block) != lengths or actual != expected:
                return False
        return True
