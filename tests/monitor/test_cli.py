"""`seam watch` and `seam inventory` from the command line: output formats, the journal, bad input."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from otseam.commands import monitor as commands
from otseam.core.records import Event
from otseam.journal import Journal
from tests.monitor.conftest import REPO
from tests.monitor.pcapgen import Conversation, mbap, pcap_bytes
from tests.monitor.traffic import MODBUS_SCRIPTS, PEER_HOST, SIM_HOST, server_port

REQUIRED = {"ts", "frame", "src", "dst", "unit", "function", "rule", "attack", "severity", "message"}


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    app = typer.Typer()
    commands.register(app)
    return app


def invoke(cli: typer.Typer, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def watch(cli: typer.Typer, capture: Path, *args: str) -> list[dict[str, object]]:
    option = "--opcua-port" if capture.name == "node_opcua.pcap" else "--modbus-port"
    port = str(server_port(capture))
    code, out, err = invoke(cli, "watch", "--pcap", str(capture), option, port, "--format", "jsonl", *args)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_jsonl_alerts_have_the_required_fields(cli: typer.Typer, corpus: dict[str, Path]) -> None:
    """pymodbus asks for the device identity, restarts communications and sweeps function codes."""
    alerts = watch(cli, corpus["pymodbus.pcap"])
    assert alerts and all(set(a) >= REQUIRED for a in alerts)
    first = alerts[0]
    assert (first["rule"], first["attack"], first["severity"]) == ("MB-006", "T0888", "low")
    assert (first["src"], first["dst"], first["unit"], first["function"]) == (PEER_HOST, SIM_HOST, 1, 43)
    by_rule = {a["rule"]: a for a in alerts}
    assert (by_rule["MB-004"]["attack"], by_rule["MB-004"]["severity"]) == ("T0816", "high")
    assert (by_rule["MB-008"]["attack"], by_rule["MB-008"]["severity"]) == ("T0846", "high")
    assert {"MB-005", "MB-007", "MB-017"} <= set(by_rule)
    assert "MB-015" not in by_rule, "the sim's port was declared with --modbus-port"


@pytest.mark.parametrize("name", sorted(MODBUS_SCRIPTS))
def test_decoded_requests_are_what_the_peer_sent(cli: typer.Typer, corpus: dict[str, Path], name: str) -> None:
    """Every request the peer's script sent, decoded in order with its answer, nothing more."""
    records = watch(cli, corpus[name], "--transactions")
    transactions = [r for r in records if r["type"] == "modbus"]
    got = [(t["unit"], t["function"], t.get("address"), t.get("quantity")) for t in transactions]
    assert got == MODBUS_SCRIPTS[name]
    assert all(t["matched"] and t["src"] == PEER_HOST and t["dst"] == SIM_HOST for t in transactions)
    exceptions = [(t["function"], t["exception"]) for t in transactions if "exception" in t]
    assert exceptions == ([(3, 2)] if name == "modbus_serial.pcap" else [])
    writes = {(t["unit"], t["function"]): t.get("request_values") for t in transactions if t["function"] in (5, 15, 16)}
    assert writes[(3, 16)] == [16256, 0]
    assert not [r for r in records if r["type"] == "alert"], "reads and writes by the only master raise nothing"


def test_opcua_services_are_decoded(cli: typer.Typer, corpus: dict[str, Path]) -> None:
    records = watch(cli, corpus["node_opcua.pcap"], "--transactions")
    services = [r.get("service") for r in records if r["type"] == "opcua"]
    for wanted in ("CreateSessionRequest", "ActivateSessionRequest", "BrowseRequest", "ReadRequest", "WriteRequest"):
        assert wanted in services, (wanted, services)


def test_table_is_the_default(cli: typer.Typer, corpus: dict[str, Path]) -> None:
    code, out, _err = invoke(cli, "watch", "--pcap", str(corpus["pymodbus.pcap"]))
    assert code == 0
    # No --modbus-port: Modbus on an unusual port (MB-015), the handshake tells the master from the slave.
    assert "MB-015" in out and "MB-004" in out and "MB-008" in out and "alerts" in out


def test_inventory_json(cli: typer.Typer, corpus: dict[str, Path]) -> None:
    code, out, _err = invoke(cli, "inventory", "--pcap", str(corpus["mbpoll.pcap"]), "--format", "json")
    assert code == 0
    assets = {a["ip"]: a for a in json.loads(out)["assets"]}
    assert set(assets) == {PEER_HOST, SIM_HOST}
    master, slave = assets[PEER_HOST], assets[SIM_HOST]
    assert (master["role"], slave["role"]) == ("master", "slave")
    assert slave["unit_ids"] == [1, 2, 3] and slave["function_codes"] == [1, 2, 3, 4, 5, 6, 15, 16]
    assert slave["ports"] == [server_port(corpus["mbpoll.pcap"])]
    assert master["first_seen"] <= master["last_seen"]
    code, out, _err = invoke(cli, "inventory", "--pcap", str(corpus["pymodbus.pcap"]), "--format", "json")
    slave = {a["ip"]: a for a in json.loads(out)["assets"]}[SIM_HOST]
    assert (slave["vendor"], slave["product"], slave["revision"]) == ("Seam", "SEAM-SIM", "1.0")
    code, out, _err = invoke(cli, "inventory", "--pcap", str(corpus["mbpoll.pcap"]))
    assert code == 0 and SIM_HOST in out and "master" in out


def test_hostile_device_identity_cannot_drive_the_terminal(cli: typer.Typer, tmp_path: Path) -> None:
    vendor = b"[bold red]ACME[/]\x1b[2J\x07"
    objects = bytes([0, len(vendor)]) + vendor + bytes([1, 3]) + b"PLC" + bytes([2, 3]) + b"1.0"
    conv = Conversation().handshake()
    conv.c(mbap(1, 1, b"\x2b\x0e\x01\x00"))
    conv.s(mbap(1, 1, b"\x2b\x0e\x01\x01\x00\x00\x03" + objects))
    path = tmp_path / "identity.pcap"
    path.write_bytes(pcap_bytes(conv.frames))
    code, out, _err = invoke(cli, "inventory", "--pcap", str(path))
    assert code == 0
    assert "\x1b" not in out and "\x07" not in out
    assert "[bold" in out and "ACME[/]" in out and "\\x1b" in out  # shown literally, not interpreted
    code, out, _err = invoke(cli, "inventory", "--pcap", str(path), "--format", "json")
    assert json.loads(out)["assets"][1]["vendor"] == vendor.decode("latin-1")


def test_alerts_and_inventory_go_to_the_journal(cli: typer.Typer, corpus: dict[str, Path], tmp_path: Path) -> None:
    journal_dir = tmp_path / "journal"
    printed = watch(cli, corpus["pymodbus.pcap"], "--journal", str(journal_dir))
    with Journal.open(journal_dir) as journal:
        cursor = journal.reader("test")
        batch = asyncio.run(cursor.next_batch(max_records=10_000, max_wait=0.1))
    events = [r for r in batch.records if isinstance(r, Event)]
    alerts = [e for e in events if e.kind == "alert"]
    assert alerts
    assert [(e.source, e.data["frame"]) for e in alerts] == [(a["rule"], a["frame"]) for a in printed]
    new_assets = {e.data["ip"] for e in events if e.kind == "inventory.new_asset"}
    assert new_assets == {PEER_HOST, SIM_HOST}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["watch"], "exactly one of --pcap"),
        (["watch", "--pcap", "/nonexistent.pcap"], "cannot read"),
        (["watch", "--pcap", "PCAP", "--iface", "lo"], "exactly one of --pcap"),
        (["watch", "--pcap", "PCAP", "--format", "xml"], "use table or jsonl"),
        (["watch", "--pcap", "PCAP", "--allow-master", "plc-7"], "not an IP address"),
        (["watch", "--pcap", "PCAP", "--modbus-port", "70000"], "not a TCP port"),
        (["watch", "--pcap", "PCAP", "--contract", "/nonexistent.yaml"], "file not found"),
        (["watch", "--pcap", "PCAP", "--baseline", "/etc/hostname"], "not a pcap"),
        (["watch", "--iface", "no-such-if0", "--duration", "1"], "cannot capture on interface"),
        (["inventory", "--pcap", "/etc/hostname"], "not a pcap"),
        (["inventory", "--pcap", "PCAP", "--format", "yaml"], "use table or json"),
    ],
)
def test_bad_input_is_one_clear_error(cli: typer.Typer, corpus: dict[str, Path], args: list[str], message: str) -> None:
    args = [str(corpus["mbpoll.pcap"]) if a == "PCAP" else a for a in args]
    code, out, err = invoke(cli, *args)
    assert code == 2
    assert message in err and "Traceback" not in err + out


def test_the_installed_command(corpus: dict[str, Path], tmp_path: Path) -> None:
    """The real `seam` entry point: registered with the others, no traceback on a corrupt capture."""
    corrupt = tmp_path / "corrupt.pcap"
    data = bytearray(corpus["pymodbus.pcap"].read_bytes())
    corrupt.write_bytes(bytes(data[: len(data) // 2 + 3]))
    seam = Path(sys.executable).parent / "seam"
    result = subprocess.run(
        [str(seam), "watch", "--pcap", str(corrupt), "--format", "jsonl"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "truncated record" in result.stderr and "Traceback" not in result.stderr
    assert all(json.loads(line)["rule"] for line in result.stdout.splitlines())


def test_a_link_type_seam_does_not_read_is_an_error(cli: typer.Typer, tmp_path: Path) -> None:
    """Today's trap: "No alerts", exit 0, for a file of which nothing was decoded."""
    conv = Conversation().handshake()
    conv.c(mbap(1, 1, b"\x08\x00\x04\x00\x00"))  # force listen-only: would be critical if decoded
    data = bytearray(pcap_bytes(conv.frames))
    data[20:24] = (147).to_bytes(4, "little")  # LINKTYPE_USER0
    path = tmp_path / "user0.pcap"
    path.write_bytes(bytes(data))
    for command in (["watch", "--pcap", str(path)], ["inventory", "--pcap", str(path)]):
        code, out, err = invoke(cli, *command)
        assert code == 2, out + err
        assert "nothing was decoded" in err and "147 (3 frames)" in err and "Ethernet (1)" in err
        assert "No alerts" not in out and "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00", "section header is truncated"),
        (b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x00\x00\x00\x00" + bytes(16), "no valid byte-order magic"),
        (b"\x0a\x0d\x0d\x0a\xff\xff\x00\x00\x4d\x3c\x2b\x1a" + bytes(16), "impossible length"),
    ],
)
def test_a_damaged_pcapng_header_is_an_error(cli: typer.Typer, tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.pcapng"
    path.write_bytes(content)
    for command in ("watch", "inventory"):
        code, out, err = invoke(cli, command, "--pcap", str(path))
        assert code == 2 and message in err and "Traceback" not in err, (command, out, err)


def test_fifos_devices_and_directories_are_refused_without_hanging(cli: typer.Typer, tmp_path: Path) -> None:
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)  # opening it would block until a writer came: it must not be opened at all
    for path, kind in ((fifo, "is a FIFO"), (Path("/dev/null"), "is a device"), (tmp_path, "is a directory")):
        for command in (["watch", "--pcap", str(path)], ["inventory", "--pcap", str(path)]):
            code, _out, err = invoke(cli, *command)
            assert code == 2 and kind in err and "save the capture to a file" in err, (path, err)
        code, _out, err = invoke(cli, "watch", "--pcap", str(fifo), "--baseline", str(path))
        assert code == 2 and kind in err


def test_inventory_prints_function_codes_as_ranges(cli: typer.Typer, corpus: dict[str, Path]) -> None:
    code, out, _err = invoke(cli, "inventory", "--pcap", str(corpus["mbpoll.pcap"]))
    assert code == 0
    master_row = next(line for line in out.splitlines() if PEER_HOST in line)
    assert "fc 1-6,15-16" in master_row and "units 1-3" in out
    assert commands.ranges([16, 1, 2, 3, 4, 5, 6, 15, 43, 3]) == "1-6,15-16,43"
    assert commands.ranges([]) == "" and commands.ranges([7]) == "7"
