"""The contract that describes exactly what a running sim serves.

Built from the same layout tables that fill the registers and the OPC UA address space, so the two
cannot drift apart. The zones, conduits, people and objectives are those of a small, plausible water
plant: the PLCs (and the sim) in a level-1 control zone, Seam's edge in site operations (level 3), the
IT/OT DMZ at 3.5 and the enterprise at level 4.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any

from otseam.contract.units import format_duration
from otseam.sim.layout import OPCUA_PATH, POINTS, UNITS, PlantPoint, opcua_contract_type, opcua_points
from otseam.sim.yaml_text import dump

MAX_REGISTERS_PER_READ = 125

#: Who uses a value on the IT side: it tells both teams what depends on a point before it changes.
CONSUMERS: dict[str, list[str]] = {
    "Dosing.Residual": ["water-quality reporting", "regulator returns"],
    "Tank2.Level": ["distribution planning"],
    "Tank2.DeliveredVolume": ["billing", "leakage analysis"],
    "Plant.Name": ["asset register"],
}


def _people() -> list[dict[str, Any]]:
    return [
        {"id": "ot-control", "name": "Control engineer", "side": "ot", "role": "control engineer"},
        {"id": "ot-operator", "name": "Shift operator", "side": "ot", "role": "operator"},
        {"id": "it-data", "name": "Data platform engineer", "side": "it", "role": "data engineer"},
        {"id": "it-security", "name": "Security officer", "side": "it", "role": "security"},
        {"id": "seam-owner", "name": "Seam owner", "side": "seam", "role": "interface owner"},
    ]


def _zones_and_conduits(modbus_port: int, opcua_port: int | None, diode_port: int) -> tuple[list[Any], list[Any]]:
    zones = [
        {"id": "control", "name": "Plant control (PLCs)", "level": 1, "sl": 3, "owner": "ot-control"},
        {"id": "site-ops", "name": "Site operations (Seam edge)", "level": 3, "sl": 2, "owner": "ot-control"},
        {"id": "dmz", "name": "IT/OT DMZ", "level": 3.5, "sl": 2, "owner": "seam-owner"},
        {"id": "enterprise", "name": "Enterprise", "level": 4, "sl": 1, "owner": "it-data"},
    ]
    protocols = ["modbus-tcp"] + (["opc-ua"] if opcua_port is not None else [])
    ports = [modbus_port] + ([opcua_port] if opcua_port is not None else [])
    conduits = [
        {
            "id": "control-to-edge",
            "from": "control",
            "to": "site-ops",
            "direction": "two-way",
            "transport": "tcp",
            "protocols": protocols,
            "ports": [p for p in ports if p > 0],
            "owner": "ot-control",
            "justification": "Polling needs requests towards the PLCs; only the setpoints listed as commands are writable.",
        },
        {
            "id": "edge-to-dmz",
            "from": "site-ops",
            "to": "dmz",
            "direction": "one-way",
            "transport": "diode",
            "protocols": ["seam-diode"],
            "ports": [diode_port],
            "owner": "seam-owner",
            "description": "Seam's one-way link: the edge sends, the gateway receives, nothing comes back.",
        },
        {
            "id": "commands-in",
            "from": "dmz",
            "to": "site-ops",
            "direction": "two-way",
            "transport": "tls",
            "protocols": ["seam-command"],
            "ports": [8443],
            "owner": "seam-owner",
            "justification": "Approved setpoint changes only: the edge opens the connection (mutual TLS) and "
            "pulls requests that two people approved.",
        },
        {
            "id": "dmz-to-enterprise",
            "from": "dmz",
            "to": "enterprise",
            "direction": "two-way",
            "transport": "tls",
            "protocols": ["mqtt"],
            "ports": [8883],
            "owner": "it-data",
        },
    ]
    return zones, conduits


def _modbus_point(point: PlantPoint) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": point.point_id, "address": point.modbus_address, "type": point.type}
    if point.type in ("float32", "int32", "uint32") and point.byte_order != "ABCD":
        entry["byte_order"] = point.byte_order
    elif point.type in ("float32", "int32", "uint32"):
        entry["byte_order"] = "ABCD"
    if point.length:
        entry["length"] = point.length
    if point.factor != 1.0:
        entry["scale"] = {"factor": point.factor}
    if point.low is not None and point.high is not None:
        entry["range"] = {"low": point.low, "high": point.high}
    if point.eng_unit:
        entry["unit"] = point.eng_unit
    entry["description"] = point.description
    if point.name in CONSUMERS:
        entry["consumers"] = CONSUMERS[point.name]
    if point.writable:
        entry["writable"] = True
    return entry


def _plant_modbus_devices(endpoint: str, tick: float) -> list[dict[str, Any]]:
    devices = []
    for info in UNITS:
        points = [_modbus_point(p) for p in POINTS if p.unit == info.unit]
        # Status-word bits share an id with the coil of the same meaning: give them their own.
        seen: set[str] = set()
        for entry in points:
            if entry["id"] in seen:
                entry["id"] = f"{entry['id']}-bit"
            seen.add(entry["id"])
        devices.append(
            {
                "id": info.device_id,
                "driver": "modbus",
                "endpoint": endpoint,
                "unit": info.unit,
                "zone": "control",
                "owner": "ot-control",
                "description": info.description,
                "vendor": "Seam",
                "model": info.model,
                "poll": format_duration(tick),
                "constraints": {
                    "max_request_rate": "20/s",
                    "timeout": "2s",
                    "max_connections": 2,
                    "restart_tolerance": "planned",
                    "notes": "Simulated PLC; behaves like the real one would, including its register map limits.",
                },
                "points": points,
            }
        )
    return devices


def _scale_devices(endpoint: str, devices: int, points: int, tick: float) -> list[dict[str, Any]]:
    reads_per_poll = math.ceil(2 * points / MAX_REGISTERS_PER_READ)
    rate = max(20, math.ceil(4 * reads_per_poll / tick))
    out = []
    for index in range(devices):
        unit = index + 1
        entries = [
            {
                "id": "cycle" if j == 0 else f"p{j:05d}",
                "address": f"hr:{2 * j}",
                "type": "float32",
                "byte_order": "ABCD",
            }
            for j in range(points)
        ]
        out.append(
            {
                "id": f"dev{unit:03d}",
                "driver": "modbus",
                "endpoint": endpoint,
                "unit": unit,
                "zone": "control",
                "owner": "ot-control",
                "description": f"Scale-test device {unit}: {points} float32 points, all changing every cycle",
                "model": "SIM-SCALE",
                "poll": format_duration(tick),
                "constraints": {"max_request_rate": f"{rate}/s", "timeout": "2s", "max_connections": 1},
                "points": entries,
            }
        )
    return out


def _opcua_device(endpoint: str, tick: float) -> dict[str, Any]:
    points = []
    for point in opcua_points():
        entry: dict[str, Any] = {
            "id": point.point_id,
            "address": f"ns=2;s={point.name}",
            "type": opcua_contract_type(point),
        }
        if point.low is not None and point.high is not None:
            entry["range"] = {"low": point.low, "high": point.high}
        if point.eng_unit:
            entry["unit"] = point.eng_unit
        entry["description"] = point.description
        if point.writable:
            entry["writable"] = True
        points.append(entry)
    return {
        "id": "plant-opcua",
        "driver": "opcua",
        "endpoint": endpoint,
        "zone": "control",
        "owner": "ot-control",
        "description": "The plant's SCADA OPC UA server: the same process values in engineering units",
        "vendor": "Seam",
        "model": "SIM-OPCUA",
        "poll": format_duration(tick),
        # One read per point per poll at most (a driver may batch them): well within a SCADA server's means.
        "constraints": {"max_request_rate": "50/s", "timeout": "5s", "max_connections": 1},
        "points": points,
    }


#: The one-way link and the IT side's Modbus replica, on the sim's host.
DIODE_PORT = 7400
REPLICA_PORT = 5502
#: Relative to the contract file; `seam diode keygen seam-diode.key` writes it.
DIODE_KEY = "seam-diode.key"


def _sinks(host: str, diode_port: int, replica_port: int, mqtt: str | None) -> list[dict[str, Any]]:
    sinks: list[dict[str, Any]] = [
        # Relative paths of a historian are relative to the node's data directory.
        {"id": "local-history", "type": "historian", "node": "ot-edge", "owner": "ot-control"},
        {
            "id": "to-gateway",
            "type": "diode_send",
            "node": "ot-edge",
            "conduit": "edge-to-dmz",
            "owner": "seam-owner",
            "options": {"target": f"{host}:{diode_port}", "key_file": DIODE_KEY, "snapshot_interval": "10s"},
        },
        {"id": "gateway-history", "type": "historian", "node": "it-gateway", "owner": "seam-owner"},
        {
            "id": "modbus-replica",
            "type": "modbus_replica",
            "node": "it-gateway",
            "owner": "seam-owner",
            "options": {"listen": f"{host}:{replica_port}"},
        },
    ]
    if mqtt is not None:
        sinks.append(
            {
                "id": "sparkplug",
                "type": "sparkplug",
                "node": "it-gateway",
                "conduit": "dmz-to-enterprise",
                "owner": "it-data",
                "options": {"brokers": [mqtt], "group_id": "sim-water", "edge_node_id": "seam-gateway"},
            }
        )
    return sinks


def opcua_driver_installed() -> bool:
    """Whether ``seam run`` could poll an OPC UA device here (the driver is a separate plugin)."""
    return importlib.util.find_spec("otseam.drivers.opcua") is not None


def build_contract(
    host: str = "127.0.0.1",
    modbus_port: int = 5020,
    opcua_port: int | None = 4840,
    tick: float = 1.0,
    scale: tuple[int, int] | None = None,
    opcua_device: bool | None = None,
    diode_port: int = DIODE_PORT,
    replica_port: int = REPLICA_PORT,
    mqtt: str | None = None,
) -> dict[str, Any]:
    """The contract as plain data. ``opcua_port=None`` when the OPC UA server is off; ``scale`` is
    ``(devices, points)`` in scale mode.

    ``opcua_device``: list the OPC UA server as a device. By default only when the OPC UA driver is
    installed, so that ``seam run`` works on the printed contract as it is; :func:`render` then says
    in a comment what was left out and why.

    Two nodes: ``ot-edge`` (site operations) polls the plant, keeps its history and sends through the
    one-way link on ``diode_port``; ``it-gateway`` (the DMZ) receives it, keeps its own history and
    serves a read-only Modbus replica on ``replica_port``, and with ``mqtt`` also publishes Sparkplug B
    to that broker. Everything is on ``host``. Both nodes read the link's key from ``seam-diode.key``
    beside the contract (``seam diode keygen seam-diode.key``).
    """
    if opcua_device is None:
        opcua_device = opcua_driver_installed()
    modbus_endpoint = f"tcp://{host}:{modbus_port}"
    zones, conduits = _zones_and_conduits(modbus_port, opcua_port, diode_port)
    if scale is None:
        devices = _plant_modbus_devices(modbus_endpoint, tick)
    else:
        devices = _scale_devices(modbus_endpoint, scale[0], scale[1], tick)
    if opcua_port is not None and opcua_device:
        devices.append(_opcua_device(f"opc.tcp://{host}:{opcua_port}{OPCUA_PATH}", tick))
    for device in devices:
        device["node"] = "ot-edge"
    contract: dict[str, Any] = {
        "version": 1,
        "site": {
            "enterprise": "seam-demo",
            "site": "sim-water",
            "area": "treatment",
            "description": "The simulated water plant of 'seam sim'",
        },
        "people": _people(),
        "seam_owner": "seam-owner",
        "zones": zones,
        "conduits": conduits,
        "nodes": [
            {
                "id": "ot-edge",
                "zone": "site-ops",
                "description": "Seam's edge: polls the PLCs, sends through the diode",
            },
            {"id": "it-gateway", "zone": "dmz", "description": "Receives the diode; serves replicas to IT"},
        ],
        "devices": devices,
        "sources": [
            {
                "id": "from-edge",
                "type": "diode_receive",
                "node": "it-gateway",
                "conduit": "edge-to-dmz",
                "owner": "seam-owner",
                "options": {"listen": f"{host}:{diode_port}", "key_file": DIODE_KEY},
            }
        ],
        "sinks": _sinks(host, diode_port, replica_port, mqtt),
        "objectives": [
            {
                "id": "water-quality-visibility",
                "problem": "Water quality and tank levels are only visible on the SCADA screen in the control room.",
                "success": {
                    "ot": "The plant runs exactly as before: polling stays within each PLC's request rate and nothing writes to a PLC unapproved.",
                    "it": "Levels, flows and chlorine residual arrive within 5 s, with quality, for reporting and the regulator.",
                },
                "failure": {
                    "ot": "Any missed PLC scan, unexpected write or connection storm on the control network.",
                    "it": "Gaps in the history, or values shown as fresh while the plant link is down.",
                },
                "owner": "seam-owner",
            }
        ],
    }
    if scale is None:
        contract["commands"] = [
            {
                "id": "set-chlorine-dose",
                "point": "treated-water/dosing-setpoint",
                "description": "Adjust the chlorine dose on the water-quality team's request",
                "range": {"low": 0.5, "high": 2.0},
                "rate": "4/h",
                "window": "Mon-Fri 06:00-18:00",
                "conduit": "commands-in",
                "approvers": [{"side": "ot", "role": "operator"}, {"side": "it", "role": "data engineer"}],
                "owner": "ot-control",
            }
        ]
    return contract


def render(contract: dict[str, Any], notes: list[str] | tuple[str, ...] = ()) -> str:
    header = (
        "# The contract of the simulated plant started by 'seam sim' with the same options.\n"
        "# It describes exactly what the sim serves: endpoints, unit ids, addresses, types and byte orders.\n"
        "# Two nodes on this machine: 'seam run seam.yaml --node ot-edge' and '--node it-gateway'.\n"
        f"# Both read the one-way link's key from {DIODE_KEY}: 'seam diode keygen {DIODE_KEY}' first.\n"
    )
    header += "".join(f"# {note}\n" for note in notes)
    return header + dump(contract)


def omitted_opcua_note(endpoint: str) -> str:
    return (
        f"The sim's OPC UA server ({endpoint}) is not listed as a device: this installation has no OPC UA "
        "driver (otseam.drivers.opcua) for 'seam run' to poll it with."
    )
