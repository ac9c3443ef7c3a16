"""The sim's OPC UA server, read and written by asyncua's client and by node-opcua."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from asyncua import Client, ua

from otseam.contract import parse_text
from otseam.sim.layout import opcua_points
from otseam.sim.plant import SimPlant

# One OPC UA server for the module: asyncua takes seconds to build its address space.
pytestmark = pytest.mark.asyncio(loop_scope="module")

NODE_MODULES = Path(__file__).resolve().parents[1] / "interop" / "node_modules"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def opcua_plant() -> AsyncIterator[SimPlant]:
    async with SimPlant(modbus_port=0, opcua_port=0, tick=None, seed=4) as sim:
        for _ in range(20):
            await sim.step()
        yield sim


async def test_browse_read_and_write_with_asyncua(opcua_plant: SimPlant) -> None:
    assert opcua_plant.opcua_endpoint is not None
    async with Client(opcua_plant.opcua_endpoint, timeout=10) as client:
        assert await client.get_namespace_index("urn:seam:sim") == 2
        objects = client.nodes.objects
        level = await objects.get_child(["2:Plant", "2:Tank1", "2:Level"])
        assert level.nodeid.to_string() == "ns=2;s=Tank1.Level"
        values = opcua_plant.process.values()
        assert await level.read_value() == values["Tank1.Level"]
        name = await objects.get_child(["2:Plant", "2:Name"])
        assert await name.read_value() == "SEAM-SIM-WTP"
        running = client.get_node("ns=2;s=Pump1.Running")
        assert await running.read_value() is values["Pump1.Running"]
        assert await client.get_node("ns=2;s=Tank2.DeliveredVolume").read_value() == values["Tank2.DeliveredVolume"]

        await opcua_plant.step()
        assert await level.read_value() == opcua_plant.process.values()["Tank1.Level"]

        dose = client.get_node("ns=2;s=Dosing.Setpoint")
        await dose.write_value(ua.Variant(1.6, ua.VariantType.Double))
        await opcua_plant.step()
        assert opcua_plant.process.dose_sp == 1.6
        await dose.write_value(ua.Variant(50.0, ua.VariantType.Double))
        await opcua_plant.step()
        assert await dose.read_value() == 4.0  # clamped by the plant, read back as applied

        # A process value is not writable.
        with pytest.raises(ua.UaStatusCodeError):
            await level.write_value(ua.Variant(1.0, ua.VariantType.Double))


async def test_node_opcua_browses_reads_and_writes(opcua_plant: SimPlant) -> None:
    assert opcua_plant.opcua_endpoint is not None
    env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}
    process = await asyncio.create_subprocess_exec(
        "node",
        str(Path(__file__).with_name("opcua_browse.js")),
        opcua_plant.opcua_endpoint,
        "ns=2;s=Tank2.LevelHighSetpoint",
        "2.2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    result = [line for line in out.decode().splitlines() if line.startswith("RESULT ")]
    assert len(result) == 1, out.decode()
    seen = json.loads(result[0].removeprefix("RESULT "))
    assert seen["write"] == "Good"
    variables = seen["variables"]
    # Every process value the sim publishes, found by browsing, under its documented node id.
    assert set(variables) == {f"ns=2;s={p.name}" for p in opcua_points()}
    assert all(v["status"] == "Good" for v in variables.values())
    values = opcua_plant.process.values()
    assert variables["ns=2;s=Tank1.Level"]["value"] == values["Tank1.Level"]
    assert variables["ns=2;s=Tank1.Level"]["browseName"] == "2:Level"
    assert variables["ns=2;s=Plant.Name"]["value"] == "SEAM-SIM-WTP"
    await opcua_plant.step()
    assert opcua_plant.process.level_high_sp == 2.2


async def test_contract_names_the_ports_actually_bound(opcua_plant: SimPlant) -> None:
    contract = parse_text(opcua_plant.contract_yaml(opcua_device=True)).contract
    assert contract.devices[0].endpoint == f"tcp://127.0.0.1:{opcua_plant.modbus_port}"
    assert contract.devices[-1].endpoint == opcua_plant.opcua_endpoint
    conduit = contract.conduit("control-to-edge")
    assert conduit is not None and conduit.ports == [opcua_plant.modbus_port, opcua_plant.opcua_port]
