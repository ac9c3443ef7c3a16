"""The local historian sink: samples and events into an embedded SQLite database.

SQLite calls block, so all of them run on one dedicated worker thread (a single-thread executor): the
event loop never waits on the disk, and the connection is only ever used from that one thread.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from otseam.contract import plugin_options
from otseam.contract.models import SinkSpec
from otseam.core.records import Batch
from otseam.sinks.historian import store
from otseam.sinks.historian.options import HistorianConfigError, Options

#: Retention is applied at most this often (a DELETE per point, cheap but not free).
RETENTION_INTERVAL = 600.0


class HistorianSink:
    """Implements :class:`otseam.core.plugins.Sink`."""

    def __init__(self, spec: SinkSpec, data_dir: str) -> None:
        options = plugin_options.parse(Options, spec.options, f"sink {spec.id}", HistorianConfigError)
        self.sink_id = spec.id
        self.path = Path(options.path) if options.path else Path(data_dir) / f"{spec.id}.db"
        if not self.path.is_absolute():
            self.path = Path(data_dir) / self.path
        self.retention = options.retention
        self._executor: ThreadPoolExecutor | None = None
        self._writer: store.Writer | None = None
        self._last_retention = 0.0
        #: Rows actually inserted (repeats of already stored (source, offset) pairs are not counted).
        self.rows_written = 0

    async def start(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"historian-{self.sink_id}")
        if self._writer is None:
            loop = asyncio.get_running_loop()
            self._writer = await loop.run_in_executor(self._executor, self._open)

    def _open(self) -> store.Writer:
        return store.Writer(store.connect(self.path, create=True))

    async def deliver(self, batch: Batch) -> None:
        if self._writer is None:
            await self.start()
        assert self._executor is not None and self._writer is not None
        loop = asyncio.get_running_loop()
        added = await loop.run_in_executor(self._executor, self._writer.write, batch)
        self.rows_written += added
        if self.retention is not None and time.monotonic() - self._last_retention >= RETENTION_INTERVAL:
            self._last_retention = time.monotonic()
            await loop.run_in_executor(self._executor, self._writer.expire, time.time() - self.retention)

    async def expire_now(self) -> int:
        """Apply retention immediately (for tests and maintenance)."""
        if self._writer is None or self.retention is None:
            return 0
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._writer.expire, time.time() - self.retention)

    async def close(self) -> None:
        writer, executor = self._writer, self._executor
        self._writer = self._executor = None
        if executor is not None:
            if writer is not None:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(executor, writer.db.close)
            executor.shutdown(wait=False)
