"""Open connections to Modbus devices: Modbus/TCP with pipelined transaction ids, and RTU framing over
a serial line or a TCP socket.

A link never decodes point values; it moves one request PDU out and one response PDU back, and it
refuses anything that does not belong to the request (wrong transaction id, wrong unit, bad CRC, a
length the protocol does not allow). What it cannot trust, it drops and says so in the log.

Why our own client and not pymodbus' async client: measured with bench/bench_modbus.py (one
request at a time, 124 registers, decoded, against the same simulator), pymodbus 3.16's
``AsyncModbusTcpClient`` used about twice the CPU per read of this file (93-135 against 43-56 µs on
the loaded 2-core machine of docs/bench/modbus.md), since it builds a PDU object and a register list
per response, and it holds a lock around each request, so it cannot pipeline. The target (about 4,000 reads of 125 registers a second, decoded, on one core) leaves no room
for that. This link also pipelines requests by transaction id and coalesces them into one send, which
polling many units behind one gateway needs. pymodbus stays in the tests, as an independent server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from typing import Protocol

from otseam.drivers.modbus.config import Endpoint
from otseam.drivers.modbus.framing import FrameError, check_rtu_crc, rtu_response_length
from otseam.protocols.modbus.framing import MAX_MBAP_LENGTH, MBAP, MBAP_SIZE, mbap_frame, rtu_frame

log = logging.getLogger("otseam.drivers.modbus")


class LinkClosed(ConnectionError):
    """The connection is gone; the request was not answered."""


class RequestTimeout(TimeoutError):
    """The device did not answer in time."""


class Link(Protocol):
    closed: bool
    #: time.monotonic() of the last bytes received: tells a silent line from a busy one.
    last_received: float

    async def request(self, unit: int, pdu: bytes, answer_within: float) -> bytes: ...

    def close(self) -> None: ...


def _fail(future: asyncio.Future[bytes], reason: BaseException) -> None:
    if not future.done():
        future.set_exception(reason)
        # Its caller may be gone (a cancelled poll): mark the exception seen so asyncio does not warn.
        future.exception()


class TcpLink:
    """Modbus/TCP. Up to ``max_in_flight`` requests are outstanding, matched back by transaction id;
    more wait in a queue, first come first served, and leave as answers free the window."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, label: str, max_in_flight: int
    ) -> None:
        self.closed = False
        self.last_received = time.monotonic()
        self._reader = reader
        self._writer = writer
        self._label = label
        self._loop = asyncio.get_running_loop()
        self._window = max_in_flight
        #: In flight: transaction id -> (unit, future, timeout timer).
        self._pending: dict[int, tuple[int, asyncio.Future[bytes], asyncio.TimerHandle]] = {}
        self._queue: deque[tuple[int, bytes, float, asyncio.Future[bytes]]] = deque()
        #: Transaction ids we gave up on (timeout, cancellation): a late answer to one is expected.
        self._abandoned: dict[int, None] = {}
        #: Requests written in one turn of the event loop leave in one send(): with pipelining that is
        #: one system call for many requests instead of one each.
        self._outbox: list[bytes] = []
        self._next_tid = 0
        self._task = self._loop.create_task(self._read_loop(), name=f"modbus-read {label}")

    def submit(self, unit: int, pdu: bytes, answer_within: float) -> asyncio.Future[bytes]:
        """Send (or queue) a request; the future gets the response PDU or the reason there is none.

        No task per request: a driver can put a whole poll cycle on the wire and then await the
        answers in order, which is what makes pipelining cheap.
        """
        future: asyncio.Future[bytes] = self._loop.create_future()
        if self.closed:
            future.set_exception(LinkClosed(f"{self._label}: connection closed"))
        elif len(self._pending) < self._window and not self._queue:
            self._send(unit, pdu, answer_within, future)
        else:
            self._queue.append((unit, pdu, answer_within, future))
        return future

    async def request(self, unit: int, pdu: bytes, answer_within: float) -> bytes:
        return await self.submit(unit, pdu, answer_within)

    def _send(self, unit: int, pdu: bytes, answer_within: float, future: asyncio.Future[bytes]) -> None:
        self._next_tid = tid = (self._next_tid + 1) & 0xFFFF
        # The answer time counts from the wire, not from the queue.
        timer = self._loop.call_later(answer_within, self._expire, tid)
        self._pending[tid] = (unit, future, timer)
        if not self._outbox:
            self._loop.call_soon(self._flush)
        self._outbox.append(mbap_frame(tid, unit, pdu))

    def _finish(self, tid: int) -> None:
        """Free ``tid``'s slot in the window and send what waits."""
        self._pending.pop(tid, None)
        while self._queue and len(self._pending) < self._window:
            unit, pdu, answer_within, future = self._queue.popleft()
            if not future.done():  # its caller may have been cancelled meanwhile
                self._send(unit, pdu, answer_within, future)

    def _expire(self, tid: int) -> None:
        entry = self._pending.get(tid)
        if entry is None:
            return
        self._abandoned[tid] = None
        if len(self._abandoned) > 256:
            del self._abandoned[next(iter(self._abandoned))]
        _fail(entry[1], RequestTimeout())
        self._finish(tid)

    def _flush(self) -> None:
        if self._outbox and not self.closed:
            self._writer.write(b"".join(self._outbox))
        self._outbox.clear()

    async def _read_loop(self) -> None:
        reason: BaseException | None = None
        try:
            while True:
                header = await self._reader.readexactly(MBAP_SIZE)
                tid, protocol, length, unit = MBAP.unpack(header)
                if protocol != 0 or not 2 <= length <= MAX_MBAP_LENGTH:
                    # Without a trustworthy length the stream cannot be resynchronised: start over.
                    raise FrameError(f"MBAP header with protocol id {protocol} and length {length}")
                pdu = await self._reader.readexactly(length - 1)
                self.last_received = time.monotonic()
                entry = self._pending.get(tid)
                if entry is None:
                    if tid in self._abandoned:
                        log.debug("%s: late response to transaction %d, already given up; dropped", self._label, tid)
                        continue
                    log.warning(
                        "%s: response with transaction id %d that no request waits for; dropped", self._label, tid
                    )
                    continue
                expected_unit, future, timer = entry
                timer.cancel()
                if not future.done():
                    if unit != expected_unit:
                        message = f"response from unit {unit} to a request for unit {expected_unit}"
                        _fail(future, FrameError(message))
                    else:
                        future.set_result(pdu)
                self._finish(tid)
        except asyncio.IncompleteReadError:
            reason = LinkClosed(f"{self._label}: connection closed by the device")
        except FrameError as exc:
            log.warning("%s: %s; closing the connection", self._label, exc)
            reason = LinkClosed(f"{self._label}: {exc}")
        except OSError as exc:
            reason = LinkClosed(f"{self._label}: {exc}")
        except asyncio.CancelledError:
            reason = LinkClosed(f"{self._label}: connection closed")
            raise
        finally:
            self._shutdown(reason or LinkClosed(f"{self._label}: connection closed"))

    def _shutdown(self, reason: BaseException) -> None:
        self.closed = True
        waiting = [entry[1] for entry in self._pending.values()] + [entry[3] for entry in self._queue]
        for _, _, timer in self._pending.values():
            timer.cancel()
        self._pending.clear()
        self._queue.clear()
        for future in waiting:
            _fail(future, reason)
        self._writer.close()

    def close(self) -> None:
        if not self._task.done():
            self._task.cancel()
        self._shutdown(LinkClosed(f"{self._label}: connection closed"))


class RtuLink:
    """RTU framing (unit, PDU, CRC) over any byte stream: one request at a time, no transaction ids.

    Bytes arrive through :meth:`feed` into a buffer; a request clears the buffer, writes, and waits
    until the buffer holds a complete frame. After a timeout or a bad frame it waits for the line to
    fall silent and throws away what came, so a late answer is never taken for the next one.
    """

    def __init__(self, write: _Writer, label: str, silence: float) -> None:
        self.closed = False
        self.last_received = time.monotonic()
        self._write = write
        self._label = label
        self._silence = silence
        self._buffer = bytearray()
        self._arrived = asyncio.Event()
        self._lock = asyncio.Lock()
        self._on_close: list[_Closer] = []

    def feed(self, data: bytes) -> None:
        self.last_received = time.monotonic()
        self._buffer += data
        self._arrived.set()

    def lost(self) -> None:
        self.closed = True
        self._arrived.set()

    async def request(self, unit: int, pdu: bytes, answer_within: float) -> bytes:
        async with self._lock:
            if self.closed:
                raise LinkClosed(f"{self._label}: connection closed")
            self._buffer.clear()
            self._write(rtu_frame(unit, pdu))
            try:
                async with asyncio.timeout(answer_within):
                    frame = await self._frame()
                check_rtu_crc(frame)
                if frame[0] != unit:
                    raise FrameError(f"RTU response from unit {frame[0]} to a request for unit {unit}")
            except TimeoutError:
                await self._quiet()
                raise RequestTimeout() from None
            except FrameError:
                await self._quiet()
                raise
            return frame[1:-2]

    async def _frame(self) -> bytes:
        while True:
            if self.closed:
                raise LinkClosed(f"{self._label}: connection closed")
            if len(self._buffer) >= 3:
                total = rtu_response_length(bytes(self._buffer[:3]))
                if total is None:
                    raise FrameError(f"RTU response with unexpected function code {self._buffer[1]}")
                if len(self._buffer) >= total:
                    if len(self._buffer) > total:
                        raise FrameError(f"{len(self._buffer) - total} unexpected bytes after an RTU response")
                    return bytes(self._buffer)
            self._arrived.clear()
            await self._arrived.wait()

    async def _quiet(self) -> None:
        """Wait until nothing has arrived for the silence interval, then forget what came."""
        for _ in range(50):
            self._arrived.clear()
            try:
                async with asyncio.timeout(self._silence):
                    await self._arrived.wait()
            except TimeoutError:
                break
            if self.closed:
                break
        self._buffer.clear()

    def on_close(self, closer: _Closer) -> None:
        self._on_close.append(closer)

    def close(self) -> None:
        self.closed = True
        self._arrived.set()
        for closer in self._on_close:
            with contextlib.suppress(Exception):
                closer()


class _Writer(Protocol):
    def __call__(self, data: bytes) -> object: ...


class _Closer(Protocol):
    def __call__(self) -> object: ...


def _silence(endpoint: Endpoint) -> float:
    """3.5 character times (11 bits each) as the spec asks, but never under 20 ms: OS buffering and
    USB adapters deliver in chunks, so a shorter gap would cut frames apart."""
    if endpoint.framing != "rtu":
        return 0.02
    return max(0.02, 3.5 * 11 / endpoint.baudrate)


async def open_link(endpoint: Endpoint, connect_within: float, max_in_flight: int) -> Link:
    """Connect; raises OSError or TimeoutError with a message naming the endpoint."""
    label = endpoint.key
    if endpoint.framing == "rtu":
        return _open_serial(endpoint, label)
    async with asyncio.timeout(connect_within):
        reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    if endpoint.framing == "tcp":
        return TcpLink(reader, writer, label, max_in_flight)
    link = RtuLink(writer.write, label, _silence(endpoint))

    async def pump() -> None:
        try:
            while data := await reader.read(4096):
                link.feed(data)
        except OSError:
            pass
        finally:
            link.lost()
            writer.close()

    task = asyncio.get_running_loop().create_task(pump(), name=f"modbus-rtu-read {label}")
    link.on_close(task.cancel)
    link.on_close(writer.close)
    return link


def _open_serial(endpoint: Endpoint, label: str) -> RtuLink:
    import serial  # pyserial: only for opening and configuring the line (baud rate, parity, stop bits)

    try:
        port = serial.Serial(
            endpoint.serial_port,
            baudrate=endpoint.baudrate,
            parity=endpoint.parity,
            stopbits=endpoint.stopbits,
            bytesize=endpoint.bytesize,
            timeout=0,
            write_timeout=1,
            exclusive=True,
        )
    except (serial.SerialException, ValueError) as exc:
        raise OSError(f"cannot open serial port {endpoint.serial_port}: {exc}") from None
    fd = port.fileno()
    loop = asyncio.get_running_loop()
    link = RtuLink(port.write, label, _silence(endpoint))

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            link.feed(data)
        else:
            loop.remove_reader(fd)
            link.lost()

    loop.add_reader(fd, readable)

    def close() -> None:
        loop.remove_reader(fd)
        port.close()

    link.on_close(close)
    return link
