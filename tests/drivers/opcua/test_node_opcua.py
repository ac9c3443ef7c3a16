"""The driver against an OPC UA server we did not write: node-opcua (tests/interop/opcua_server.js)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest

from otseam.core.records import Quality
from tests.drivers.opcua.helpers import Collector, NodeServer, Relay, device, run_driver, stop_driver
from tests.support.wait import wait_until_async


@pytest.fixture(scope="module")
def node_server() -> Iterator[NodeServer]:
    server = NodeServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def good(collector: Collector, point: str) -> bool:
    return collector.quality(point) is Quality.GOOD


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_values_types_and_qualities(node_server: NodeServer, mode: str) -> None:
    collector = Collector()
    task = await run_driver(device(node_server.endpoint, options=f"{{mode: {mode}}}"), collector)
    try:
        # The counter changes every 100 ms: three distinct values show data keeps flowing.
        await collector.wait(
            lambda: len({s.value for s in collector.samples("ua/counter") if s.quality is Quality.GOOD}) >= 3,
            "the counter to change",
        )
    finally:
        await stop_driver(task)
    latest = {key: collector.latest(f"ua/{key}") for key in ("counter", "level", "running", "starts", "name")}
    for key, sample in latest.items():
        assert sample is not None and sample.quality is Quality.GOOD, key
    assert type(latest["counter"].value) is int  # type: ignore[union-attr]
    assert type(latest["level"].value) is float  # type: ignore[union-attr]
    assert type(latest["running"].value) is bool  # type: ignore[union-attr]
    assert latest["starts"].value == 42  # type: ignore[union-attr]
    assert latest["name"].value == "NODE-OPCUA-PLANT"  # type: ignore[union-attr]
    # Level is 2.5 + counter / 1000 at the same instant on the server.
    by_ts = {s.source_ts: s.value for s in collector.samples("ua/counter") if s.quality is Quality.GOOD}
    levels = [s for s in collector.samples("ua/level") if s.quality is Quality.GOOD and s.source_ts in by_ts]
    assert levels and all(abs(s.value - (2.5 + by_ts[s.source_ts] / 1000)) < 1e-9 for s in levels)  # type: ignore[operator]
    # The source timestamp is the server's, not when we received it.
    counter = latest["counter"]
    assert counter is not None and counter.source_ts < counter.gateway_ts
    # A string where the contract says float64: BAD_CONFIG, no value. A Bad status: BAD_DEVICE.
    # Uncertain: the value, flagged. A node the server does not have: BAD_CONFIG for that point only.
    weird, broken, doubtful, missing = (collector.latest(f"ua/{k}") for k in ("weird", "broken", "doubtful", "missing"))
    assert weird is not None and (weird.quality, weird.value) == (Quality.BAD_CONFIG, None)
    assert broken is not None and (broken.quality, broken.value) == (Quality.BAD_DEVICE, None)
    assert doubtful is not None and (doubtful.quality, doubtful.value) == (Quality.UNCERTAIN, 7.5)
    assert missing is not None and (missing.quality, missing.value) == (Quality.BAD_CONFIG, None)
    assert len(collector.events("online")) == 1 and not collector.events("offline")


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_server_restart_goes_stale_then_good_with_one_session(mode: str) -> None:
    server = NodeServer()
    server.start()
    collector = Collector()
    task = await run_driver(device(server.endpoint, options=f"{{max_backoff: 1s, mode: {mode}}}"), collector)
    try:
        await collector.wait(lambda: good(collector, "ua/counter"), "first values")
        assert server.sessions() == 1
        server.stop()
        killed_at = time.time()
        await collector.wait(lambda: collector.quality("ua/counter") is Quality.STALE, "STALE after the server stopped")
        stale_at = time.time()
        goods = [s for s in collector.samples("ua/counter") if s.quality is Quality.GOOD]
        stale = collector.latest("ua/counter")
        assert stale is not None
        # The last value, with its original source timestamp: never re-sent as fresh.
        assert (stale.value, stale.source_ts) == (goods[-1].value, goods[-1].source_ts)
        assert stale.source_ts <= killed_at < stale.gateway_ts
        assert collector.quality("ua/name") is Quality.STALE
        assert collector.quality("ua/missing") is Quality.BAD_CONFIG  # a wrong contract stays wrong
        assert len(collector.events("offline")) == 1
        # Several reconnect attempts meet a closed port: no crash, nothing re-sent as GOOD meanwhile.
        await collector.wait(lambda: time.time() - stale_at > 2.5, "reconnect attempts", within=5)
        assert task.done() is False
        assert collector.quality("ua/counter") is Quality.STALE

        server.start()
        await collector.wait(lambda: good(collector, "ua/counter"), "GOOD again after the restart", within=30)
        fresh = collector.latest("ua/counter")
        assert fresh is not None and fresh.source_ts > killed_at
        assert len(collector.events("online")) == 2
        assert server.sessions() == 1
    finally:
        await stop_driver(task)
        server.stop()


async def test_reconnects_reuse_the_session_instead_of_leaking_one(node_server: NodeServer) -> None:
    """A link that drops (the server keeps running) must not leave a session behind on each reconnect."""
    relay = Relay(node_server.port)
    await relay.start()
    before, subscriptions_before = node_server.counts()
    collector = Collector()
    endpoint = f"opc.tcp://127.0.0.1:{relay.port}/seam/test"
    task = await run_driver(device(endpoint, options="{max_backoff: 1s}"), collector)
    try:
        await collector.wait(lambda: good(collector, "ua/counter"), "first values")
        for cut in range(3):
            relay.cut()
            await collector.wait(lambda: collector.quality("ua/counter") is Quality.STALE, f"STALE after cut {cut + 1}")
            await collector.wait(lambda: good(collector, "ua/counter"), f"GOOD after cut {cut + 1}", within=30)
        assert relay.connections >= 4
        # One session, re-activated each time, and one subscription: the old one was deleted.
        assert node_server.counts() == (before + 1, subscriptions_before + 1)
    finally:
        await stop_driver(task)
        await relay.stop()
    # Stopping the driver closes its session on the server.
    await wait_until_async(lambda: node_server.sessions() == before, "the driver's session to close", interval=0.2)


async def test_a_silent_link_is_noticed_by_the_watchdog(node_server: NodeServer) -> None:
    """The connection stays open but nothing comes back (a hung server, a half-open link): no socket
    error will ever say so, only the missing Publish responses."""
    relay = Relay(node_server.port)
    await relay.start()
    collector = Collector()
    endpoint = f"opc.tcp://127.0.0.1:{relay.port}/seam/test"
    task = await run_driver(device(endpoint, options="{max_backoff: 1s}"), collector)
    try:
        await collector.wait(lambda: good(collector, "ua/counter"), "first values")
        relay.frozen = True
        assert relay.open_connections == 1
        await collector.wait(lambda: collector.quality("ua/counter") is Quality.STALE, "STALE on silence")
        assert len(collector.events("offline")) == 1
        relay.frozen = False
        await collector.wait(lambda: good(collector, "ua/counter"), "GOOD once the link answers again", within=30)
    finally:
        await stop_driver(task)
        await relay.stop()


async def test_stopping_on_a_silent_link_abandons_the_connection(
    node_server: NodeServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A stop while the server has stopped answering: CloseSession gets no answer, so the driver waits
    the device timeout, says so in one line, drops the socket and returns; it never waits for ever."""
    relay = Relay(node_server.port)
    await relay.start()
    collector = Collector()
    caplog.set_level(logging.INFO, logger="otseam.drivers.opcua")
    endpoint = f"opc.tcp://127.0.0.1:{relay.port}/seam/test"
    task = await run_driver(device(endpoint), collector)
    try:
        await collector.wait(lambda: good(collector, "ua/counter"), "first values")
        relay.frozen = True
        task.cancel()
        # Bounded so that a stop that waits for ever fails here instead of hanging the run.
        done, _ = await asyncio.wait({task}, timeout=30)
        assert task in done and task.cancelled()
        assert caplog.text.count("no answer to CloseSession within 2s; abandoning the connection") == 1
        await collector.wait(lambda: relay.open_connections == 0, "the abandoned connection closed")
    finally:
        if not task.done():
            await stop_driver(task)
        await relay.stop()


async def test_a_deadband_filter_the_server_refuses_is_dropped_not_fatal(
    node_server: NodeServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A percent deadband needs an EURange on the server; node-opcua's Level has none and refuses the
    filter. The item is created again without it (the pipeline applies the deadband) and values flow."""
    points = '      - {id: level, address: "ns=2;s=Level", type: float64, deadband: "1%"}\n'
    collector = Collector()
    caplog.set_level(logging.INFO, logger="otseam.drivers.opcua")
    task = await run_driver(device(node_server.endpoint, points=points), collector)
    try:
        await collector.wait(
            lambda: len({s.value for s in collector.samples("ua/level") if s.quality is Quality.GOOD}) >= 3,
            "Level changing without the refused filter",
        )
    finally:
        await stop_driver(task)
    assert "refused the deadband filter of 1 item(s)" in caplog.text
