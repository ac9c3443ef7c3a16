"""The three gateways of bench_peers.py: install (the peers, into bench/out/), configure, start.

Every gateway polls the same simulated PLCs (peers_sim.py: ``devices`` Modbus/TCP servers, unit 1,
``points`` uint32 tags ABCD at ``hr:0, hr:2, ...``, tag ``r<address>``) at the same period and
publishes every tag to the same Mosquitto at QoS 1, each in its best configuration for many tags:

* Seam: ``seam run --no-console`` (headless, as the peers run: /health and /metrics only) on a
  generated contract: the Modbus driver (reads merged into blocks of at most
  125 registers) and the Sparkplug B sink (QoS 1, the deviation its README names for a subscriber with
  a persistent session), through the journal (store-and-forward);
* ThingsBoard IoT Gateway: its Modbus connector with one "wide range" telemetry entry per device
  (``"address": "0-<last>"``, ``maxRegistersPerRequest: 124``: one request per 62 tags, not per tag),
  publishing to ``v1/gateway/telemetry``; its default in-memory storage;
* Node-RED: node-red-contrib-modbus, one ``modbus-read`` node per block of 124 registers (62 tags) and
  one ``modbus-client`` per PLC, a function node per PLC that turns the registers into ``{"r0": value,
  ...}``, and one ``mqtt out`` node; headless (no editor, no admin API, no HTTP server).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
TB_VERSION = "3.8.5"
#: The pymodbus its Modbus connector pins (it would otherwise pip-install it at its first start).
TB_EXTRA = ("pymodbus==3.9.2", "pyserial", "pyserial-asyncio")
NODE_RED_VERSION = "4.1.8"  # 5.x needs Node.js >= 22.9
#: 5.45.2 and 5.60.2 depend on a modbus-serial tarball hosted outside the npm registry.
NODE_RED_MODBUS_VERSION = "5.23.3"
BLOCK = 124  # registers per read for the peers (62 uint32 tags); Seam's driver plans its own blocks
#: The ThingsBoard gateway checks for updates on the internet at start; this keeps it on loopback.
NO_INTERNET = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1"}


@dataclass
class Setup:
    """What every gateway is given: the PLCs' ports, the poll period, the broker, its folder."""

    ports: list[int]
    points: int
    poll_ms: int
    broker_port: int
    workdir: Path


def run(command: list[str], log: Path, cwd: Path | None = None) -> str | None:
    """Run an install step; None when it worked, else the last lines of its output."""
    with log.open("a") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, check=False).returncode
    if code == 0:
        return None
    lines = [line for line in log.read_text().splitlines() if "WARNING: Location" not in line]
    return f"`{' '.join(command)}` exited {code}: " + " | ".join(lines[-4:])


def install_thingsboard() -> tuple[Path | None, str]:
    """(python of the venv, version) or (None, the error)."""
    venv = OUT / "tb-venv"
    python = venv / "bin" / "python"
    marker = venv / f".installed-{TB_VERSION}"
    if not marker.exists():
        log = OUT / "tb-install.log"
        error = run([sys.executable, "-m", "venv", "--clear", str(venv)], log) or run(
            [str(python), "-m", "pip", "install", "-q", f"thingsboard-gateway=={TB_VERSION}", *TB_EXTRA], log
        )
        if error:
            return None, error
        marker.touch()
    return python, f"thingsboard-gateway {TB_VERSION} (pymodbus 3.9.2)"


def install_node_red() -> tuple[Path | None, str]:
    """(red.js, version) or (None, the error)."""
    folder = OUT / "nodered"
    red = folder / "node_modules" / "node-red" / "red.js"
    marker = folder / f".installed-{NODE_RED_VERSION}-{NODE_RED_MODBUS_VERSION}"
    if shutil.which("node") is None:
        return None, "node (Node.js) is not installed"
    if not marker.exists():
        folder.mkdir(parents=True, exist_ok=True)
        error = run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", ".",
             f"node-red@{NODE_RED_VERSION}", f"node-red-contrib-modbus@{NODE_RED_MODBUS_VERSION}"],
            OUT / "nodered-install.log", cwd=folder,
        )  # fmt: skip
        if error:
            return None, error
        marker.touch()
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return red, f"Node-RED {NODE_RED_VERSION}, node-red-contrib-modbus {NODE_RED_MODBUS_VERSION}, Node.js {node}"


def blocks(points: int) -> list[tuple[int, int]]:
    """(first register, count) of the peers' reads: BLOCK registers each, the last one shorter."""
    registers = 2 * points
    return [(start, min(BLOCK, registers - start)) for start in range(0, registers, BLOCK)]


# --- Seam ------------------------------------------------------------------------------------------


CONTRACT_HEAD = """version: 1
site: {enterprise: bench, site: peers}
people: [{id: olga, name: Olga Ops, side: ot, role: control engineer},
         {id: sam, name: Sam Seam, side: seam, role: interface owner}]
seam_owner: sam
zones: [{id: plcs, level: 1, sl: 2, owner: olga}]
journal: {path: ./data/journal}
devices:"""


def seam_contract(setup: Setup) -> str:
    poll = f"{setup.poll_ms}ms"
    lines = [CONTRACT_HEAD]
    for number, port in enumerate(setup.ports, start=1):
        lines += [
            f"  - id: plc{number}",
            "    driver: modbus",
            f"    endpoint: tcp://127.0.0.1:{port}",
            "    unit: 1",
            "    zone: plcs",
            "    owner: olga",
            f"    poll: {poll}",
            "    constraints: {timeout: 2s}",
            "    points:",
        ]
        lines += [
            f"      - {{id: r{2 * j}, address: 'hr:{2 * j}', type: uint32, byte_order: ABCD}}"
            for j in range(setup.points)
        ]
    lines += [
        "sinks:",
        "  - id: mqtt",
        "    type: sparkplug",
        "    owner: sam",
        "    options:",
        f"      brokers: ['127.0.0.1:{setup.broker_port}']",
        "      group_id: bench",
        "      edge_node_id: seam",
        "      qos: 1",
        "      startup_delay: 0",
    ]
    return "\n".join(lines) + "\n"


def start_seam(setup: Setup) -> subprocess.Popen[bytes]:
    (setup.workdir / "seam.yaml").write_text(seam_contract(setup))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen(
        [sys.executable, "-m", "otseam.cli", "run", "seam.yaml", "--http", "127.0.0.1:0", "--no-console", "--no-watch"],
        cwd=setup.workdir, env=env, stdout=(setup.workdir / "seam.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


# --- ThingsBoard IoT Gateway -----------------------------------------------------------------------


def thingsboard_config(setup: Setup) -> tuple[dict[str, object], dict[str, object]]:
    gateway = {
        "thingsboard": {
            "host": "127.0.0.1",
            "port": setup.broker_port,
            "remoteShell": False,
            "remoteConfiguration": False,
            "statistics": {"enable": False, "statsSendPeriodInSeconds": 3600},
            "deviceFiltering": {"enable": False},
            "maxPayloadSizeBytes": 65536,
            "minPackSendDelayMS": 50,
            "minPackSizeToSend": 500,
            "checkConnectorsConfigurationInSeconds": 3600,
            "handleDeviceRenaming": False,
            "security": {"type": "accessToken", "accessToken": "bench"},
            "qos": 1,
            "reportStrategy": {"type": "ON_RECEIVED"},
            "checkingDeviceActivity": {"checkDeviceInactivity": False},
        },
        "storage": {"type": "memory", "read_records_count": 100, "max_records_count": 100000},
        "grpc": {"enabled": False},
        "connectors": [{"type": "modbus", "name": "bench", "configuration": "modbus.json"}],
    }
    slaves = [thingsboard_slave(setup, number, port) for number, port in enumerate(setup.ports, start=1)]
    return gateway, {"master": {"slaves": slaves}}


def thingsboard_slave(setup: Setup, number: int, port: int) -> dict[str, object]:
    return {
        "host": "127.0.0.1", "port": port, "type": "tcp", "method": "socket", "unitId": 1,
        "deviceName": f"plc{number}", "deviceType": "plc", "timeout": 2, "byteOrder": "BIG",
        "wordOrder": "BIG", "retries": 1, "retryOnEmpty": False, "retryOnInvalid": False,
        "pollPeriod": setup.poll_ms, "connectAttemptTimeMs": 1000, "connectAttemptCount": 5,
        "waitAfterFailedAttemptsMs": 5000, "attributes": [], "attributeUpdates": [], "rpc": [],
        "timeseries": [
            {"tag": "r${address}", "type": "32uint", "address": f"0-{2 * setup.points - 1}", "objectsCount": 2,
             "functionCode": 3, "maxRegistersPerRequest": BLOCK}
        ],
    }  # fmt: skip


def start_thingsboard(setup: Setup, python: Path) -> subprocess.Popen[bytes]:
    config = setup.workdir / "config"
    config.mkdir(parents=True, exist_ok=True)
    (setup.workdir / "logs").mkdir(exist_ok=True)
    gateway, modbus = thingsboard_config(setup)
    (config / "tb_gateway.json").write_text(json.dumps(gateway, indent=1))
    (config / "modbus.json").write_text(json.dumps(modbus, indent=1))
    shipped = python.parents[1] / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    logs = next(shipped.glob("site-packages/thingsboard_gateway/config/logs.json"))
    shutil.copy(logs, config / "logs.json")  # its own logging set-up, unchanged (INFO to ./logs/)
    env = {**os.environ, **NO_INTERNET, "TB_GW_CONFIG_DIR": str(config)}
    return subprocess.Popen(
        [str(python), "-c", "from thingsboard_gateway.tb_gateway import daemon; daemon()"],
        cwd=setup.workdir, env=env, stdout=(setup.workdir / "tb.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


# --- Node-RED --------------------------------------------------------------------------------------

#: Registers to ``{"r<address>": uint32}``; msg.topic is "<device>/<first register>" (the read node's topic).
DECODE = """const [device, first] = msg.topic.split("/");
const r = msg.payload, out = {};
let address = Number(first);
for (let i = 0; i + 1 < r.length; i += 2, address += 2) out["r" + address] = (r[i] * 65536 + r[i + 1]);
return {topic: "bench/nodered/" + device, payload: out};"""


def node_red_flow(setup: Setup) -> list[dict[str, object]]:
    flow: list[dict[str, object]] = [
        {"id": "tab", "type": "tab", "label": "bench"},
        {"id": "broker", "type": "mqtt-broker", "name": "bench", "broker": "127.0.0.1",
         "port": str(setup.broker_port), "clientid": "", "autoConnect": True, "usetls": False,
         "protocolVersion": "4", "keepalive": "60", "cleansession": True, "autoUnsubscribe": True},
        {"id": "publish", "type": "mqtt out", "z": "tab", "name": "", "topic": "", "qos": "1",
         "retain": "false", "broker": "broker", "wires": []},
    ]  # fmt: skip
    for number, port in enumerate(setup.ports, start=1):
        client, decode = f"client{number}", f"decode{number}"
        flow += [
            {"id": client, "type": "modbus-client", "name": f"plc{number}", "clienttype": "tcp",
             "bufferCommands": True, "stateLogEnabled": False, "queueLogEnabled": False, "failureLogEnabled": False,
             "tcpHost": "127.0.0.1", "tcpPort": str(port), "tcpType": "DEFAULT", "unit_id": "1",
             "commandDelay": "1", "clientTimeout": "2000", "reconnectOnTimeout": True, "reconnectTimeout": "2000",
             "parallelUnitIdsAllowed": True},
            {"id": decode, "type": "function", "z": "tab", "name": f"decode plc{number}", "func": DECODE,
             "outputs": 1, "wires": [["publish"]]},
        ]  # fmt: skip
        for first, count in blocks(setup.points):
            flow.append(
                {"id": f"read{number}_{first}", "type": "modbus-read", "z": "tab", "name": "",
                 "topic": f"plc{number}/{first}", "showStatusActivities": False, "logIOActivities": False,
                 "showErrors": False, "showWarnings": False, "unitid": "1", "dataType": "HoldingRegister",
                 "adr": str(first), "quantity": str(count), "rate": str(setup.poll_ms), "rateUnit": "ms",
                 "delayOnStart": False, "startDelayTime": "", "server": client, "useIOFile": False,
                 "ioFile": "", "useIOForPayload": False, "emptyMsgOnFail": False, "wires": [[decode], []]}
            )  # fmt: skip
    return flow


NODE_RED_SETTINGS = """module.exports = {
  flowFile: "flows.json",
  httpAdminRoot: false,
  httpNodeRoot: false,
  disableEditor: true,
  credentialSecret: false,
  logging: {console: {level: "warn", metrics: false, audit: false}},
  editorTheme: {projects: {enabled: false}},
  externalModules: {autoInstall: false, palette: {allowInstall: false}, modules: {allowInstall: false}},
};
"""


def start_node_red(setup: Setup, red: Path) -> subprocess.Popen[bytes]:
    user = setup.workdir / "user"
    user.mkdir(parents=True, exist_ok=True)
    (user / "flows.json").write_text(json.dumps(node_red_flow(setup), indent=1))
    (user / "settings.js").write_text(NODE_RED_SETTINGS)
    # The palette is found from the user folder's node_modules, as after an install from the editor.
    link = user / "node_modules"
    if not link.exists():
        link.symlink_to(red.parents[1])
    return subprocess.Popen(
        ["node", str(red), "--userDir", str(user), "--settings", str(user / "settings.js"), "flows.json"],
        cwd=setup.workdir, stdout=(setup.workdir / "node-red.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
