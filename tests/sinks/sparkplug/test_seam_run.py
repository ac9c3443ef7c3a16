"""End to end: the simulated plant, `seam run` with a Sparkplug sink, and `seam host` storing it."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from pathlib import Path

from otseam.diode.config import write_new_key
from otseam.sim.contract import DIODE_KEY
from otseam.sim.plant import SimPlant
from tests.support import servers

from .support import wait_until


def stored_points(db: Path) -> set[tuple[str, str]]:
    try:
        with sqlite3.connect(db) as conn:
            return {
                (d, m)
                for d, m in conn.execute("SELECT DISTINCT device, metric FROM sparkplug_metrics WHERE device != ''")
            }
    except sqlite3.OperationalError:
        return set()


async def test_seam_run_publishes_the_plant_over_sparkplug_to_seam_host(tmp_path: Path) -> None:
    with servers.mosquitto() as broker:
        host = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "otseam.cli", "host", "--broker", f"127.0.0.1:{broker.port}",
            "--host-id", "scada", "--db", str(tmp_path / "host.db"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert host.stdout is not None
        assert b"online" in await asyncio.wait_for(host.stdout.readline(), 30)
        async with SimPlant(modbus_port=0, opcua=False, tick=0.2, seed=3) as plant:
            sink = (
                "sinks:\n"
                "  - id: scada\n"
                "    type: sparkplug\n"
                "    node: ot-edge\n"
                "    owner: ot-control\n"
                "    options:\n"
                f"      brokers: ['127.0.0.1:{broker.port}']\n"
                "      group_id: sim\n"
                "      edge_node_id: edge1\n"
                "      primary_host_id: scada\n"
                "      startup_delay: 100ms\n"
            )
            (tmp_path / "seam.yaml").write_text(plant.contract_yaml().replace("sinks:\n", sink, 1))
            write_new_key(tmp_path / DIODE_KEY)
            run = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "otseam.cli", "run", "seam.yaml", "--node", "ot-edge", "--http", "off", "--no-watch",
                cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            try:
                wanted = {("treated-water", "tank2-level"), ("raw-water", "tank1-temperature")}
                await wait_until(
                    lambda: wanted <= stored_points(tmp_path / "host.db") or run.returncode is not None,
                    within=40,
                    what="sim values stored by seam host",
                )
            finally:
                if run.returncode is None:
                    run.send_signal(signal.SIGTERM)
                _, err = await asyncio.wait_for(run.communicate(), 60)
        host.send_signal(signal.SIGTERM)
        await asyncio.wait_for(host.communicate(), 30)
    assert run.returncode == 0, err.decode()
    points = stored_points(tmp_path / "host.db")
    assert ("treated-water", "tank2-level") in points and ("raw-water", "tank1-temperature") in points
    with sqlite3.connect(tmp_path / "host.db") as conn:
        temperature = [v for (v,) in conn.execute(
            "SELECT value FROM sparkplug_metrics WHERE device='raw-water' AND metric='tank1-temperature' AND quality=192")]  # fmt: skip
        # Scaled by the contract (int16 tenths of a degree): about 11 °C, published as Double.
        assert temperature and all(9.0 < t < 13.0 for t in temperature)
        (online,) = conn.execute("SELECT online FROM sparkplug_state WHERE edge_node='edge1' AND device=''").fetchone()
    assert online == 0, "seam run's planned shutdown sent NDEATH"
