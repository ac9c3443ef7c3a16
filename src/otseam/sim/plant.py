"""``SimPlant``: the whole simulated plant as one object, for the command line, tests and benchmarks.

::

    async with SimPlant(modbus_port=0, opcua=False, seed=7) as plant:
        port = plant.modbus_port                  # the port the OS gave us
        plant.modbus.faults.delay = 0.2           # transport faults, see modbus_server.Faults
        plant.bank.units[2].add_exception("ir", 0, 2, 0x04)
        text = plant.contract_yaml()              # the contract of exactly this plant
        await plant.step()                        # advance one tick by hand (with tick=None)

With ``tick=None`` nothing advances by itself: tests call :meth:`SimPlant.step` and know exactly which
tick they read. With a tick (seconds), a background task steps the process (or, in scale mode, the
register image) on a fixed schedule that does not drift.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Any

from otseam.sim.bank import RegisterBank
from otseam.sim.contract import build_contract, omitted_opcua_note, render
from otseam.sim.layout import OPCUA_PATH
from otseam.sim.modbus_server import ModbusTcpServer
from otseam.sim.plant_registers import PlantRegisters
from otseam.sim.process import WaterPlant
from otseam.sim.scale import ScaleSim

log = logging.getLogger(__name__)


def _pick_free_port(host: str) -> int:
    # asyncua advertises the port of its endpoint URL, so it must be known before the server starts.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class SimListenError(OSError):
    """The sim could not listen where it was asked to."""

    def __init__(self, what: str, host: str, port: int, cause: OSError) -> None:
        # asyncio's own text repeats the address; the system's words for the errno are enough.
        if isinstance(cause, socket.gaierror) or not cause.errno or cause.errno < 0:
            reason = cause.strerror or str(cause)
        else:
            reason = os.strerror(cause.errno)
        super().__init__(cause.errno, f"cannot listen for {what} on {host}:{port}: {reason}")
        self.what = what
        self.port = port


def _check_bindable(host: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise SimListenError(what, host, port, exc) from None


class SimPlant:
    def __init__(
        self,
        host: str = "127.0.0.1",
        modbus_port: int = 5020,
        opcua_port: int = 4840,
        *,
        seed: int = 1,
        tick: float | None = 1.0,
        devices: int = 0,
        points: int = 0,
        opcua: bool = True,
    ) -> None:
        if tick is not None and tick <= 0:
            raise ValueError(f"the tick must be positive, not {tick}")
        if (devices > 0) != (points > 0):
            raise ValueError("scale mode needs both --devices and --points")
        self.host = host
        self.tick = tick
        self.seed = seed
        self.process = WaterPlant(seed=seed, dt=tick or 1.0)
        self.bank = RegisterBank()
        self.scale: ScaleSim | None = None
        self.registers: PlantRegisters | None = None
        if devices:
            self.scale = ScaleSim(self.bank, devices, points, seed)
        else:
            self.registers = PlantRegisters(self.process, self.bank)
        self.modbus = ModbusTcpServer(self.bank, host, modbus_port, seed=seed)
        self._opcua_wanted = opcua
        self._opcua_port = opcua_port
        self.opcua: Any = None  # PlantOpcUa, imported lazily: asyncua is slow to import
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None
        #: Scale mode: the next cycle's register image, computed ahead in a worker thread.
        self._prepared: tuple[int, Any] | None = None

    @property
    def modbus_port(self) -> int:
        return self.modbus.port

    @property
    def opcua_port(self) -> int | None:
        """The OPC UA port (the configured one before start), None when OPC UA is off."""
        if self.opcua is not None:
            return int(self.opcua.port)
        return self._opcua_port if self._opcua_wanted else None

    @property
    def opcua_endpoint(self) -> str | None:
        return str(self.opcua.endpoint) if self.opcua is not None else None

    @property
    def unit_ids(self) -> list[int]:
        return sorted(self.bank.units)

    async def start(self) -> None:
        """Start listening. Raises :class:`SimListenError` (an OSError) naming the port that failed."""
        try:
            await self.modbus.start()
        except OSError as exc:
            raise SimListenError("Modbus/TCP", self.host, self.modbus.port, exc) from None
        try:
            if self._opcua_wanted:
                from otseam.sim.opcua_server import PlantOpcUa

                port = self._opcua_port or _pick_free_port(self.host)
                # asyncua logs a traceback of its own when it cannot bind: find out first, cleanly.
                _check_bindable(self.host, port, "OPC UA")
                self.opcua = PlantOpcUa(self.process, self.host, port)
                await self.opcua.start()
        except BaseException:
            await self.modbus.stop()
            raise
        if self.tick is not None:
            self._task = asyncio.create_task(self._run(self.tick), name="seam-sim-ticker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.opcua is not None:
            await self.opcua.stop()
        await self.modbus.stop()

    async def __aenter__(self) -> SimPlant:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def step(self) -> None:
        """One tick: the process model (or the scale image) moves on, and every server shows it."""
        self.ticks += 1
        if self.scale is not None:
            cycle = self.scale.cycle + 1
            if self._prepared is not None and self._prepared[0] == cycle:
                self.scale.install(cycle, self._prepared[1])
            else:
                self.scale.advance()
            self._prepared = None
        else:
            self.process.step()
            assert self.registers is not None
            self.registers.refresh()
        if self.opcua is not None:
            if self.scale is not None:
                self.process.step()
            await self.opcua.update()

    async def _run(self, tick: float) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + tick
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            try:
                await self.step()
                if self.scale is not None:
                    cycle = self.scale.cycle + 1
                    self._prepared = (cycle, await asyncio.to_thread(self.scale.image_at, cycle))
            except Exception:
                # The sim must keep serving even if one tick fails; the log says why.
                log.exception("simulation tick %d failed", self.ticks)
            next_at += tick
            behind = loop.time() - next_at
            if behind > tick:
                # Too slow for the tick (an overloaded machine): skip ahead instead of bursting.
                next_at += tick * int(behind / tick)

    def contract(self, opcua_device: bool | None = None) -> dict[str, Any]:
        """The contract as data; ``opcua_device`` as in :func:`otseam.sim.contract.build_contract`."""
        scale = (self.scale.devices, self.scale.points) if self.scale is not None else None
        return build_contract(self.host, self.modbus_port, self.opcua_port, self.tick or 1.0, scale, opcua_device)

    def contract_yaml(self, opcua_device: bool | None = None) -> str:
        """The contract of this plant, with the ports actually bound."""
        contract = self.contract(opcua_device)
        notes = []
        if self.opcua_port is not None and not any(d["driver"] == "opcua" for d in contract["devices"]):
            endpoint = f"opc.tcp://{self.host}:{self.opcua_port}{OPCUA_PATH}"
            notes.append(omitted_opcua_note(endpoint))
        return render(contract, notes)
