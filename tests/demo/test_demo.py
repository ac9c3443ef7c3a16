"""`seam demo` as a newcomer runs it: one command, a simulated plant, data in the historian."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from otseam.contract import load
from tests.support.wait import wait_until

_HEALTH = re.compile(r"curl (http://127\.0\.0\.1:\d+)/health")


def _wait_for(predicate: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    wait_until(predicate, what, timeout, interval=0.2)


def test_demo_runs_the_plant_and_records_it(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    process = subprocess.Popen(
        [sys.executable, "-m", "otseam.cli", "demo", "--dir", str(workdir), "--http", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        assert process.stdout is not None
        base = None
        deadline = time.monotonic() + 60
        while base is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            match = _HEALTH.search(line)
            if match:
                base = match.group(1)
        assert base is not None, "".join(output)

        # The contract it wrote is the plant's, and it passes the rules it runs under.
        loaded = load(workdir / "seam.yaml")
        drivers = {d.driver for d in loaded.contract.devices}
        assert {"modbus", "opcua"} <= drivers

        def healthy() -> bool:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                body = json.load(response)
            drivers = [c for name, c in body["components"].items() if name.startswith("driver:")]
            return len(drivers) == 4 and all(c["state"] == "running" for c in drivers)

        _wait_for(healthy, "every driver running")

        def recorded() -> bool:
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "otseam.cli",
                    "query",
                    "raw-water/tank1-temperature",
                    "--contract",
                    str(workdir / "seam.yaml"),
                    "--node",
                    "ot-edge",
                    "--from",
                    "-10min",
                    "--format",
                    "json",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                return False
            rows = json.loads(result.stdout)["rows"]
            return len(rows) >= 3 and all(row["quality"] == "good" for row in rows)

        _wait_for(recorded, "three good temperature readings in the historian")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            rest, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            rest, _ = process.communicate()
        output.append(rest or "")
    text = "".join(output)
    assert process.returncode in (0, 130), text
    assert "Traceback" not in text


def _start_demo(workdir: Path, *extra: str) -> tuple[subprocess.Popen[str], str, list[str]]:
    """`seam demo` started; returns the process, the base URL of its /health, and its output so far."""
    process = subprocess.Popen(
        [sys.executable, "-m", "otseam.cli", "demo", "--dir", str(workdir), "--http", "127.0.0.1:0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line)
        match = _HEALTH.search(line)
        if match:
            return process, match.group(1), output
    process.kill()
    process.wait()
    raise AssertionError("".join(output))


def _stop_demo(process: subprocess.Popen[str], output: list[str]) -> str:
    process.send_signal(signal.SIGINT)
    try:
        rest, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        rest, _ = process.communicate()
    output.append(rest or "")
    assert process.returncode in (0, 130), "".join(output)
    return "".join(output)


def _devices_online(base: str) -> bool:
    with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
        body = json.load(response)
    drivers = [c for name, c in body["components"].items() if name.startswith("driver:")]
    return bool(drivers) and all(c.get("detail", {}).get("device") == "online" for c in drivers)


def test_demo_keeps_an_edited_contract(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    process, base, output = _start_demo(workdir, "--no-opcua")
    try:
        _wait_for(lambda: _devices_online(base), "the plant polled")
    finally:
        _stop_demo(process, output)
    contract = workdir / "seam.yaml"
    edited = contract.read_text().replace("version: 1", "# poll slower, says the plant manager\nversion: 1", 1)
    contract.write_text(edited)

    process, base, output = _start_demo(workdir, "--no-opcua")
    try:
        # Kept as edited, and the plant is started where the kept contract expects it.
        _wait_for(lambda: _devices_online(base), "the plant polled again, on the kept contract")
    finally:
        text = _stop_demo(process, output)
    assert contract.read_text() == edited
    assert "keeping" in text and "Traceback" not in text


def test_a_port_in_use_suggests_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "otseam.cli", "demo", "--dir", str(tmp_path / "d"), "--http", f"127.0.0.1:{port}",
             "--no-opcua"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--http 127.0.0.1:0" in result.stderr and "--http off" in result.stderr, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
