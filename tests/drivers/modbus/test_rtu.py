"""Modbus RTU: over a pseudo-terminal pair (a serial line without the hardware) and over TCP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from otseam.core.records import Quality
from tests.drivers.modbus.helpers import Collector, device, encode, running, sim_device
from tests.support.servers import free_port
from tests.support.wait import wait_until


def crc(data: bytes) -> bytes:
    """CRC-16/MODBUS, bit by bit (the driver uses a table; this is the textbook form)."""
    value = 0xFFFF
    for byte in data:
        value ^= byte
        for _ in range(8):
            value = (value >> 1) ^ 0xA001 if value & 1 else value >> 1
    return struct.pack("<H", value)


@pytest.fixture
def pty_pair() -> Iterator[tuple[str, str]]:
    """Two linked serial devices made by socat, both raw, no echo."""
    folder = Path(tempfile.mkdtemp(prefix="seam-rtu-"))
    a, b = folder / "a", folder / "b"
    process = subprocess.Popen(
        ["socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"], stderr=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: a.exists() and b.exists(), "socat to create the pseudo-terminal pair")
        yield str(a), str(b)
    finally:
        process.terminate()
        process.wait(5)
        shutil.rmtree(folder, ignore_errors=True)


async def test_rtu_over_a_serial_line_with_two_units(pty_pair: tuple[str, str]) -> None:
    server_end, driver_end = pty_pair
    units = [sim_device(u, hr=[*encode(12.5 * u, "float32", "CDAB"), u * 100]) for u in (1, 2)]
    server = ModbusSerialServer(units, framer=FramerType.RTU, port=server_end, baudrate=38400)
    await server.serve_forever(background=True)
    points = [
        {"id": "f", "address": "hr:0", "type": "float32", "byte_order": "CDAB"},
        {"id": "n", "address": "hr:2", "type": "uint16"},
    ]
    endpoint = f"rtu://{driver_end}?baudrate=38400&parity=N&stopbits=1"
    collector = Collector()
    try:
        first = device(endpoint, points, id="u1", unit=1, poll="200ms")
        second = device(endpoint, points, id="u2", unit=2, poll="200ms")
        async with running(first, collector), running(second, collector):
            await collector.wait_for(
                lambda: all(collector.quality(f"u{u}/{p}") is Quality.GOOD for u in (1, 2) for p in "fn")
            )
            await collector.wait_for(lambda: len(collector.samples) >= 20)
    finally:
        await server.shutdown()
    assert collector.latest("u1/f").value == 12.5 and collector.latest("u2/f").value == 25.0  # type: ignore[union-attr]
    assert {s.value for s in collector.samples if s.point.endswith("/n")} == {100, 200}


class RtuPeer:
    """The device end of a pseudo-terminal, answering reads with whatever the test decides."""

    def __init__(self, fd: int, respond: Callable[[int, bytes], bytes | None]) -> None:
        self.fd = fd
        self.respond = respond
        self.requests = 0
        self._buffer = bytearray()

    def readable(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self._buffer += os.read(self.fd, 4096)
        while len(self._buffer) >= 8:  # every read request is 8 bytes
            request, self._buffer = bytes(self._buffer[:8]), self._buffer[8:]
            assert crc(request[:6]) == request[6:], "the driver sent a frame with a bad CRC"
            self.requests += 1
            reply = self.respond(request[0], request[1:6])
            if reply:
                os.write(self.fd, reply)


def good(unit: int, pdu: bytes, value: int = 321) -> bytes:
    _, _, count = struct.unpack(">BHH", pdu)
    body = bytes((unit, pdu[0], 2 * count)) + b"".join(value.to_bytes(2, "big") for _ in range(count))
    return body + crc(body)


@contextlib.asynccontextmanager
async def rtu_peer(respond: Callable[[int, bytes], bytes | None]) -> AsyncIterator[tuple[str, RtuPeer]]:
    master, slave = os.openpty()
    os.set_blocking(master, False)
    peer = RtuPeer(master, respond)
    loop = asyncio.get_running_loop()
    loop.add_reader(master, peer.readable)
    try:
        yield os.ttyname(slave), peer
    finally:
        loop.remove_reader(master)
        os.close(master)
        os.close(slave)


BROKEN_RTU = {
    "bad CRC": lambda unit, pdu: good(unit, pdu)[:-1] + bytes((good(unit, pdu)[-1] ^ 0xFF,)),
    "wrong unit": lambda unit, pdu: good(unit + 1, pdu),
    "garbage": lambda unit, pdu: bytes(range(7, 40)),
    "short frame then silence": lambda unit, pdu: good(unit, pdu)[:5],
    "silence": lambda unit, pdu: None,
    "extra bytes": lambda unit, pdu: good(unit, pdu) + b"\x00\x01\x02",
}


@pytest.mark.parametrize("name", sorted(BROKEN_RTU))
async def test_broken_rtu_answers_are_refused_then_recovery(name: str) -> None:
    broken = True

    def respond(unit: int, pdu: bytes) -> bytes | None:
        return BROKEN_RTU[name](unit, pdu) if broken else good(unit, pdu)

    collector = Collector()
    async with rtu_peer(respond) as (path, _peer):
        dev = device(
            f"rtu://{path}?baudrate=115200",
            [{"id": "v", "address": "hr:4", "type": "uint16"}],
            unit=5,
            poll="100ms",
            constraints={"timeout": "200ms"},
            options={"max_backoff": 0.3},
        )
        async with running(dev, collector):
            await collector.wait_for(
                lambda: collector.quality("plc1/v") is Quality.BAD_COMM, what=f"BAD_COMM after {name}"
            )
            broken = False
            await collector.wait_for(lambda: collector.quality("plc1/v") is Quality.GOOD, what="recovery")
    assert collector.latest("plc1/v").value == 321  # type: ignore[union-attr]
    assert all(s.value in (None, 321) for s in collector.samples)


async def test_a_missing_serial_port_is_reported_not_raised() -> None:
    collector = Collector()
    dev = device(
        "rtu:///dev/seam-no-such-port", [{"id": "v", "address": "hr:0", "type": "uint16"}], unit=1, poll="100ms"
    )
    async with running(dev, collector):
        await collector.wait_for(lambda: collector.quality("plc1/v") is Quality.BAD_COMM)
        await collector.wait_for(lambda: collector.states("plc1") == ["offline"])


async def test_rtu_framing_over_tcp() -> None:
    port = free_port()
    server = ModbusTcpServer(
        [sim_device(7, hr=[11, 22, 33], ir=[44])], framer=FramerType.RTU, address=("127.0.0.1", port)
    )
    await server.serve_forever(background=True)
    points = [{"id": "a", "address": "hr:1", "type": "uint16"}, {"id": "b", "address": "ir:0", "type": "uint16"}]
    collector = Collector()
    try:
        async with running(device(f"rtu+tcp://127.0.0.1:{port}", points, unit=7, poll="100ms"), collector):
            await collector.wait_for(
                lambda: collector.quality("plc1/a") is Quality.GOOD and collector.quality("plc1/b") is Quality.GOOD
            )
    finally:
        await server.shutdown()
    assert collector.latest("plc1/a").value == 22 and collector.latest("plc1/b").value == 44  # type: ignore[union-attr]
