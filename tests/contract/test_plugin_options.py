"""`seam check` refuses everything `seam run` would: each plugin's options, through both, agree.

Every plugin's sample configuration, and a table of misspelt, mistyped and missing options, go through
the `seam check` command and through the run side's plan (``Supervisor.prepare``, which instantiates
every plugin). Both must accept the samples, and both must refuse every mistake, `seam check` at the
line and column of the offending key.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from ruamel.yaml import YAML
from typer.testing import CliRunner

from otseam.control.authority.pki import issue, make_ca
from otseam.diode.config import write_new_key
from otseam.runtime.supervisor import StartupError, Supervisor
from tests.contract.helpers import cli, to_text

SRC = Path(__file__).resolve().parents[2] / "src" / "otseam"
SAMPLES = {
    "modbus": SRC / "drivers" / "modbus" / "sample.yaml",
    "opcua": SRC / "drivers" / "opcua" / "sample.yaml",
    "generator": SRC / "drivers" / "generator" / "sample.yaml",
    "historian": SRC / "sinks" / "historian" / "example.yaml",
    "postgres": SRC / "sinks" / "postgres" / "example.yaml",
    "sparkplug": SRC / "sinks" / "sparkplug" / "sample.yaml",
    "uns_json": SRC / "sinks" / "uns_json" / "sample.yaml",
    "diode_send": SRC / "sinks" / "diode_send" / "sample.yaml",
    "file": SRC / "sinks" / "file" / "sample.yaml",
    "modbus_replica": SRC / "sinks" / "modbus_replica" / "sample.yaml",
    "diode_receive": SRC / "sources" / "diode_receive" / "sample.yaml",
    "sparkplug_host": SRC / "sources" / "sparkplug_host" / "sample.yaml",
    "nats": SRC / "sinks" / "nats" / "sample.yaml",
    "fleet_ingest": SRC / "sources" / "fleet_ingest" / "sample.yaml",
    "opcua_server": SRC / "sinks" / "opcua_server" / "sample.yaml",
    "capture": SRC / "sources" / "capture" / "sample.yaml",
    "command_executor": SRC / "sources" / "command_executor" / "sample.yaml",
    "command_outbox": SRC / "sources" / "command_outbox" / "sample.yaml",
}

BASE: dict[str, Any] = {
    "version": 1,
    "site": {"enterprise": "acme", "site": "plant1"},
    "people": [
        {"id": "olga", "name": "Olga Ops", "side": "ot", "role": "control engineer"},
        {"id": "sam", "name": "Sam Seam", "side": "seam", "role": "interface owner"},
    ],
    "seam_owner": "sam",
    "zones": [
        {"id": "cell", "level": 3, "sl": 2, "owner": "olga"},
        {"id": "dmz", "level": 3.5, "sl": 2, "owner": "sam"},
    ],
    # The command sources need the two-way conduit they serve.
    "conduits": [
        {
            "id": "commands-in",
            "from": "dmz",
            "to": "cell",
            "direction": "two-way",
            "transport": "tls",
            "protocols": ["seam-command"],
            "ports": [8443],
            "owner": "sam",
        },
    ],
    "devices": [
        {
            "id": "gen",
            "driver": "generator",
            "endpoint": "generator://gen",
            "zone": "cell",
            "owner": "olga",
            "points": [{"id": "level", "address": "sine"}],
        }
    ],
    "sinks": [],
}

runner = CliRunner()
APP = cli()


def _site_files(tmp: Path) -> None:
    """Real certificates and a real users file where the samples name them: plugins read these when
    they are created, and a placeholder would be refused by check and run alike."""
    tls = tmp / "tls"
    if (tls / "ca.pem").exists():
        return
    make_ca(tls)
    for name, server in (("ot-edge", False), ("dmz", True), ("edge", False)):
        issue(tls, name, ["127.0.0.1"], tls, server=server)
    (tmp / "opcua").mkdir(exist_ok=True)
    (tmp / "opcua" / "users").write_text("mes:" + PasswordHasher().hash("not-a-real-password") + "\n")


def _localise(node: Any, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The samples name files under /etc/seam and environment variables of a real site: here they are
    made to exist, so that what remains to judge is the options themselves."""
    _site_files(tmp)
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in ("password_env", "dsn_env") and isinstance(value, str):
                monkeypatch.setenv(value, "postgresql://seam@127.0.0.1:1/x" if key == "dsn_env" else "secret")
            out[key] = _localise(value, tmp, monkeypatch)
        return out
    if isinstance(node, list):
        return [_localise(item, tmp, monkeypatch) for item in node]
    if isinstance(node, str) and node.startswith("/etc/seam/"):
        local = tmp / node.removeprefix("/etc/seam/")
        local.parent.mkdir(parents=True, exist_ok=True)
        if not local.exists():
            if local.name.endswith(".key") and "diode" in local.name:
                write_new_key(local)
            else:
                local.write_text("placeholder\n")
        return str(local)
    return node


def sample_contract(name: str, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The plugin's sample placed in a small contract of its own (zones, owners and conduits of the
    sample's imagined plant replaced by this contract's)."""
    sample = YAML(typ="safe").load(SAMPLES[name].read_text())
    data = copy.deepcopy(BASE)
    for device in sample.get("devices", []):
        data["devices"].append(dict(_localise(device, tmp, monkeypatch), zone="cell", owner="olga"))
    for sink in sample.get("sinks", []):
        entry = dict(_localise(sink, tmp, monkeypatch), owner="olga", points=[])
        entry.pop("conduit", None)
        entry.pop("node", None)
        data["sinks"].append(entry)
    for source in sample.get("sources", []):
        entry = dict(_localise(source, tmp, monkeypatch), owner="olga")
        if entry.get("conduit") != "commands-in":
            entry.pop("conduit", None)
        entry.pop("node", None)
        data.setdefault("sources", []).append(entry)
    return data


def verdicts(data: dict[str, Any], tmp: Path) -> tuple[bool, str, bool, str]:
    """(check accepts, its output, run's plan accepts, its message) for a contract written to a file."""
    path = tmp / "seam.yaml"
    path.write_text(to_text(data), encoding="utf-8")
    checked = runner.invoke(APP, ["check", str(path), "--format", "json"])
    findings = json.loads(checked.stdout) if checked.stdout.strip().startswith("[") else []
    check_ok = checked.exit_code != 2 and not any(f["severity"] == "error" for f in findings)
    try:
        Supervisor(path).prepare()
    except StartupError as exc:
        return check_ok, checked.output, False, str(exc)
    return check_ok, checked.output, True, ""


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_sample_passes_check_and_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    check_ok, check_out, run_ok, run_out = verdicts(sample_contract(name, tmp_path, monkeypatch), tmp_path)
    assert check_ok, check_out
    assert run_ok, run_out


Mutation = Callable[[dict[str, Any]], None]


def _options(section: str, index: int, **changes: Any) -> Mutation:
    def apply(data: dict[str, Any]) -> None:
        options = data[section][index].setdefault("options", {})
        for key, value in changes.items():
            if value is _DROP:
                options.pop(key, None)
            else:
                options[key] = value

    return apply


def _field(section: str, index: int, key: str, value: Any) -> Mutation:
    def apply(data: dict[str, Any]) -> None:
        data[section][index][key] = value

    return apply


_DROP = object()

# (sample, mutation, what `seam check` must say, the key it must point at or None for the entry)
MISTAKES: list[tuple[str, Mutation, str, str | None]] = [
    # misspelt: named, with the key it resembles
    ("modbus", _options("devices", 1, maxgap=3), "did you mean 'max_gap'", "maxgap"),
    ("opcua", _options("devices", 1, sesion_timeout="60s"), "did you mean 'session_timeout'", "sesion_timeout"),
    ("generator", _options("devices", 1, sed=4), "did you mean 'seed'", "sed"),
    ("historian", _options("sinks", 0, retension="90d"), "did you mean 'retention'", "retension"),
    ("postgres", _options("sinks", 0, tabel_prefix="x_"), "did you mean 'table_prefix'", "tabel_prefix"),
    ("sparkplug", _options("sinks", 0, group="g"), "did you mean 'group_id'", "group"),
    ("uns_json", _options("sinks", 0, retian=True), "did you mean 'retain'", "retian"),
    (
        "diode_send",
        _options("sinks", 0, snapshot_intervall="5s"),
        "did you mean 'snapshot_interval'",
        "snapshot_intervall",
    ),
    ("file", _options("sinks", 0, fsynk=False), "did you mean 'fsync'", "fsynk"),
    ("diode_receive", _options("sources", 0, listne="0.0.0.0:7400"), "did you mean 'listen'", "listne"),
    ("sparkplug_host", _options("sources", 0, hostid="h"), "did you mean 'host_id'", "hostid"),
    ("modbus_replica", _options("sinks", 0, quality="exception"), "did you mean 'quality_policy'", "quality"),
    # mistyped
    ("modbus", _options("devices", 1, max_in_flight="two"), "option max_in_flight", "max_in_flight"),
    ("modbus", _options("devices", 1, byte_order="ABDC"), "option byte_order", "byte_order"),
    ("opcua", _options("devices", 1, server_deadband="yes"), "option server_deadband", "server_deadband"),
    ("generator", _options("devices", 1, rate=-5), "option rate", "rate"),
    ("historian", _options("sinks", 0, retention="90"), "option retention", "retention"),
    ("postgres", _options("sinks", 0, connect_timeout="soon"), "option connect_timeout", "connect_timeout"),
    ("sparkplug", _options("sinks", 0, qos=2), "option qos", "qos"),
    ("uns_json", _options("sinks", 0, timestamps="epoch"), "option timestamps", "timestamps"),
    ("diode_send", _options("sinks", 0, k="many"), "option k", "k"),
    ("diode_send", _options("sinks", 0, target="tcp://192.0.2.10:7400"), "udp://host:port", "target"),
    ("file", _options("sinks", 0, fsync="no"), "option fsync", "fsync"),
    ("diode_receive", _options("sources", 0, block_timeout="soon"), "'soon' is not a duration", None),
    ("modbus_replica", _options("sinks", 0, quality_policy="stale"), "option quality_policy", "quality_policy"),
    # missing
    ("postgres", _options("sinks", 0, dsn_env=_DROP), "exactly one of 'dsn' or 'dsn_env'", None),
    ("sparkplug", _options("sinks", 0, edge_node_id=_DROP), "the required option 'edge_node_id'", None),
    ("uns_json", _options("sinks", 0, brokers=_DROP), "no broker given", None),
    ("diode_send", _options("sinks", 0, key_file=_DROP), "the required option 'key_file'", None),
    ("file", _options("sinks", 0, path=_DROP), "the required option 'path'", None),
    # a file the plugin reads at start, absent on this machine
    ("diode_send", _options("sinks", 0, key_file="/nonexistent/diode.key"), "no file at", "key_file"),
    ("diode_receive", _options("sources", 0, key_file="missing.key"), "no file at", "key_file"),
    ("sparkplug_host", _options("sources", 0, dsn_file="/nonexistent/dsn"), "no file at", "dsn_file"),
    # fields only the driver understands
    ("modbus", _field("devices", 1, "endpoint", "http://10.0.0.5"), "not a Modbus endpoint", None),
    ("opcua", _field("devices", 1, "endpoint", "opc.tcp://user:pw@10.0.0.5:4840"), "carries credentials", None),
]


@pytest.mark.parametrize(
    ("name", "mutation", "message", "key"),
    MISTAKES,
    ids=[f"{name}-{message[:30]}" for name, _, message, _ in MISTAKES],
)
def test_check_and_run_refuse_the_same_mistakes(
    name: str,
    mutation: Mutation,
    message: str,
    key: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    data = sample_contract(name, tmp_path, monkeypatch)
    mutation(data)
    check_ok, check_out, run_ok, run_out = verdicts(data, tmp_path)
    assert not check_ok and not run_ok, (check_out, run_out)
    assert message in check_out, check_out
    assert message in run_out, run_out
    if key is not None:
        # file:line:column is the offending key's own line.
        lines = (tmp_path / "seam.yaml").read_text().splitlines()
        found = [item for item in json.loads(check_out) if message in item["message"] + item["hint"]]
        assert found, check_out
        assert lines[found[0]["line"] - 1].strip().startswith(f"{key}:"), (found[0], lines[found[0]["line"] - 1])


def test_seam_doc_says_passes_only_when_run_would_accept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = sample_contract("historian", tmp_path, monkeypatch)
    data["sinks"][0]["options"]["retension"] = "90d"
    path = tmp_path / "seam.yaml"
    path.write_text(to_text(data), encoding="utf-8")
    result = runner.invoke(APP, ["doc", str(path)])
    assert result.exit_code == 2
    assert "passes seam check" not in result.stdout
    assert "did you mean 'retention'" in result.output


def test_loading_options_loads_no_protocol_stack(tmp_path: Path) -> None:
    """The loader reads each plugin's options.py alone: no asyncua, aiomqtt or psycopg."""
    data = copy.deepcopy(BASE)
    data["devices"].append(
        {"id": "ua", "driver": "opcua", "endpoint": "opc.tcp://h:4840", "zone": "cell", "owner": "olga"}
    )
    data["sinks"] = [
        {"id": "u", "type": "uns_json", "owner": "olga", "options": {"brokers": ["b:1883"]}},
        {"id": "p", "type": "postgres", "owner": "olga", "options": {"dsn_env": "X"}},
    ]
    path = tmp_path / "seam.yaml"
    path.write_text(to_text(data), encoding="utf-8")
    code = (
        "import sys\n"
        "from otseam.contract.loader import load\n"
        f"load({str(path)!r})\n"
        "print(sorted(m for m in ('asyncua', 'aiomqtt', 'psycopg') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_files_are_checked_for_the_node_this_machine_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With several nodes, a key file named for another machine is not looked for here; with --node it
    is, relative to the contract file wherever the command starts."""
    data = sample_contract("diode_send", tmp_path, monkeypatch)
    data["nodes"] = [{"id": "edge", "zone": "cell"}, {"id": "gateway", "zone": "dmz"}]
    for item in (*data["devices"], *data["sinks"]):
        item["node"] = "edge"
    data["sinks"][0]["options"]["key_file"] = "diode.key"  # beside the contract, on the edge only
    contract_dir = tmp_path / "contract"
    contract_dir.mkdir()
    path = contract_dir / "seam.yaml"
    path.write_text(to_text(data), encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    assert runner.invoke(APP, ["check", str(path), "--node", "gateway"]).exit_code != 2
    missing = runner.invoke(APP, ["check", str(path), "--node", "edge"])
    assert missing.exit_code == 2 and "no file at" in missing.output
    with pytest.raises(StartupError, match="no file at"):
        Supervisor(path, node="edge").prepare()

    write_new_key(contract_dir / "diode.key")
    assert runner.invoke(APP, ["check", str(path), "--node", "edge"]).exit_code != 2
    Supervisor(path, node="edge").prepare()
    assert runner.invoke(APP, ["check", str(path), "--node", "nowhere"]).exit_code == 2


def test_what_only_creating_the_plugin_finds_is_refused_by_check_at_its_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A users file with a password where an argon2 hash belongs passes every options model (the file
    exists); the OPC UA server refuses it when created, and so does `seam check`, at the sink's entry."""
    monkeypatch.chdir(tmp_path)
    data = sample_contract("opcua_server", tmp_path, monkeypatch)
    (tmp_path / "opcua" / "users").write_text("mes:hunter2\n")
    check_ok, check_out, run_ok, run_out = verdicts(data, tmp_path)
    assert not check_ok and not run_ok
    assert "argon2" in check_out and "argon2" in run_out
    assert "hunter2" not in check_out
    found = json.loads(check_out)
    index = next(i for i, s in enumerate(data["sinks"]) if s["type"] == "opcua_server")
    assert found[0]["path"] == f"sinks.{index}"
    lines = (tmp_path / "seam.yaml").read_text().splitlines()
    assert lines[found[0]["line"] - 1].strip() == f"- id: {data['sinks'][index]['id']}"
