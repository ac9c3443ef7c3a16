"""A small water-treatment plant, stepped at a fixed tick, deterministic for a given seed.

::

    raw water ──▶ [V1 inlet valve] ──▶ Tank1 (raw) ──▶ Pump1 / Pump2 ──▶ Tank2 (treated) ──▶ town
                                                         ▲ chlorine dosing

The control is what a small plant's PLC would do, with hysteresis so nothing chatters:

* the inlet valve opens below 30 % of Tank1 and closes above 90 %;
* Pump1 (lead) starts when Tank2 falls below the low setpoint and stops above the high setpoint;
  Pump2 (lag) starts 0.1 m below the low setpoint and stops half-way between the setpoints;
* both pumps stop when Tank1 is nearly empty (dry-run protection) or the motor is too hot, and only
  run while their enable coil is set;
* chlorine is dosed in proportion to the transferred flow, and the residual in Tank2 follows it with
  mixing and decay.

Noise comes from one ``random.Random(seed)``: the same seed and the same setpoint changes give the same
series, step for step. Nothing reads the wall clock; ``dt`` is the process time of one step.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

Value = bool | int | float | str


@dataclass(frozen=True, slots=True)
class Setpoint:
    low: float
    high: float
    kind: type = float


#: What an operator (or a Modbus/OPC UA client of the sim) may change, with the accepted range.
SETPOINTS: dict[str, Setpoint] = {
    "Tank2.LevelHighSetpoint": Setpoint(0.6, 2.9),
    "Tank2.LevelLowSetpoint": Setpoint(0.3, 2.5),
    "Dosing.Setpoint": Setpoint(0.0, 4.0),
    "Pump1.Enable": Setpoint(0, 1, bool),
    "Pump2.Enable": Setpoint(0, 1, bool),
}

TANK1_HEIGHT = 4.0  # m
TANK1_AREA = 3.0  # m², so 12 m³
TANK2_HEIGHT = 3.0  # m
TANK2_AREA = 2.0  # m², so 6 m³
INLET_FLOW = 45.0  # m³/h with the valve fully open
PUMP_FLOW = 40.0  # m³/h per pump
HYPOCHLORITE = 120.0  # g/L, the dosing solution
CHLORINE_DECAY = 1e-4  # 1/s, chlorine demand of the water in Tank2
MOTOR_TAU = 300.0  # s, motor winding temperature time constant
MOTOR_TRIP = 90.0  # °C
AMBIENT = 22.0  # °C


def _first_order(value: float, target: float, tau: float, dt: float) -> float:
    return target + (value - target) * math.exp(-dt / tau)


class WaterPlant:
    """The process state and its control loop. Call :meth:`step` once per tick; read :meth:`values`."""

    def __init__(self, seed: int = 1, dt: float = 1.0, name: str = "SEAM-SIM-WTP") -> None:
        if dt <= 0:
            raise ValueError(f"the tick must be positive, not {dt}")
        self.random = random.Random(seed)
        self.dt = dt
        self.name = name
        self.tick = 0
        self.time = 0.0  # process seconds since start
        # State.
        self.level1 = 2.0
        self.level2 = 1.5
        self.valve_open = False
        self.inflow = 0.0
        self.pump_running = [False, False]
        self.pump_flow = [0.0, 0.0]
        self.pump_starts = [0, 0]
        self.motor_temp = [AMBIENT, AMBIENT]
        self.dry_run_lock = False
        self.outflow = 0.0
        self.delivered_litres = 0.0
        self.residual = 1.0
        self.raw_temp = 11.0
        self.treated_temp = 11.5
        self.pressure = 0.3
        self.dosing_rate = 0.0
        # Setpoints.
        self.level_high_sp = 2.6
        self.level_low_sp = 1.2
        self.dose_sp = 1.2
        self.enable = [True, True]
        self._measured = self._measure()

    # --- setpoints ------------------------------------------------------------------------------

    def set(self, name: str, value: float | bool) -> Value:
        """Change a setpoint; the value is clamped to its range. Returns the value applied."""
        spec = SETPOINTS.get(name)
        if spec is None:
            writable = ", ".join(SETPOINTS)
            raise KeyError(f"{name!r} is not a setpoint of the simulated plant (writable: {writable})")
        if spec.kind is bool:
            flag = bool(value)
            self.enable[0 if name == "Pump1.Enable" else 1] = flag
            return flag
        number = float(value)
        if math.isnan(number):
            raise ValueError(f"{name}: not a number")
        number = min(max(number, spec.low), spec.high)
        if name == "Tank2.LevelHighSetpoint":
            self.level_high_sp = max(number, self.level_low_sp + 0.2)
            return self.level_high_sp
        if name == "Tank2.LevelLowSetpoint":
            self.level_low_sp = min(number, self.level_high_sp - 0.2)
            return self.level_low_sp
        self.dose_sp = number
        return number

    # --- the process ----------------------------------------------------------------------------

    def step(self) -> None:
        dt = self.dt
        noise = self.random.gauss
        self.tick += 1
        self.time += dt

        # Inlet valve on Tank1 level, with hysteresis.
        if self.level1 < 0.3 * TANK1_HEIGHT:
            self.valve_open = True
        elif self.level1 > 0.9 * TANK1_HEIGHT:
            self.valve_open = False
        target_in = INLET_FLOW * (1 + noise(0, 0.02)) if self.valve_open else 0.0
        self.inflow = max(0.0, _first_order(self.inflow, target_in, 5.0, dt))

        # Pumps: lead/lag on Tank2 level, interlocked on Tank1 level and motor temperature.
        if self.level1 < 0.4:
            self.dry_run_lock = True
        elif self.level1 > 0.8:
            self.dry_run_lock = False
        start = (self.level_low_sp, self.level_low_sp - 0.1)
        stop = (self.level_high_sp, (self.level_low_sp + self.level_high_sp) / 2)
        for i in range(2):
            permitted = self.enable[i] and not self.dry_run_lock and self.motor_temp[i] < MOTOR_TRIP
            if not permitted or self.level2 > stop[i]:
                self.pump_running[i] = False
            elif self.level2 < start[i] and not self.pump_running[i]:
                self.pump_running[i] = True
                self.pump_starts[i] = (self.pump_starts[i] + 1) & 0xFFFF
            target = PUMP_FLOW * (1 + noise(0, 0.01)) if self.pump_running[i] else 0.0
            self.pump_flow[i] = max(0.0, _first_order(self.pump_flow[i], target, 3.0, dt))
            heat = AMBIENT + (40.0 if self.pump_running[i] else 0.0)
            self.motor_temp[i] = _first_order(self.motor_temp[i], heat, MOTOR_TAU, dt) + noise(0, 0.05)
        transfer = sum(self.pump_flow)

        # Town demand: a slow daily-like swing (compressed to 15 minutes) with noise.
        demand = 30.0 + 15.0 * math.sin(2 * math.pi * self.time / 900.0) + noise(0, 1.0)
        demand = max(0.0, demand)

        # Mass balance (m³/h → m³ per step), limited by what the tanks hold.
        volume1 = self.level1 * TANK1_AREA + (self.inflow - transfer) * dt / 3600.0
        if volume1 < 0:
            transfer += volume1 * 3600.0 / dt
            volume1 = 0.0
        volume1 = min(volume1, TANK1_HEIGHT * TANK1_AREA)  # the overflow weir
        volume2 = self.level2 * TANK2_AREA + (transfer - demand) * dt / 3600.0
        if volume2 < 0:
            demand += volume2 * 3600.0 / dt
            volume2 = 0.0
        volume2 = min(volume2, TANK2_HEIGHT * TANK2_AREA)
        self.level1 = volume1 / TANK1_AREA
        self.level2 = volume2 / TANK2_AREA
        self.outflow = demand
        self.delivered_litres = (self.delivered_litres + demand * dt / 3.6) % 2**32

        # Chlorine: dosed with the transfer, mixed into Tank2, consumed by the water.
        self.dosing_rate = transfer * self.dose_sp / HYPOCHLORITE  # L/h of solution
        added = transfer * self.dose_sp * 0.9 * dt / 3600.0  # g, 10 % lost to instant demand
        mass = self.residual * volume2 + added - self.residual * transfer * dt / 3600.0
        mass *= math.exp(-CHLORINE_DECAY * dt)
        self.residual = max(0.0, mass / volume2) if volume2 > 0.05 else self.residual

        # Temperatures and pressure.
        self.raw_temp = 11.0 + 1.5 * math.sin(2 * math.pi * self.time / 3600.0)
        self.treated_temp = _first_order(self.treated_temp, self.raw_temp + 0.5, 600.0, dt)
        self.pressure = 0.3 + 0.0012 * transfer**2
        self._measured = self._measure()

    def values(self) -> dict[str, Value]:
        """Every process value by name, as the instruments reported them at the last step.

        Reading has no side effect (the noise was drawn in :meth:`step`), so any number of readers
        see the same values and the series depends only on the seed and the setpoint changes.
        """
        values = dict(self._measured)
        values.update(
            {
                "Pump1.Enable": self.enable[0],
                "Pump2.Enable": self.enable[1],
                "Tank2.LevelHighSetpoint": self.level_high_sp,
                "Tank2.LevelLowSetpoint": self.level_low_sp,
                "Dosing.Setpoint": self.dose_sp,
            }
        )
        return values

    def _measure(self) -> dict[str, Value]:
        noise = self.random.gauss
        return {
            "Plant.Name": self.name,
            "Plant.Tick": self.tick,
            "Tank1.Level": self.level1,
            "Tank1.Temperature": self.raw_temp + noise(0, 0.05),
            "Tank1.HighSwitch": self.level1 > 0.95 * TANK1_HEIGHT,
            "Tank1.LowSwitch": self.level1 < 0.1 * TANK1_HEIGHT,
            "InletValve.Open": self.valve_open,
            "InletValve.Flow": self.inflow,
            "Pump1.Running": self.pump_running[0],
            "Pump2.Running": self.pump_running[1],
            "Pump1.Enable": self.enable[0],
            "Pump2.Enable": self.enable[1],
            "Pump1.MotorTemperature": self.motor_temp[0],
            "Pump2.MotorTemperature": self.motor_temp[1],
            "Pump1.ThermalTrip": self.motor_temp[0] >= MOTOR_TRIP,
            "Pump2.ThermalTrip": self.motor_temp[1] >= MOTOR_TRIP,
            "Pump1.Starts": self.pump_starts[0],
            "Pump2.Starts": self.pump_starts[1],
            "Pumps.Flow": sum(self.pump_flow),
            "Pumps.DischargePressure": max(0.0, self.pressure + noise(0, 0.02)),
            "Pumps.DryRunLock": self.dry_run_lock,
            "Tank2.Level": self.level2,
            "Tank2.Temperature": self.treated_temp + noise(0, 0.05),
            "Tank2.Outflow": self.outflow,
            "Tank2.DeliveredVolume": int(self.delivered_litres),
            "Tank2.LowSwitch": self.level2 < 0.1 * TANK2_HEIGHT,
            "Tank2.HighSwitch": self.level2 > 0.95 * TANK2_HEIGHT,
            "Tank2.LevelHighSetpoint": self.level_high_sp,
            "Tank2.LevelLowSetpoint": self.level_low_sp,
            "Dosing.Setpoint": self.dose_sp,
            "Dosing.Rate": self.dosing_rate,
            "Dosing.Residual": max(0.0, self.residual + noise(0, 0.01)),
        }
