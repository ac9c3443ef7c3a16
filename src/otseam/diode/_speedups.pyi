# Types of the compiled module built from speedups/*.c (see speedups/_speedups.c and setup.py).
from array import array
from collections.abc import Sequence
from typing import overload

from typing_extensions import Buffer

from otseam.core.records import Sample

API: int
VERSION: int
HEADER_SIZE: int
MAC_SIZE: int
#: Seam's fragment header in bytes (the block length, u32 big-endian).
FRAGMENT_HEADER: int
BEACON_PAYLOAD: int
ITEM_RUN: int
ITEM_BEACON: int
ITEM_FOREIGN_BEACON: int
ITEM_BLOCK: int

class Mac:
    def __init__(self, key: Buffer) -> None: ...
    def __call__(self, data: Buffer) -> bytes: ...
    def pack_block(
        self,
        buffer: bytearray,
        slot: int,
        flags: int,
        k: int,
        m: int,
        session: int,
        sequence: int,
        fragments: list[bytes],
    ) -> list[int]: ...
    def pack_payload(
        self,
        buffer: bytearray,
        slot: int,
        flags: int,
        k: int,
        m: int,
        session: int,
        sequence: int,
        payload: Buffer,
        tables: bytes,
    ) -> list[int]: ...
    def parse_batch(
        self, buffer: Buffer, starts: Sequence[int], sizes: Sequence[int], count: int, limit: int
    ) -> tuple[int, tuple[int, int, int, int, int], list[tuple[object, ...]]]: ...

def join_fragments(joined: Buffer, size: int, k: int) -> bytes | None: ...

class Coder:
    def __init__(self) -> None: ...
    def tables(self, k: int, m: int) -> bytes: ...
    def encode(self, k: int, m: int, tables: Buffer, block: Buffer) -> list[bytes]: ...
    def decode_tables(self, k: int, m: int, used: tuple[int, ...]) -> bytes | None: ...
    def rebuild(
        self, k: int, used: tuple[int, ...], chosen: list[bytes], tables: Buffer, missing: tuple[int, ...]
    ) -> bytes | None: ...

def encode_columns(source: str, offsets: Sequence[int], samples: Sequence[Sample]) -> bytes | None: ...
def inspect_columns(payload: Buffer, qualities: int) -> tuple[str, int, int, int, bool, float, float] | None: ...
def send_batch(
    fd: int, address: bytes, buffer: Buffer, slot: int, lengths: list[int], first: int, count: int, segment: bool
) -> int: ...
@overload
def recv_batch(fd: int, buffer: bytearray, slot: int, count: int) -> tuple[list[int], list[int]]: ...
@overload
def recv_batch(fd: int, buffer: bytearray, slot: int, count: int, starts: array[int], sizes: array[int]) -> int: ...
def enable_coalescing(fd: int) -> bool: ...
