"""`seam demo` as a newcomer runs it: one command, a simulated plant, two nodes, two consoles, the demo
people, a setpoint change by two people, and a clean stop with nothing left running."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from ruamel.yaml import YAML

from otseam.contract import load
from otseam.demo.commands import DemoError, prepare_contract
from tests.control.node import Client
from tests.demo.seam_cli import seam
from tests.support.servers import mosquitto
from tests.support.wait import wait_until

_CONSOLE = re.compile(r"(IT|OT) console\s+(http://127\.0\.0\.1:\d+)/")
_USER = re.compile(r"^\s+(ot-engineer|it-analyst|seam-owner)\s+(\S+)\s", re.MULTILINE)


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid``, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Demo:
    def __init__(self, cwd: Path, *extra: str) -> None:
        self.cwd = cwd
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "otseam.cli", "demo", "--http", "127.0.0.1:0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                self.lines.append(line)

    @property
    def output(self) -> str:
        with self._lock:
            return "".join(self.lines)

    def wait_for(self, condition: object, what: str, within: float = 90.0) -> None:
        def exited() -> str | None:
            return None if self.process.poll() is None else f"seam demo exited ({self.process.returncode})"

        wait_until(condition, what, within, detail=lambda: self.output, abort=exited)  # type: ignore[arg-type]


def test_demo_runs_both_nodes_and_a_two_person_setpoint_change(tmp_path: Path) -> None:
    demo = Demo(tmp_path)
    try:
        demo.wait_for(lambda: "stop         Ctrl-C" in demo.output, "the demo's guide")
        text = demo.output
        consoles = dict(_CONSOLE.findall(text))
        passwords = dict(_USER.findall(text))
        assert set(consoles) == {"IT", "OT"} and set(passwords) == {"ot-engineer", "it-analyst", "seam-owner"}, text
        nodes = _children(demo.process.pid)
        assert len(nodes) >= 2, nodes
        contract = tmp_path / "seam-demo" / "seam.yaml"
        loaded = load(contract).contract
        assert [n.id for n in loaded.nodes] == ["ot-edge", "it-gateway"]
        assert {s.type for s in loaded.sources} >= {"diode_receive", "command_outbox", "command_executor"}
        assert {s.type for s in loaded.sinks} >= {"historian", "diode_send", "modbus_replica", "opcua_server"}
        # Passwords are stored as hashes only.
        users = (tmp_path / "seam-demo" / "seam-data" / "it-gateway" / "control" / "users.json").read_text()
        assert passwords["it-analyst"] not in users and "$argon2id$" in users

        # The console answers on both nodes with the demo users; wrong passwords are refused.
        for side, user in (("IT", "it-analyst"), ("OT", "ot-engineer"), ("IT", "seam-owner")):
            client = Client(consoles[side])
            assert client.login(user, "not the password").status == 401
            reply = client.login(user, passwords[user])
            assert reply.status == 200, reply.body
            session = client.get("/api/v1/session").json()
            assert session["user"] == user
            if user == "it-analyst":  # requests in the IT console; approving is the contract's approvers'
                assert "commands.request" in session["permissions"], session
        assert Client(consoles["IT"]).get("/static/try.html").status == 200

        # Values cross the one-way link into the IT node's historian, with good quality.
        def recorded() -> bool:
            result = seam(
                "query",
                "treated-water/dosing-setpoint",
                "--contract",
                contract,
                "--node",
                "it-gateway",
                "--from",
                "-10min",
                "--format",
                "json",
                cwd=tmp_path,
            )
            rows = json.loads(result.stdout)["rows"] if result.returncode == 0 else []
            return len(rows) >= 2 and all(row["quality"] == "good" for row in rows)

        demo.wait_for(recorded, "the dose setpoint in the IT node's historian")

        # The walk-through of the guide: the IT analyst asks, the OT engineer and the seam owner approve,
        # the OT node executes and reads back, and both sides audit it.
        keys = tmp_path / "seam-demo" / "keys"
        common = ["-c", contract, "--node", "it-gateway", "--json"]
        asked = seam(
            "command",
            "request",
            "set-chlorine-dose",
            "1.4",
            "--observed",
            "1.2",
            "--reason",
            "raise the dose",
            "--as",
            "it-analyst",
            "--key",
            keys / "it-analyst.key",
            *common,
            cwd=tmp_path,
        )
        assert asked.returncode == 0, asked.stderr
        request_id = json.loads(asked.stdout)["document"]["id"]
        for person in ("ot-control", "seam-owner"):
            approved = seam(
                "command", "approve", request_id, "--as", person, "--key", keys / f"{person}.key", *common, cwd=tmp_path
            )
            assert approved.returncode == 0, approved.stderr

        def outcome() -> dict[str, object] | None:
            shown = seam("command", "show", request_id, "--as", "seam-owner", *common, cwd=tmp_path)
            view = json.loads(shown.stdout) if shown.returncode == 0 else {}
            found = view.get("outcome")
            return found if isinstance(found, dict) else None

        demo.wait_for(outcome, "the OT node's report of the command")
        result = outcome()
        assert result is not None and result["status"] == "executed", result
        for node in ("ot-edge", "it-gateway"):
            verified = seam("audit", "verify", "-c", contract, "--node", node, cwd=tmp_path)
            assert verified.returncode == 0 and verified.stdout.startswith("ok: "), verified.stdout + verified.stderr

        def read_back() -> bool:
            result = seam(
                "query",
                "treated-water/dosing-setpoint",
                "--contract",
                contract,
                "--node",
                "it-gateway",
                "--from",
                "-1min",
                "--format",
                "json",
                cwd=tmp_path,
            )
            rows = json.loads(result.stdout)["rows"] if result.returncode == 0 else []
            return bool(rows) and abs(float(rows[-1]["value"]) - 1.4) < 1e-6

        demo.wait_for(read_back, "the new setpoint, read from the plant, in the IT historian")

        # The runbook's backfill command, as written, against the running OT node.
        replay = seam(
            "diode", "replay", "--contract", contract, "--from-offset", "0", "--to-offset", "50", cwd=tmp_path
        )
        assert replay.returncode == 0, replay.stdout + replay.stderr
    finally:
        nodes = _children(demo.process.pid)
        demo.process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            demo.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            demo.process.kill()
            for pid in nodes:
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
            demo.process.wait()
    assert demo.process.returncode == 0, demo.output
    assert not [pid for pid in nodes if _alive(pid)], "processes left running after the demo stopped"
    text = demo.output
    assert "Traceback" not in text
    assert "WARNING" not in text and "ERROR" not in text, text
    for log in ("ot-edge.log", "it-gateway.log"):
        assert "stopped" in (tmp_path / "seam-demo" / "logs" / log).read_text().splitlines()[-1]


def test_with_mqtt_it_publishes_sparkplug_and_sigterm_stops_everything(tmp_path: Path) -> None:
    topics: list[str] = []
    with mosquitto() as broker:
        client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        client.on_connect = lambda c, *_: c.subscribe("spBv1.0/#")
        client.on_message = lambda _c, _u, message: topics.append(message.topic)
        client.connect(broker.host, broker.port)
        client.loop_start()
        demo = Demo(tmp_path, "--mqtt", f"mqtt://{broker.host}:{broker.port}")
        try:
            demo.wait_for(lambda: "stop         Ctrl-C" in demo.output, "the demo's guide")
            nodes = _children(demo.process.pid)
            assert len(nodes) >= 2
            # The IT node publishes the plant as a Sparkplug B edge node: births, then data.
            demo.wait_for(
                lambda: {"NBIRTH", "DBIRTH", "DDATA"} <= {t.split("/")[2] for t in list(topics)},
                "Sparkplug B births and data from the IT node",
            )
            assert all(t.startswith("spBv1.0/sim-water/") for t in topics), topics[:5]
        finally:
            demo.process.send_signal(signal.SIGTERM)
            demo.process.wait(timeout=60)
            client.loop_stop()
            client.disconnect()
    assert demo.process.returncode == 0, demo.output
    wait_until(lambda: not [p for p in nodes if _alive(p)], "every node stopped", 10)


def test_an_edited_contract_survives_a_restart(tmp_path: Path) -> None:
    path, ports, notes = prepare_contract(tmp_path, None, fresh=False)
    assert notes[0].startswith("wrote")
    yaml = YAML()
    data = yaml.load(path)
    data["site"]["description"] = "Edited by the plant"
    with path.open("w") as out:
        yaml.dump(data, out)
    again, ports_again, notes = prepare_contract(tmp_path, None, fresh=False)
    assert again == path and ports_again == ports
    assert notes[0].startswith("kept")
    assert load(path).contract.site.description == "Edited by the plant"
    # Asking for Sparkplug on a contract without it: one clear message, the file untouched.
    with pytest.raises(DemoError, match="no sparkplug sink"):
        prepare_contract(tmp_path, "mqtt://127.0.0.1:1883", fresh=False)
    assert load(path).contract.site.description == "Edited by the plant"
    # A broken edit is named with its place, not overwritten.
    path.write_text(path.read_text().replace("version: 1", "version: [", 1))
    with pytest.raises(DemoError, match=r"seam\.yaml:\d+"):
        prepare_contract(tmp_path, None, fresh=False)
    # --fresh writes a new one, with Sparkplug when asked.
    path, _, notes = prepare_contract(tmp_path, "mqtt://127.0.0.1:1883", fresh=True)
    assert notes[0].startswith("wrote")
    assert "sparkplug" in {s.type for s in load(path).contract.sinks}


def test_without_cap_net_raw_the_demo_leaves_capture_out_and_says_why(tmp_path: Path) -> None:
    # The same preparation `seam demo` does, in a process that lost CAP_NET_RAW (setpriv, util-linux).
    script = (
        "import sys; from pathlib import Path; from otseam.demo.commands import prepare_contract; "
        "path, _, notes = prepare_contract(Path(sys.argv[1]), None, fresh=False); print('\\n'.join(notes))"
    )
    result = subprocess.run(
        ["setpriv", "--inh-caps=-net_raw", "--bounding-set=-net_raw", sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert result.returncode == 0, result.stderr
    assert "capture: this process may not capture packets (it lacks CAP_NET_RAW)" in result.stdout
    loaded = load(tmp_path / "seam.yaml").contract
    assert "capture" not in {s.type for s in loaded.sources}
    assert {"command_outbox", "command_executor", "diode_receive"} <= {s.type for s in loaded.sources}


def test_a_console_port_in_use_says_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            # The OT console on any free port: its default, the next port, may be another test's right now.
            [
                sys.executable,
                "-m",
                "otseam.cli",
                "demo",
                "--dir",
                str(tmp_path / "d"),
                "--http",
                f"127.0.0.1:{port}",
                "--ot-http",
                "127.0.0.1:0",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"127.0.0.1:{port} is in use" in result.stderr and "--http 127.0.0.1:0" in result.stderr, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "d" / "seam.yaml").exists()
