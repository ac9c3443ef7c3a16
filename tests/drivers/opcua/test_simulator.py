"""The driver against the simulator's OPC UA server (asyncua), on the contract the simulator prints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from asyncua import ua

from otseam.contract import parse_text
from otseam.contract.models import Deadband, Device, Point
from otseam.core.records import Quality
from otseam.drivers.opcua import OpcUaDriver
from otseam.sim.layout import opcua_points
from otseam.sim.plant import SimPlant
from tests.drivers.opcua.helpers import Collector, run_driver, stop_driver

# One OPC UA server for the module: asyncua takes seconds to build its address space.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def plant() -> AsyncIterator[SimPlant]:
    async with SimPlant(modbus_port=0, opcua_port=0, tick=None, seed=5) as sim:
        for _ in range(5):
            await sim.step()
        yield sim


def sim_device(plant: SimPlant, **options: object) -> Device:
    contract = parse_text(plant.contract_yaml(opcua_device=True)).contract
    device = contract.device("plant-opcua")
    assert device is not None
    device.poll = 0.2
    device.options = dict(options)
    return device


def expected(plant: SimPlant) -> dict[str, object]:
    values = plant.process.values()
    return {f"plant-opcua/{p.point_id}": values[p.name] for p in opcua_points()}


async def matches_after_steps(plant: SimPlant, collector: Collector) -> None:
    """Step the plant; every point must then arrive GOOD with exactly the plant's value and type."""
    for _ in range(3):
        await plant.step()
        want = expected(plant)

        def arrived(want: dict[str, object] = want) -> bool:
            latest = {key: collector.latest(key) for key in want}
            return all(s is not None and s.quality is Quality.GOOD and s.value == want[k] for k, s in latest.items())

        await collector.wait(arrived, "the plant's current values")
        for key, value in want.items():
            sample = collector.latest(key)
            assert sample is not None and type(sample.value) is type(value), key


@pytest.mark.parametrize(
    "options",
    [{}, {"max_items_per_call": 7}, {"mode": "poll"}, {"mode": "poll", "max_nodes_per_read": 5}],
    ids=["subscribe", "subscribe-batches-of-7", "poll", "poll-reads-of-5"],
)
async def test_every_value_arrives_with_its_type(plant: SimPlant, options: dict[str, object]) -> None:
    collector = Collector()
    task = await run_driver(sim_device(plant, **options), collector)
    try:
        await matches_after_steps(plant, collector)
    finally:
        await stop_driver(task)
    assert not [s for s in collector.samples() if s.quality is not Quality.GOOD]


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_an_unknown_node_is_bad_config_for_that_point_only(plant: SimPlant, mode: str) -> None:
    device = sim_device(plant, mode=mode)
    device.points.append(Point(id="ghost", address="ns=2;s=Tank9.Level", type="float64"))
    device.points.append(Point(id="ghost-numeric", address="ns=7;i=123456", type="float64"))
    device.points.append(Point(id="name-as-number", address="ns=2;s=Plant.Name", type="int32"))
    collector = Collector()
    task = await run_driver(device, collector)
    try:
        await matches_after_steps(plant, collector)
    finally:
        await stop_driver(task)
    for key in ("plant-opcua/ghost", "plant-opcua/ghost-numeric", "plant-opcua/name-as-number"):
        samples = collector.samples(key)
        assert samples and all(s.quality is Quality.BAD_CONFIG and s.value is None for s in samples), key


async def test_a_deadband_is_passed_to_the_server(plant: SimPlant) -> None:
    """With an absolute deadband wider than any change, the server sends the first value and no other;
    the same point without one, watched at the same time, changes at every step."""
    key = "plant-opcua/tank1-temperature"
    plain = sim_device(plant)
    temperature = next(p for p in plain.points if p.id == "tank1-temperature")
    plain.points = [temperature]
    banded = sim_device(plant)
    banded.points = [temperature.model_copy(update={"deadband": Deadband(absolute=1000.0)})]
    with_band, without = Collector(), Collector()
    tasks = [await run_driver(banded, with_band), await run_driver(plain, without)]
    try:
        for collector in (with_band, without):
            await collector.wait(lambda c=collector: c.latest(key) is not None, "first value")  # type: ignore[misc]
        for _ in range(4):
            await plant.step()
            await asyncio.sleep(
                0.3
            )  # pacing the process, not a wait: longer than a sampling interval, each step is its own change
        await without.wait(lambda: len(without.samples(key)) >= 4, "changes without a deadband")
        await asyncio.sleep(
            3 * 0.2
        )  # the observation window of the negative assertion below: three publishing intervals
    finally:
        for task in tasks:
            await stop_driver(task)
    assert len(with_band.samples(key)) == 1


async def test_a_subscription_the_server_drops_is_noticed_and_made_again(plant: SimPlant) -> None:
    """Lesson 2 of other gateways: a subscription that dies on the server must not stop data silently."""
    driver = OpcUaDriver(sim_device(plant))
    collector = Collector()
    task = asyncio.get_running_loop().create_task(driver.run(collector.emit))
    service = plant.opcua._server.iserver.subscription_service
    try:
        await matches_after_steps(plant, collector)
        first = driver.subscription_id
        assert first is not None and set(service.subscriptions) == {first}
        await service.delete_subscriptions([first])
        key = "plant-opcua/tank1-temperature"
        await collector.wait(lambda: collector.quality(key) is Quality.STALE, "STALE once the subscription is gone")
        stale = collector.latest(key)
        assert stale is not None and stale.value == collector.samples(key)[-2].value
        await matches_after_steps(plant, collector)
        assert driver.subscription_id not in (None, first)
        assert set(service.subscriptions) == {driver.subscription_id}
    finally:
        await stop_driver(task)


async def test_a_bad_status_change_on_the_subscription_starts_afresh(plant: SimPlant) -> None:
    """A StatusChangeNotification with a Bad status (BadTimeout: the server let the subscription
    expire) arrives in a Publish response; it is handed to the driver the way asyncua's publish loop
    hands every response over."""
    driver = OpcUaDriver(sim_device(plant))
    collector = Collector()
    task = asyncio.get_running_loop().create_task(driver.run(collector.emit))
    try:
        await matches_after_steps(plant, collector)
        first = driver.subscription_id
        status = ua.StatusChangeNotification(Status=ua.StatusCode(ua.StatusCodes.BadTimeout))
        message = ua.NotificationMessage(NotificationData=[status])
        await driver._on_publish(ua.PublishResult(SubscriptionId=first, NotificationMessage=message))
        key = "plant-opcua/tank1-temperature"
        await collector.wait(lambda: collector.quality(key) is Quality.STALE, "STALE after the Bad status")
        await matches_after_steps(plant, collector)
        assert driver.subscription_id not in (None, first)
    finally:
        await stop_driver(task)


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_a_stop_that_coincides_with_a_fault_still_stops_the_driver(plant: SimPlant, mode: str) -> None:
    """The stop and the wake-up the driver was waiting for (the link dropping, a Bad subscription status)
    arrive in the same turn of the event loop. On Python 3.11 ``asyncio.wait_for`` then returned normally
    and dropped the cancellation: the driver reconnected and went on for ever, and whoever stopped it
    waited for ever. The stop must win, every time."""
    for _ in range(3):
        driver = OpcUaDriver(sim_device(plant, mode=mode))
        collector = Collector()
        task = asyncio.get_running_loop().create_task(driver.run(collector.emit))
        try:
            await matches_after_steps(plant, collector)
            session = driver.session
            assert session is not None
            if mode == "poll":
                session.lost.set()  # what the transport does when the server closes the connection
            else:
                status = ua.StatusChangeNotification(Status=ua.StatusCode(ua.StatusCodes.BadTimeout))
                message = ua.NotificationMessage(NotificationData=[status])
                await driver._on_publish(
                    ua.PublishResult(SubscriptionId=driver.subscription_id, NotificationMessage=message)
                )
            task.cancel()
            # Bounded so that a driver which ignores the stop fails here instead of hanging the run.
            done, _ = await asyncio.wait({task}, timeout=20)
            assert task in done, "the driver ran on after it was cancelled"
            assert task.cancelled()
        finally:
            if not task.done():
                await stop_driver(task)
