"""Publish many messages and wait once for all their acknowledgements.

aiomqtt's ``publish`` waits for one message at a time and, with thousands in flight, walks the list
of every pending call on each new one (and logs a warning for each past ten): fine for a handful,
quadratic for a journal batch. Here each message is handed to paho directly, in order, and one event
fires when the last PUBACK of the batch arrived. paho itself rescans all its unacknowledged messages on
every PUBACK, so at most ``WINDOW`` messages are handed over unacknowledged at a time; the window
refills as acknowledgements arrive (a sliding window, not a round trip per chunk). An MQTT 5 PUBACK with a failure reason code (not
authorised, quota exceeded, ...) counts as a refusal: the batch raises and is not committed.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable
from typing import Any

import aiomqtt
from paho.mqtt.client import MQTT_ERR_SUCCESS
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode


class PublishRefused(aiomqtt.MqttError):
    """The broker answered a publication with a failure reason code (MQTT 5)."""


#: Unacknowledged messages handed to paho at most; refilled when half of them are acknowledged.
WINDOW = 64


class _Acks:
    """Outstanding message ids of one client, cleared by paho's on_publish (chained to aiomqtt's)."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.waiting: set[int] = set()
        self.refused: list[str] = []
        self.done = asyncio.Event()
        self.space = asyncio.Event()
        paho = client._client
        previous: Any = paho.on_publish

        def on_publish(c: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
            if previous is not None:
                previous(c, userdata, mid, reason_code, properties)
            if mid in self.waiting:
                self.waiting.discard(mid)
                if getattr(reason_code, "is_failure", False):
                    self.refused.append(str(reason_code))
                if len(self.waiting) <= WINDOW // 2:
                    self.space.set()
                if not self.waiting:
                    self.done.set()

        paho.on_publish = on_publish


#: One tracker per client, forgotten with the client.
_TRACKERS: weakref.WeakKeyDictionary[aiomqtt.Client, _Acks] = weakref.WeakKeyDictionary()


def _acks(client: aiomqtt.Client) -> _Acks:
    acks = _TRACKERS.get(client)
    if acks is None:
        acks = _TRACKERS[client] = _Acks(client)
    return acks


async def publish_all(
    client: aiomqtt.Client, messages: Iterable[tuple[str, bytes, bool]], *, qos: int, within: float
) -> int:
    """Publish ``(topic, payload, retain)`` in order; return when every one is acknowledged.

    QoS 1: acknowledged means PUBACK. QoS 0: written to the socket. Raises on a refused publication,
    a lost connection or ``within`` seconds without the last acknowledgement. One call at a time per
    client (the sinks serialise their deliveries; the Sparkplug edge holds its lock).
    """
    acks = _acks(client)
    paho = client._client
    disconnected: asyncio.Future[Any] = client._disconnected
    acks.waiting.clear()
    acks.refused.clear()
    count = 0
    for topic, payload, retain in messages:
        if len(acks.waiting) >= WINDOW:
            acks.space.clear()
            await _wait(acks, acks.space, disconnected, within)
        info = paho.publish(topic, payload, qos, retain)
        if info.rc != MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        if not info.is_published():
            acks.waiting.add(info.mid)
        count += 1
    if acks.waiting:
        acks.done.clear()
        await _wait(acks, acks.done, disconnected, within)
    if acks.refused:
        raise PublishRefused(f"the broker refused {len(acks.refused)} publications: {acks.refused[0]}")
    return count


async def _wait(acks: _Acks, event: asyncio.Event, disconnected: asyncio.Future[Any], within: float) -> None:
    waiter: asyncio.Future[Any] = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait([waiter, disconnected], timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if not event.is_set():
        count = len(acks.waiting)
        acks.waiting.clear()
        if disconnected.done():
            raise aiomqtt.MqttError(f"connection lost with {count} publications unacknowledged")
        raise aiomqtt.MqttError(f"{count} publications not acknowledged within {within:g}s")


async def disconnect_with_will(client: aiomqtt.Client, *, within: float) -> None:
    """MQTT 5 DISCONNECT with reason code 0x04 ("disconnect with Will message"), then wait for the close.

    aiomqtt's own exit sends a plain DISCONNECT (0x00), which makes the broker discard the Will; once
    this one is out, the exit finds the client already disconnected and leaves it at that.
    """
    reason = ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message")
    info = client._client.disconnect(reasoncode=reason)
    if info != MQTT_ERR_SUCCESS:
        raise aiomqtt.MqttCodeError(info, "Could not disconnect")
    disconnected: asyncio.Future[Any] = client._disconnected
    await asyncio.wait([disconnected], timeout=within)
