"""Out of the box: `seam run` on the contract the sim prints records the sim's values as they are."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from otseam.diode.config import write_new_key
from otseam.sim.contract import DIODE_KEY
from otseam.sim.plant import SimPlant
from tests.support.wait import wait_until_async


async def seam(*args: str, cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "otseam.cli",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_seam_run_polls_the_sim_into_its_historian(tmp_path: Path) -> None:
    async with SimPlant(modbus_port=0, opcua=False, tick=0.2, seed=2) as plant:
        (tmp_path / "seam.yaml").write_text(plant.contract_yaml())
        write_new_key(tmp_path / DIODE_KEY)
        run = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "otseam.cli", "run", "seam.yaml", "--node", "ot-edge", "--http", "off", "--no-watch",
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            # Bounded wait for a few polls of every unit (the contract polls at the sim's tick).
            polled = lambda: plant.modbus.stats.requests >= 60 or run.returncode is not None  # noqa: E731
            await wait_until_async(polled, "60 requests from seam run", interval=0.1)
        finally:
            if run.returncode is None:
                run.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(run.communicate(), 60)
        assert run.returncode == 0, err.decode()
        assert plant.modbus.stats.requests >= 60

    async def rows(point: str) -> list[dict[str, object]]:
        code, out, err = await seam(
            "query", point, "--contract", "seam.yaml", "--node", "ot-edge", "--format", "json", cwd=tmp_path
        )
        assert code == 0, err
        found: list[dict[str, object]] = json.loads(out)["rows"]
        assert found, f"nothing recorded for {point}"
        return found

    name = await rows("raw-water/plant-name")
    assert {r["value"] for r in name if r["quality"] == "good"} == {"SEAM-SIM-WTP"}
    # int16 tenths of a degree, scaled by the contract's factor 0.1: about 11 °C, not about 110.
    temperature = [float(r["value"]) for r in await rows("raw-water/tank1-temperature") if r["quality"] == "good"]
    assert temperature and all(9.0 < t < 13.0 for t in temperature)
    # A CDAB float decoded in the right word order is a level inside the tank, not nonsense.
    level = [float(r["value"]) for r in await rows("treated-water/tank2-level") if r["quality"] == "good"]
    assert level and all(0.0 <= v <= 3.0 for v in level)
