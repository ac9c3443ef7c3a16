"""Where each process value of the simulated plant lives: Modbus unit, address, type, byte order,
scaling, unit of measure, and OPC UA node.

This one table drives the register image, the OPC UA address space and the printed contract, so the
contract always describes exactly what the sim serves.

Three Modbus units stand for three PLCs of the plant, behind one Modbus/TCP port (as behind a gateway):

* unit 1, ``raw-water``: the intake and Tank1 (float32 in ABCD order, a scaled int16, a string);
* unit 2, ``pump-station``: the pumps (float32 in CDAB order, coils, a status word of bits);
* unit 3, ``treated-water``: Tank2 and chlorine dosing (CDAB floats, a uint32 counter, setpoints).

Scaling follows the contract's rule ``engineering = raw * factor + offset``: a temperature held as
int16 tenths of a degree has ``factor: 0.1``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from otseam.sim.bank import Table

DataType = Literal["bool", "int16", "uint16", "int32", "uint32", "float32", "string"]
ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]

NAMESPACE_URI = "urn:seam:sim"
#: The path of the OPC UA endpoint URL, opc.tcp://host:port/seam/sim.
OPCUA_PATH = "/seam/sim"
_WORD_START = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@dataclass(frozen=True, slots=True)
class PlantPoint:
    #: The process value (a key of WaterPlant.values()) and, prefixed, its OPC UA node id string.
    name: str
    #: Modbus unit id, or None for values only the OPC UA server shows.
    unit: int | None
    table: Table
    address: int
    type: DataType
    byte_order: ByteOrder = "ABCD"
    #: For a bool inside a register: the bit number.
    bit: int | None = None
    length: int | None = None
    factor: float = 1.0
    eng_unit: str = ""
    description: str = ""
    writable: bool = False
    low: float | None = None
    high: float | None = None

    @property
    def point_id(self) -> str:
        """``Pump1.MotorTemperature`` → ``pump1-motor-temperature``: a valid contract id."""
        return _WORD_START.sub("-", self.name.replace(".", "-")).lower()

    @property
    def modbus_address(self) -> str:
        bit = f".{self.bit}" if self.bit is not None else ""
        return f"{self.table}:{self.address}{bit}"

    @property
    def node_path(self) -> tuple[str, str]:
        folder, _, leaf = self.name.partition(".")
        return folder, leaf


@dataclass(frozen=True, slots=True)
class UnitInfo:
    unit: int
    device_id: str
    model: str
    description: str
    #: Sizes of the register map per table (the unit's limited map).
    coils: int
    discrete_inputs: int
    holding: int
    inputs: int


UNITS: tuple[UnitInfo, ...] = (
    UnitInfo(1, "raw-water", "SIM-RW", "Raw-water intake: inlet valve V1 and Tank1", 8, 8, 108, 8),
    UnitInfo(2, "pump-station", "SIM-PS", "Transfer pumps P1 and P2", 16, 8, 8, 16),
    UnitInfo(3, "treated-water", "SIM-TW", "Treated-water Tank2 and chlorine dosing", 8, 8, 8, 16),
)

P = PlantPoint
POINTS: tuple[PlantPoint, ...] = (
    # Unit 1: raw-water intake.
    P(
        "Tank1.Level",
        1,
        "ir",
        0,
        "float32",
        "ABCD",
        eng_unit="m",
        description="Raw-water tank level LT-101",
        low=0,
        high=4,
    ),
    P("InletValve.Flow", 1, "ir", 2, "float32", "ABCD", eng_unit="m3/h", description="Inflow FT-101", low=0, high=60),
    P(
        "Tank1.Temperature",
        1,
        "ir",
        4,
        "int16",
        factor=0.1,
        eng_unit="degC",
        description="Raw-water temperature TT-101",
        low=0,
        high=40,
    ),
    P("InletValve.Open", 1, "co", 0, "bool", description="Inlet valve V1 open (state, not writable)"),
    P("Tank1.HighSwitch", 1, "di", 0, "bool", description="Tank1 high level switch LSH-101"),
    P("Tank1.LowSwitch", 1, "di", 1, "bool", description="Tank1 low level switch LSL-101"),
    P("Plant.Name", 1, "hr", 100, "string", length=8, description="Station name"),
    # Unit 2: pump station.
    P("Pump1.Running", 2, "co", 0, "bool", description="Pump P1 running (state, not writable)"),
    P("Pump2.Running", 2, "co", 1, "bool", description="Pump P2 running (state, not writable)"),
    P("Pump1.Enable", 2, "co", 8, "bool", description="Pump P1 released for automatic operation", writable=True),
    P("Pump2.Enable", 2, "co", 9, "bool", description="Pump P2 released for automatic operation", writable=True),
    P("Pump1.ThermalTrip", 2, "di", 0, "bool", description="Pump P1 motor thermal trip"),
    P("Pump2.ThermalTrip", 2, "di", 1, "bool", description="Pump P2 motor thermal trip"),
    P("Pump1.Running", 2, "hr", 0, "bool", bit=0, description="Status word bit 0: P1 running"),
    P("Pump2.Running", 2, "hr", 0, "bool", bit=1, description="Status word bit 1: P2 running"),
    P("Pumps.DryRunLock", 2, "hr", 0, "bool", bit=2, description="Status word bit 2: dry-run protection active"),
    P("Pumps.Flow", 2, "ir", 0, "float32", "CDAB", eng_unit="m3/h", description="Transfer flow FT-201", low=0, high=60),
    P(
        "Pumps.DischargePressure",
        2,
        "ir",
        2,
        "int16",
        factor=0.01,
        eng_unit="bar",
        description="Discharge pressure PT-201",
        low=0,
        high=6,
    ),
    P(
        "Pump1.MotorTemperature",
        2,
        "ir",
        3,
        "int16",
        factor=0.1,
        eng_unit="degC",
        description="P1 winding temperature",
        low=0,
        high=120,
    ),
    P(
        "Pump2.MotorTemperature",
        2,
        "ir",
        4,
        "int16",
        factor=0.1,
        eng_unit="degC",
        description="P2 winding temperature",
        low=0,
        high=120,
    ),
    P("Pump1.Starts", 2, "ir", 5, "uint16", description="P1 start count"),
    P("Pump2.Starts", 2, "ir", 6, "uint16", description="P2 start count"),
    # Unit 3: treated water and dosing.
    P(
        "Tank2.Level",
        3,
        "ir",
        0,
        "float32",
        "CDAB",
        eng_unit="m",
        description="Treated-water tank level LT-301",
        low=0,
        high=3,
    ),
    P(
        "Tank2.Outflow",
        3,
        "ir",
        2,
        "float32",
        "CDAB",
        eng_unit="m3/h",
        description="Flow to town FT-302",
        low=0,
        high=60,
    ),
    P(
        "Dosing.Residual",
        3,
        "ir",
        4,
        "float32",
        "CDAB",
        eng_unit="mg/L",
        description="Free chlorine residual AT-301",
        low=0,
        high=5,
    ),
    P(
        "Tank2.DeliveredVolume",
        3,
        "ir",
        6,
        "uint32",
        eng_unit="L",
        description="Volume delivered to town FQ-302 (wraps at 2^32)",
    ),
    P(
        "Tank2.Temperature",
        3,
        "ir",
        8,
        "int16",
        factor=0.1,
        eng_unit="degC",
        description="Treated-water temperature TT-301",
        low=0,
        high=40,
    ),
    P(
        "Dosing.Rate",
        3,
        "ir",
        9,
        "float32",
        "ABCD",
        eng_unit="L/h",
        description="Hypochlorite dosing rate",
        low=0,
        high=5,
    ),
    P("Tank2.LowSwitch", 3, "di", 0, "bool", description="Tank2 low level switch LSL-301"),
    P("Tank2.HighSwitch", 3, "di", 1, "bool", description="Tank2 high level switch LSH-301"),
    P(
        "Tank2.LevelHighSetpoint",
        3,
        "hr",
        0,
        "float32",
        "ABCD",
        eng_unit="m",
        description="Lead pump stop level",
        writable=True,
        low=0.6,
        high=2.9,
    ),
    P(
        "Tank2.LevelLowSetpoint",
        3,
        "hr",
        2,
        "float32",
        "ABCD",
        eng_unit="m",
        description="Lead pump start level",
        writable=True,
        low=0.3,
        high=2.5,
    ),
    P(
        "Dosing.Setpoint",
        3,
        "hr",
        4,
        "int16",
        factor=0.01,
        eng_unit="mg/L",
        description="Chlorine dose setpoint",
        writable=True,
        low=0,
        high=4,
    ),
)


def opcua_points() -> list[PlantPoint]:
    """One entry per process value (the status-word bits duplicate coils, so they are left out)."""
    seen: set[str] = set()
    out = []
    for point in POINTS:
        if point.name not in seen:
            seen.add(point.name)
            out.append(point)
    return out


def unit_info(unit: int) -> UnitInfo:
    return next(u for u in UNITS if u.unit == unit)


def opcua_contract_type(point: PlantPoint) -> DataType | Literal["float64"]:
    """The data type of a value on the OPC UA server: engineering values are Doubles there."""
    if point.type in ("bool", "uint16", "uint32", "string"):
        return point.type
    return "float64"
