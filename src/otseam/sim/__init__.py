"""The simulated plant of ``seam sim``: a water-treatment process model served over Modbus/TCP (our
own small server, with fault knobs) and OPC UA, plus a scale mode for benchmarks. See docs/sim.md.

Modules: ``process`` (the model), ``layout`` (where each value lives), ``bank`` (Modbus memory and the
PDU protocol), ``modbus_server`` (MBAP over TCP, transport faults), ``plant_registers`` (model ↔
registers), ``scale`` (N × M changing floats), ``opcua_server``, ``contract`` (the matching contract),
``plant`` (``SimPlant``, all of it together), ``commands`` (``seam sim``).
"""

from otseam.sim.bank import Identity, RegisterBank, Unit
from otseam.sim.modbus_server import Faults, ModbusTcpServer
from otseam.sim.plant import SimPlant
from otseam.sim.process import WaterPlant
from otseam.sim.scale import ScaleSim

__all__ = ["Faults", "Identity", "ModbusTcpServer", "RegisterBank", "ScaleSim", "SimPlant", "Unit", "WaterPlant"]
