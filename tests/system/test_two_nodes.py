"""The two-sided system, end to end: one contract, two nodes, two hosts joined by a one-way link.

The OT host (a network namespace) runs the simulated plant and `seam run --node ot-edge` (polling,
journal, local history, diode send). The IT host runs `seam run --node it-gateway` (diode receive,
history, the read-only Modbus replica, Sparkplug B to a Mosquitto broker) and `seam host` storing what
the gateway publishes. Both nodes run the same file. The test checks that every sample the edge
recorded arrives once on the IT side, that `seam query --node it-gateway` shows it, that IT's Modbus
clients read the replica, and that not one frame went from the IT host to the OT host.
"""

from __future__ import annotations

import collections
import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from otseam.diode.config import write_new_key
from otseam.sim.contract import DIODE_KEY, build_contract, render
from tests.support.netns import IT_ADDRESS, OT_ADDRESS, mac_of, namespace_pair
from tests.support.wait import wait_until

SEAM = [sys.executable, "-m", "otseam.cli"]
MODBUS_PORT, BROKER_PORT, REPLICA_PORT, DIODE_PORT = 5020, 1883, 5502, 7400


def in_namespace(namespace: str, args: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            ["ip", "netns", "exec", namespace, *args], stdout=out, stderr=subprocess.STDOUT, cwd=cwd
        )


def wait(condition: Callable[[], bool], what: str, logs: list[Path], within: float = 90.0) -> None:
    def tails() -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs if p.exists())

    wait_until(condition, what, within, interval=0.1, detail=tails)


def stop(process: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM, within: float = 60.0) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(within)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"{process.args} did not stop on {sig.name}") from None


def listening(namespace: str, port: int) -> bool:
    sockets = subprocess.run(["ip", "netns", "exec", namespace, "ss", "-Hltn"], capture_output=True, text=True)
    return f":{port} " in sockets.stdout


def history(db: Path) -> list[tuple[Any, ...]]:
    """Every sample a historian holds, as (point, source time, value, quality)."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db) as conn:
            return list(
                conn.execute("SELECT p.key, s.ts, s.value, s.quality FROM samples s JOIN points p ON p.id = s.point")
            )
    except sqlite3.OperationalError:  # the sink has not created its tables yet
        return []


def sparkplug_metrics(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute("SELECT count(*) FROM sparkplug_metrics WHERE device != ''").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def two_node_contract() -> str:
    contract = build_contract(
        "127.0.0.1", MODBUS_PORT, None, 0.2, replica_port=REPLICA_PORT, mqtt=f"mqtt://127.0.0.1:{BROKER_PORT}"
    )
    # The one-way link crosses between the hosts; everything else stays on each host's own loopback.
    for sink in contract["sinks"]:
        if sink["type"] == "diode_send":
            sink["options"].update(target=f"{IT_ADDRESS}:{DIODE_PORT}", bind=OT_ADDRESS, snapshot_interval="2s")
    contract["sources"][0]["options"]["listen"] = f"{IT_ADDRESS}:{DIODE_PORT}"
    # The edge polls the PLCs from its host's loopback: that is the master the contract allows.
    for device in contract["devices"]:
        device["monitor"] = {"allowed_masters": ["127.0.0.1"]}
    # The edge also watches its own Modbus traffic (its host's loopback is where it polls the PLCs): the
    # monitor's inventory events go into its journal and across the link like any other record.
    contract["sources"].append(
        {
            "id": "own-traffic",
            "type": "capture",
            "node": "ot-edge",
            "owner": "ot-control",
            "options": {"interface": "lo", "modbus_ports": [MODBUS_PORT], "opcua_ports": [4840]},
        }
    )
    return render(contract)


def events(db: Path, kind: str) -> list[str]:
    """The origins of the events of ``kind`` a historian holds."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db) as conn:
            return [row[0] for row in conn.execute("SELECT origin FROM events WHERE kind = ?", (kind,))]
    except sqlite3.OperationalError:
        return []


def test_one_contract_two_nodes_one_way(tmp_path: Path) -> None:
    (tmp_path / "seam.yaml").write_text(two_node_contract())
    write_new_key(tmp_path / DIODE_KEY)
    (tmp_path / "mosquitto.conf").write_text(f"listener {BROKER_PORT} 127.0.0.1\nallow_anonymous true\n")
    logs = {name: tmp_path / f"{name}.log" for name in ("sim", "ot", "it", "broker", "host", "tcpdump")}
    ot_db = tmp_path / "seam-data" / "ot-edge" / "local-history.db"
    it_db = tmp_path / "seam-data" / "it-gateway" / "gateway-history.db"
    host_db = tmp_path / "host.db"
    pcap = tmp_path / "link.pcap"
    processes: list[subprocess.Popen[bytes]] = []
    with namespace_pair() as (ot, it, ot_dev, it_dev):
        try:
            tcpdump = in_namespace(
                ot, ["tcpdump", "-i", ot_dev, "-n", "-U", "-w", str(pcap)], logs["tcpdump"], tmp_path
            )
            processes.append(tcpdump)
            wait(lambda: "listening on" in logs["tcpdump"].read_text(errors="replace"), "tcpdump", list(logs.values()))
            sim_args = [*SEAM, "sim", "--modbus-port", str(MODBUS_PORT), "--no-opcua", "--tick", "200ms"]
            processes.append(in_namespace(ot, sim_args, logs["sim"], tmp_path))
            # The edge starts once the PLCs answer: its first polls must not meet a simulator still starting
            # (on a loaded machine they did, and the history began with bad-comm samples).
            wait(lambda: listening(ot, MODBUS_PORT), "the simulator's Modbus port", list(logs.values()))
            processes.append(in_namespace(it, ["mosquitto", "-c", "mosquitto.conf"], logs["broker"], tmp_path))
            host_args = [*SEAM, "host", "--broker", f"127.0.0.1:{BROKER_PORT}", "--host-id", "scada", "--db", "host.db"]
            host = in_namespace(it, host_args, logs["host"], tmp_path)
            processes.append(host)
            run = [*SEAM, "run", "seam.yaml", "--http", "off", "--no-watch", "--status-interval", "2s", "--node"]
            gateway = in_namespace(it, [*run, "it-gateway"], logs["it"], tmp_path)
            processes.append(gateway)
            wait(
                lambda: (
                    "listening on" in logs["it"].read_text(errors="replace")
                    or "running " in logs["it"].read_text(errors="replace")
                ),
                "the gateway",
                list(logs.values()),
            )
            edge = in_namespace(ot, [*run, "ot-edge"], logs["ot"], tmp_path)
            processes.append(edge)

            wait(lambda: len(history(it_db)) > 300, "samples in the gateway's history", list(logs.values()))
            wait(lambda: sparkplug_metrics(host_db) > 100, "Sparkplug metrics stored by seam host", list(logs.values()))
            # The edge's capture saw the PLCs it polls: an inventory event, carried to the IT side too.
            wait(
                lambda: events(it_db, "inventory.new_asset"), "the edge's inventory on the IT side", list(logs.values())
            )
            replica = subprocess.run(
                ["ip", "netns", "exec", it, "mbpoll", "-1", "-q", "-a", "3", "-t", "3", "-r", "1", "-c", "2",
                 "-p", str(REPLICA_PORT), "127.0.0.1"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip

            # The edge stops first and drains its journal through the link; then everything it recorded
            # must be on the IT side, once.
            assert stop(edge) == 0, logs["ot"].read_text()
            expected = collections.Counter(history(ot_db))
            assert len(expected) > 300
            wait(lambda: collections.Counter(history(it_db)) == expected, "every sample on the IT side",
                 list(logs.values()), within=60)  # fmt: skip
            query = subprocess.run(
                [*SEAM, "query", "treated-water/tank2-level", "--contract", "seam.yaml", "--node", "it-gateway",
                 "--from", "-1h", "--format", "json"],
                capture_output=True, text=True, cwd=tmp_path, timeout=60,
            )  # fmt: skip
            assert stop(gateway) == 0, logs["it"].read_text()
            assert stop(host) == 0, logs["host"].read_text()
            stop(tcpdump, signal.SIGINT)
            ot_mac, it_mac = mac_of(ot, ot_dev), mac_of(it, it_dev)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()

    received = collections.Counter(history(it_db))
    assert received == expected and max(received.values()) == 1
    assert query.returncode == 0, query.stderr
    rows = json.loads(query.stdout)["rows"]
    # The query lists what the gateway holds for the point, sample for sample. Whether each poll was
    # answered is the driver's business: at load 15 the first poll came back bad-comm once even with
    # the simulator listening, and that sample is then rightly delivered and listed too.
    held = [(ts, quality == 0) for key, ts, _value, quality in received if key == "treated-water/tank2-level"]
    assert sorted((r["ts"], r["quality"] == "good") for r in rows) == sorted(held)
    assert any(r["quality"] == "good" for r in rows), rows[:10]
    assert replica.returncode == 0, replica.stdout + replica.stderr
    frames = subprocess.run(["tcpdump", "-r", str(pcap), "-n", "-e"], capture_output=True, text=True, check=True)
    sources = {line.split()[1] for line in frames.stdout.splitlines()}
    assert sources == {ot_mac}, f"a frame left the IT host: {sources - {ot_mac}} (IT is {it_mac})"
    assert "Traceback" not in logs["ot"].read_text() + logs["it"].read_text()
    # The polling is the edge's own, declared in the contract: the monitor raised no alert about it.
    assert events(ot_db, "alert") == [], events(ot_db, "alert")
    assert set(events(ot_db, "inventory.new_asset")) == set(events(it_db, "inventory.new_asset"))
