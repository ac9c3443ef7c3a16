"""The historian behind the core's sink runner, fed by a real journal: what `seam run` does, in one process."""

from __future__ import annotations

import asyncio
from pathlib import Path

from otseam.contract.models import Contract, SinkSpec, Site
from otseam.core.plugins import PluginContext, create_sink
from otseam.core.records import Quality, Record, Sample
from otseam.journal import Journal
from otseam.runtime.sinkrunner import RecordFilter, SinkStats, run_sink
from otseam.sinks.historian.query import query

T0 = 1_800_000_000.0


async def test_runner_delivers_the_journal_into_the_historian(tmp_path: Path) -> None:
    spec = SinkSpec(id="hist", type="historian", points=["plc1/*"])
    context = PluginContext(contract=Contract(site=Site(enterprise="acme", site="p")), data_dir=str(tmp_path))
    with Journal.open(tmp_path / "journal") as journal:
        stop = asyncio.Event()
        stats = SinkStats("hist")
        runner = asyncio.create_task(
            run_sink(
                create_sink(spec, context),
                journal.reader("hist"),
                stats=stats,
                record_filter=RecordFilter(spec.points, spec.events),
                stop=stop,
            )
        )
        for start in range(0, 2000, 100):
            batch: list[Record] = [
                Sample("plc1/level", float(i), Quality.GOOD, T0 + i, T0 + i) for i in range(start, start + 100)
            ]
            batch.append(Sample("plc2/other", 0.0, Quality.GOOD, T0, T0))  # filtered out by the spec
            journal.append(batch)
            await asyncio.sleep(0)  # a yield, so the runner interleaves with the appends (nothing waits on it)
        stop.set()
        await asyncio.wait_for(runner, 60)
        assert journal.reader("hist").committed == journal.last_offset
    result = query(tmp_path / "hist.db", "plc1/level", T0, T0 + 2000, limit=5000)
    assert [r.value for r in result.rows] == [float(i) for i in range(2000)]
    assert stats.delivered_records == 2000
