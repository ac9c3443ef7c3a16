"""The printed contract loads, passes `seam check`, and describes exactly what the sim serves."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient
from ruamel.yaml import YAML

from otseam.contract import parse_text
from otseam.contract.models import Device, Point
from otseam.sim.contract import build_contract, opcua_driver_installed, render
from otseam.sim.layout import POINTS
from otseam.sim.plant import SimPlant

#: Contract point id → process value name.
NAMES = {p.point_id: p.name for p in POINTS}


def seam(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otseam.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_seam_sim_contract_loads_and_passes_seam_check(tmp_path: Path) -> None:
    printed = seam("sim", "--contract")
    assert printed.returncode == 0, printed.stderr
    loaded = parse_text(printed.stdout, "sim.yaml").contract
    # The OPC UA server is a device of the contract only where `seam run` has a driver for it.
    opcua = ["plant-opcua"] if opcua_driver_installed() else []
    assert [d.id for d in loaded.devices] == ["raw-water", "pump-station", "treated-water", *opcua]
    assert {d.endpoint for d in loaded.devices[:3]} == {"tcp://127.0.0.1:5020"}
    assert ("not listed as a device" in printed.stdout) is not bool(opcua)
    # Two nodes joined by the one-way link: the edge polls and sends, the gateway receives and serves.
    assert [n.id for n in loaded.nodes] == ["ot-edge", "it-gateway"]
    assert {d.node for d in loaded.devices} == {"ot-edge"}
    assert [(s.type, s.node) for s in loaded.sources] == [("diode_receive", "it-gateway")]
    assert [(s.type, s.node) for s in loaded.sinks] == [
        ("historian", "ot-edge"),
        ("diode_send", "ot-edge"),
        ("historian", "it-gateway"),
        ("modbus_replica", "it-gateway"),
    ]
    diode = loaded.conduit(loaded.sources[0].conduit)
    assert diode is not None and diode.direction == "one-way" and diode.transport == "diode"
    assert loaded.find_point(loaded.commands[0].point) is not None
    path = tmp_path / "seam.yaml"
    path.write_text(printed.stdout)
    checked = seam("check", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_scale_contract_and_options_follow_the_command_line(tmp_path: Path) -> None:
    printed = seam(
        "sim",
        "--contract",
        "--devices",
        "4",
        "--points",
        "50",
        "--no-opcua",
        "--modbus-port",
        "1502",
        "--host",
        "127.0.0.2",
    )
    assert printed.returncode == 0, printed.stderr
    loaded = parse_text(printed.stdout).contract
    assert [(d.id, d.unit, d.endpoint) for d in loaded.devices] == [
        (f"dev00{u}", u, "tcp://127.0.0.2:1502") for u in (1, 2, 3, 4)
    ]
    assert all(len(d.points) == 50 for d in loaded.devices)
    assert loaded.devices[0].points[49].address == "hr:98"
    path = tmp_path / "scale.yaml"
    path.write_text(printed.stdout)
    checked = seam("check", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def decode(device: Device, point: Point, registers: list[int]) -> object:
    """Decode with the contract's own words (type, byte order, scale), independently of the sim's code."""
    raw = struct.pack(f">{len(registers)}H", *registers)
    if point.type == "string":
        return raw.rstrip(b"\0").decode()
    if point.byte_order == "CDAB":
        raw = raw[2:] + raw[:2]
    code = {"float32": ">f", "int16": ">h", "uint16": ">H", "uint32": ">I"}[point.type]
    value = struct.unpack(code, raw)[0]
    factor = point.scale.factor if point.scale else 1.0
    return value * factor if point.scale else value


async def test_every_modbus_point_reads_the_process_value_the_contract_says(plant: SimPlant) -> None:
    for _ in range(400):
        await plant.step()
    contract = parse_text(plant.contract_yaml()).contract
    values = plant.process.values()
    modbus = AsyncModbusTcpClient("127.0.0.1", port=plant.modbus_port, timeout=3, retries=0)
    assert await modbus.connect()
    checked = 0
    try:
        for device in contract.devices:
            assert device.endpoint == f"tcp://127.0.0.1:{plant.modbus_port}"
            assert device.unit is not None
            for point in device.points:
                name = NAMES[point.id.removesuffix("-bit")]
                table, _, rest = point.address.partition(":")
                address, _, bit = rest.partition(".")
                start = int(address)
                if table in ("co", "di"):
                    reader = modbus.read_coils if table == "co" else modbus.read_discrete_inputs
                    got: object = (await reader(start, count=1, device_id=device.unit)).bits[0]
                else:
                    count = {"float32": 2, "uint32": 2, "string": point.length or 1}.get(point.type, 1)
                    reader = modbus.read_holding_registers if table == "hr" else modbus.read_input_registers
                    registers = (await reader(start, count=count, device_id=device.unit)).registers
                    got = bool(registers[0] >> int(bit) & 1) if bit else decode(device, point, registers)
                expected = values[name]
                if isinstance(expected, float):
                    resolution = point.scale.factor if point.scale else 1e-5 * max(1.0, abs(expected))
                    assert abs(float(got) - expected) <= resolution, (device.id, point.id, got, expected)
                else:
                    assert got == expected, (device.id, point.id, got, expected)
                checked += 1
    finally:
        modbus.close()
    assert checked == sum(len(d.points) for d in contract.devices) == 33


def test_rendered_yaml_reads_back_as_the_same_data() -> None:
    for contract in (build_contract(), build_contract(opcua_port=None, scale=(2, 20), tick=0.5)):
        assert YAML(typ="safe").load(render(contract)) == contract


@given(st.text(max_size=40))
@example("A\n")  # found by hypothesis: "$" matched before the line break, so it was written plain
@example("10s\n")
def test_any_string_survives_the_yaml_writer(text: str) -> None:
    data = {"description": text, "list": [text, {"name": text}]}
    assert YAML(typ="safe").load(render(data)) == data


def test_the_opcua_device_when_asked_for() -> None:
    contract = parse_text(render(build_contract(opcua_device=True))).contract
    device = contract.device("plant-opcua")
    assert device is not None and device.driver == "opcua"
    assert device.endpoint == "opc.tcp://127.0.0.1:4840/seam/sim"
    level = next(p for p in device.points if p.id == "tank1-level")
    assert (level.address, level.type, level.unit) == ("ns=2;s=Tank1.Level", "float64", "m")
    assert [p.id for p in device.points if p.writable] == [
        "pump1-enable",
        "pump2-enable",
        "tank2-level-high-setpoint",
        "tank2-level-low-setpoint",
        "dosing-setpoint",
    ]
    assert build_contract(opcua_port=None, opcua_device=True)["devices"][-1]["id"] == "treated-water"
