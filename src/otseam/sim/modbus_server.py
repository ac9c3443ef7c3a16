"""A small asyncio Modbus/TCP server around a :class:`~otseam.sim.bank.RegisterBank`.

MBAP framing (transaction id, protocol id 0, length, unit id), any number of concurrent connections,
pipelined requests answered in order, frames split across TCP segments reassembled. A frame that cannot
be Modbus (protocol id not 0, length outside 2..254) closes that connection: there is no way to find
the next frame boundary in a byte stream after a bad length, and a PLC does the same.

Transport faults, for testing drivers against misbehaving devices, are set at runtime through
:class:`Faults`, server-wide (``server.faults``) or for one unit id (``server.unit_faults[unit]``,
which replaces the server-wide knobs for that unit while present)::

    server.faults.delay = 0.5                     # every answer half a second late
    server.unit_faults[2] = Faults(stall=True)    # unit 2 never answers
    server.faults.clear()

Protocol faults (exception ranges, unmapped holes, a limited map) belong to the bank's units, see
:mod:`otseam.sim.bank`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, fields

from otseam.protocols.modbus.framing import MAX_MBAP_LENGTH as _MAX_LENGTH
from otseam.protocols.modbus.framing import MBAP as _MBAP
from otseam.protocols.modbus.tables import GATEWAY_TARGET_FAILED, SERVER_DEVICE_FAILURE
from otseam.protocols.modbus.tables import exception_pdu as exception
from otseam.sim.bank import RegisterBank

log = logging.getLogger(__name__)


@dataclass
class Faults:
    """How the server misbehaves on purpose. All off by default."""

    #: Read the request and never answer (the connection stays open).
    stall: bool = False
    #: Seconds to wait before answering.
    delay: float = 0.0
    #: Close the connection instead of answering.
    drop: bool = False
    #: Answer with random bytes of the right size instead of the response.
    garbage: bool = False
    #: Answer with a transaction id that is not the request's.
    wrong_transaction_id: bool = False
    #: Answer with an MBAP length field that is one more than the bytes sent.
    wrong_length: bool = False

    def clear(self) -> None:
        for item in fields(self):
            setattr(self, item.name, item.default)

    @property
    def active(self) -> bool:
        return any(getattr(self, item.name) != item.default for item in fields(self))


@dataclass
class ServerStats:
    connections: int = 0
    connections_total: int = 0
    requests: int = 0
    #: Connections closed because the client sent something that is not Modbus/TCP.
    framing_errors: int = 0
    refused: int = 0


class _Connection(asyncio.Protocol):
    """One client connection: reassembles MBAP frames and answers them in order."""

    def __init__(self, server: ModbusTcpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.peer = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else ""
        stats = self.server.stats
        if stats.connections >= self.server.max_connections:
            stats.refused += 1
            transport.abort()
            return
        stats.connections += 1
        stats.connections_total += 1
        self.server._open.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.server._open:
            self.server._open.discard(self)
            self.server.stats.connections -= 1
        self.transport = None

    # A client that sends requests without reading answers must not make us buffer without bound.
    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        transport = self.transport
        self.server.client = self.peer  # who is asking, for a bank that records it (one thread: no race)
        size = len(buffer)
        start = 0
        # Answers to a burst of pipelined requests go out in one write, and the buffer is trimmed once:
        # per-frame writes and trims cost more than the reads themselves.
        ready: list[bytes] = []
        while size - start >= 7 and transport is not None and not transport.is_closing():
            transaction, protocol, length, unit = _MBAP.unpack_from(buffer, start)
            if protocol != 0 or not 2 <= length <= _MAX_LENGTH:
                self.server.stats.framing_errors += 1
                transport.write(b"".join(ready))
                transport.abort()
                buffer.clear()
                return
            end = start + 6 + length
            if size < end:
                break
            self._answer(transaction, unit, bytes(buffer[start + 7 : end]), ready)
            start = end
        if start:
            del buffer[:start]
        if ready and transport is not None and not transport.is_closing():
            transport.write(b"".join(ready))

    def _answer(self, transaction: int, unit: int, pdu: bytes, ready: list[bytes]) -> None:
        server = self.server
        server.stats.requests += 1
        faults = server.unit_faults.get(unit, server.faults)
        if faults.drop:
            assert self.transport is not None
            self.transport.write(b"".join(ready))  # what was answered before the drop still goes out
            ready.clear()
            self.transport.abort()
            return
        if faults.stall:
            return
        response = server.respond(unit, pdu)
        if response is None:
            return
        if faults.wrong_transaction_id:
            transaction = (transaction + 1) & 0xFFFF
        length = len(response) + 1 + (1 if faults.wrong_length else 0)
        frame = _MBAP.pack(transaction, 0, length, unit) + response
        if faults.garbage:
            frame = server.random.randbytes(len(frame))
        if faults.delay > 0:
            asyncio.get_running_loop().call_later(faults.delay, self._send, frame)
        else:
            ready.append(frame)

    def _send(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)


class ModbusTcpServer:
    """Serves a register bank over Modbus/TCP. ``port=0`` lets the OS choose; read ``.port`` after start.

    ``answer_unknown_units``: a request for a unit id the bank does not have gets exception 0x0B
    (gateway target device failed to respond), as a Modbus/TCP gateway answers; set it to False to
    stay silent instead, as a serial device that is not addressed would.
    """

    def __init__(
        self,
        bank: RegisterBank,
        host: str = "127.0.0.1",
        port: int = 5020,
        *,
        max_connections: int = 512,
        answer_unknown_units: bool = True,
        seed: int = 0,
    ) -> None:
        self.bank = bank
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.answer_unknown_units = answer_unknown_units
        self.faults = Faults()
        self.unit_faults: dict[int, Faults] = {}
        self.stats = ServerStats()
        #: The address (host:port) of the client whose request is being answered now.
        self.client = ""
        #: Source of the garbage bytes, seeded so a failing test can be repeated.
        self.random = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._open: set[_Connection] = set()

    def respond(self, unit: int, pdu: bytes) -> bytes | None:
        if unit not in self.bank:
            return exception(pdu[0], GATEWAY_TARGET_FAILED) if self.answer_unknown_units else None
        try:
            return self.bank.handle_pdu(unit, pdu)
        except Exception:
            # A bug in the bank must not take the server down with it; the client sees a device failure.
            log.exception("internal error answering unit %d function %d", unit, pdu[0])
            return exception(pdu[0], SERVER_DEVICE_FAILURE)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_address=True, backlog=512
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    def drop_connections(self) -> None:
        """Close every open client connection now (a PLC reboot, as the clients see it)."""
        for connection in list(self._open):
            if connection.transport is not None:
                connection.transport.abort()

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        self.drop_connections()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 2.0)
        self._server = None

    async def __aenter__(self) -> ModbusTcpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
