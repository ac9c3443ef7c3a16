"""Scale mode: N units × M float32 points, all new every cycle, exactly as values_at() says."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from pymodbus.client import AsyncModbusTcpClient

from otseam.contract import parse_text
from otseam.sim.plant import SimPlant
from otseam.sim.scale import ScaleSim


async def read_all(modbus: AsyncModbusTcpClient, unit: int, points: int) -> np.ndarray:
    registers: list[int] = []
    for start in range(0, 2 * points, 124):
        count = min(124, 2 * points - start)
        answer = await modbus.read_holding_registers(start, count=count, device_id=unit)
        assert not answer.isError(), answer
        registers += answer.registers
    return np.array(registers, dtype=">u2").view(">f4").astype(np.float32)


async def test_scale_units_serve_the_computed_values_and_change_every_cycle() -> None:
    async with SimPlant(modbus_port=0, opcua=False, tick=None, devices=3, points=200, seed=9) as plant:
        assert plant.unit_ids == [1, 2, 3]
        assert plant.scale is not None
        modbus = AsyncModbusTcpClient("127.0.0.1", port=plant.modbus_port, timeout=3, retries=0)
        assert await modbus.connect()
        try:
            before = [await read_all(modbus, unit, 200) for unit in (1, 2, 3)]
            for index, values in enumerate(before):
                assert np.array_equal(values, plant.scale.values_at(0)[index])
                assert values[0] == 0.0  # point 0 is the cycle number
            await plant.step()
            after = [await read_all(modbus, unit, 200) for unit in (1, 2, 3)]
            for index, values in enumerate(after):
                assert np.array_equal(values, plant.scale.values_at(1)[index])
                assert values[0] == 1.0
                assert np.all(values != before[index]), "every point changes every cycle"
            # Past the map, and scale units have nothing else.
            assert (await modbus.read_holding_registers(399, count=2, device_id=1)).exception_code == 2
            assert (await modbus.read_input_registers(0, count=1, device_id=1)).exception_code == 2
        finally:
            modbus.close()
        contract = parse_text(plant.contract_yaml()).contract
        assert [d.unit for d in contract.devices] == [1, 2, 3]
        assert contract.devices[2].points[7].address == "hr:14"


def test_values_are_a_pure_function_of_seed_and_cycle() -> None:
    from otseam.sim.bank import RegisterBank

    a = ScaleSim(RegisterBank(), 2, 500, seed=1)
    b = ScaleSim(RegisterBank(), 2, 500, seed=1)
    c = ScaleSim(RegisterBank(), 2, 500, seed=2)
    assert np.array_equal(a.values_at(1234), b.values_at(1234))
    assert not np.array_equal(a.values_at(5)[:, 1:], c.values_at(5)[:, 1:])
    for cycle in range(1, 300):
        assert np.all(a.values_at(cycle)[:, 1:] != a.values_at(cycle - 1)[:, 1:])


def test_scale_limits_are_explained() -> None:
    from otseam.sim.bank import RegisterBank

    with pytest.raises(ValueError, match="1 to 247"):
        ScaleSim(RegisterBank(), 248, 10)
    with pytest.raises(ValueError, match="two registers each"):
        ScaleSim(RegisterBank(), 1, 40000)
    with pytest.raises(ValueError, match="both --devices and --points"):
        SimPlant(devices=3)


async def test_on_its_own_clock_every_read_matches_the_cycle_it_names() -> None:
    # 62 float32 points fill one read of 124 registers: the swap is atomic per answer, and this test
    # asserts exactly that. (With more points a device takes several reads, which may straddle a swap,
    # as they would on a real PLC.)
    async with SimPlant(modbus_port=0, opcua=False, tick=0.05, devices=2, points=62, seed=4) as plant:
        assert plant.scale is not None
        modbus = AsyncModbusTcpClient("127.0.0.1", port=plant.modbus_port, timeout=3, retries=0)
        assert await modbus.connect()
        cycles: set[int] = set()
        try:
            for _ in range(2000):  # bounded: stop once several cycles were seen
                values = await read_all(modbus, 2, 62)
                cycle = int(values[0])
                # Images prepared ahead in a thread are swapped in whole: never a mix of two cycles.
                assert np.array_equal(values, plant.scale.values_at(cycle)[1])
                cycles.add(cycle)
                if len(cycles) >= 4:
                    break
                await asyncio.sleep(0.01)  # the reading interval; the bounded loop stops once four cycles were seen
        finally:
            modbus.close()
        assert len(cycles) >= 4
