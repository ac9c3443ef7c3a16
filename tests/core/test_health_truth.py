"""A device that is down is down everywhere: the status line, /metrics and /health.

Real parts only: a loopback port nobody listens on for the unreachable devices, and `seam sim` (a real
Modbus/TCP server) that is stopped while `seam run` polls it and then started again.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from otseam.diode.config import write_new_key
from otseam.sim.contract import DIODE_KEY
from tests.core.seamrun import SeamRun, contract, file_sink, generator, metric
from tests.support.servers import free_port, wait_for_port

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def unreachable(kind: str, device_id: str, port: int) -> str:
    endpoint = f"tcp://127.0.0.1:{port}" if kind == "modbus" else f"opc.tcp://127.0.0.1:{port}/nothing"
    address = "hr:0" if kind == "modbus" else "ns=2;s=Nothing"
    return f"""\
  - id: {device_id}
    driver: {kind}
    endpoint: {endpoint}
    unit: 1
    zone: cell
    owner: olga
    poll: 200ms
    constraints: {{timeout: 300ms}}
    options: {{max_backoff: 1s}}
    points:
      - {{id: level, address: "{address}", type: uint16}}
"""


def device_up(run: SeamRun, device: str) -> float:
    return metric(run.get("/metrics")[1], "seam_device_up", f'device="{device}"')


def test_unreachable_devices_are_down_in_status_metrics_and_health(tmp_path: Path) -> None:
    devices = (
        generator("gen1", ['{id: t, address: "sine"}'])
        + unreachable("modbus", "plc-gone", free_port())
        + unreachable("opcua", "ua-gone", free_port())
    )
    (tmp_path / "seam.yaml").write_text(contract(devices, file_sink()))
    run = SeamRun(tmp_path)
    try:
        run.wait_started()
        run.wait_for(lambda: len(run.health()["problems"]) >= 2, "both devices reported down")
        health = run.health()
        assert health["status"] == "degraded"
        problems = "\n".join(health["problems"])
        assert re.search(rf"device plc-gone offline since {ISO}", problems), problems
        assert re.search(rf"device ua-gone offline since {ISO}", problems), problems
        assert "gen1" not in problems
        detail = health["components"]["driver:plc-gone"]["detail"]
        assert detail["device"] == "offline" and detail["since"] > 0 and detail["last_error"]
        assert device_up(run, "plc-gone") == 0
        assert device_up(run, "ua-gone") == 0
        assert device_up(run, "gen1") == 1
        run.wait_for(lambda: "devices 1/3 up" in run.output, "the status line")
        line = next(x for x in run.output.splitlines() if "devices 1/3 up" in x)
        assert "DOWN: " in line and "device plc-gone offline since" in line and "device ua-gone offline" in line
        # Sinks report their backlog in records and in age.
        sink = health["components"]["sink:archive"]
        assert "lag_records" in sink and "lag_seconds" in sink
    finally:
        code = run.stop()
    assert code == 0, run.output
    assert "Traceback" not in run.output


def test_a_simulator_stopped_mid_run_is_down_then_up_again(tmp_path: Path) -> None:
    port = free_port()
    sim_args = [sys.executable, "-m", "otseam.cli", "sim", "--modbus-port", str(port), "--no-opcua"]
    printed = subprocess.run([*sim_args, "--contract"], capture_output=True, text=True, timeout=60, check=True)
    (tmp_path / "seam.yaml").write_text(printed.stdout)
    write_new_key(tmp_path / DIODE_KEY)
    sim = subprocess.Popen([*sim_args, "--tick", "200ms"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run: SeamRun | None = None
    try:
        wait_for_port(port)
        run = SeamRun(tmp_path, "--node", "ot-edge")
        running = run
        running.wait_started()
        running.wait_for(lambda: running.health()["status"] == "ok", "every device online")
        devices = [n[len("driver:") :] for n in running.health()["components"] if n.startswith("driver:")]
        assert devices and all(device_up(running, d) == 1 for d in devices)

        sim.send_signal(signal.SIGTERM)
        sim.wait(20)
        running.wait_for(lambda: all(device_up(running, d) == 0 for d in devices), "every device down in /metrics")
        health = running.health()
        assert health["status"] == "degraded"
        for device in devices:
            assert health["components"][f"driver:{device}"]["detail"]["device"] == "offline"
            assert any(p.startswith(f"device {device} offline since") for p in health["problems"]), health
        running.wait_for(lambda: f"devices 0/{len(devices)} up" in running.output, "the status line")

        sim = subprocess.Popen([*sim_args, "--tick", "200ms"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(port)
        running.wait_for(lambda: running.health()["status"] == "ok", "every device back", within=60)
        assert all(device_up(running, d) == 1 for d in devices)
        assert running.health()["problems"] == []
    finally:
        code = run.stop() if run is not None else None
        if sim.poll() is None:
            sim.kill()
            sim.wait()
    assert code == 0, run.output if run else ""
    assert "Traceback" not in run.output
