"""FEC and sealing in one C call (``Mac.pack_payload`` through ``fec.DirectEncoder``) against the parts.

The datagrams must be exactly those that ``Fec.encode``'s fragments sealed by ``pack_block`` give, for
every block size and FEC setting, and each MAC must be the GCM tag docs/diode.md specifies.
"""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otseam.core.records import Quality, Record, Sample
from otseam.diode import wire
from otseam.diode.config import DiodeSettings
from otseam.diode.fec import DirectEncoder, Fec, FecSettings
from otseam.diode.sender import DiodeSender
from tests.diode.harness import expected_mac
from tests.support.wait import wait_until_async

speedups = wire.speedups(True)
assert speedups is not None
KEY = b"direct-encoding-test-key"
MAC = speedups.Mac(KEY)

SETTINGS = [
    FecSettings(),
    FecSettings(max_k=16, overhead=0.25, min_parity=2, fragment_size=400),
    FecSettings(max_k=128, overhead=0.5, min_parity=1, fragment_size=8930),
    FecSettings(max_k=4, overhead=1.0, min_parity=32, fragment_size=1430),
]
FECS = [Fec(s) for s in SETTINGS]
DIRECT = [DirectEncoder(f) for f in FECS]


def _both(which: int, block: bytes, flags: int = 0, session: int = 7, sequence: int = 9) -> tuple[bytes, bytes]:
    fec, direct = FECS[which], DIRECT[which]
    assert direct is not None
    slot = wire.OVERHEAD + fec.settings.fragment_size + 3  # a slot with room to spare, as the sender's
    k, m, fragments = fec.encode(block)
    expected, actual = bytearray(b"\xaa" * slot * (k + m)), bytearray(b"\x55" * slot * (k + m))
    lengths = MAC.pack_block(expected, slot, flags, k, m, session, sequence, fragments)
    assert direct.pack(MAC, actual, slot, flags, k, m, session, sequence, block) == lengths
    views = [(i * slot, i * slot + length) for i, length in enumerate(lengths)]
    for start, end in views:  # and each MAC is the specified tag, computed apart
        assert actual[end - 16 : end] == expected_mac(KEY, actual[start : end - 16])
    return b"".join(expected[a:b] for a, b in views), b"".join(actual[a:b] for a, b in views)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_the_datagrams_are_encode_and_pack_blocks_byte_for_byte(data: st.DataObject) -> None:
    which = data.draw(st.integers(0, len(FECS) - 1))
    size = data.draw(st.integers(min_value=1, max_value=FECS[which].settings.max_block))
    block = data.draw(st.sampled_from([b"\x00", b"\xff", os.urandom(1)])) * size
    if data.draw(st.booleans()):
        block = os.urandom(size)
    flags = data.draw(st.integers(0, 255))
    session, sequence = data.draw(st.integers(0, 2**64 - 1)), data.draw(st.integers(0, 2**64 - 1))
    expected, actual = _both(which, block, flags, session, sequence)
    assert actual == expected


@pytest.mark.parametrize("size", [1, 2, 1425, 1426, 1427, 2851, 2852, 2853, 91_263, 91_264])
def test_block_sizes_at_fragment_boundaries(size: int) -> None:
    expected, actual = _both(0, os.urandom(size))
    assert actual == expected


def test_what_does_not_fit_is_refused_not_written() -> None:
    fec = FECS[0]
    coder = speedups.Coder()
    k, m = fec.shape(91_264)
    tables = coder.tables(k, m)
    slot = 1472
    buffer = bytearray(slot * (k + m))
    block = os.urandom(91_264)
    with pytest.raises(ValueError):
        MAC.pack_payload(bytearray(slot * (k + m) - 1), slot, 0, k, m, 1, 2, block, tables)
    with pytest.raises(ValueError):
        MAC.pack_payload(buffer, slot, 0, k, m, 1, 2, block, tables[:-1])
    with pytest.raises(ValueError):
        MAC.pack_payload(buffer, slot, 0, k - 1, m, 1, 2, block, coder.tables(k - 1, m))  # fragments too large
    with pytest.raises(ValueError):
        MAC.pack_payload(buffer, slot, 0, k, m, 1, 2, b"", tables)
    with pytest.raises(ValueError):
        MAC.pack_payload(buffer, slot, 256, k, m, 1, 2, block, tables)
    with pytest.raises(ValueError):
        MAC.pack_payload(buffer, slot, 0, k, m, -1, 2, block, tables)
    with pytest.raises(TypeError):
        MAC.pack_payload(buffer, slot, 0, k, m, 1, 2, block, "tables")
    with pytest.raises(ValueError):
        coder.tables(200, 56)
    with pytest.raises(RuntimeError):  # a Mac never keyed computes nothing
        speedups.Mac.__new__(speedups.Mac).pack_payload(buffer, slot, 0, k, m, 1, 2, block, tables)
    assert buffer == bytearray(len(buffer))  # nothing was written by a refused call


def test_a_sender_sends_the_same_datagrams_either_way() -> None:
    """The whole send path, with and without the direct encoder, to a real socket read as it goes."""
    records: list[Record] = [
        Sample(f"plc/p{i % 9}", "é" * (i % 300) if i < 600 else i * 0.25, Quality.GOOD, 1.0 + i, 2.0 + i)
        for i in range(1000)
    ]

    async def transmit(direct: bool) -> list[bytes]:
        loop = asyncio.get_running_loop()
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        sink.setblocking(False)
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        received: list[bytes] = []

        async def read() -> None:
            while True:
                received.append(await loop.sock_recv(sink, 65536))

        reader = asyncio.create_task(read())
        # Slow, and one datagram per message, for the reader to keep up whatever this machine's
        # socket buffers (segmentation is the same either way: it is not what is compared here).
        sender = DiodeSender(
            sink.getsockname(), b"k" * 32, DiodeSettings.from_options({"rate": "20Mbit/s", "offload": False})
        )
        assert sender._direct is not None
        if not direct:
            sender._direct = None
        sender.session = 42
        await sender.start()
        await sender.send_records("edge", list(range(len(records))), records)
        sent = sender.stats.datagrams - 3  # the start beacons aside
        await sender.close()
        await wait_until_async(lambda: sum(d[3] != wire.Kind.BEACON for d in received) >= sent, f"{sent} datagrams")
        reader.cancel()
        sink.close()
        data = [d for d in received if d[3] != wire.Kind.BEACON]
        assert len(data) == sent and sender.stats.blocks >= 3
        return data

    with_direct, without = asyncio.run(transmit(True)), asyncio.run(transmit(False))
    assert with_direct == without
