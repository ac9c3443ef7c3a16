"""End to end: `seam sim` (its OPC UA server) and `seam run` on the contract `seam sim --contract`
prints, with this driver, the pipeline, the journal and the SQLite historian, all as real processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from otseam.diode.config import write_new_key
from otseam.sim.contract import DIODE_KEY
from tests.core.seamrun import SeamRun, metric
from tests.support.servers import free_ports, wait_for_port

SEAM = [sys.executable, "-m", "otseam.cli"]


def history(workdir: Path, point: str) -> list[dict[str, object]]:
    done = subprocess.run(
        [*SEAM, "query", point, "--contract", "seam.yaml", "--node", "ot-edge", "--format", "json"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)["rows"]
    return rows


def test_seam_run_records_the_sims_opcua_values(tmp_path: Path) -> None:
    modbus_port, opcua_port = free_ports(2)
    sim_args = [sys.executable, "-m", "otseam.cli", "sim", "--modbus-port", str(modbus_port)]
    sim_args += ["--opcua-port", str(opcua_port), "--tick", "200ms"]
    printed = subprocess.run([*sim_args, "--contract"], capture_output=True, text=True, timeout=60, check=True)
    assert "driver: opcua" in printed.stdout and "not listed as a device" not in printed.stdout
    (tmp_path / "seam.yaml").write_text(printed.stdout)
    write_new_key(tmp_path / DIODE_KEY)
    sim = subprocess.Popen(sim_args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run: SeamRun | None = None
    try:
        wait_for_port(opcua_port, process=sim)
        run = SeamRun(tmp_path, "--node", "ot-edge")
        run.wait_started()
        opcua_points = 'device="plant-opcua"'
        run.wait_for(
            lambda: metric(run.get("/metrics")[1], "seam_points_total", opcua_points) > 50,  # type: ignore[union-attr]
            "OPC UA values through the pipeline",
            within=60,
        )
        assert metric(run.get("/metrics")[1], "seam_device_errors_total", opcua_points) == 0
        run.wait_for(
            lambda: metric(run.get("/metrics")[1], "seam_sink_delivered_records_total", 'sink="local-history"') > 50,  # type: ignore[union-attr]
            "history written",
        )
        # The plant goes away: the OPC UA points turn stale (counted as errors); nothing crashes.
        sim.send_signal(signal.SIGTERM)
        sim.wait(20)
        run.wait_for(
            lambda: metric(run.get("/metrics")[1], "seam_device_errors_total", opcua_points) > 0,  # type: ignore[union-attr]
            "stale OPC UA points counted",
        )
    finally:
        code = run.stop() if run is not None else None
        if sim.poll() is None:
            sim.kill()
            sim.wait()
    assert run is not None and code == 0, run.output if run else ""
    assert "Traceback" not in run.output

    name = history(tmp_path, "plant-opcua/plant-name")
    assert {r["value"] for r in name if r["quality"] == "good"} == {"SEAM-SIM-WTP"}
    temperature = history(tmp_path, "plant-opcua/tank1-temperature")
    good = [float(r["value"]) for r in temperature if r["quality"] == "good"]  # type: ignore[arg-type]
    # Water at about 11 °C that moves from tick to tick, then the last value marked stale.
    assert len(set(good)) > 3 and all(5.0 < v < 20.0 for v in good)
    assert temperature[-1]["quality"] == "stale" and temperature[-1]["value"] == temperature[-2]["value"]
    running = history(tmp_path, "plant-opcua/pump1-running")
    assert {r["value"] for r in running if r["quality"] == "good"} <= {True, False, "true", "false"}
