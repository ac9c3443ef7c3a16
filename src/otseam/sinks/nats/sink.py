"""The ``nats`` sink: the journal into a JetStream stream on the site's leaf node.

``deliver`` publishes every message of a batch without waiting in between (each publication carries a
reply subject for its acknowledgement), then waits for all the stream's acknowledgements; only then does
it return and the runner commit the cursor. A negative or missing acknowledgement raises: the batch is
offered again and ``Nats-Msg-Id`` lets the stream drop what it already stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from otseam.contract import plugin_options
from otseam.core.records import Batch, Event, Sample
from otseam.sinks.nats import payload
from otseam.sinks.nats.connection import connect
from otseam.sinks.nats.options import Options
from otseam.sinks.nats.subjects import Subjects

if TYPE_CHECKING:
    import nats.aio.client
    import nats.js

    from otseam.contract.models import SinkSpec
    from otseam.core.plugins import PluginContext

log = logging.getLogger("otseam.nats")


class NatsSinkError(RuntimeError):
    """The stream did not acknowledge a batch (refused it, or the answer did not come in time)."""


class NatsConfigError(ValueError):
    """A nats sink's options are wrong; the message says which and how to fix it."""


def parse_options(options: dict[str, Any], *, sink_id: str, contract_path: str = "") -> Options:
    return plugin_options.parse(Options, options, f"nats sink {sink_id}", NatsConfigError, contract_path=contract_path)


Message = tuple[str, bytes, dict[str, str]]


@dataclass(slots=True)
class Counters:
    messages: int = 0
    records: int = 0
    batches: int = 0
    duplicates: int = 0
    #: Seconds from the first publication of a batch to its last acknowledgement, summed.
    ack_seconds: float = 0.0


class NatsSink:
    def __init__(self, spec: SinkSpec, context: PluginContext, options: Options) -> None:
        self.spec = spec
        self.options = options
        self.max_batch = options.max_batch
        self.site = "/".join(context.contract.site.path)
        self.subjects = Subjects(options.subject_prefix, context.contract.site.path)
        self.counters = Counters()
        self._client: nats.aio.client.Client | None = None
        self._js: nats.js.JetStreamContext | None = None

    # --- messages ---------------------------------------------------------------------------------

    def _headers(self, kind: str, msg_id: str) -> dict[str, str]:
        headers = {payload.MSG_ID: msg_id, payload.KIND: kind, payload.SITE: self.site}
        if self.options.stream:
            headers["Nats-Expected-Stream"] = self.options.stream
        return headers

    def messages(self, batch: Batch) -> list[Message]:
        """The messages for ``batch``: events one by one, samples one by one or as one run per device."""
        source = batch.source
        out: list[Message] = []
        runs: dict[str, tuple[list[int], list[Sample]]] = {}
        per_sample = self.options.message == "sample"
        for offset, record in zip(batch.offsets, batch.records, strict=True):
            if type(record) is Sample:
                if per_sample:
                    out.append((self.subjects.point(record.point), payload.encode_sample(source, offset, record),
                                self._headers(payload.SAMPLE, payload.message_id(source, offset))))  # fmt: skip
                else:
                    device = record.point.split("/", 1)[0]
                    run = runs.get(device)
                    if run is None:
                        run = runs[device] = ([], [])
                    run[0].append(offset)
                    run[1].append(record)
            elif isinstance(record, Event):
                out.append((self.subjects.event(record.kind), payload.encode_event(source, offset, record),
                            self._headers(payload.EVENT, payload.message_id(source, offset))))  # fmt: skip
        for device, (offsets, samples) in runs.items():
            msg_id = payload.message_id(source, offsets[0], offsets[-1])
            out.append((self.subjects.device(device), payload.encode_run(source, offsets, samples),
                        self._headers(payload.COLUMNS, msg_id)))  # fmt: skip
        return out

    # --- the Sink protocol ------------------------------------------------------------------------

    async def start(self) -> None:
        # Connecting lazily in deliver: a leaf node that is down at start-up is an outage like any other.
        return None

    async def _jetstream(self) -> nats.js.JetStreamContext:
        if self._js is None:
            client = await connect(self.options, f"seam-{self.spec.id}", f"the nats sink {self.spec.id}")
            self._client = client
            self._js = client.jetstream(
                timeout=self.options.timeout, publish_async_max_pending=self.options.max_pending
            )
        return self._js

    async def deliver(self, batch: Batch) -> None:
        if not batch.records:
            return
        messages = self.messages(batch)
        if not messages:
            return
        js = await self._jetstream()
        started = time.perf_counter()
        acks: list[Awaitable[Any]] = []
        try:
            for subject, data, headers in messages:
                acks.append(await js.publish_async(subject, data, wait_stall=self.options.timeout, headers=headers))
            results = await asyncio.wait_for(
                asyncio.gather(*acks, return_exceptions=True), timeout=self.options.timeout
            )
        except TimeoutError:
            for ack in acks:
                if isinstance(ack, asyncio.Future):
                    ack.cancel()
            raise NatsSinkError(
                f"nats sink {self.spec.id}: no acknowledgement from the stream within {self.options.timeout:g} s "
                f"for {len(messages)} messages; the batch stays in the journal and is sent again"
            ) from None
        except Exception as exc:
            raise NatsSinkError(f"nats sink {self.spec.id}: publishing failed: {exc}") from exc
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise NatsSinkError(
                f"nats sink {self.spec.id}: the stream refused {len(failures)} of {len(messages)} messages "
                f"(first: {failures[0]!r}); the batch stays in the journal and is sent again"
            )
        self.counters.duplicates += sum(1 for r in results if getattr(r, "duplicate", False))
        self.counters.ack_seconds += time.perf_counter() - started
        self.counters.messages += len(messages)
        self.counters.records += len(batch.records)
        self.counters.batches += 1

    async def close(self) -> None:
        client, self._client, self._js = self._client, None, None
        if client is not None and not client.is_closed:
            try:
                await client.drain()
            except Exception as exc:  # closing after an outage: nothing left to lose, the journal holds it
                log.debug("nats sink %s: closing: %s", self.spec.id, exc)
                await client.close()

    def health(self) -> dict[str, object]:
        client = self._client
        return {
            "status": "ok" if client is not None and client.is_connected else "down",
            "messages": self.counters.messages,
            "records": self.counters.records,
            "duplicates_dropped_by_server": self.counters.duplicates,
        }
