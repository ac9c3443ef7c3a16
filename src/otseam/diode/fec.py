"""Forward error correction: a block becomes k data + m parity fragments; any k of them rebuild it.

Reed-Solomon over GF(2^8) with Intel ISA-L (BSD licence), linked into the diode's C module
(``speedups/coder.c``; Debian's libisal-dev at build time). The parity rows are ISA-L's Cauchy matrix:
every square submatrix of a Cauchy matrix is invertible, so any k of the k + m fragments rebuild the
block. (A Vandermonde matrix does not keep that promise once m > 4: measured with k = 57, m = 8, about
one random pattern of seven losses in 1,500 could not be inverted.)

Every fragment starts with Seam's fragment header, 4 bytes: the block's length in bytes (big-endian).
A block of L bytes in k fragments gives each ceil(L / k) data bytes, the last padded with zeros; the
datagram header (under the MAC) carries k, m and the fragment's index. See docs/diode.md.

k is chosen per block from its size, so a block of three samples costs 1 + ``min_parity`` small
datagrams rather than a full 64-fragment stripe; m is ``ceil(k * overhead)`` but never below
``min_parity``, which keeps small blocks as robust as large ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from otseam.diode import wire

BACKEND = "isa-l-cauchy"
#: Seam's fragment header: the block length, u32 big-endian (speedups.h's FRAGMENT_HEADER).
FRAGMENT_HEADER = wire.FRAGMENT_HEADER
MAX_FRAGMENTS = 255  # k + m travel as one byte each and the index as one byte
#: Distinct arrival patterns whose decode tables are kept (each k = 64 table is 32 * 64 * lost bytes).
CACHE_PATTERNS = 4096


class FecError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class FecSettings:
    """What both sides must share; part of the configuration fingerprint."""

    max_k: int = 64
    overhead: float = 0.125
    min_parity: int = 3
    #: Largest fragment (Seam's fragment header included) that fits one datagram.
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


def _compiled() -> ModuleType:
    module = wire.speedups(None, warn=False)
    if module is None:
        raise FecError(
            "the diode's compiled module (otseam.diode._speedups) is not built here, and its Reed-Solomon "
            "is Intel ISA-L called from it: reinstall Seam with a C compiler and the headers of Python, "
            "OpenSSL and ISA-L (Debian: gcc python3-dev libssl-dev libisal-dev)"
        )
    return module


class Fec:
    """Encoder and decoder, with ISA-L's tables cached per (k, m) and per arrival pattern."""

    def __init__(self, settings: FecSettings) -> None:
        self.settings = settings
        compiled = _compiled()
        self._coder: Any = compiled.Coder()
        self._join = compiled.join_fragments
        # (k, m) by block size in fragments, worked out once: shape() runs for every block sent.
        self._capacity, self._max_block = settings.capacity, settings.max_block
        self._shapes = [(k, settings.parity_for(k)) for k in range(settings.max_k + 1)]
        self._tables: dict[tuple[int, int], bytes] = {}
        self._decode_tables: dict[tuple[int, int, tuple[int, ...]], tuple[bytes, tuple[int, ...]] | None] = {}

    def shape(self, size: int) -> tuple[int, int]:
        """k and m for a block of ``size`` bytes."""
        if not size:
            raise FecError("an empty block cannot be encoded")
        if size > self._max_block:
            raise FecError(f"block of {size} bytes exceeds the stripe's {self._max_block}")
        return self._shapes[-(-size // self._capacity)]

    def tables(self, k: int, m: int) -> bytes:
        """ISA-L's encoding tables for k data and m parity fragments."""
        tables = self._tables.get((k, m))
        if tables is None:
            tables = self._tables[(k, m)] = self._coder.tables(k, m)
        return tables

    def encode(self, block: bytes) -> tuple[int, int, list[bytes]]:
        """Split ``block`` into k data fragments followed by m parity fragments, each behind Seam's header."""
        k, m = self.shape(len(block))
        fragments: list[bytes] = self._coder.encode(k, m, self.tables(k, m), block)
        return k, m, fragments

    def join(self, joined: bytes, size: int, k: int) -> bytes | None:
        """The block of k complete data fragments of ``size`` bytes laid end to end in ``joined`` (parity may
        follow); None if their headers do not agree."""
        return self._join(joined, size, k)  # type: ignore[no-any-return]

    def decode(self, k: int, m: int, fragments: dict[int, bytes]) -> bytes | None:
        """Rebuild a block from at least k fragments (by index); None if they do not fit together."""
        if len(fragments) < k or k < 1 or m < 1 or k + m > MAX_FRAGMENTS or k > self.settings.max_k:
            return None
        used = tuple(sorted(fragments)[:k])  # data fragments first: with all k present, only a join
        if used[-1] >= k + m:
            return None
        chosen = [fragments[i] for i in used]
        if used[-1] < k:
            return self._coder.rebuild(k, used, chosen, b"", ())  # type: ignore[no-any-return]
        key = (k, m, used)
        if key in self._decode_tables:
            found = self._decode_tables[key]
        else:
            tables = self._coder.decode_tables(k, m, used)
            present = set(used)
            found = None if tables is None else (tables, tuple(i for i in range(k) if i not in present))
            if len(self._decode_tables) >= CACHE_PATTERNS:
                self._decode_tables.clear()
            self._decode_tables[key] = found
        if found is None:
            return None
        return self._coder.rebuild(k, used, chosen, found[0], found[1])  # type: ignore[no-any-return]


class DirectEncoder:
    """Encoding and sealing in one C call (``Mac.pack_payload``): the block is copied once, into the
    datagrams, ISA-L writes the parity in place, and the datagrams are sealed where they lie; the same
    bytes as :meth:`Fec.encode` followed by ``Mac.pack_block`` (a test compares them on random blocks)."""

    def __init__(self, fec: Fec) -> None:
        self._fec = fec

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
        lengths: list[int] = sealer.pack_payload(
            buffer, slot, flags, k, m, session, sequence, block, self._fec.tables(k, m)
        )
        return lengths
