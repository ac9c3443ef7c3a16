"""Shared helpers of the Modbus driver tests: contract entries, a record collector, real servers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import struct
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from otseam.contract.models import Device
from otseam.core.records import Event, Quality, Record, Sample
from otseam.drivers.modbus import create
from tests.support.wait import wait_until_async

# pymodbus logs every malformed request it is sent with a traceback; our tests send many on purpose.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def device(endpoint: str, points: Sequence[dict[str, Any]], **extra: Any) -> Device:
    data: dict[str, Any] = {"id": extra.pop("id", "plc1"), "driver": "modbus", "endpoint": endpoint, "zone": "cell"}
    data["points"] = list(points)
    data.update(extra)
    return Device.model_validate(data)


_NOTHING = object()


class Collector:
    """The ``emit`` of a driver under test: keeps everything, lets the test wait for a condition."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self._changed = asyncio.Event()

    async def __call__(self, records: Sequence[Record]) -> None:
        self.records.extend(records)
        self._changed.set()

    @property
    def samples(self) -> list[Sample]:
        return [r for r in self.records if isinstance(r, Sample)]

    @property
    def events(self) -> list[Event]:
        return [r for r in self.records if isinstance(r, Event)]

    def latest(self, key: str) -> Sample | None:
        for record in reversed(self.records):
            if isinstance(record, Sample) and record.point == key:
                return record
        return None

    def states(self, device_id: str) -> list[str]:
        return [e.data["state"] for e in self.events if e.kind == "device.state" and e.source == device_id]

    async def wait_for(self, condition: Callable[[], bool], within: float = 10.0, what: str = "condition") -> None:
        """Wait until ``condition()`` holds; a generous bound turns a hang into a clear failure."""
        await wait_until_async(condition, what, within, detail=lambda: f"last records: {self.records[-5:]}")

    def value(self, key: str) -> object:
        """The latest value of ``key``; a unique marker when there is none yet."""
        sample = self.latest(key)
        return sample.value if sample else _NOTHING

    def quality(self, key: str) -> Quality | None:
        sample = self.latest(key)
        return sample.quality if sample else None


@contextlib.asynccontextmanager
async def running(dev: Device, collector: Collector, data_dir: str | None = None) -> AsyncIterator[None]:
    from otseam.core.plugins import PluginContext

    folder = data_dir or tempfile.mkdtemp(prefix="seam-modbus-test-")
    driver = create(dev, PluginContext(contract=None, data_dir=folder))  # type: ignore[arg-type]
    task = asyncio.create_task(driver.run(collector))
    try:
        yield
        assert not task.done(), f"the driver task ended: {task}"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if data_dir is None:
            shutil.rmtree(folder, ignore_errors=True)


_FORMATS = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "float32": "f",
    "int64": "q",
    "uint64": "Q",
    "float64": "d",
}


def encode(value: float, type_: str, order: str = "ABCD") -> list[int]:
    """Registers holding ``value`` the way a PLC with byte/word ``order`` stores it.

    Written independently of the driver's decoder: big-endian bytes, then the order's rule applied to
    the list of words (CDAB reverses the words, BADC swaps the bytes in each word, DCBA does both).
    """
    raw = struct.pack(">" + _FORMATS[type_], value)
    words = [raw[i : i + 2] for i in range(0, len(raw), 2)]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    if order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]


def encode_string(text: str, registers: int) -> list[int]:
    raw = text.encode().ljust(registers * 2, b"\x00")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def sim_device(
    unit: int,
    hr: Sequence[int] = (),
    ir: Sequence[int] = (),
    co: Sequence[bool] = (),
    di: Sequence[bool] = (),
    hr_blocks: Sequence[tuple[int, Sequence[int]]] = (),
) -> SimDevice:
    """A pymodbus simulated device with separate tables, zero-based addresses. ``hr_blocks`` gives
    holding registers as (start, values) runs; addresses between runs answer exception 02."""

    def regs(start: int, values: Sequence[int]) -> list[SimData]:
        return [SimData(start, values=list(values) or [0], datatype=DataType.REGISTERS)]

    holding = [SimData(a, values=list(v), datatype=DataType.REGISTERS) for a, v in hr_blocks] or regs(0, hr)

    def bits(values: Sequence[bool]) -> list[SimData]:
        return [SimData(0, values=list(values) or [False], datatype=DataType.BITS)]

    return SimDevice(unit, simdata=(bits(co), bits(di), holding, regs(0, ir)))


@contextlib.asynccontextmanager
async def pymodbus_server(devices: list[SimDevice], port: int, **kwargs: Any) -> AsyncIterator[ModbusTcpServer]:
    server = ModbusTcpServer(devices, address=("127.0.0.1", port), **kwargs)
    await server.serve_forever(background=True)
    try:
        yield server
    finally:
        await server.shutdown()
