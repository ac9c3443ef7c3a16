"""A deliberately misbehaving Modbus/TCP server for the tests (raw asyncio sockets, no Modbus library).

The test gives a function that sees each request (transaction id, unit, PDU) and returns the raw bytes
to send back: a correct frame, a broken one, nothing (None: stall), or bytes ending in :data:`CLOSE`
to send them and hang up.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import AsyncIterator, Callable

CLOSE = b"<close>"

Responder = Callable[[int, int, bytes], bytes | None]


def frame(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def registers_pdu(function: int, values: list[int]) -> bytes:
    return bytes((function, 2 * len(values))) + b"".join(v.to_bytes(2, "big") for v in values)


def read_of(pdu: bytes) -> tuple[int, int, int]:
    """(function, address, count) of a read request."""
    function, address, count = struct.unpack(">BHH", pdu[:5])
    return function, address, count


def answer_registers(value_of: Callable[[int], int]) -> Responder:
    """A well-behaved server whose register ``a`` holds ``value_of(a)``."""

    def respond(tid: int, unit: int, pdu: bytes) -> bytes:
        function, address, count = read_of(pdu)
        return frame(tid, unit, registers_pdu(function, [value_of(address + i) & 0xFFFF for i in range(count)]))

    return respond


class Hostile:
    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.requests = 0
        self.connections = 0
        #: time.monotonic() of each accepted connection.
        self.connected_at: list[float] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.connected_at.append(time.monotonic())
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            while True:
                header = await reader.readexactly(7)
                tid, _, length, unit = struct.unpack(">HHHB", header)
                pdu = await reader.readexactly(length - 1)
                self.requests += 1
                reply = self.responder(tid, unit, pdu)
                if reply is None:
                    continue
                hang_up = reply.endswith(CLOSE)
                if hang_up:
                    reply = reply[: -len(CLOSE)]
                writer.write(reply)
                await writer.drain()
                if hang_up:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def send(self, data: bytes) -> None:
        """Write ``data`` on every open connection: an answer the responder held back (None), sent late."""
        for writer in self._writers:
            writer.write(data)

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            # Let every connection handler see its socket closed and finish before the loop ends.
            await asyncio.wait(self._handlers, timeout=2) if self._handlers else None
            await self._server.wait_closed()


@contextlib.asynccontextmanager
async def hostile(responder: Responder) -> AsyncIterator[Hostile]:
    server = Hostile(responder)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
