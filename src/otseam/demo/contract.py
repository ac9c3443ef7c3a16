"""The demo's contract: the sim's two-node contract plus the command path, the OPC UA replica, the
capture of the OT node's own Modbus traffic and the three demo people.

Built on :func:`otseam.sim.contract.build_contract` so that the plant, its points and its conduits are
exactly those `seam sim --contract` prints; only what the demo adds is written here.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from otseam.sim.contract import DIODE_KEY, build_contract, render

#: The people who sign in to the demo's consoles: (person id, user name, what they do in the demo).
DEMO_USERS: tuple[tuple[str, str, str], ...] = (
    ("ot-control", "ot-engineer", "OT engineer: approves setpoint changes on the plant's side"),
    ("it-analyst", "it-analyst", "IT analyst: watches values, requests setpoint changes"),
    ("seam-owner", "seam-owner", "seam owner: owns the interface, approves as the second person"),
)

#: The command the demo walks through: the chlorine dose setpoint of the treated-water PLC.
DEMO_COMMAND = "set-chlorine-dose"
TLS_DIR = "tls"
#: Where the OPC UA replica listens (path part of the endpoint).
OPCUA_REPLICA_PATH = "/seam"


@dataclass(frozen=True, slots=True)
class DemoPorts:
    """The loopback ports of one demo: chosen free on the first run, read back from the contract after."""

    modbus: int
    opcua: int
    diode: int
    replica: int
    command: int
    opcua_replica: int


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports free on ``host`` right now (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def can_capture() -> str | None:
    """None when this process may open a packet socket (CAP_NET_RAW); otherwise why not."""
    family = getattr(socket, "AF_PACKET", None)
    if family is None:
        return "this system has no packet sockets (AF_PACKET): capture needs Linux"
    try:
        sock = socket.socket(family, socket.SOCK_RAW, socket.htons(0x0003))
    except PermissionError:
        return "this process may not capture packets (it lacks CAP_NET_RAW)"
    except OSError as exc:
        return f"packet capture is unavailable here: {exc.strerror or exc}"
    sock.close()
    return None


def build_demo_contract(ports: DemoPorts, *, capture: bool, mqtt: str | None, opcua_device: bool | None = None) -> str:
    """The demo contract as YAML text, for ``ports``; ``capture`` adds the capture source on loopback."""
    contract = build_contract(
        "127.0.0.1",
        ports.modbus,
        ports.opcua,
        diode_port=ports.diode,
        replica_port=ports.replica,
        mqtt=mqtt,
        opcua_device=opcua_device,
    )
    contract["site"]["description"] = "The simulated water plant of 'seam demo': two nodes on this machine"
    people: list[dict[str, Any]] = contract["people"]
    people.insert(3, {"id": "it-analyst", "name": "IT analyst", "side": "it", "role": "energy analyst"})
    for conduit in contract["conduits"]:
        if conduit["id"] == "commands-in":
            conduit["ports"] = [ports.command]
    # Anyone may ask; the plant's control engineer and the seam owner both sign before the OT node
    # writes. No time window, so that the demo works at any hour; a plant sets one.
    for command in contract["commands"]:
        if command["id"] == DEMO_COMMAND:
            command.pop("window", None)
            command["rate"] = "20/h"
            command["approvers"] = [
                {"side": "ot", "role": "control engineer"},
                {"side": "seam", "role": "interface owner"},
            ]
    sources: list[dict[str, Any]] = contract["sources"]
    sources.append(
        {
            "id": "command-outbox",
            "type": "command_outbox",
            "node": "it-gateway",
            "conduit": "commands-in",
            "owner": "seam-owner",
            "options": {
                "listen": f"127.0.0.1:{ports.command}",
                "cert": f"{TLS_DIR}/it-gateway.pem",
                "key": f"{TLS_DIR}/it-gateway.key",
                "ca": f"{TLS_DIR}/ca.pem",
                "allowed_peers": ["ot-edge"],
            },
        }
    )
    sources.append(
        {
            "id": "command-executor",
            "type": "command_executor",
            "node": "ot-edge",
            "conduit": "commands-in",
            "owner": "ot-control",
            "options": {
                "connect": f"127.0.0.1:{ports.command}",
                "cert": f"{TLS_DIR}/ot-edge.pem",
                "key": f"{TLS_DIR}/ot-edge.key",
                "ca": f"{TLS_DIR}/ca.pem",
                "interval": 1.0,
            },
        }
    )
    if capture:
        sources.append(
            {
                "id": "own-traffic",
                "type": "capture",
                "node": "ot-edge",
                "owner": "ot-control",
                # On loopback every part has the address 127.0.0.1: the OT node's own polling is the
                # master the capture must expect (on a plant's span port, the edge's address).
                "options": {
                    "interface": "lo",
                    "modbus_ports": [ports.modbus],
                    "opcua_ports": [ports.opcua],
                    "allow_masters": ["127.0.0.1"],
                },
            }
        )
    contract["sinks"].append(
        {
            "id": "opcua-replica",
            "type": "opcua_server",
            "node": "it-gateway",
            "owner": "seam-owner",
            "options": {
                "endpoint": f"opc.tcp://127.0.0.1:{ports.opcua_replica}{OPCUA_REPLICA_PATH}",
                "security_policies": ["None"],
                "anonymous": True,
                "historian": "gateway-history",
            },
        }
    )
    notes = [
        "Written by 'seam demo' on its first run and never overwritten: edit it, the nodes reload it.",
        "Demo only: the OPC UA replica takes anonymous clients without encryption, on loopback; a plant",
        "gives it certificates and users (see src/otseam/sinks/opcua_server/README.md).",
    ]
    if not capture:
        notes.append("No capture source: this process could not capture packets when the contract was written.")
    return render(contract, notes).replace(
        "# The contract of the simulated plant started by 'seam sim' with the same options.\n",
        "# The contract of 'seam demo': the simulated plant of 'seam sim', an OT node and an IT node.\n",
        1,
    )


def _port(url: str) -> int | None:
    try:
        return urlparse(url).port
    except ValueError:
        return None


def ports_of(contract: dict[str, Any]) -> DemoPorts:
    """The ports a (possibly edited) demo contract names; raises ValueError when one is missing."""
    found: dict[str, int | None] = dict.fromkeys(("modbus", "opcua", "diode", "replica", "command", "opcua_replica"))
    for device in contract.get("devices") or []:
        if device.get("driver") == "modbus" and found["modbus"] is None:
            found["modbus"] = _port(f"//{str(device.get('endpoint', '')).split('://', 1)[-1]}")
        if device.get("driver") == "opcua" and found["opcua"] is None:
            found["opcua"] = _port(str(device.get("endpoint", "")))
    for conduit in contract.get("conduits") or []:
        if conduit.get("id") == "control-to-edge" and found["opcua"] is None and len(conduit.get("ports") or []) > 1:
            found["opcua"] = int(conduit["ports"][1])
    for item in list(contract.get("sources") or []) + list(contract.get("sinks") or []):
        options = item.get("options") or {}
        kind = item.get("type")
        if kind == "diode_receive" and found["diode"] is None:
            found["diode"] = _port(f"//{options.get('listen', '')}")
        elif kind == "modbus_replica" and found["replica"] is None:
            found["replica"] = _port(f"//{options.get('listen', '')}")
        elif kind == "command_outbox" and found["command"] is None:
            found["command"] = _port(f"//{options.get('listen', '')}")
        elif kind == "opcua_server" and found["opcua_replica"] is None:
            found["opcua_replica"] = _port(str(options.get("endpoint", "")))
    missing = [name for name in ("modbus", "diode") if found[name] is None]
    if missing:
        raise ValueError(f"it names no {' or '.join(missing)} port")
    # Parts an edit removed keep a port of their own, unused; the sim's OPC UA server needs one anyway.
    spare = iter(free_ports(6))
    values = {name: value if value is not None else next(spare) for name, value in found.items()}
    return DemoPorts(**values)


__all__ = ["DEMO_COMMAND", "DEMO_USERS", "DIODE_KEY", "DemoPorts", "build_demo_contract", "can_capture", "ports_of"]
