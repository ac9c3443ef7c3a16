"""One MQTT connection at a time, opened on demand and dropped on the first failure.

For sinks that need no session logic of their own (the UNS publisher): ``client()`` connects to the
first broker that answers, in the configured order, and ``drop()`` abandons a connection that failed
so the next delivery starts clean.
"""

from __future__ import annotations

import contextlib
import logging

import aiomqtt

from otseam.sinks.mqtt_common.settings import MqttSettings, make_client
from otseam.sinks.mqtt_common.sockets import disconnect_reason, release_stale_writer, socket_fd

log = logging.getLogger(__name__)


class MqttConnection:
    def __init__(self, settings: MqttSettings, *, will: aiomqtt.Will | None = None) -> None:
        self.settings = settings
        self.will = will
        self._client: aiomqtt.Client | None = None
        self._fd: int | None = None
        self._next_broker = 0
        self.connects = 0

    async def client(self) -> aiomqtt.Client:
        if self._client is not None:
            return self._client
        errors: list[str] = []
        brokers = self.settings.brokers
        for attempt in range(len(brokers)):
            broker = brokers[(self._next_broker + attempt) % len(brokers)]
            client = make_client(self.settings, broker, will=self.will, max_incoming=100)
            try:
                await client.__aenter__()
            except aiomqtt.MqttError as exc:
                errors.append(f"{broker}: {exc}")
                continue
            self._next_broker = (self._next_broker + attempt) % len(brokers)
            self._client = client
            self._fd = socket_fd(client)
            self.connects += 1
            log.info("connected to %s", broker)
            return client
        raise ConnectionError("no broker reachable (" + "; ".join(errors) + ")")

    async def drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)
            disconnect_reason(client)
            release_stale_writer(client, self._fd)

    async def close(self) -> None:
        await self.drop()
