"""``type: diode_send``: every batch leaves as FEC-protected, authenticated UDP datagrams, one way.

``deliver`` returns once the batch's datagrams have left the socket: on a one-way link nothing can
acknowledge them, so "delivered" means "sent with forward error correction"; the runner then commits.
The sink remembers the latest sample of every point and sends all of them as a snapshot every
``snapshot_interval``, which is how the IT side converges after losses beyond the FEC margin or a
receiver restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from otseam.contract import plugin_options
from otseam.core.records import Batch
from otseam.diode.config import DiodeConfigError, DiodeSettings, load_key
from otseam.diode.sender import CurrentValues, DiodeSender
from otseam.sinks.diode_send.options import Options, parse_target

__all__ = ["DiodeSendSink", "parse_target", "sink_from_options"]

log = logging.getLogger(__name__)


class DiodeSendSink:
    def __init__(self, sender: DiodeSender, name: str = "diode_send") -> None:
        self.name = name
        self.sender = sender
        self.current = CurrentValues()
        self._snapshots: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.sender.start()
        self._snapshots = asyncio.create_task(self._snapshot_loop(), name=f"{self.name}-snapshots")

    async def deliver(self, batch: Batch) -> None:
        if not batch.records:
            return
        self.current.update(batch.source, batch.offsets, batch.records)
        await self.sender.send_records(batch.source, batch.offsets, batch.records)

    async def send_snapshot(self) -> int:
        """Send every point's latest value now; returns how many."""
        offsets, records = self.current.snapshot()
        if records:
            await self.sender.send_records(self.current.source, offsets, records, snapshot=True)
        return len(records)

    async def _snapshot_loop(self) -> None:
        interval = self.sender.settings.snapshot_interval
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            try:
                await self.send_snapshot()
            except OSError as exc:  # the link's trouble; the next snapshot tries again
                log.warning("diode snapshot not sent: %s", exc)

    async def close(self) -> None:
        if self._snapshots:
            self._snapshots.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._snapshots
            self._snapshots = None
        await self.sender.close()


def sink_from_options(options: dict[str, Any], name: str = "diode_send", contract_path: str = "") -> DiodeSendSink:
    """Build from a contract sink's ``options`` (target, key_file, and the settings in docs/diode.md); a
    relative key_file is beside the contract file."""
    model = plugin_options.parse(Options, options, f"sink {name}", DiodeConfigError, contract_path=contract_path)
    settings = DiodeSettings.from_options(model.link_settings())
    key = load_key(model.key_file)
    return DiodeSendSink(DiodeSender(parse_target(model.target), key, settings, bind=model.bind), name)
