"""`seam sim` as a person runs it: status lines, clean stop on SIGTERM, clear errors."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import typer
from pymodbus.client import ModbusTcpClient
from typer.testing import CliRunner

from otseam.commands.sim import register
from tests.support.servers import free_port, wait_for_port
from tests.support.wait import wait_until


def seam(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otseam.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_runs_serves_and_stops_cleanly_on_sigterm() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "otseam.cli", "sim", "--modbus-port", str(port), "--no-opcua", "--tick", "100ms"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port)
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0)
        assert client.connect()
        first = client.read_holding_registers(100, count=8, device_id=1)
        assert not first.isError()
        # The process moves on by itself: the tick counter of the plant is not readable over Modbus,
        # but the delivered-volume totaliser only ever grows while water flows to town.
        volume = client.read_input_registers(6, count=2, device_id=3).registers
        moved = lambda: client.read_input_registers(6, count=2, device_id=3).registers != volume  # noqa: E731
        wait_until(moved, "the delivered-volume totaliser to grow", interval=0.1)
        client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert f"Modbus/TCP on 127.0.0.1:{port}, unit ids 1-3" in err
    assert "stopped" in err and "Traceback" not in err
    assert out == ""


def test_bad_options_get_one_clear_line() -> None:
    app = typer.Typer()
    register(app)

    @app.callback()
    def root() -> None:
        """Two commands or more make typer keep the command name."""

    runner = CliRunner()
    for args, expected in (
        (["--tick", "5"], "--tick: '5' is not a duration"),
        (["--devices", "300", "--points", "10"], "--devices must be 1 to 247"),
        (["--devices", "3"], "needs both --devices and --points"),
        (["--modbus-port", "70000"], "--modbus-port must be 0 to 65535"),
        (["--contract", "--modbus-port", "0"], "--contract needs fixed ports"),
    ):
        result = runner.invoke(app, ["sim", *args])
        assert result.exit_code == 2, (args, result.stderr)
        assert expected in result.stderr, (args, result.stderr)
        assert isinstance(result.exception, SystemExit)  # typer's clean exit, not an error escaping


def test_a_port_in_use_is_explained() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        modbus = seam("sim", "--modbus-port", port, "--no-opcua")
        opcua = seam("sim", "--modbus-port", "0", "--opcua-port", port)
    for result, what, option in ((modbus, "Modbus/TCP", "--modbus-port"), (opcua, "OPC UA", "--opcua-port")):
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        # One line, naming what failed, where, why, and the option that fixes it.
        assert len(lines) == 1, result.stderr
        assert f"cannot listen for {what} on 127.0.0.1:{port}: Address already in use" in lines[0]
        assert option in lines[0]


def test_unit_ids_are_shown_as_ranges() -> None:
    from otseam.commands.sim import _ranges

    assert _ranges([1, 2, 3, 7, 9, 10]) == "1-3, 7, 9-10"
    assert _ranges(list(range(1, 248))) == "1-247"
    assert _ranges([5]) == "5"
