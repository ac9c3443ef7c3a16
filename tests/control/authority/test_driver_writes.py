"""The drivers' write path against servers we did not write: every type and word order the Modbus
driver reads, checked back by the driver and by mbpoll; OPC UA Write against node-opcua."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from otseam.contract.models import Device
from otseam.drivers.modbus.write import ModbusWriter, WriteError
from otseam.drivers.opcua.write import OpcUaWriter
from otseam.drivers.opcua.write import WriteError as UaWriteError
from tests.control.authority.servers import mbpoll, node_server
from tests.drivers.modbus.test_rtu import pty_pair as pty_pair_fixture
from tests.drivers.opcua.helpers import NodeServer

pty_pair = pty_pair_fixture  # the serial-line fixture of the driver's own RTU tests

ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")
VALUES: dict[str, Any] = {
    "int16": -12345,
    "uint16": 54321,
    "int32": -123456789,
    "uint32": 3123456789,
    "float32": 55.5,
    "int64": -1234567890123456789,
    "uint64": 12345678901234567890,
    "float64": -2.718281828459045,
}


@pytest.fixture(scope="module")
def modbus_port() -> Iterator[int]:
    with node_server("modbus_server.js") as port:
        yield port


def modbus_device(port: int, points: list[dict[str, Any]]) -> Device:
    return Device.model_validate(
        {
            "id": "plc",
            "driver": "modbus",
            "endpoint": f"tcp://127.0.0.1:{port}",
            "unit": 1,
            "zone": "z",
            "points": points,
        }
    )


async def test_every_type_and_word_order_reads_back(modbus_port: int) -> None:
    points: list[dict[str, Any]] = []
    address = 2000
    for kind in VALUES:
        for order in ORDERS if kind not in ("int16", "uint16") else ("ABCD", "BADC"):
            points.append({"id": f"{kind}_{order}", "address": f"hr:{address}", "type": kind, "byte_order": order})
            address += {"16": 1, "32": 2, "64": 4}[kind[-2:]]
    points.append({"id": "text", "address": f"hr:{address}", "type": "string", "length": 4, "byte_order": "BADC"})
    points.append({"id": "flag", "address": "hr:2099", "type": "bool"})
    points.append({"id": "coil", "address": "co:2001", "type": "bool"})
    device = modbus_device(modbus_port, points)
    async with ModbusWriter(device) as writer:
        for point in device.points:
            value = "PUMP-1" if point.type == "string" else True if point.type == "bool" else VALUES[point.type]
            await writer.write(point.id, value)
            assert await writer.read(point.id) == value, point.id
    # mbpoll reads the same numbers: big-endian words (-B) for ABCD, low word first without it for CDAB.
    index = {p.id: int(p.address[3:]) for p in device.points if p.address.startswith("hr:")}
    assert mbpoll(modbus_port, 1, index["float32_ABCD"], 1, "4:float") == ["55.5"]
    assert mbpoll(modbus_port, 1, index["float32_CDAB"], 1, "4:float", big_endian=False) == ["55.5"]
    assert mbpoll(modbus_port, 1, index["int32_ABCD"], 1, "4:int") == ["-123456789"]
    assert mbpoll(modbus_port, 1, index["int32_CDAB"], 1, "4:int", big_endian=False) == ["-123456789"]
    assert mbpoll(modbus_port, 1, index["int16_ABCD"], 1, "4") == [
        str(65536 - 12345)
    ]  # mbpoll prints registers unsigned
    assert mbpoll(modbus_port, 1, 2001, 1, "0") == ["1"]


async def test_refusals_are_named(modbus_port: int) -> None:
    device = modbus_device(
        modbus_port,
        [
            {"id": "input", "address": "ir:5", "type": "uint16"},
            {"id": "bit", "address": "hr:2050.3", "type": "bool"},
            {"id": "faulty", "address": "hr:2110", "type": "uint16"},
            {"id": "small", "address": "hr:2060", "type": "int16"},
        ],
    )
    async with ModbusWriter(device) as writer:
        with pytest.raises(WriteError, match="read-only table"):
            await writer.write("input", 1)
        with pytest.raises(WriteError, match="one bit of a register"):
            await writer.write("bit", True)
        with pytest.raises(WriteError, match=r"refused the write: exception 04 \(server device failure\)"):
            await writer.write("faulty", 7)
        with pytest.raises(WriteError, match="does not fit a int16"):
            await writer.write("small", 40000)
        with pytest.raises(WriteError, match="not a whole number"):
            await writer.write("small", 1.5)


async def test_opcua_write_lands_on_node_opcua() -> None:
    server = NodeServer()
    server.start()
    try:
        port = server.port
        device = Device.model_validate(
            {
                "id": "filter",
                "driver": "opcua",
                "endpoint": f"opc.tcp://127.0.0.1:{port}/seam/test",
                "zone": "z",
                "points": [
                    {"id": "sp", "address": "ns=2;s=BackwashSetpoint", "type": "float64"},
                    {"id": "locked", "address": "ns=2;s=LockedSetpoint", "type": "float64"},
                    {"id": "as_float", "address": "ns=2;s=BackwashSetpoint", "type": "float32"},
                ],
            }
        )
        async with OpcUaWriter(device) as writer:
            assert await writer.read("sp") == 10.0
            await writer.write("sp", 17.25)
            assert await writer.read("sp") == 17.25
            with pytest.raises(UaWriteError, match=r"BadNotWritable|BadUserAccessDenied"):
                await writer.write("locked", 1.0)
            with pytest.raises(UaWriteError, match="BadTypeMismatch"):
                await writer.write("as_float", 3.0)
    finally:
        server.stop()


async def test_writes_over_an_rtu_serial_line(pty_pair: tuple[str, str]) -> None:
    """Functions 16, 6 and 5 in RTU framing (unit, PDU, CRC) over a serial line, to pymodbus' RTU server."""
    from pymodbus import FramerType
    from pymodbus.server import ModbusSerialServer

    from tests.drivers.modbus.helpers import sim_device

    server_end, driver_end = pty_pair
    server = ModbusSerialServer(
        [sim_device(3, hr=[0] * 8, co=[False] * 8)], framer=FramerType.RTU, port=server_end, baudrate=38400
    )
    await server.serve_forever(background=True)
    try:
        device = Device.model_validate(
            {
                "id": "rtu",
                "driver": "modbus",
                "endpoint": f"rtu://{driver_end}?baudrate=38400",
                "unit": 3,
                "zone": "z",
                "points": [
                    {"id": "f", "address": "hr:0", "type": "float32", "byte_order": "CDAB"},
                    {"id": "n", "address": "hr:4", "type": "int16"},
                    {"id": "c", "address": "co:2", "type": "bool"},
                ],
            }
        )
        async with ModbusWriter(device) as writer:
            for point, value in (("f", 42.25), ("n", -7), ("c", True)):
                await writer.write(point, value)
                assert await writer.read(point) == value
    finally:
        await server.shutdown()
