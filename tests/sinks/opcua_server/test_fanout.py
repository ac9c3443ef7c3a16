"""Subscriptions served from the shared encoding (each change encoded once for every client), against
asyncua's client: every subscriber of a point sees every change in order with its StatusCode and source
timestamp, a deadband item (served by asyncua's own path) filters, a queue of one keeps the latest."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Client, ua

from otseam.core.records import Batch, Event, Quality, Sample, Severity
from otseam.sinks.opcua_server.fanout import SharedEncodingSubscription
from otseam.sinks.opcua_server.server import YOUNG_GENERATION
from tests.support.wait import wait_until_async

from .support import port, running

NS = "urn:otseam:acme:plant1"


class Seen:
    """What one client's subscription received, per node: (value, status code, source time)."""

    def __init__(self) -> None:
        self.by_node: dict[str, list[tuple[Any, int, datetime | None]]] = {}

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        dv = data.monitored_item.Value
        self.by_node.setdefault(node.nodeid.Identifier, []).append((value, dv.StatusCode.value, dv.SourceTimestamp))

    def values(self, key: str) -> list[Any]:
        return [v for v, _, _ in self.by_node.get(key, [])]


@asynccontextmanager
async def clients(endpoint_port: int, count: int) -> AsyncIterator[list[Client]]:
    async with AsyncExitStack() as stack:
        connected = []
        for _ in range(count):
            c = Client(f"opc.tcp://127.0.0.1:{endpoint_port}/seam", timeout=10)
            connected.append(await stack.enter_async_context(c))
        yield connected


def options(p: int) -> dict[str, Any]:
    return {"endpoint": f"opc.tcp://127.0.0.1:{p}/seam", "security_policies": ["None"], "anonymous": True}


async def deadband_item(subscription: Any, node: Any, deadband: float) -> None:
    flt = ua.DataChangeFilter(
        Trigger=ua.DataChangeTrigger.StatusValue, DeadbandType=ua.DeadbandType.Absolute, DeadbandValue=deadband
    )
    await subscription._subscribe(node, ua.AttributeIds.Value, mfilter=flt, queuesize=100)


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


async def test_every_subscriber_sees_every_change_with_status_and_source_time(tmp_path: Path) -> None:
    p = port()
    async with running(tmp_path, options(p)) as sink, clients(p, 4) as (c1, c2, c3, c4):
        ns = await c1.get_namespace_index(NS)
        seen = [Seen() for _ in range(4)]
        subscriptions = [await c.create_subscription(20, s) for c, s in zip((c1, c2, c3, c4), seen, strict=True)]
        await subscriptions[0].subscribe_data_change(c1.get_node(ua.NodeId("plc1/level", ns)), queuesize=100)
        await subscriptions[1].subscribe_data_change(
            [c2.get_node(ua.NodeId(k, ns)) for k in ("plc1/level", "plc1/flow", "plc1/count")], queuesize=100
        )
        await deadband_item(subscriptions[2], c3.get_node(ua.NodeId("plc1/level", ns)), 1.5)
        await subscriptions[3].subscribe_data_change(c4.get_node(ua.NodeId("plc1/level", ns)), queuesize=1)
        # Each has its first notification (the initial value) before the changes begin.
        await wait_until_async(lambda: all(s.values("plc1/level") for s in seen), "the initial values")

        source = 1_790_000_000.0
        levels = [0.0, 1.0, 5.0, 6.0, 10.0]
        for i, level in enumerate(levels):
            records = [Sample("plc1/level", level, Quality.GOOD, source + i, source + i + 0.1)]
            await sink.deliver(Batch("j", [i + 1], records))
        stale = [Sample("plc1/flow", 12.0, Quality.STALE, source + 9, source + 9.1)]
        await sink.deliver(Batch("j", [9], list(stale)))
        count = [Sample("plc1/count", -7, Quality.GOOD, source + 9, source + 9.1)]
        await sink.deliver(Batch("j", [10], list(count)))
        await wait_until_async(lambda: seen[1].values("plc1/count")[-1:] == [-7], "the count change")

        await wait_until_async(lambda: seen[0].values("plc1/level")[-5:] == levels, "every level change, in order")
        for s in seen[:2]:
            changes = s.by_node["plc1/level"][-5:]
            assert [v for v, _, _ in changes] == levels
            assert [t for _, _, t in changes] == [at(source + i) for i in range(5)]
            assert all(status == ua.StatusCodes.Good for _, status, _ in changes)
        flow = seen[1].by_node["plc1/flow"][-1]
        assert flow == (12.0, ua.StatusCodes.UncertainLastUsableValue, at(source + 9))

        # The deadband item is asyncua's own: it reports only the steps larger than 1.5.
        await wait_until_async(lambda: seen[2].values("plc1/level")[-1:] == [10.0], "the deadband item")
        assert seen[2].values("plc1/level")[1:] == [5.0, 10.0]
        # A queue of one keeps the latest of the changes between two publishes.
        await wait_until_async(lambda: seen[3].values("plc1/level")[-1:] == [10.0], "the queue-of-one item")
        assert len(seen[3].values("plc1/level")) <= 1 + len(levels)

        # The device goes down: every subscriber of its values hears Bad_CommunicationError.
        offline = Event(source + 20, "device.state", "plc1", Severity.HIGH, "plc1 lost", {"state": "offline"})
        await sink.deliver(Batch("j", [11], [offline]))
        for s, key in ((seen[0], "plc1/level"), (seen[1], "plc1/count"), (seen[3], "plc1/level")):
            await wait_until_async(
                lambda s=s, key=key: s.by_node[key][-1][1] == ua.StatusCodes.BadCommunicationError, f"{key} down"
            )
            # The value is gone, its source time stays that of the last value read.
            assert s.by_node[key][-1][0] is None and s.by_node[key][-1][2] is not None

        # The client subscriptions took the shared path; the server's own ones were left alone.
        iserver: Any = sink.server.iserver  # type: ignore[union-attr]
        kinds = {type(sub) for sub in iserver.subscription_service.subscriptions.values()}
        assert SharedEncodingSubscription in kinds
        # Served values die young instead of filling the oldest generation (see server.py).
        assert gc.get_threshold()[0] >= YOUNG_GENERATION


async def test_a_disabled_item_hears_nothing_until_enabled_again(tmp_path: Path) -> None:
    p = port()
    async with running(tmp_path, options(p)) as sink, clients(p, 1) as (c,):
        ns = await c.get_namespace_index(NS)
        seen = Seen()
        # A slow publishing interval: the change made just before disabling is most likely still queued
        # when the item is enabled again, next to the current value asyncua then queues itself.
        subscription = await c.create_subscription(500, seen)
        await subscription.subscribe_data_change(c.get_node(ua.NodeId("plc1/level", ns)), queuesize=100)
        source = 1_790_000_000.0

        async def change(seq: int, level: float) -> None:
            await sink.deliver(Batch("j", [seq], [Sample("plc1/level", level, Quality.GOOD, source + seq, source)]))

        await change(1, 1.0)
        await wait_until_async(lambda: seen.values("plc1/level")[-1:] == [1.0], "the first change")
        await change(2, 1.5)
        await subscription.set_monitoring_mode(ua.MonitoringMode.Disabled)
        await change(3, 2.0)
        await change(4, 2.5)
        await subscription.set_monitoring_mode(ua.MonitoringMode.Reporting)
        # Enabled again, the item reports the current value once (asyncua's own path), after what was
        # queued before, then the changes.
        await wait_until_async(lambda: seen.values("plc1/level")[-1:] == [2.5], "the current value on enable")
        await change(5, 3.0)
        await wait_until_async(lambda: seen.values("plc1/level")[-1:] == [3.0], "the next change")
        assert seen.values("plc1/level")[1:] == [1.0, 1.5, 2.5, 3.0]
