"""The driver against pymodbus' Modbus/TCP server: values, merging, stale marking, reconnect, gateways."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from otseam.core.records import Quality
from tests.drivers.modbus.helpers import (
    Collector,
    device,
    encode,
    encode_string,
    pymodbus_server,
    running,
    sim_device,
)
from tests.support.servers import free_port

TYPES = ["int16", "uint16", "int32", "uint32", "float32", "int64", "uint64", "float64"]
ORDERS = ["ABCD", "CDAB", "BADC", "DCBA"]
SAMPLE_VALUES = {
    "int16": -12345,
    "uint16": 54321,
    "int32": -123456789,
    "uint32": 3123456789,
    "float32": -1234.5,
    "int64": -1234567890123456789,
    "uint64": 12345678901234567890,
    "float64": 2.718281828459045,
}


async def test_every_type_and_byte_order_is_decoded() -> None:
    registers: list[int] = []
    points = []
    for type_ in TYPES:
        for order in ORDERS:
            points.append(
                {"id": f"{type_}_{order}", "address": f"hr:{len(registers)}", "type": type_, "byte_order": order}
            )
            registers += encode(SAMPLE_VALUES[type_], type_, order)
    points.append({"id": "name", "address": f"hr:{len(registers)}", "type": "string", "length": 5})
    registers += encode_string("Pump-7", 5)
    points.append({"id": "flag", "address": f"hr:{len(registers)}.3", "type": "bool"})
    points.append({"id": "other_bit", "address": f"hr:{len(registers)}.4", "type": "bool"})
    registers.append(0b1000)
    port = free_port()
    collector = Collector()
    async with pymodbus_server([sim_device(1, hr=registers)], port):
        dev = device(f"tcp://127.0.0.1:{port}", points, unit=1, poll="200ms")
        async with running(dev, collector):
            await collector.wait_for(lambda: collector.latest("plc1/other_bit") is not None, what="a first poll")
    for type_ in TYPES:
        for order in ORDERS:
            sample = collector.latest(f"plc1/{type_}_{order}")
            assert sample is not None and sample.quality is Quality.GOOD
            if type_.startswith("float"):
                assert math.isclose(sample.value, SAMPLE_VALUES[type_], rel_tol=1e-7), (type_, order, sample)  # type: ignore[arg-type]
            else:
                assert sample.value == SAMPLE_VALUES[type_], (type_, order, sample)
    assert collector.latest("plc1/name").value == "Pump-7"  # type: ignore[union-attr]
    assert collector.latest("plc1/flag").value is True  # type: ignore[union-attr]
    assert collector.latest("plc1/other_bit").value is False  # type: ignore[union-attr]


async def test_coils_discrete_inputs_and_input_registers() -> None:
    coils = [i % 3 == 0 for i in range(40)]
    inputs = [i % 2 == 1 for i in range(40)]
    port = free_port()
    points = [{"id": f"c{i}", "address": f"co:{i}", "type": "bool"} for i in (0, 1, 3, 17, 33)]
    points += [{"id": f"d{i}", "address": f"di:{i}", "type": "bool"} for i in (0, 1, 9, 39)]
    points += [{"id": "level", "address": "ir:2", "type": "uint16"}]
    collector = Collector()
    dev = device(f"tcp://127.0.0.1:{port}", points, poll="200ms")
    async with pymodbus_server([sim_device(1, co=coils, di=inputs, ir=[7, 8, 9, 10])], port), running(dev, collector):
        await collector.wait_for(lambda: all(collector.latest(f"plc1/{p['id']}") for p in points))
    for i in (0, 1, 3, 17, 33):
        assert collector.latest(f"plc1/c{i}").value is coils[i]  # type: ignore[union-attr]
    for i in (0, 1, 9, 39):
        assert collector.latest(f"plc1/d{i}").value is inputs[i]  # type: ignore[union-attr]
    assert collector.latest("plc1/level").value == 9  # type: ignore[union-attr]


async def test_neighbouring_points_are_read_in_merged_requests() -> None:
    """300 float32 points (600 registers) must take 5 reads per cycle, not 300."""
    seen: list[tuple[int, int]] = []

    def trace(sending: bool, pdu):  # type: ignore[no-untyped-def]
        if not sending and getattr(pdu, "function_code", None) == 3:
            seen.append((pdu.address, pdu.count))
        return pdu

    registers = [r for i in range(300) for r in encode(float(i), "float32")]
    points = [{"id": f"p{i}", "address": f"hr:{2 * i}"} for i in range(300)]
    port = free_port()
    collector = Collector()
    dev = device(f"tcp://127.0.0.1:{port}", points, poll="5s")
    async with pymodbus_server([sim_device(1, hr=registers)], port, trace_pdu=trace), running(dev, collector):
        await collector.wait_for(lambda: len(collector.samples) >= 300)
    assert [collector.latest(f"plc1/p{i}").value for i in range(300)] == [float(i) for i in range(300)]  # type: ignore[union-attr]
    assert seen == [(0, 124), (124, 124), (248, 124), (372, 124), (496, 104)]


async def test_a_refused_block_is_split_and_the_split_remembered(tmp_path: Path) -> None:
    """Registers 10-19 do not exist: the merged read 0-25 gets exception 02, the driver splits it, and
    a driver started later with the same data directory never sends the refused read again."""
    seen: list[tuple[int, int]] = []

    def trace(sending: bool, pdu):  # type: ignore[no-untyped-def]
        if not sending and getattr(pdu, "function_code", None) == 3:
            seen.append((pdu.address, pdu.count))
        return pdu

    port = free_port()
    dev = device(
        f"tcp://127.0.0.1:{port}",
        [
            {"id": "a", "address": "hr:0", "type": "uint16"},
            {"id": "b", "address": "hr:25", "type": "uint16"},
            {"id": "ghost", "address": "hr:300", "type": "uint16", "poll": "300ms"},
        ],
        poll="300ms",
        options={"max_gap": 30},
    )
    collector = Collector()
    server = sim_device(1, hr_blocks=[(0, [11] * 10), (20, [22] * 10)])
    async with pymodbus_server([server], port, trace_pdu=trace):
        async with running(dev, collector, str(tmp_path)):
            await collector.wait_for(lambda: collector.quality("plc1/a") is Quality.GOOD)
            await collector.wait_for(lambda: collector.quality("plc1/b") is Quality.GOOD)
            three = lambda: seen.count((0, 1)) >= 3 and seen.count((25, 1)) >= 3  # noqa: E731 (both halves, each cycle)
            await collector.wait_for(three, what="three cycles after the split")
        assert collector.latest("plc1/a").value == 11  # type: ignore[union-attr]
        assert collector.latest("plc1/b").value == 22  # type: ignore[union-attr]
        # The first cycle tried the merged block once; every later cycle uses the two halves.
        assert seen.count((0, 26)) == 1
        assert seen.count((25, 1)) >= 3
        # A single point the device does not have cannot be split: it is a contract problem.
        ghost = collector.latest("plc1/ghost")
        assert ghost is not None and ghost.quality is Quality.BAD_CONFIG and ghost.value is None

        seen.clear()
        again = Collector()
        async with running(dev, again, str(tmp_path)):
            await again.wait_for(lambda: seen.count((0, 1)) >= 2 and again.quality("plc1/b") is Quality.GOOD)
        assert (0, 26) not in seen


async def test_stale_with_original_timestamp_then_fresh_after_restart() -> None:
    port = free_port()
    dev = device(
        f"tcp://127.0.0.1:{port}",
        [{"id": "t", "address": "hr:0", "type": "uint16"}],
        poll="200ms",
        constraints={"timeout": "300ms"},
        options={"max_backoff": 0.5},
    )
    collector = Collector()
    first = pymodbus_server([sim_device(1, hr=[42])], port)
    await first.__aenter__()
    async with running(dev, collector):
        try:
            await collector.wait_for(lambda: collector.quality("plc1/t") is Quality.GOOD)
            last_good = collector.latest("plc1/t")
        finally:
            await first.__aexit__(None, None, None)
        await collector.wait_for(lambda: collector.quality("plc1/t") is Quality.STALE, what="stale marking")
        stale = collector.latest("plc1/t")
        assert stale is not None and last_good is not None
        assert stale.value == 42 and stale.source_ts == last_good.source_ts and stale.gateway_ts > stale.source_ts
        count = len(collector.samples)
        async with pymodbus_server([sim_device(1, hr=[43])], port):
            await collector.wait_for(lambda: collector.latest("plc1/t").value == 43, what="reconnect")  # type: ignore[union-attr]
        # A stale value is emitted once, never repeated as if it were news.
        assert [s.quality for s in collector.samples[count - 1 :]].count(Quality.STALE) == 1
    assert collector.states("plc1")[:3] == ["online", "offline", "online"]


async def test_units_behind_one_gateway_share_one_connection() -> None:
    connections: list[bool] = []
    port = free_port()
    units = [sim_device(u, hr=[100 * u + i for i in range(4)]) for u in (1, 2, 3)]
    collector = Collector()
    async with pymodbus_server(units, port, trace_connect=connections.append):
        devices = [
            device(
                f"tcp://127.0.0.1:{port}",
                [{"id": "v", "address": "hr:1", "type": "uint16"}],
                id=f"u{u}",
                unit=u,
                poll="100ms",
            )
            for u in (1, 2, 3)
        ]
        async with running(devices[0], collector), running(devices[1], collector), running(devices[2], collector):
            await collector.wait_for(lambda: all(collector.latest(f"u{u}/v") for u in (1, 2, 3)))
            await collector.wait_for(lambda: len(collector.samples) >= 30)
    assert {collector.latest(f"u{u}/v").value for u in (1, 2, 3)} == {101, 201, 301}  # type: ignore[union-attr]
    assert all(s.value == 100 * int(s.point[1]) + 1 for s in collector.samples)
    assert connections.count(True) == 1


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:1", "tcp://127.0.0.1:0"])
async def test_unreachable_device_is_reported_and_the_task_survives(endpoint: str) -> None:
    collector = Collector()
    port = free_port()
    dev = device(
        f"tcp://127.0.0.1:{port}",
        [{"id": "t", "address": "hr:0", "type": "uint16"}],
        poll="100ms",
        options={"max_backoff": 0.3},
    )
    async with running(dev, collector):
        await collector.wait_for(lambda: collector.quality("plc1/t") is Quality.BAD_COMM)
        await collector.wait_for(lambda: collector.states("plc1") == ["offline"])
