"""A connection the broker ends leaves nothing behind that asyncio complains about later.

aiomqtt keeps an unexpected disconnection as the exception of a future of its own, and its
``__aexit__`` returns early without reading it; when the client is collected, asyncio logs "Future
exception was never retrieved" with the future's repr, in the middle of the node's log, long after the
outage it belongs to (seen once per ``make stress`` pass). The sinks and the host read it when they
drop a connection.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from otseam.sinks.mqtt_common import parse_mqtt_options
from otseam.sinks.mqtt_common.connection import MqttConnection
from tests.support import servers
from tests.support.wait import wait_until_async


async def test_a_connection_the_broker_ended_is_dropped_without_a_stray_exception() -> None:
    reported: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: reported.append(context))
    with servers.mosquitto() as broker:
        settings = parse_mqtt_options({"brokers": [f"127.0.0.1:{broker.port}"]}, default_client_id="t")
        connection = MqttConnection(settings)
        disconnected = (await connection.client())._disconnected
        broker.stop()  # the broker goes away: for the client an unexpected disconnection
        await wait_until_async(disconnected.done, "the client to notice the broker gone")
        del disconnected  # only the client may hold it now, as in the sinks
        await connection.drop()
    gc.collect()  # a Future reports an unread exception when it is collected, synchronously
    assert [c.get("message") for c in reported] == []
