"""``type: diode_send``: every batch leaves as FEC-protected, authenticated UDP datagrams, one way.

``deliver`` returns once the batch's datagrams have left the socket: on a one-way link nothing can
acknowledge them, so "delivered" means "sent with forward error correction"; the runner then commits.
The sink remembers the latest sample of every point and sends all of them as a snapshot every
``snapshot_interval``, which is how the IT side converges after losses beyond the FEC margin or a
receiver restart. It also serves replay requests (``seam diode replay``, see replay.py): a range of the
journal sent again, flagged as replay, so that the IT side backfills a gap it reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from otseam.contract import plugin_options
from otseam.core.records import Batch, Record, Sample
from otseam.diode.config import DiodeConfigError, DiodeSettings, load_key
from otseam.diode.sender import CurrentValues, DiodeSender
from otseam.journal import Journal
from otseam.runtime.sinkrunner import RecordFilter
from otseam.sinks.diode_send.options import Options, parse_target
from otseam.sinks.diode_send.replay import CHUNK, REQUEST_SUFFIX, ReplayError, ReplayRequest, answer

__all__ = ["DiodeSendSink", "parse_target", "sink_from_options"]

log = logging.getLogger(__name__)


#: How often the replay directory is looked at.
REPLAY_POLL = 0.5


class DiodeSendSink:
    def __init__(
        self,
        sender: DiodeSender,
        name: str = "diode_send",
        journal: Journal | None = None,
        replays: Path | None = None,
        record_filter: RecordFilter | None = None,
    ) -> None:
        """``journal`` and ``replays`` (the request directory): where replay requests are read from and
        served; without them the sink serves none."""
        self.name = name
        self.sender = sender
        self.current = CurrentValues()
        self._snapshots: asyncio.Task[None] | None = None
        self._journal = journal
        self._replays = replays
        self._filter = record_filter or RecordFilter()
        self._replay_task: asyncio.Task[None] | None = None
        self.replayed = 0

    async def start(self) -> None:
        await self.sender.start()
        self._snapshots = asyncio.create_task(self._snapshot_loop(), name=f"{self.name}-snapshots")
        if self._journal is not None and self._replays is not None:
            self._replays.mkdir(parents=True, exist_ok=True)
            self._replay_task = asyncio.create_task(self._replay_loop(), name=f"{self.name}-replays")

    async def _replay_loop(self) -> None:
        assert self._replays is not None
        while True:
            await asyncio.sleep(REPLAY_POLL)
            for request in sorted(self._replays.glob("*" + REQUEST_SUFFIX)):
                try:
                    result = await self.replay(ReplayRequest.from_json(request.read_text()))
                except (ReplayError, TypeError) as exc:
                    result = {"error": str(exc)}
                except OSError as exc:  # the link's trouble, or the request vanished: say so, go on
                    result = {"error": f"{exc.strerror or exc}"}
                with contextlib.suppress(OSError):
                    answer(request, result)
                log.info("diode replay %s: %s", request.name, result)

    async def replay(self, request: ReplayRequest) -> dict[str, Any]:
        """Send the records of ``request``'s range again, flagged as replay; what was sent."""
        journal = self._journal
        if journal is None:
            raise ReplayError("this diode sink has no journal to replay from")
        first_available, end = journal.first_offset, journal.next_offset() - 1
        position = max(request.from_offset if request.from_offset is not None else first_available, first_available)
        last = min(request.to_offset if request.to_offset is not None else end, end)
        cursor_name = f"{self.name}.replay"
        cursor = journal.reader(cursor_name)
        sent, first_sent, last_sent = 0, None, None
        try:
            while position <= last:
                batch = cursor._read(position, min(CHUNK, last - position + 1))
                if not batch.offsets:
                    break
                offsets: list[int] = []
                records: list[Record] = []
                for offset, record in zip(batch.offsets, batch.records, strict=True):
                    if offset > last:
                        break
                    if self._wanted(record, request):
                        offsets.append(offset)
                        records.append(record)
                if records:
                    await self.sender.send_records(batch.source, offsets, records, replay=True)
                    sent += len(records)
                    first_sent = offsets[0] if first_sent is None else first_sent
                    last_sent = offsets[-1]
                position = batch.offsets[-1] + 1
        finally:
            journal.remove_cursor(cursor_name)  # a replay's cursor must not hold the journal's retention
        self.replayed += sent
        return {"records": sent, "first_offset": first_sent, "last_offset": last_sent}

    def _wanted(self, record: Record, request: ReplayRequest) -> bool:
        if isinstance(record, Sample):
            if not self._filter.wants_point(record.point):
                return False
            when = record.gateway_ts
        else:
            if not self._filter.events:
                return False
            when = record.ts
        return (request.since is None or when >= request.since) and (request.until is None or when <= request.until)

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
        if self._replay_task:
            self._replay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replay_task
            self._replay_task = None
        if self._snapshots:
            self._snapshots.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._snapshots
            self._snapshots = None
        await self.sender.close()


def sink_from_options(
    options: dict[str, Any],
    name: str = "diode_send",
    contract_path: str = "",
    journal: Journal | None = None,
    replays: Path | None = None,
    record_filter: RecordFilter | None = None,
) -> DiodeSendSink:
    """Build from a contract sink's ``options`` (target, key_file, and the settings in docs/diode.md); a
    relative key_file is beside the contract file."""
    model = plugin_options.parse(Options, options, f"sink {name}", DiodeConfigError, contract_path=contract_path)
    settings = DiodeSettings.from_options(model.link_settings())
    key = load_key(model.key_file)
    sender = DiodeSender(parse_target(model.target), key, settings, bind=model.bind)
    return DiodeSendSink(sender, name, journal, replays, record_filter)
