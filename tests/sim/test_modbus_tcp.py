"""The sim's Modbus/TCP server over real sockets, read by independent clients (pymodbus, mbpoll)."""

from __future__ import annotations

import asyncio
import re
import struct

from pymodbus.client import AsyncModbusTcpClient

from otseam.sim.bank import Unit
from otseam.sim.plant import SimPlant
from tests.sim.conftest import RawClient, mbap


def f32(registers: list[int], order: str) -> float:
    words = registers if order == "ABCD" else registers[::-1]
    return float(struct.unpack(">f", struct.pack(">2H", *words))[0])


def as_f32(value: float) -> float:
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


async def client(plant: SimPlant) -> AsyncModbusTcpClient:
    modbus = AsyncModbusTcpClient("127.0.0.1", port=plant.modbus_port, timeout=3, retries=0)
    assert await modbus.connect()
    return modbus


async def test_every_function_with_pymodbus(plant: SimPlant) -> None:
    for _ in range(30):
        await plant.step()
    values = plant.process.values()
    modbus = await client(plant)
    try:
        ir = await modbus.read_input_registers(0, count=5, device_id=1)
        assert f32(ir.registers[0:2], "ABCD") == as_f32(float(values["Tank1.Level"]))
        assert ir.registers[4] == round(float(values["Tank1.Temperature"]) * 10)
        treated = await modbus.read_input_registers(0, count=2, device_id=3)
        assert f32(treated.registers, "CDAB") == as_f32(float(values["Tank2.Level"]))
        coils = await modbus.read_coils(0, count=10, device_id=2)
        assert coils.bits[0] == values["Pump1.Running"] and coils.bits[1] == values["Pump2.Running"]
        assert coils.bits[8] is True and coils.bits[9] is True  # both pumps enabled at start
        inputs = await modbus.read_discrete_inputs(0, count=2, device_id=3)
        assert inputs.bits[:2] == [values["Tank2.LowSwitch"], values["Tank2.HighSwitch"]]
        name = await modbus.read_holding_registers(100, count=8, device_id=1)
        assert struct.pack(">8H", *name.registers).rstrip(b"\0") == b"SEAM-SIM-WTP"
        status = await modbus.read_holding_registers(0, count=1, device_id=2)
        assert bool(status.registers[0] & 1) == values["Pump1.Running"]

        # Setpoints: a scaled int16 (fc 6), a float32 pair (fc 16), coils (fc 5 and 15).
        assert not (await modbus.write_register(4, 175, device_id=3)).isError()
        assert plant.process.dose_sp == 1.75
        high = struct.unpack(">2H", struct.pack(">f", 2.25))
        assert not (await modbus.write_registers(0, list(high), device_id=3)).isError()
        assert plant.process.level_high_sp == 2.25
        assert not (await modbus.write_coil(8, False, device_id=2)).isError()
        assert plant.process.enable == [False, True]
        assert not (await modbus.write_coils(8, [True, False], device_id=2)).isError()
        assert plant.process.enable == [True, False]
        # Out of range is clamped by the plant and shows as such at once.
        await modbus.write_register(4, 900, device_id=3)
        assert (await modbus.read_holding_registers(4, count=1, device_id=3)).registers == [400]

        info = await modbus.read_device_information(read_code=2, device_id=2)
        assert info.information[0] == b"Seam"
        assert info.information[5] == b"SIM-PS"
    finally:
        modbus.close()


async def test_exceptions_over_tcp(plant: SimPlant) -> None:
    modbus = await client(plant)
    try:
        # Not writable: process values and pump states.
        refused = await modbus.write_register(0, 1, device_id=1)
        assert refused.isError() and refused.exception_code == 2
        refused = await modbus.write_coil(0, True, device_id=2)
        assert refused.isError() and refused.exception_code == 2
        # Past the unit's register map.
        beyond = await modbus.read_input_registers(15, count=2, device_id=3)
        assert beyond.isError() and beyond.exception_code == 2
        unsupported = await modbus.diag_read_bus_message_count(device_id=1)
        assert unsupported.isError() and unsupported.exception_code == 1
    finally:
        modbus.close()
    # pymodbus will not send 126 registers; the raw socket will.
    raw = await RawClient.connect(plant.modbus_port)
    try:
        await raw.send(mbap(5, 1, bytes.fromhex("03 0000 007e")))
        assert await raw.frame() == (5, 0, 3, 1, bytes.fromhex("83 03"))
    finally:
        await raw.close()


async def mbpoll(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "mbpoll", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, err.decode()
    return out.decode()


def mbpoll_values(output: str) -> list[float]:
    return [float(v) for v in re.findall(r"^\[\d+\]:\s+(\S+)", output, re.MULTILINE)]


async def test_mbpoll_reads_both_word_orders(plant: SimPlant) -> None:
    await plant.step()
    values = plant.process.values()
    port = str(plant.modbus_port)
    # mbpoll's default 32-bit word order is low word first (CDAB); -B asks for big-endian (ABCD).
    abcd = await mbpoll(
        "-m", "tcp", "-p", port, "-a", "1", "-0", "-r", "0", "-c", "2", "-t", "3:float", "-B", "-1", "127.0.0.1"
    )
    cdab = await mbpoll(
        "-m", "tcp", "-p", port, "-a", "3", "-0", "-r", "0", "-c", "2", "-t", "3:float", "-1", "127.0.0.1"
    )
    tank1, inflow = mbpoll_values(abcd)
    tank2, outflow = mbpoll_values(cdab)
    assert abs(tank1 - float(values["Tank1.Level"])) < 1e-5
    assert abs(inflow - float(values["InletValve.Flow"])) < 1e-4
    assert abs(tank2 - float(values["Tank2.Level"])) < 1e-5
    assert abs(outflow - float(values["Tank2.Outflow"])) < 1e-4
    coils = await mbpoll("-m", "tcp", "-p", port, "-a", "2", "-0", "-r", "8", "-c", "2", "-t", "0", "-1", "127.0.0.1")
    assert mbpoll_values(coils) == [1.0, 1.0]


async def test_unknown_unit_ids(plant: SimPlant) -> None:
    raw = await RawClient.connect(plant.modbus_port)
    try:
        await raw.send(mbap(7, 99, bytes.fromhex("03 0000 0001")))
        assert await raw.frame() == (7, 0, 3, 99, bytes.fromhex("83 0b"))
        plant.modbus.answer_unknown_units = False
        await raw.send(mbap(8, 99, bytes.fromhex("03 0000 0001")) + mbap(9, 1, bytes.fromhex("03 0064 0001")))
        # Unit 99 stays silent; the next request on the line is still answered.
        assert (await raw.frame())[0] == 9
    finally:
        await raw.close()


async def test_pipelined_requests_are_answered_in_order(plant: SimPlant) -> None:
    raw = await RawClient.connect(plant.modbus_port)
    try:
        requests = b"".join(mbap(t, 1 + t % 3, bytes.fromhex("04 0000 0002")) for t in range(100))
        await raw.send(requests)
        for t in range(100):
            transaction, _, _, unit, pdu = await raw.frame()
            assert (transaction, unit, pdu[:2]) == (t, 1 + t % 3, b"\x04\x04")
    finally:
        await raw.close()


async def test_frames_split_across_segments(plant: SimPlant) -> None:
    raw = await RawClient.connect(plant.modbus_port)
    try:
        request = mbap(0x1234, 1, bytes.fromhex("03 0064 0008"))
        for byte in request:
            await raw.send(bytes([byte]))
            await asyncio.sleep(0.001)  # the behaviour under test: a request trickling in byte by byte
        transaction, _, _, _, pdu = await raw.frame()
        assert transaction == 0x1234 and pdu[2:].rstrip(b"\0") == b"SEAM-SIM-WTP"
    finally:
        await raw.close()


async def test_many_concurrent_connections(plant: SimPlant) -> None:
    async def one(index: int) -> bytes:
        raw = await RawClient.connect(plant.modbus_port)
        try:
            await raw.send(mbap(index, 2, bytes.fromhex("04 0005 0001")))
            transaction, *_, pdu = await raw.frame()
            assert transaction == index
            return pdu
        finally:
            await raw.close()

    answers = await asyncio.gather(*(one(i) for i in range(300)))
    assert len(set(answers)) == 1 and answers[0][:2] == b"\x04\x02"
    assert plant.modbus.stats.connections_total >= 300


async def test_not_modbus_closes_the_connection(plant: SimPlant) -> None:
    for frame in (
        mbap(1, 1, bytes.fromhex("03 0000 0001"), protocol=7),
        mbap(1, 1, b"", length=1),
        mbap(1, 1, bytes.fromhex("03 0000 0001"), length=300),
        b"GET / HTTP/1.1\r\nHost: plc\r\n\r\n",
    ):
        raw = await RawClient.connect(plant.modbus_port)
        await raw.send(frame)
        assert await raw.closed_by_server()
        await raw.close()
    assert plant.modbus.stats.framing_errors == 4
    # And the server is still there for everybody else.
    modbus = await client(plant)
    assert not (await modbus.read_input_registers(0, count=2, device_id=1)).isError()
    modbus.close()


async def test_limited_register_map_per_unit(plant: SimPlant) -> None:
    small = plant.bank.add(Unit.sized(50, holding=10))
    small.set_registers("hr", 0, range(10))
    modbus = await client(plant)
    try:
        assert (await modbus.read_holding_registers(6, count=4, device_id=50)).registers == [6, 7, 8, 9]
        assert (await modbus.read_holding_registers(6, count=5, device_id=50)).exception_code == 2
        assert (await modbus.read_coils(0, count=1, device_id=50)).exception_code == 2
    finally:
        modbus.close()
