"""``seam discover modbus`` against the simulator: units, identification, ranges, a usable draft."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer
from ruamel.yaml import YAML
from typer.testing import CliRunner

from otseam.commands.discover import parse_target, parse_units, register
from otseam.contract.models import Device
from otseam.drivers.modbus.discover import discover, render_draft
from otseam.sim.plant import SimPlant
from tests.support.servers import free_port, wait_for_port

SEAM = [sys.executable, "-m", "otseam.cli"]


async def test_finds_units_identity_and_exact_ranges() -> None:
    async with SimPlant(modbus_port=0, tick=None, opcua=False, devices=2, points=20) as plant:
        endpoint = parse_target(f"127.0.0.1:{plant.modbus_port}")
        found = await discover(endpoint, [1, 2, 3, 4], ranges=True, rate=2000, answer_within=0.3, max_address=300)
        requests = plant.modbus.stats.requests
    assert [f.unit for f in found] == [1, 2]
    assert found[0].identity["model name"] == "SIM-SCALE"
    # 20 float32 points = holding registers 0-39, nothing in the other tables.
    assert all(f.ranges == {"hr": [(0, 40)]} for f in found)
    # Bounded: 2 units x 4 tables x 300 addresses would be 2,400 reads one address at a time.
    assert requests < 2400 / 5
    draft = YAML(typ="safe").load(render_draft(endpoint, found, "seam discover modbus test"))
    devices = [Device.model_validate(d) for d in draft["devices"]]
    assert [(d.unit, d.endpoint, d.points[0].address) for d in devices] == [
        (1, endpoint.key, "hr:0"),
        (2, endpoint.key, "hr:0"),
    ]


def test_the_command_writes_a_draft_for_the_water_plant(tmp_path: Path) -> None:
    port = free_port()
    sim = subprocess.Popen([*SEAM, "sim", "--modbus-port", str(port), "--no-opcua"], stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        draft = tmp_path / "draft.yaml"
        result = subprocess.run(
            [
                *SEAM,
                "discover",
                "modbus",
                f"127.0.0.1:{port}",
                "--units",
                "1-5",
                "--ranges",
                "--max-address",
                "200",
                "--rate",
                "1000/s",
                "-o",
                str(draft),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        sim.terminate()
        sim.wait(10)
    assert result.returncode == 0, result.stderr
    assert "unit 1 answers" in result.stderr and "unit 4" not in result.stderr
    text = draft.read_text()
    assert "TODO" in text
    devices = [Device.model_validate(d) for d in YAML(typ="safe").load(text)["devices"]]
    assert [d.unit for d in devices] == [1, 2, 3]
    assert all(d.vendor == "Seam" and d.points for d in devices)


def test_unreachable_host_and_bad_arguments_get_one_clear_line() -> None:
    app = typer.Typer()
    register(app)
    port = free_port()
    for args, expected in (
        ([f"127.0.0.1:{port}", "--units", "1"], "cannot reach"),
        (["127.0.0.1", "--units", "1-300"], "unit ids run from 0 to 247"),
        (["127.0.0.1", "--rate", "fast"], "is not a rate"),
        (["rtu:///dev/ttyS0"], "not on a serial line"),
        (["127.0.0.1:99999"], "invalid port"),
    ):
        result = CliRunner().invoke(app, ["discover", "modbus", *args])
        assert result.exit_code == 2, result.output
        assert expected in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert "Traceback" not in result.output


def test_unit_lists() -> None:
    assert parse_units("1-3,7,2") == [1, 2, 3, 7]
    assert parse_units("0") == [0]


async def test_progress_is_reported_and_the_draft_rate_is_no_higher_than_the_probe() -> None:
    async with SimPlant(modbus_port=0, tick=None, opcua=False, devices=1, points=4) as plant:
        endpoint = parse_target(f"127.0.0.1:{plant.modbus_port}")
        lines: list[str] = []
        found = await discover(
            endpoint, [1, 2, 3], rate=500, answer_within=0.2, progress=lines.append, progress_every=0.0
        )
    assert [f.unit for f in found] == [1]
    assert any(line.startswith("tried 1 of 3 unit ids (1 answered") for line in lines), lines
    slow = YAML(typ="safe").load(render_draft(endpoint, found, "test", probed_rate=2.0))
    assert slow["devices"][0]["constraints"]["max_request_rate"] == "2/s"
    very_slow = YAML(typ="safe").load(render_draft(endpoint, found, "test", probed_rate=0.5))
    assert very_slow["devices"][0]["constraints"]["max_request_rate"] == "30/min"
    fast = YAML(typ="safe").load(render_draft(endpoint, found, "test", probed_rate=1000.0))
    assert fast["devices"][0]["constraints"]["max_request_rate"] == "10/s"
