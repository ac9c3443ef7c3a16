"""Scale mode: ``N`` Modbus units with ``M`` float32 points each, every value new every cycle.

Design choice: the devices are unit ids 1..N behind the one Modbus/TCP port (as behind a gateway),
not N ports. One port keeps the benchmark's set-up simple and still lets a driver open one connection
per device. That caps N at 247, the highest ordinary unit id.

Point ``j`` of a device lives in holding registers ``2j`` and ``2j+1`` (float32, ABCD). Point 0 is the
cycle number itself, so a reader can tell exactly how fresh what it read is. Every other point ramps by
its own step each cycle and wraps within its own range, so every value differs from the previous
cycle's by at least a thousandth of its span, far above float32 resolution. The value of any point at
any cycle is a pure function of the seed (:meth:`ScaleSim.values_at`), so a benchmark can check
what it decoded.

The whole cycle's register image is computed at once with numpy, ahead of time in a worker thread
when the sim runs on its own clock (100,000 points take about 10 ms, which would otherwise stall every
client once a cycle); each unit's holding table is then a row of that image, so serving a read is a
slice copy and the swap to the next cycle is one assignment per unit.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from otseam.sim.bank import RegisterBank, Unit

MAX_DEVICES = 247
#: Two registers per point in a 65,536-register table.
MAX_POINTS = 32768


class ScaleSim:
    def __init__(self, bank: RegisterBank, devices: int, points: int, seed: int = 1) -> None:
        if not 1 <= devices <= MAX_DEVICES:
            raise ValueError(f"--devices must be 1 to {MAX_DEVICES} (one Modbus unit id each), not {devices}")
        if not 1 <= points <= MAX_POINTS:
            raise ValueError(f"--points must be 1 to {MAX_POINTS} (two registers each), not {points}")
        self.devices = devices
        self.points = points
        rng = np.random.default_rng(seed)
        shape = (devices, points)
        self._low = rng.uniform(-100.0, 1000.0, shape)
        self._span = rng.uniform(10.0, 1000.0, shape)
        self._phase = rng.uniform(0.0, 1.0, shape) * self._span
        self._step = rng.uniform(1 / 500, 1 / 20, shape) * self._span
        self.cycle = 0
        self.units = [bank.add(Unit.sized(first + 1, holding=2 * points)) for first in range(devices)]
        for unit in self.units:
            unit.identity.model_name = "SIM-SCALE"
            unit.identity.application_name = f"scale device {unit.unit_id}: {points} float32 points"
        self.install(0, self.image_at(0))

    def values_at(self, cycle: int) -> npt.NDArray[np.float32]:
        """Every point's value at ``cycle``, shape (devices, points), as float32 on the wire."""
        values = self._low + np.mod(self._phase + cycle * self._step, self._span)
        values[:, 0] = cycle
        return values.astype(np.float32)

    def image_at(self, cycle: int) -> npt.NDArray[np.uint16]:
        """The register image of ``cycle``: one row of big-endian registers per unit.

        Reads only constant arrays, so it may run in a worker thread while the server serves.
        """
        return self.values_at(cycle).astype(">f4").view(">u2").reshape(self.devices, 2 * self.points)

    def install(self, cycle: int, image: npt.NDArray[np.uint16]) -> None:
        """Swap in a prepared image: one assignment per unit, nothing a reader could see half-done."""
        for row, unit in zip(image, self.units, strict=True):
            unit.holding = row
        self.cycle = cycle

    def advance(self) -> None:
        """Move to the next cycle, computing its image now."""
        self.install(self.cycle + 1, self.image_at(self.cycle + 1))
