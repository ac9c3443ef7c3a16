"""A TCP relay between an MQTT client and Mosquitto that records every packet the client sends.

The conformance tests need facts no subscriber can see: the CONNECT flags (clean start, session expiry,
the Will's QoS and retain), the QoS and retain of each PUBLISH as sent, and the reason code of the
DISCONNECT. The relay forwards the bytes unchanged both ways and parses the client's side with the
framing of MQTT 3.1.1 and 5 (OASIS standards, sections 2 and 3), written here for the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

CONNECT, PUBLISH, SUBSCRIBE, UNSUBSCRIBE, DISCONNECT = 1, 3, 8, 10, 14


@dataclass
class Packet:
    kind: int
    flags: int
    body: bytes


@dataclass
class Connect:
    version: int
    clean: bool
    will: bool
    will_qos: int
    will_retain: bool
    session_expiry: int
    client_id: str


@dataclass
class Publish:
    topic: str
    qos: int
    retain: bool
    payload: bytes


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _string(data: bytes, at: int) -> tuple[str, int]:
    size = int.from_bytes(data[at : at + 2], "big")
    return data[at + 2 : at + 2 + size].decode("utf-8"), at + 2 + size


def split(stream: bytes) -> list[Packet]:
    """The complete packets in a byte stream (a partial tail is left out)."""
    packets: list[Packet] = []
    at = 0
    while at + 2 <= len(stream):
        first = stream[at]
        try:
            size, body_at = _varint(stream, at + 1)
        except IndexError:
            break
        if body_at + size > len(stream):
            break
        packets.append(Packet(first >> 4, first & 0x0F, stream[body_at : body_at + size]))
        at = body_at + size
    return packets


def _properties_length(body: bytes, at: int, version: int) -> tuple[int, int]:
    if version != 5:
        return 0, at
    return _varint(body, at)


def connect(packet: Packet) -> Connect:
    body = packet.body
    _name, at = _string(body, 0)
    version = body[at]
    flags = body[at + 1]
    at += 4  # level, flags, keepalive
    expiry = 0
    if version == 5:
        length, props = _varint(body, at)
        end = props + length
        while props < end:
            ident = body[props]
            if ident == 0x11:
                expiry = int.from_bytes(body[props + 1 : props + 5], "big")
                props += 5
            elif ident in (0x21,):  # receive maximum: two bytes
                props += 3
            elif ident in (0x27,):  # maximum packet size: four bytes
                props += 5
            elif ident in (0x22,):  # topic alias maximum
                props += 3
            elif ident in (0x17, 0x19):  # request problem / response information: one byte
                props += 2
            else:  # anything else: stop reading properties, the session expiry comes first in practice
                break
        at = end
    client_id, _ = _string(body, at)
    return Connect(
        version=version,
        clean=bool(flags & 0x02),
        will=bool(flags & 0x04),
        will_qos=(flags >> 3) & 0x03,
        will_retain=bool(flags & 0x20),
        session_expiry=expiry,
        client_id=client_id,
    )


def publish(packet: Packet, version: int) -> Publish:
    qos = (packet.flags >> 1) & 0x03
    topic, at = _string(packet.body, 0)
    if qos:
        at += 2
    length, at = _properties_length(packet.body, at, version)
    at += length
    return Publish(topic, qos, bool(packet.flags & 0x01), packet.body[at:])


def disconnect_reason(packet: Packet) -> int:
    """MQTT 5 DISCONNECT reason code; an empty body means 0x00 (normal disconnection)."""
    return packet.body[0] if packet.body else 0


@dataclass
class Session:
    """What one client connection sent, in order."""

    stream: bytearray = field(default_factory=bytearray)

    def packets(self) -> list[Packet]:
        return split(bytes(self.stream))

    def connect(self) -> Connect:
        first = self.packets()[0]
        assert first.kind == CONNECT
        return connect(first)

    def publishes(self) -> list[Publish]:
        version = self.connect().version
        return [publish(p, version) for p in self.packets() if p.kind == PUBLISH]


@dataclass
class Relay:
    port: int
    sessions: list[Session] = field(default_factory=list)


@contextlib.asynccontextmanager
async def relay(broker_port: int) -> AsyncIterator[Relay]:
    """Listen on a free loopback port; every connection is forwarded to the broker and recorded."""
    tasks: set[asyncio.Task[None]] = set()
    recorded = Relay(0)

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, into: Session | None) -> None:
        try:
            while data := await reader.read(65536):
                if into is not None:
                    into.stream.extend(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        session = Session()
        recorded.sessions.append(session)
        broker_r, broker_w = await asyncio.open_connection("127.0.0.1", broker_port)
        up = asyncio.create_task(pump(client_r, broker_w, session))
        down = asyncio.create_task(pump(broker_r, client_w, None))
        tasks.update((up, down))
        await asyncio.gather(up, down, return_exceptions=True)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    recorded.port = server.sockets[0].getsockname()[1]
    try:
        yield recorded
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
