"""The water plant's process model: deterministic, physically sane, controlled like a real plant."""

from __future__ import annotations

import math

import pytest

from otseam.sim.process import SETPOINTS, TANK1_HEIGHT, TANK2_HEIGHT, WaterPlant


def series(seed: int, steps: int) -> list[dict[str, object]]:
    plant = WaterPlant(seed=seed)
    out = []
    for _ in range(steps):
        plant.step()
        out.append(plant.values())
    return out


def test_same_seed_gives_the_same_series() -> None:
    assert series(7, 1500) == series(7, 1500)


def test_different_seeds_give_different_series() -> None:
    a, b = series(7, 50), series(8, 50)
    assert [v["Tank1.Temperature"] for v in a] != [v["Tank1.Temperature"] for v in b]
    assert [v["Pumps.DischargePressure"] for v in a] != [v["Pumps.DischargePressure"] for v in b]


def test_reading_values_does_not_change_the_series() -> None:
    quiet, busy = WaterPlant(seed=3), WaterPlant(seed=3)
    for _ in range(200):
        quiet.step()
        busy.step()
        for _ in range(3):
            busy.values()
    assert quiet.values() == busy.values()


def test_levels_stay_physical_and_the_control_loop_switches() -> None:
    plant = WaterPlant(seed=11)
    seen: dict[str, set[object]] = {"InletValve.Open": set(), "Pump1.Running": set(), "Pump2.Running": set()}
    for _ in range(4 * 3600):  # four hours of process time at 1 s
        plant.step()
        values = plant.values()
        assert 0.0 <= float(values["Tank1.Level"]) <= TANK1_HEIGHT
        assert 0.0 <= float(values["Tank2.Level"]) <= TANK2_HEIGHT
        assert float(values["Tank2.Outflow"]) >= 0.0
        assert float(values["Dosing.Residual"]) >= 0.0
        assert all(math.isfinite(v) for v in values.values() if isinstance(v, float))
        for name in seen:
            seen[name].add(values[name])
    # Valve and both pumps were on and off at some point: the thresholds really drive them.
    assert all(states == {True, False} for states in seen.values()), seen
    assert int(plant.values()["Pump1.Starts"]) >= 2
    assert int(plant.values()["Tank2.DeliveredVolume"]) > 0


def test_a_disabled_pump_does_not_run() -> None:
    plant = WaterPlant(seed=5)
    plant.set("Pump1.Enable", False)
    plant.set("Pump2.Enable", False)
    for _ in range(1200):
        plant.step()
        assert plant.values()["Pump1.Running"] is False
        assert plant.values()["Pump2.Running"] is False
    assert float(plant.values()["Pumps.Flow"]) < 1e-6


def test_pumps_start_below_the_low_setpoint() -> None:
    plant = WaterPlant(seed=5)
    plant.set("Tank2.LevelLowSetpoint", 2.0)
    plant.set("Tank2.LevelHighSetpoint", 2.8)
    plant.step()
    # Tank2 starts at 1.5 m, below the new start level: the lead pump starts at once.
    assert plant.values()["Pump1.Running"] is True


def test_setpoints_are_clamped_to_their_range() -> None:
    plant = WaterPlant()
    assert plant.set("Dosing.Setpoint", 99.0) == SETPOINTS["Dosing.Setpoint"].high
    assert plant.set("Dosing.Setpoint", -5) == 0.0
    # The stop level stays at least 0.2 m above the start level (1.2 m), and the other way round.
    assert plant.set("Tank2.LevelHighSetpoint", 1.0) == pytest.approx(1.4)
    assert plant.set("Tank2.LevelLowSetpoint", 2.5) == pytest.approx(1.2)


def test_only_setpoints_can_be_set() -> None:
    plant = WaterPlant()
    with pytest.raises(KeyError, match="not a setpoint"):
        plant.set("Tank1.Level", 1.0)
    with pytest.raises(ValueError, match="not a number"):
        plant.set("Dosing.Setpoint", float("nan"))


def test_a_non_positive_tick_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        WaterPlant(dt=0)
