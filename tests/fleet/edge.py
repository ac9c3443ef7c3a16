"""A simulated site for the fleet tests and benchmark: a real journal, the real nats sink and its runner."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from otseam.contract.models import Contract, SinkSpec
from otseam.contract.models import Site as SiteModel
from otseam.core.plugins import PluginContext, create_sink
from otseam.core.records import Quality, Sample
from otseam.journal import Journal
from otseam.runtime.sinkrunner import Backoff, SinkStats, run_sink
from otseam.sinks.nats.sink import NatsSink


@dataclass
class Edge:
    site: str
    journal: Journal
    sink: NatsSink
    stats: SinkStats
    appended: int = 0
    last_offset: int = -1
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def open(cls, site: str, leaf_url: str, directory: Path, enterprise: str = "acme", **options: object) -> Edge:
        journal = Journal.open(directory / "journal", source=f"edge-{site}", sync="none")
        context = PluginContext(
            contract=Contract(site=SiteModel(enterprise=enterprise, site=site)), data_dir=str(directory)
        )
        spec = SinkSpec(id="fleet", type="nats", options={"servers": [leaf_url], "timeout": 5, **options})
        sink = create_sink(spec, context)
        assert isinstance(sink, NatsSink)
        return cls(site, journal, sink, SinkStats("fleet"))

    def start_sink(self) -> None:
        reader = self.journal.reader("fleet")
        backoff = Backoff(base=0.2, cap=2.0)
        self.tasks.append(asyncio.create_task(run_sink(self.sink, reader, stats=self.stats, backoff=backoff)))

    def append(self, devices: int, points: int, value: float) -> None:
        now = time.time()
        samples = [
            Sample(f"d{d}/p{p}", value + p, Quality.GOOD, now, now) for d in range(devices) for p in range(points)
        ]
        self.last_offset = self.journal.append(samples)
        self.appended += len(samples)

    def start_polling(self, devices: int, points: int, period: float) -> None:
        async def poll() -> None:
            value = 0.0
            while True:
                self.append(devices, points, value)
                value += 1
                await asyncio.sleep(period)  # the simulated polling period (the workload), not a wait

        self.tasks.append(asyncio.create_task(poll()))

    async def stop_polling(self) -> None:
        task = self.tasks.pop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    @property
    def delivered(self) -> bool:
        return self.stats.committed_offset >= self.last_offset

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.sink.close()
        self.journal.close()
