"""`seam fleet ingest` as an operator runs it: a process against a real NATS server and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import nats
import psycopg

from tests.fleet.edge import Edge
from tests.support.servers import Postgres, nats_jetstream
from tests.support.wait import wait_until, wait_until_async

SEAM = str(Path(sys.executable).with_name("seam"))


def seam(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"), **(env or {})}
    return subprocess.Popen([SEAM, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)


def test_bad_options_are_one_line_and_exit_2(tmp_path: Path) -> None:
    process = seam("fleet", "ingest", "--server", "127.0.0.1:4222", "--dsn-env", "X")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2, err
    assert "nats://host:port" in err and "Traceback" not in err
    process = seam(
        "fleet", "ingest", "--server", "nats://127.0.0.1:4222", "--dsn-env", "X", "--creds", str(tmp_path / "no")
    )
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2 and "no file at" in err and "Traceback" not in err


async def test_ingest_process_stores_and_stops_cleanly(pg_server: Postgres, tmp_path: Path) -> None:
    prefix = f"c{uuid.uuid4().hex[:8]}_"
    with nats_jetstream() as server:
        client = await nats.connect(server.url)
        await client.jetstream().add_stream(name="FLEET", subjects=["seam.>"])
        await client.close()
        edge = Edge.open("site1", server.url, tmp_path / "edge")
        edge.start_sink()
        for value in range(5):
            edge.append(devices=2, points=10, value=float(value))
        await wait_until_async(lambda: edge.delivered, "the edge's journal in the stream")
        await edge.close()
        process = seam("fleet", "ingest", "--server", server.url, "--dsn-env", "FLEET_DSN", "--table-prefix", prefix,
                       env={"FLEET_DSN": pg_server.dsn})  # fmt: skip
        try:

            def stored() -> bool:
                with psycopg.connect(pg_server.dsn) as connection:
                    row = connection.execute(f"SELECT count(*) FROM {prefix}samples").fetchone()
                    return row is not None and row[0] == 100

            wait_until(stored, "100 rows from `seam fleet ingest`", 60, interval=0.2,
                       ignore=(psycopg.errors.UndefinedTable,),
                       abort=lambda: f"exited with {process.returncode}" if process.poll() is not None else None)  # fmt: skip
        finally:
            process.terminate()
            _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert pg_server.dsn not in err  # the connection string never reaches the log
