"""The fleet ingest: the hub's fleet stream into PostgreSQL, exactly once.

A durable pull consumer with explicit acknowledgements: any number of processes bind to the same
durable name and the server hands each fetch to one of them. A fetch is stored in one transaction and its
messages are acknowledged only after COMMIT. A process that dies between COMMIT and the acknowledgements
leaves the messages to be delivered again after ``ack_wait``; the primary key ``(source, offset, ...)``
makes that second insert add nothing. So every journal record is stored once, whatever fails.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from otseam.contract import plugin_options
from otseam.core.records import Event, Severity
from otseam.sinks.nats import payload
from otseam.sinks.nats.connection import connect
from otseam.sources.fleet_ingest.options import Options

if TYPE_CHECKING:
    import nats.aio.client
    import nats.aio.msg
    import psycopg

    from otseam.contract.models import SourceSpec
    from otseam.core.plugins import Emit, PluginContext

log = logging.getLogger("otseam.fleet")


class FleetIngestError(RuntimeError):
    pass


@dataclass(slots=True)
class IngestStats:
    messages: int = 0
    records: int = 0
    #: Rows actually added (records minus those already stored: redeliveries, replays).
    rows: int = 0
    redelivered: int = 0
    #: Messages that are not Seam's (or damaged): terminated so they are not delivered again, and reported.
    rejected: int = 0
    state: str = "starting"
    last_error: str = ""
    started: float = field(default_factory=time.time)


class FleetIngestSource:
    def __init__(self, spec: SourceSpec, context: PluginContext) -> None:
        self.spec = spec
        self.context = context
        self.options = plugin_options.parse(
            Options, spec.options, f"fleet_ingest source {spec.id}", ValueError, contract_path=context.contract_path
        )
        from otseam.sources.fleet_ingest.store import FleetTables

        self.tables = FleetTables(self.options.schema_, self.options.table_prefix)
        self.stats = IngestStats()
        self._stop = asyncio.Event()

    def _dsn(self) -> str:
        if self.options.dsn:
            return self.options.dsn
        assert self.options.dsn_env
        value = os.environ.get(self.options.dsn_env)
        if not value:
            raise FleetIngestError(f"source {self.spec.id}: the environment variable {self.options.dsn_env} is not set")
        return value

    async def run(self, emit: Emit) -> None:
        """Runs until cancelled; an unreachable hub or database is retried with a growing pause."""
        pause = 0.5
        while not self._stop.is_set():
            try:
                await self._session(emit)
                pause = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.state = "down"
                self.stats.last_error = str(exc) or type(exc).__name__
                log.warning("fleet ingest %s: %s; retrying in %.1f s", self.spec.id, self.stats.last_error, pause)
                await asyncio.sleep(pause)  # back-off between attempts, not a synchronisation
                pause = min(pause * 2, 10.0)

    def stop(self) -> None:
        """Finish the fetch in hand (stored and acknowledged), then return from run."""
        self._stop.set()

    async def _consumer(self, client: nats.aio.client.Client) -> Any:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        js = client.jetstream(timeout=self.options.timeout)
        config = ConsumerConfig(
            durable_name=self.options.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.options.ack_wait,
            max_ack_pending=self.options.max_ack_pending,
            filter_subject=self.options.filter_subject,
        )
        # Idempotent: every process declares the same consumer; the first creates it.
        await js.add_consumer(self.options.stream, config)
        return await js.pull_subscribe_bind(self.options.durable, stream=self.options.stream)

    async def _session(self, emit: Emit) -> None:
        import nats.errors
        import psycopg

        connection = await psycopg.AsyncConnection.connect(self._dsn(), connect_timeout=int(self.options.timeout))
        client = None
        try:
            async with connection.transaction():
                for statement in self.tables.create():
                    await connection.execute(statement)
            client = await connect(self.options, f"seam-{self.spec.id}", f"the fleet_ingest source {self.spec.id}")
            subscription = await self._consumer(client)
            self.stats.state = "ok"
            while not self._stop.is_set():
                try:
                    messages = await subscription.fetch(self.options.fetch_batch, timeout=1.0)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                await self._store(connection, messages, emit)
        finally:
            if client is not None:
                await client.close()
            await connection.close()

    async def _store(
        self, connection: psycopg.AsyncConnection[tuple[object, ...]], messages: list[nats.aio.msg.Msg], emit: Emit
    ) -> None:
        decoded: list[payload.Decoded] = []
        keep: list[nats.aio.msg.Msg] = []
        bad: list[tuple[nats.aio.msg.Msg, str]] = []
        for message in messages:
            try:
                decoded.append(payload.decode(message.headers, message.data))
                keep.append(message)
            except payload.PayloadError as exc:
                bad.append((message, str(exc)))
        added = await self.tables.store(connection, decoded) if decoded else 0
        # Only now, after COMMIT: acknowledge. A crash before this line means redelivery, stored once.
        for message in keep:
            await message.ack()
        for message, _reason in bad:
            await message.term()
        self.stats.messages += len(messages)
        self.stats.records += sum(len(d.records) for d in decoded)
        self.stats.rows += added
        self.stats.redelivered += sum(1 for m in keep if m.metadata.num_delivered and m.metadata.num_delivered > 1)
        if bad:
            self.stats.rejected += len(bad)
            subject = bad[0][0].subject
            log.error(
                "fleet ingest %s: %d message(s) rejected, first on %s: %s", self.spec.id, len(bad), subject, bad[0][1]
            )
            await emit([Event(time.time(), "fleet.rejected", self.spec.id, Severity.HIGH,
                              f"{len(bad)} message(s) from the fleet stream are not Seam records and were not stored",
                              {"subject": subject, "reason": bad[0][1]})])  # fmt: skip

    def health(self) -> dict[str, object]:
        s = self.stats
        return {"status": s.state, "messages": s.messages, "records": s.records, "rows": s.rows,
                "redelivered": s.redelivered, "rejected": s.rejected, "last_error": s.last_error}  # fmt: skip

    @property
    def healthy(self) -> bool:
        return self.stats.state == "ok"
