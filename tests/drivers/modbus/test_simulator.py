"""The driver against Seam's simulator: exact values per cycle, fault knobs, pauses and rate limits."""

from __future__ import annotations

import itertools
import time

from otseam.core.records import Quality
from otseam.sim.modbus_server import Faults
from otseam.sim.plant import SimPlant
from tests.drivers.modbus.helpers import Collector, device, running
from tests.drivers.modbus.hostile import answer_registers, hostile


def scale_points(count: int) -> list[dict[str, str]]:
    return [{"id": f"p{j}", "address": f"hr:{2 * j}", "type": "float32"} for j in range(count)]


async def test_values_match_the_simulators_formula_cycle_by_cycle() -> None:
    async with SimPlant(modbus_port=0, tick=None, opcua=False, devices=2, points=300) as plant:
        assert plant.scale is not None
        endpoint = f"tcp://127.0.0.1:{plant.modbus_port}"
        collector = Collector()
        devices = [
            device(endpoint, scale_points(300), id=f"d{u}", unit=u, poll="100ms", options={"max_in_flight": 4})
            for u in (1, 2)
        ]
        async with running(devices[0], collector), running(devices[1], collector):
            for cycle in (0, 1, 2):
                if cycle:
                    await plant.step()
                await collector.wait_for(
                    lambda c=cycle: all(collector.value(f"d{u}/p0") == c for u in (1, 2)),  # type: ignore[misc]
                    what=f"cycle {cycle}",
                )
                # Point 0 is read first; wait for a whole poll to pass so every block shows this cycle.
                mark = len(collector.samples)
                await collector.wait_for(lambda m=mark: len(collector.samples) >= m + 1200)  # type: ignore[misc]
                expected = plant.scale.values_at(cycle)
                for u in (1, 2):
                    got = [collector.latest(f"d{u}/p{j}").value for j in range(300)]  # type: ignore[union-attr]
                    assert got == [float(v) for v in expected[u - 1]]


async def test_a_stalled_unit_goes_stale_while_its_neighbour_stays_fresh() -> None:
    async with SimPlant(modbus_port=0, tick=None, opcua=False, devices=2, points=10) as plant:
        endpoint = f"tcp://127.0.0.1:{plant.modbus_port}"
        collector = Collector()
        settings = {"poll": "100ms", "constraints": {"timeout": "300ms"}}
        first = device(endpoint, scale_points(10), id="d1", unit=1, **settings)
        second = device(endpoint, scale_points(10), id="d2", unit=2, **settings)
        async with running(first, collector), running(second, collector):
            await collector.wait_for(
                lambda: collector.quality("d1/p9") is Quality.GOOD and collector.quality("d2/p9") is Quality.GOOD
            )
            plant.modbus.unit_faults[2] = Faults(stall=True)
            await collector.wait_for(lambda: collector.quality("d2/p9") is Quality.STALE)
            fresh_before = sum(1 for s in collector.samples if s.point == "d1/p9" and s.quality is Quality.GOOD)
            await collector.wait_for(
                lambda: (
                    sum(1 for s in collector.samples if s.point == "d1/p9" and s.quality is Quality.GOOD)
                    >= fresh_before + 5
                )
            )
            assert collector.quality("d2/p9") is Quality.STALE
            del plant.modbus.unit_faults[2]
            await collector.wait_for(lambda: collector.quality("d2/p9") is Quality.GOOD, what="unit 2 back")
        assert collector.states("d2") == ["online", "offline", "online"]
        assert collector.states("d1") == ["online"]


async def test_garbage_and_wrong_transaction_ids_from_the_simulator() -> None:
    async with SimPlant(modbus_port=0, tick=None, opcua=False, devices=1, points=10) as plant:
        endpoint = f"tcp://127.0.0.1:{plant.modbus_port}"
        collector = Collector()
        dev = device(
            endpoint,
            scale_points(10),
            id="d1",
            unit=1,
            poll="100ms",
            constraints={"timeout": "300ms"},
            options={"max_backoff": 0.3},
        )
        async with running(dev, collector):
            await collector.wait_for(lambda: collector.quality("d1/p1") is Quality.GOOD)
            good_value = collector.latest("d1/p1").value  # type: ignore[union-attr]
            for fault in ("garbage", "wrong_transaction_id", "wrong_length", "drop"):
                setattr(plant.modbus.faults, fault, True)
                await collector.wait_for(
                    lambda: collector.quality("d1/p1") is not Quality.GOOD, what=f"bad quality under {fault}"
                )
                plant.modbus.faults.clear()
                await collector.wait_for(
                    lambda: collector.quality("d1/p1") is Quality.GOOD, what=f"recovery after {fault}"
                )
        assert {s.value for s in collector.samples if s.point == "d1/p1"} <= {good_value, None}


async def test_pauses_and_the_request_rate_are_honoured() -> None:
    """Lower bounds only: a slow machine makes the gaps longer, never shorter."""
    arrivals: list[float] = []
    answer = answer_registers(lambda a: a)

    def respond(tid: int, unit: int, pdu: bytes) -> bytes:
        arrivals.append(time.monotonic())
        return answer(tid, unit, pdu)

    async with hostile(respond) as server:
        points = [{"id": f"v{i}", "address": f"hr:{100 * i}", "type": "uint16"} for i in range(4)]
        collector = Collector()
        paced = device(
            f"tcp://127.0.0.1:{server.port}",
            points,
            poll="100ms",
            constraints={"pause_after_connect": "300ms", "pause_between_requests": "50ms", "max_request_rate": "10/s"},
        )
        async with running(paced, collector):
            await collector.wait_for(lambda: len(arrivals) >= 8)
        connects = server.connected_at
    assert arrivals[0] - connects[0] >= 0.3
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    # 10/s allows one request per 100 ms: four blocks take 400 ms although the poll is 100 ms.
    assert min(gaps) >= 0.095
