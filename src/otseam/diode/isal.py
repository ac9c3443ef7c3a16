"""Rebuilding lost data fragments with Intel ISA-L directly, keeping the decode tables between blocks.

pyeclib (through liberasurecode) inverts a k x k matrix over GF(2^8) for every block that lost a data
fragment: about 1.5 ms for k = 64 here, 21 us for each of the block's 72 datagrams, which at 1% random
loss (almost every other block needs parity) is more than everything else the receiver does. The
inverse depends only on which fragments arrived, and with random loss the same few patterns recur, so
this module computes each pattern's tables once and keeps them; rebuilding a fragment is then one
``ec_encode_data`` pass, a few microseconds.

It calls the ISA-L library that the pyeclib wheels bundle (the same code liberasurecode uses for the
``isa_l_rs_cauchy`` backend), through ctypes. The parity matrix is ISA-L's ``gf_gen_cauchy1_matrix``,
exactly as liberasurecode builds it, and liberasurecode's 80-byte fragment header
gives each fragment's data size and the block's original size. :class:`Recovery` checks itself against
pyeclib when it is created, and ``Fec`` falls back to pyeclib whenever it is unavailable or disagrees.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: liberasurecode's fragment header: index, data size, backend metadata size, original block size.
_HEADER = struct.Struct("<IIIQ")
HEADER_SIZE = 80
#: Distinct arrival patterns whose tables are kept (each k = 64 table is 32 * 64 * (lost) bytes).
CACHE_PATTERNS = 4096


def _library() -> Any | None:
    candidates: list[str] = []
    try:
        import pyeclib

        bundled = Path(pyeclib.__file__).resolve().parent.parent / "pyeclib.libs"
        candidates += sorted(str(p) for p in bundled.glob("libisal*.so*"))
    except ImportError:
        pass
    system = ctypes.util.find_library("isal")
    if system:
        candidates.append(system)
    for candidate in candidates:
        try:
            lib = ctypes.CDLL(candidate)
            lib.gf_gen_cauchy1_matrix.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
            lib.gf_invert_matrix.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
            lib.gf_invert_matrix.restype = ctypes.c_int
            lib.ec_init_tables.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p]
            lib.ec_encode_data.argtypes = [
                ctypes.c_int,
                ctypes.c_int,
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_void_p,
                ctypes.c_void_p,
            ]
            return lib
        except (OSError, AttributeError):
            continue
    return None


def _multiplication_table() -> np.ndarray[Any, Any]:
    """a x b in GF(2^8) with ISA-L's polynomial (x^8 + x^4 + x^3 + x^2 + 1), as a 256 x 256 table."""
    exp = np.zeros(512, dtype=np.int64)
    log = np.zeros(256, dtype=np.int64)
    value = 1
    for power in range(255):
        exp[power] = value
        log[value] = power
        value <<= 1
        if value & 0x100:
            value ^= 0x11D
    exp[255:510] = exp[:255]
    table: np.ndarray[Any, Any] = exp[log[:, None] + log[None, :]].astype(np.uint8)
    table[0, :] = 0
    table[:, 0] = 0
    return table


_MUL = _multiplication_table()


class Recovery:
    """Rebuild a block from any k of its k + m fragments, as liberasurecode's ISA-L backend would."""

    def __init__(self) -> None:
        lib = _library()
        if lib is None:
            raise OSError("the ISA-L library is not available")
        self._lib = lib
        self._matrices: dict[tuple[int, int], bytes] = {}
        self._tables: dict[tuple[int, int, tuple[int, ...]], tuple[Any, tuple[int, ...]]] = {}
        #: The compiled Coder.rebuild (the header checks, ISA-L's pass and the joining in one C call),
        #: once Fec has seen it give this class's answers; None: all of it here, in Python.
        self.rebuild: Any = None

    def _matrix(self, k: int, m: int) -> bytes:
        matrix = self._matrices.get((k, m))
        if matrix is None:
            buffer = ctypes.create_string_buffer((k + m) * k)
            self._lib.gf_gen_cauchy1_matrix(buffer, k + m, k)
            matrix = self._matrices[(k, m)] = buffer.raw
        return matrix

    def _decode_tables(self, k: int, m: int, used: tuple[int, ...]) -> tuple[Any, tuple[int, ...]] | None:
        """Tables that turn the fragments ``used`` (k indexes) into the data fragments missing from them."""
        key = (k, m, used)
        cached = self._tables.get(key)
        if cached is not None:
            return cached
        present = set(used)
        missing = tuple(i for i in range(k) if i not in present)
        wanted = self._decode_rows(k, m, used, missing)
        if wanted is None:
            return None
        tables = ctypes.create_string_buffer(32 * k * len(missing))
        self._lib.ec_init_tables(k, len(missing), wanted, tables)
        if len(self._tables) >= CACHE_PATTERNS:
            self._tables.clear()
        self._tables[key] = (tables, missing)
        return tables, missing

    def _decode_rows(self, k: int, m: int, used: tuple[int, ...], missing: tuple[int, ...]) -> bytes | None:
        """The rows of the inverse of ``used``'s encoding rows that give the ``missing`` data fragments.

        The used rows are the present data fragments' identity rows plus e = len(missing) parity rows
        P, so only an e x e matrix needs inverting: with D the present data fragments,
        d_E = A[P,E]^-1 (p_P + A[P,D] d_D) (addition is XOR in GF(2^8)). That is microseconds where the
        full k x k inversion (what liberasurecode does) is a millisecond and a half for k = 64.
        """
        matrix = self._matrix(k, m)
        e = len(missing)
        data, parity = used[: k - e], used[k - e :]
        # gf_invert_matrix works in place on its input: it gets a buffer of its own, never a bytes object.
        square = ctypes.create_string_buffer(bytes(matrix[p * k + c] for p in parity for c in missing), e * e)
        inverse = ctypes.create_string_buffer(e * e)
        if self._lib.gf_invert_matrix(square, inverse, e) != 0:
            return None  # cannot happen with a Cauchy matrix; if it did, pyeclib would decide
        c = np.frombuffer(inverse.raw, dtype=np.uint8).reshape(e, e)
        a = np.frombuffer(matrix, dtype=np.uint8).reshape(k + m, k)[np.array(parity)][:, np.array(data, dtype=np.intp)]
        product = np.zeros((e, k - e), dtype=np.uint8)
        for t in range(e):
            product ^= _MUL[c[:, t][:, None], a[t][None, :]]
        # Columns in the order of ``used``: the present data fragments first, then the parity ones.
        return np.concatenate([product, c], axis=1).tobytes()

    def decode(self, k: int, m: int, fragments: dict[int, bytes]) -> bytes | None:
        """The block, or None if these fragments do not fit together (the caller then asks pyeclib)."""
        used = tuple(sorted(fragments)[:k])
        if len(used) < k or used[-1] >= k + m:
            return None
        if self.rebuild is not None:
            if used[k - 1] < k:  # every data fragment present: joining them is the whole decode
                return self.rebuild(k, used, [fragments[i] for i in used], b"", ())  # type: ignore[no-any-return]
            found = self._decode_tables(k, m, used)
            if found is None:
                return None
            return self.rebuild(k, used, [fragments[i] for i in used], *found)  # type: ignore[no-any-return]
        first = fragments[used[0]]
        if len(first) < HEADER_SIZE:
            return None
        _, size, _, original = _HEADER.unpack_from(first)
        length = HEADER_SIZE + size
        if original > size * k:
            return None
        for index in used:  # each fragment says which one it is and of what block size: all must agree
            fragment = fragments[index]
            if len(fragment) != length:
                return None
            claimed, claimed_size, _, claimed_original = _HEADER.unpack_from(fragment)
            if claimed != index or claimed_size != size or claimed_original != original:
                return None
        chunks: list[bytes | Any] = [None] * k
        if used[k - 1] >= k:  # some data fragment is missing
            found = self._decode_tables(k, m, used)
            if found is None:
                return None
            tables, missing = found
            # One copy of the k fragments in a row is cheaper than asking ctypes for k addresses.
            joined = b"".join([fragments[i] for i in used])
            base = _address(joined) + HEADER_SIZE
            pointers = (ctypes.c_void_p * k)(*range(base, base + k * length, length))
            outputs = [ctypes.create_string_buffer(size) for _ in missing]
            targets = (ctypes.c_void_p * len(missing))(*(ctypes.addressof(o) for o in outputs))
            self._lib.ec_encode_data(size, k, len(missing), tables, pointers, targets)
            for index, output in zip(missing, outputs, strict=True):
                chunks[index] = output.raw
        for index in range(k):
            if chunks[index] is None:
                chunks[index] = memoryview(fragments[index])[HEADER_SIZE:]
        tail = original - (k - 1) * size
        if 0 <= tail <= size:  # always, for blocks we encode: only the last fragment is padded
            chunks[-1] = chunks[-1][:tail]
            return b"".join(chunks)
        return b"".join(chunks)[:original]


def _address(data: bytes) -> int:
    return ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0


def available() -> Recovery | None:
    try:
        return Recovery()
    except OSError:
        return None


def agrees(recovery: Recovery, reference: bytes, k: int, m: int, fragments: Sequence[bytes]) -> bool:
    """Does ISA-L, called directly, rebuild what pyeclib rebuilds, with no loss and a few losses?"""
    for lost in ((), (0,), (k - 1,), tuple(range(min(m, k)))):
        subset = {i: f for i, f in enumerate(fragments) if i not in lost}
        if recovery.decode(k, m, subset) != reference:
            return False
    return True
