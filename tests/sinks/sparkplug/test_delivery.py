"""Nothing is lost: a broker outage of any length, and kill -9 of the publishing process.

The receiver is `seam host`'s application storing into SQLite with its idempotent key, so a value
that arrives twice (at-least-once delivery) is stored once; the tests check every value is stored.
The edge node waits for the host's STATE before publishing, as a Sparkplug edge with a primary host
does, so after a broker restart nothing is published before the host listens again.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from otseam.contract.models import SinkSpec
from otseam.core.plugins import PluginContext
from otseam.core.records import Quality, Sample
from otseam.host.app import HostApp
from otseam.host.store import SqliteStore
from otseam.journal import Journal
from otseam.runtime.sinkrunner import Backoff, SinkStats, run_sink
from otseam.sinks import sparkplug
from otseam.sinks.mqtt_common import parse_mqtt_options
from tests.support import servers

from .support import REPO, contract, wait_until


def stored(db: Path) -> list[float]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT value FROM sparkplug_metrics WHERE metric='flow' ORDER BY ts_ms")]


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[tuple[servers.Mosquitto, HostApp, Path]]:
    with servers.mosquitto() as broker:
        db = tmp_path / "host.db"
        store = SqliteStore(str(db))
        settings = parse_mqtt_options({"brokers": [f"127.0.0.1:{broker.port}"], "timeout": 2.0}, default_client_id="h")
        app = HostApp(settings, "scada", store)
        task = asyncio.create_task(app.run())
        await app.online.wait()
        try:
            yield broker, app, db
        finally:
            app.stop()
            await task
            await store.close()


async def test_a_broker_outage_loses_nothing(tmp_path: Path, host: tuple[servers.Mosquitto, HostApp, Path]) -> None:
    broker, _app, db = host
    journal = Journal.open(tmp_path / "journal")
    spec = SinkSpec(
        id="spb",
        type="sparkplug",
        options={"brokers": [f"127.0.0.1:{broker.port}"], "group_id": "plant", "edge_node_id": "edge1",
                 "primary_host_id": "scada", "startup_delay": "200ms", "timeout": 1.0, "max_metrics_per_message": 40},
    )  # fmt: skip
    sink = sparkplug.create(spec, PluginContext(contract(), str(tmp_path), journal=journal))
    reader = journal.reader("spb")
    stats = SinkStats("spb")
    runner = asyncio.create_task(run_sink(sink, reader, stats=stats, max_records=300, max_wait=0.05,
                                          backoff=Backoff(base=0.1, cap=0.5)))  # fmt: skip
    n = 0

    def append(count: int) -> None:
        nonlocal n
        journal.append([Sample("plc1/flow", float(i), Quality.GOOD, 1_700_000_000 + i / 1000, time.time())
                        for i in range(n + 1, n + count + 1)])  # fmt: skip
        n += count

    try:
        append(500)
        await wait_until(lambda: len(stored(db)) == 500, what="first 500 stored")
        broker.stop()
        # The outage: the edge keeps reading its devices, the journal keeps everything.
        for _ in range(10):
            append(300)
        noticed = lambda: stats.errors > 0 or stats.state == "retrying" or not sink.status()["online"]  # noqa: E731
        await wait_until(noticed, what="the sink to notice the outage")
        assert reader.committed == 500, "nothing is committed while no broker acknowledges"
        broker.start_again()
        await wait_until(lambda: len(stored(db)) == n, within=30, what="backlog delivered after the outage")
        await wait_until(lambda: reader.committed == n, what="cursor committed")
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        journal.close()
    assert stored(db) == [float(i) for i in range(1, n + 1)]
    assert sink.stats.sessions >= 2


async def test_kill_minus_9_of_the_publisher_loses_nothing(
    tmp_path: Path, host: tuple[servers.Mosquitto, HostApp, Path]
) -> None:
    broker, app, db = host
    total = 3000
    command = [
        sys.executable,
        "-m",
        "tests.sinks.sparkplug.edge_worker",
        str(tmp_path),
        str(broker.port),
        "scada",
        str(total),
    ]
    worker = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220
    try:
        # Mid-stream: some values stored, the journal still growing.
        await wait_until(lambda: len(stored(db)) >= 300, within=30, what="the stream to start")
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        at_kill = len(stored(db))
        assert at_kill < total, "killed too late to prove anything"
        # The host notices (the Will) and marks the node offline.
        await wait_until(lambda: not app.nodes[("plant", "edge1")].online, what="NDEATH from the Will")
        worker = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220
        await wait_until(lambda: len(stored(db)) == total, within=40, what="everything stored after the restart")
        assert worker.stdout is not None
        assert "drained" in await asyncio.to_thread(worker.stdout.read)
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait()
    assert stored(db) == [float(i) for i in range(1, total + 1)]
