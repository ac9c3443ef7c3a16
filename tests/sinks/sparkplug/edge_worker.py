"""A complete edge publisher in its own process, for the kill -9 test.

Usage: python -m tests.sinks.sparkplug.edge_worker <data dir> <broker port> <host id> <records>

Appends records 1..N to the journal (record n: plc1/flow = n, source time base + n ms) in small
chunks, skipping what a previous life already appended, while the sink runner delivers them over
Sparkplug. Prints "appended <n>" after each chunk and "drained" once everything is committed.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from otseam.contract.models import SinkSpec
from otseam.core.plugins import PluginContext
from otseam.core.records import Quality, Sample
from otseam.journal import Journal
from otseam.runtime.sinkrunner import Backoff, SinkStats, run_sink
from otseam.sinks import sparkplug
from tests.sinks.sparkplug.support import contract
from tests.support.wait import wait_until_async

BASE = 1_700_000_000.0


def record(n: int) -> Sample:
    return Sample("plc1/flow", float(n), Quality.GOOD, BASE + n / 1000, time.time())


async def main(data_dir: Path, port: int, host_id: str, total: int) -> None:
    journal = Journal.open(data_dir / "journal", sync="interval")
    spec = SinkSpec(
        id="spb",
        type="sparkplug",
        options={
            "brokers": [f"127.0.0.1:{port}"],
            "group_id": "plant",
            "edge_node_id": "edge1",
            "primary_host_id": host_id,
            "startup_delay": 0,
            "timeout": 2.0,
            "max_metrics_per_message": 50,
        },
    )
    sink = sparkplug.create(spec, PluginContext(contract(), str(data_dir), journal=journal))
    stats = SinkStats("spb")
    reader = journal.reader("spb")
    runner = asyncio.create_task(
        run_sink(sink, reader, stats=stats, max_records=200, max_wait=0.05, backoff=Backoff(base=0.1, cap=1.0))
    )
    while journal.last_offset < total:
        first = journal.last_offset + 1
        journal.append([record(n) for n in range(first, min(total, first + 49) + 1)])
        print(f"appended {journal.last_offset}", flush=True)
        await asyncio.sleep(0.02)  # the behaviour: an edge appending over time, so a kill lands mid-stream
    await wait_until_async(lambda: reader.committed >= total, "the cursor to commit everything", within=300)
    print("drained", flush=True)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    journal.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
