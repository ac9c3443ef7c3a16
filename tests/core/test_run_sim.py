"""End to end: `seam sim` (Modbus/TCP PLCs) and `seam run` on the contract the simulator prints,
with the Modbus driver, the pipeline, the journal and the SQLite historian, all as real processes."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from otseam.diode.config import write_new_key
from otseam.journal import Journal
from otseam.sim.contract import DIODE_KEY
from tests.core.seamrun import SeamRun, metric
from tests.support.servers import free_port, wait_for_port


def device_values(body: str, name: str) -> dict[str, float]:
    prefix = f'{name}{{device="'
    out = {}
    for line in body.splitlines():
        if line.startswith(prefix):
            device = line[len(prefix) :].split('"', 1)[0]
            out[device] = float(line.rsplit(" ", 1)[1])
    return out


def test_seam_run_on_the_simulators_contract(tmp_path: Path) -> None:
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
        run.wait_started()

        def all_devices_read() -> bool:
            _, body = run.get("/metrics")  # type: ignore[union-attr]
            points = device_values(body, "seam_points_total")
            return bool(points) and all(v > 0 for v in points.values())

        run.wait_for(all_devices_read, "every device polled")
        _, body = run.get("/metrics")
        assert all(v == 0 for v in device_values(body, "seam_device_errors_total").values())
        run.wait_for(
            lambda: metric(run.get("/metrics")[1], "seam_sink_delivered_records_total", 'sink="local-history"') > 0,
            "history written",
        )  # type: ignore[union-attr]
        assert run.health()["status"] == "ok"

        # The PLCs go away: the driver marks its points (stale or bad-comm) and counts errors; nothing crashes.
        sim.send_signal(signal.SIGTERM)
        sim.wait(20)

        def devices_failing() -> bool:
            _, body = run.get("/metrics")  # type: ignore[union-attr]
            return any(v > 0 for v in device_values(body, "seam_device_errors_total").values())

        run.wait_for(devices_failing, "errors counted for the lost PLCs")
    finally:
        code = run.stop() if run is not None else None
        if sim.poll() is None:
            sim.kill()
            sim.wait()
    assert code == 0, run.output if run else ""
    assert "Traceback" not in run.output

    with Journal.open(tmp_path / "seam-data" / "ot-edge" / "journal") as journal:
        last = journal.last_offset
    db = sqlite3.connect(tmp_path / "seam-data" / "ot-edge" / "local-history.db")
    try:
        offsets = [row[0] for row in db.execute('SELECT "offset" FROM samples UNION ALL SELECT "offset" FROM events')]
        keys = {row[0] for row in db.execute("SELECT key FROM points")}
        qualities = {row[0] for row in db.execute("SELECT DISTINCT quality FROM samples")}
    finally:
        db.close()
    # Every record the journal holds reached the historian exactly once.
    assert sorted(offsets) == list(range(1, last + 1))
    assert "raw-water/tank1-level" in keys
    assert 0 in qualities and qualities - {0}, "good values while the PLCs ran, then not-good ones"
