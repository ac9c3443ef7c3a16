"""A simulated plant on a free loopback port, stepped by hand (tick=None) so tests know the tick."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator

import pytest

from otseam.sim.plant import SimPlant


@pytest.fixture
async def plant() -> AsyncIterator[SimPlant]:
    async with SimPlant(modbus_port=0, opcua=False, tick=None, seed=3) as sim:
        yield sim


class RawClient:
    """Bytes on a real socket, for what a proper client library would refuse to send or hide."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def frame(self, wait: float = 5.0) -> tuple[int, int, int, int, bytes]:
        """One MBAP frame: (transaction, protocol, length, unit, pdu), trusting the length field."""
        header = await asyncio.wait_for(self.reader.readexactly(7), wait)
        transaction, protocol, length, unit = struct.unpack(">HHHB", header)
        pdu = await asyncio.wait_for(self.reader.readexactly(length - 1), wait)
        return transaction, protocol, length, unit, pdu

    async def closed_by_server(self) -> bool:
        """True once the server has closed the connection (FIN, or RST if bytes were still unread)."""
        try:
            return await asyncio.wait_for(self.reader.read(), 5) == b""
        except ConnectionResetError:
            return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


def mbap(transaction: int, unit: int, pdu: bytes, protocol: int = 0, length: int | None = None) -> bytes:
    return struct.pack(">HHHB", transaction, protocol, len(pdu) + 1 if length is None else length, unit) + pdu
