"""The fleet end to end on loopback: edges → site leaf nodes → hub cluster → fleet ingest → PostgreSQL.

A site's link is cut for two minutes while it publishes (``SEAM_FLEET_CUT_SECONDS`` sets another length
for a quick run by hand), then restored; a hub
server is killed while the ingest runs. Every sample must be stored exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import nats
import psycopg
import pytest

from otseam.contract.models import Contract, SourceSpec
from otseam.contract.models import Site as SiteModel
from otseam.core.plugins import PluginContext, create_source
from otseam.sources.fleet_ingest.source import FleetIngestSource
from tests.fleet.edge import Edge
from tests.fleet.topology import FLEET, fleet, make_streams
from tests.support.servers import Postgres, nats_jetstream
from tests.support.wait import wait_until_async

CUT_SECONDS = float(os.environ.get("SEAM_FLEET_CUT_SECONDS", "120"))

pytestmark = pytest.mark.timeout(int(CUT_SECONDS) + 400)


def ingest(name: str, servers: list[str], dsn: str, prefix: str, tmp: Path, **options: object) -> FleetIngestSource:
    context = PluginContext(contract=Contract(site=SiteModel(enterprise="acme", site="it")), data_dir=str(tmp))
    spec = SourceSpec(id=name, type="fleet_ingest", options={"servers": servers, "dsn": dsn, "table_prefix": prefix,
                                                             "ack_wait": 5, "fetch_batch": 100, **options})  # fmt: skip
    source = create_source(spec, context)
    assert isinstance(source, FleetIngestSource)
    return source


async def count(dsn: str, prefix: str, source: str | None = None) -> tuple[int, int]:
    """(rows, distinct (source, offset)) stored, for one journal or all."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        where = "WHERE source = %s" if source else ""
        cursor = await connection.execute(
            f'SELECT count(*), count(DISTINCT (source, "offset")) FROM {prefix}samples {where}',
            (source,) if source else (),
        )
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0]), int(row[1])  # type: ignore[call-overload]


async def no_events(records: object) -> None:
    raise AssertionError(f"the ingest reported {records!r}")


async def test_shared_consumer_stores_each_record_once(pg_server: Postgres, tmp_path: Path) -> None:
    """Two processes on one durable consumer, a consumer that fetched and died before acknowledging, and
    a replay of rows already stored: each record once."""
    prefix = f"f{uuid.uuid4().hex[:8]}_"
    with nats_jetstream() as server:
        client = await nats.connect(server.url)
        js = client.jetstream()
        await js.add_stream(name=FLEET, subjects=["seam.>"])
        edge = Edge.open("site1", server.url, tmp_path / "edge", max_batch=50)
        edge.start_sink()
        for value in range(20):
            edge.append(devices=3, points=10, value=float(value))
        await wait_until_async(lambda: edge.delivered, "the edge's journal in the stream")
        # A process that fetched 10 messages and died without acknowledging them.
        a, b = (ingest(n, [server.url], pg_server.dsn, prefix, tmp_path) for n in ("ingest-a", "ingest-b"))
        from nats.js.api import AckPolicy, ConsumerConfig

        await js.add_consumer(FLEET, ConsumerConfig(durable_name="seam-fleet-ingest", ack_policy=AckPolicy.EXPLICIT,
                                                    ack_wait=5, max_ack_pending=20000))  # fmt: skip
        lost = await js.pull_subscribe_bind("seam-fleet-ingest", stream=FLEET)
        assert len(await lost.fetch(10, timeout=5)) == 10
        await client.close()
        tasks = [asyncio.create_task(s.run(no_events)) for s in (a, b)]
        await wait_until_async(lambda: edge.appended == a.stats.rows + b.stats.rows, "every record stored", 60)
        rows, distinct = await count(pg_server.dsn, prefix)
        assert rows == distinct == edge.appended == 600
        assert a.stats.redelivered + b.stats.redelivered >= 10
        # A replay of the whole journal (a new consumer reading from the start): nothing added.
        c = ingest("ingest-c", [server.url], pg_server.dsn, prefix, tmp_path, durable="replay")
        tasks.append(asyncio.create_task(c.run(no_events)))
        await wait_until_async(lambda: c.stats.records == 600, "the replay read")
        assert c.stats.rows == 0
        assert await count(pg_server.dsn, prefix) == (600, 600)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await edge.close()


async def test_fleet_survives_a_cut_site_and_a_dead_hub_server(pg_server: Postgres, tmp_path: Path) -> None:
    prefix = f"f{uuid.uuid4().hex[:8]}_"
    with fleet(["site1", "site2"]) as running:
        await make_streams(running, "seam", "acme")
        edges = {name: Edge.open(name, site.server.url, tmp_path / name, max_batch=500)
                 for name, site in running.sites.items()}  # fmt: skip
        for edge in edges.values():
            edge.start_sink()
            edge.start_polling(devices=2, points=25, period=0.1)  # 500 samples/s per site
        # Two ingest processes (`seam fleet ingest`) on one durable consumer, as an IT node would run them.
        command = ["fleet", "ingest", "--dsn-env", "FLEET_DSN", "--table-prefix", prefix]
        for url in running.hub_urls:
            command += ["--server", url]
        environment = {**os.environ, "FLEET_DSN": pg_server.dsn}
        logs = [tmp_path / f"ingest-{i}.log" for i in range(2)]
        handles = [log.open("wb") for log in logs]
        ingests = [
            await asyncio.create_subprocess_exec(sys.executable, "-m", "otseam.cli", *command, env=environment,
                                                 stdout=asyncio.subprocess.DEVNULL, stderr=handle)
            for handle in handles
        ]  # fmt: skip
        site1 = edges["site1"].journal.source

        async def stored(source: str, at_least: int) -> bool:
            return (await count(pg_server.dsn, prefix, source))[0] >= at_least

        await wait_until_async(
            lambda: stored(site1, 500),
            "site1's samples in PostgreSQL",
            60,
            interval=0.2,
            ignore=(psycopg.errors.UndefinedTable,),
        )
        # --- cut site1's link to the hub while it keeps publishing to its own leaf node
        running.sites["site1"].cut()
        published_before = edges["site1"].sink.counters.records
        end = time.monotonic() + CUT_SECONDS
        await wait_until_async(lambda: time.monotonic() >= end, "the cut's length", CUT_SECONDS + 5, interval=0.5)
        assert edges["site1"].sink.counters.records > published_before, "the leaf stopped accepting while cut"
        held_at_site = edges["site1"].appended
        running.sites["site1"].restore()
        # --- the backlog flows again; meanwhile kill the hub server leading the fleet stream
        await wait_until_async(lambda: stored(site1, held_at_site // 2), "site1's backlog arriving", 120, interval=0.2)
        client = await nats.connect(running.hub_urls)
        info = await client.jetstream().stream_info(FLEET)
        await client.close()
        assert info.cluster is not None and info.cluster.leader
        victim = next(server for server in running.hub if server.name == info.cluster.leader)
        victim.stop(kill=True)
        total_at_kill = sum(e.appended for e in edges.values())
        await wait_until_async(
            lambda: stored(site1, held_at_site + 500), "ingest going on with two hub servers", 120, interval=0.2
        )
        for edge in edges.values():
            await edge.stop_polling()
        await wait_until_async(lambda: all(e.delivered for e in edges.values()), "the edges' journals delivered", 120)
        total = sum(e.appended for e in edges.values())
        assert total > total_at_kill

        async def all_stored() -> bool:
            return (await count(pg_server.dsn, prefix))[0] >= total

        await wait_until_async(all_stored, f"all {total} samples in PostgreSQL", 180, interval=0.5)
        for edge in edges.values():
            assert await count(pg_server.dsn, prefix, edge.journal.source) == (edge.appended, edge.appended)
        async with await psycopg.AsyncConnection.connect(pg_server.dsn) as connection:
            cursor = await connection.execute(
                f'SELECT site, min("offset"), max("offset"), count(*) FROM {prefix}samples GROUP BY site ORDER BY site'
            )
            per_site = await cursor.fetchall()
        assert [(s, n) for s, _, _, n in per_site] == [
            (f"acme/{name}", edges[name].appended) for name in ("site1", "site2")
        ]
        for _, first, last, n in per_site:
            assert last - first + 1 == n  # no offset missing
        for process in ingests:
            assert process.returncode is None, "an ingest process died"
            process.send_signal(signal.SIGTERM)
        for process, log, handle in zip(ingests, logs, handles, strict=True):
            await asyncio.wait_for(process.wait(), 60)
            handle.close()
            assert process.returncode == 0, log.read_text()
            assert "fleet.rejected" not in log.read_text()
        for edge in edges.values():
            await edge.close()
