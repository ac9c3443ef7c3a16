"""A hostile or broken peer on the OPC UA port: garbage, truncated or oversized frames. The driver
keeps running, says what happened, and never reports a value."""

from __future__ import annotations

import asyncio
import logging
import os
import struct

import pytest

from otseam.core.records import Quality
from tests.drivers.opcua.helpers import Collector, device, run_driver, stop_driver


def _frame(kind: bytes, body: bytes, size: int | None = None) -> bytes:
    return kind + b"F" + struct.pack("<I", 8 + len(body) if size is None else size) + body


PAYLOADS = [
    b"",  # accepts and closes at once
    b"HTTP/1.1 400 Bad Request\r\n\r\n",  # the wrong kind of server
    _frame(b"ACK", b"\x00" * 4),  # an Acknowledge far too short
    _frame(b"ACK", b"\x00" * 20, size=0xFFFFFFF0),  # a frame claiming 4 GB
    _frame(b"ERR", struct.pack("<I", 0x80010000) + struct.pack("<i", 5) + b"\xff\xfe"),  # truncated error text
    _frame(b"ACK", struct.pack("<IIIII", 0, 65536, 65536, 0, 0)) + _frame(b"OPN", os.urandom(64)),
    os.urandom(512),
]


async def test_garbage_from_the_server_is_a_comm_fault_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    served: list[int] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        payload = PAYLOADS[len(served) % len(PAYLOADS)]
        served.append(len(payload))
        try:
            await asyncio.wait_for(reader.read(65536), 2)  # the client's Hello
            writer.write(payload)
            await writer.drain()
            await asyncio.sleep(0.2)  # the hostile server's behaviour: it holds the garbage open a moment
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    collector = Collector()
    caplog.set_level(logging.INFO, logger="otseam.drivers.opcua")
    task = await run_driver(device(f"opc.tcp://127.0.0.1:{port}/x", options="{max_backoff: 200ms}"), collector)
    try:
        await collector.wait(lambda: len(served) >= 2 * len(PAYLOADS), "every payload served twice", within=60)
        assert not task.done()
    finally:
        await stop_driver(task)
        server.close()
        await server.wait_closed()
    samples = collector.samples()
    assert samples and all(s.quality is Quality.BAD_COMM and s.value is None for s in samples)
    assert len(collector.events("offline")) == 1 and not collector.events("online")
    assert "unexpected error" not in caplog.text, caplog.text
