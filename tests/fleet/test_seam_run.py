"""End to end: the simulated plant, `seam run` with a nats sink, and `seam fleet ingest` into PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import nats
import psycopg

from otseam.diode.config import write_new_key
from otseam.sim.contract import DIODE_KEY
from otseam.sim.plant import SimPlant
from tests.support.servers import Postgres, nats_jetstream
from tests.support.wait import wait_until_async


async def test_seam_run_publishes_the_plant_and_the_ingest_stores_it(pg_server: Postgres, tmp_path: Path) -> None:
    prefix = f"r{uuid.uuid4().hex[:8]}_"
    with nats_jetstream() as server:
        client = await nats.connect(server.url)
        await client.jetstream().add_stream(name="FLEET", subjects=["seam.>"])
        await client.close()
        environment = {**os.environ, "FLEET_DSN": pg_server.dsn}
        ingest = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "otseam.cli", "fleet", "ingest", "--server", server.url, "--dsn-env", "FLEET_DSN",
            "--table-prefix", prefix, env=environment, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with SimPlant(modbus_port=0, opcua=False, tick=0.2, seed=3) as plant:
            sink = (
                "sinks:\n"
                "  - id: fleet\n"
                "    type: nats\n"
                "    node: ot-edge\n"
                "    owner: ot-control\n"
                "    options:\n"
                f"      servers: ['{server.url}']\n"
                "      stream: FLEET\n"
            )
            (tmp_path / "seam.yaml").write_text(plant.contract_yaml().replace("sinks:\n", sink, 1))
            write_new_key(tmp_path / DIODE_KEY)
            run = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "otseam.cli", "run", "seam.yaml", "--node", "ot-edge", "--http", "off", "--no-watch",
                cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip

            async def stored() -> set[str]:
                async with await psycopg.AsyncConnection.connect(pg_server.dsn) as connection:
                    cursor = await connection.execute(f"SELECT DISTINCT point FROM {prefix}samples WHERE quality = 0")
                    return {str(p) for (p,) in await cursor.fetchall()}

            async def both() -> bool:
                return {"treated-water/tank2-level", "raw-water/tank1-temperature"} <= await stored()

            try:
                await wait_until_async(both, "the plant's values in PostgreSQL", 60, interval=0.3,
                                       ignore=(psycopg.errors.UndefinedTable,),
                                       abort=lambda: "a process exited" if run.returncode is not None
                                       or ingest.returncode is not None else None)  # fmt: skip
            finally:
                if run.returncode is None:
                    run.send_signal(signal.SIGTERM)
                _, run_err = await asyncio.wait_for(run.communicate(), 60)
                if ingest.returncode is None:
                    ingest.send_signal(signal.SIGTERM)
                _, ingest_err = await asyncio.wait_for(ingest.communicate(), 60)
    assert run.returncode == 0, run_err.decode()
    assert ingest.returncode == 0, ingest_err.decode()
    async with await psycopg.AsyncConnection.connect(pg_server.dsn) as connection:
        cursor = await connection.execute(
            f"SELECT site, value FROM {prefix}samples WHERE point = 'raw-water/tank1-temperature' AND quality = 0"
        )
        rows = await cursor.fetchall()
        cursor = await connection.execute(f'SELECT count(*), count(DISTINCT (source, "offset")) FROM {prefix}samples')
        total = await cursor.fetchone()
    # Scaled by the contract (int16 tenths of a degree): about 11 °C; the site path from the contract.
    assert rows and all(9.0 < float(v) < 13.0 for _, v in rows)  # type: ignore[arg-type]
    assert len({site for site, _ in rows}) == 1
    assert total is not None and total[0] == total[1]
