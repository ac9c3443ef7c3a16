"""`seam watch` and `seam inventory` from the command line: output formats, the journal, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from otseam.core.records import Event
from otseam.journal import Journal
from otseam.monitor import commands
from tests.monitor.conftest import FIXTURE_NAMES, REPO
from tests.monitor.pcapgen import Conversation, mbap, pcap_bytes

EXPECTED = Path(__file__).parent / "expected"
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


def test_jsonl_alerts_have_the_required_fields(cli: typer.Typer, pcaps: Path) -> None:
    code, out, _err = invoke(cli, "watch", "--pcap", str(pcaps / "modbus_test_data_part1.pcap"), "--format", "jsonl")
    assert code == 0
    alerts = [json.loads(line) for line in out.splitlines()]
    assert alerts and all(set(a) >= REQUIRED for a in alerts)
    first = alerts[0]
    assert (first["frame"], first["rule"], first["attack"], first["severity"]) == (8, "MB-003", "T0814", "critical")
    assert (first["src"], first["dst"], first["unit"], first["function"]) == ("10.0.0.57", "10.0.0.3", 10, 8)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_expected_transactions_and_alerts(cli: typer.Typer, pcaps: Path, name: str) -> None:
    """ICSNPP-style: the whole decoded output, compared with a checked-in, reviewed expectation."""
    code, out, _err = invoke(cli, "watch", "--pcap", str(pcaps / name), "--format", "jsonl", "--transactions")
    assert code == 0
    expected_file = EXPECTED / (name.removesuffix(".pcap") + ".jsonl")
    if os.environ.get("SEAM_UPDATE_EXPECTED") == "1":
        expected_file.parent.mkdir(exist_ok=True)
        expected_file.write_text(out)
    got = [json.loads(line) for line in out.splitlines()]
    want = [json.loads(line) for line in expected_file.read_text().splitlines()]
    assert len(got) == len(want)
    for index, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"{name} line {index + 1}"


def test_table_is_the_default(cli: typer.Typer, pcaps: Path) -> None:
    code, out, _err = invoke(cli, "watch", "--pcap", str(pcaps / "modbus_test_data_part2.pcap"))
    assert code == 0
    assert "MB-008" in out and "MB-009" in out and "alerts" in out


def test_inventory_json(cli: typer.Typer, pcaps: Path) -> None:
    code, out, _err = invoke(cli, "inventory", "--pcap", str(pcaps / "icsnpp_modbus_example.pcap"), "--format", "json")
    assert code == 0
    assets = {a["ip"]: a for a in json.loads(out)["assets"]}
    assert set(assets) == {"127.0.0.1", "192.168.1.6", "3.15.227.20"}
    assert (assets["192.168.1.6"]["role"], assets["3.15.227.20"]["role"]) == ("master", "slave")
    assert assets["3.15.227.20"]["unit_ids"] == [0] and assets["3.15.227.20"]["function_codes"] == [3]
    only = assets["127.0.0.1"]
    assert only["role"] == "both"
    assert (only["vendor"], only["product"], only["revision"]) == (
        "Zeek Modbus Test",
        "Protocol Parsing is fun!",
        "1.2.3.6",
    )
    assert {1, 2, 3, 4, 5, 6, 15, 16, 43} <= set(only["function_codes"])
    assert only["first_seen"] <= only["last_seen"]
    code, out, _err = invoke(cli, "inventory", "--pcap", str(pcaps / "modbus_test_data_part1.pcap"))
    assert code == 0 and "10.0.0.57" in out and "master" in out


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


def test_alerts_and_inventory_go_to_the_journal(cli: typer.Typer, pcaps: Path, tmp_path: Path) -> None:
    journal_dir = tmp_path / "journal"
    code, out, _err = invoke(
        cli,
        "watch",
        "--pcap",
        str(pcaps / "modbus_test_data_part1.pcap"),
        "--format",
        "jsonl",
        "--journal",
        str(journal_dir),
    )
    assert code == 0
    printed = [json.loads(line) for line in out.splitlines()]
    with Journal.open(journal_dir) as journal:
        cursor = journal.reader("test")
        import asyncio

        batch = asyncio.run(cursor.next_batch(max_records=10_000, max_wait=0.1))
    events = [r for r in batch.records if isinstance(r, Event)]
    alerts = [e for e in events if e.kind == "alert"]
    assert [(e.source, e.data["frame"]) for e in alerts] == [(a["rule"], a["frame"]) for a in printed]
    new_assets = {e.data["ip"] for e in events if e.kind == "inventory.new_asset"}
    assert new_assets == {"10.0.0.57", "10.0.0.3", "10.0.0.8", "10.0.0.9"}


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
def test_bad_input_is_one_clear_error(cli: typer.Typer, pcaps: Path, args: list[str], message: str) -> None:
    args = [str(pcaps / "icsnpp_modbus_example.pcap") if a == "PCAP" else a for a in args]
    code, out, err = invoke(cli, *args)
    assert code == 2
    assert message in err and "Traceback" not in err + out


def test_the_installed_command(pcaps: Path, tmp_path: Path) -> None:
    """The real `seam` entry point: registered with the others, no traceback on a corrupt capture."""
    corrupt = tmp_path / "corrupt.pcap"
    data = bytearray((pcaps / "modbus_test_data_part2.pcap").read_bytes())
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
