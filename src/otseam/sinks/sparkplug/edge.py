"""The Sparkplug B edge node: one MQTT session at a time, births, data from the journal, commands.

Delivery is at-least-once up to the broker: ``deliver`` returns once the broker has taken every message
of the batch, and only then does the sink runner commit the journal cursor. Sparkplug 3.0 publishes
births and data at QoS 0, which has no acknowledgement; so after a batch the edge sends one
UNSUBSCRIBE (of a filter it never subscribed) and waits for its UNSUBACK. A broker handles the packets of
one connection in order, so that answer means every message before it was received and routed. With
the deviation ``qos: 1`` the PUBACKs are the confirmation instead. While no session is up,
``deliver`` waits a bounded time and then raises, so the backlog stays in the journal (memory stays
flat) and is replayed once a broker accepts us again. Any failure during a delivery ends the session:
the next one starts with a new bdSeq and fresh births, so host applications never see a half-told
story (a seq gap they cannot explain).

Commands: the only one that acts is ``Node Control/Rebirth``. Every other NCMD or DCMD metric is
refused; each command that arrives, refused or not, is a record of the node's hash-chained audit log
(``sparkplug.command.refused``, ``sparkplug.rebirth``). There is no path from MQTT to a device's registers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from otseam.audit.log import AuditLog, authority_dir
from otseam.audit.refusals import Refusals
from otseam.contract.models import SinkSpec
from otseam.core.plugins import JournalWriter, PluginContext
from otseam.core.records import Batch, Event, Severity
from otseam.protocols.sparkplug.codec import PayloadError, decode_payload
from otseam.sinks.mqtt_common import BrokerAddress, make_client
from otseam.sinks.mqtt_common.publish import disconnect_with_will, publish_all
from otseam.sinks.mqtt_common.sockets import disconnect_reason, release_stale_writer, socket_fd
from otseam.sinks.sparkplug.bdseq import BdSeqStore
from otseam.sinks.sparkplug.model import REBIRTH, EdgeModel, Message, ms
from otseam.sinks.sparkplug.settings import SparkplugOptions

log = logging.getLogger(__name__)


class NotConnected(ConnectionError):
    """No Sparkplug session is up (broker unreachable, or the primary host is offline)."""


class _MoveOn(Exception):
    """The primary host went offline on this broker: leave it for the next one."""


@dataclass(slots=True)
class EdgeStats:
    sessions: int = 0
    births: int = 0
    messages: int = 0
    metrics: int = 0
    unchanged: int = 0
    unknown_points: int = 0
    rebirth_requests: int = 0
    refused_commands: int = 0
    broker: str = ""


class SparkplugSink:
    def __init__(self, spec: SinkSpec, context: PluginContext, options: SparkplugOptions) -> None:
        self.spec = spec
        self.options = options
        self.model = EdgeModel(
            context.contract,
            options.group_id,
            options.edge_node_id,
            aliases=options.aliases,
            report_by_exception=options.report_by_exception,
            max_metrics_per_message=options.max_metrics_per_message,
            datatype_in_data=options.datatype_in_data,
            quality_codes=options.quality_codes,
        )
        self.bdseq_store = BdSeqStore(Path(context.data_dir) / "sparkplug" / spec.id / "bdseq")
        journal = context.journal
        self.refusals = Refusals(
            AuditLog(
                authority_dir(context.data_dir),
                node=context.node,
                journal=journal if isinstance(journal, JournalWriter) else None,
                clock=context.clock,
            ),
            f"sink:{spec.id}",
        )
        self.stats = EdgeStats()
        #: Audit events raised here, also kept in memory (bounded) for `seam` status and the tests.
        self.audit_events: list[Event] = []
        self.bdseq = -1
        self._client: aiomqtt.Client | None = None
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()
        self._session_task: asyncio.Task[None] | None = None
        self._kill_session: asyncio.Event = asyncio.Event()
        self._closing = False
        self._host_online_ts: int | None = None
        #: A filter this client never subscribes: unsubscribing it is a round trip, nothing more.
        self._barrier = f"seam/delivery-barrier/{options.group_id}/{options.edge_node_id}"

    # --- the Sink protocol ----------------------------------------------------------------------

    async def start(self) -> None:
        for deviation in self.options.deviations():
            log.warning("sparkplug %s deviates from Sparkplug B 3.0: %s", self.spec.id, deviation)
        if self._session_task is None or self._session_task.done():
            self._closing = False
            self._session_task = asyncio.create_task(self._sessions(), name=f"sparkplug:{self.spec.id}")

    async def deliver(self, batch: Batch) -> None:
        if not batch.records:
            return
        await self._wait_ready()
        async with self._lock:
            client = self._client
            if client is None or not self._ready.is_set():
                raise NotConnected("the Sparkplug session ended before delivery")
            plan = self.model.plan(batch, ms(time.time()))
            try:
                await self._publish(client, plan.messages)
            except BaseException:
                # Some messages may have reached the broker, some not: end this session so the hosts get
                # fresh births, and let the runner offer the same batch again (receivers deduplicate).
                self._end_session()
                raise
            self.model.commit(plan)
        self.stats.unchanged += plan.unchanged
        self.stats.unknown_points += plan.unknown

    async def close(self) -> None:
        self._closing = True
        try:
            await self._stop_session_task()
        finally:
            await asyncio.to_thread(self.refusals.close)  # what is queued is written

    async def _stop_session_task(self) -> None:
        task, self._session_task = self._session_task, None
        if task is None:
            return
        self._kill_session.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self.options.mqtt.timeout + 2)
        except Exception:  # including TimeoutError: a session that will not end in time is cancelled
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    def status(self) -> dict[str, Any]:
        """A snapshot for people and dashboards."""
        return {"bdSeq": self.bdseq, "online": self._ready.is_set(), **dataclasses.asdict(self.stats)}

    # --- helpers used by deliver ------------------------------------------------------------------

    async def _wait_ready(self) -> None:
        if self._ready.is_set():
            return
        if self._session_task is None:
            raise NotConnected("the Sparkplug sink was not started")
        try:
            async with asyncio.timeout(self.options.mqtt.timeout):
                await self._ready.wait()
        except TimeoutError:
            raise NotConnected(f"no Sparkplug session within {self.options.mqtt.timeout:g}s") from None

    async def _publish(self, client: aiomqtt.Client, messages: Sequence[Message]) -> None:
        """Publish in order and return when the broker has them all, with a bound.

        One round trip per batch, not one per message: every packet goes out, then one wait (the
        PUBACKs at QoS 1; at QoS 0 the UNSUBACK of a barrier sent after the last message).
        """
        qos = self.options.mqtt.qos
        within = self.options.mqtt.timeout
        await publish_all(client, ((m.topic, m.payload, False) for m in messages), qos=qos, within=within)
        if qos == 0:
            await client.unsubscribe(self._barrier, timeout=within)
        self.stats.messages += len(messages)
        self.stats.metrics += sum(m.metrics for m in messages)

    def _end_session(self) -> None:
        self._ready.clear()
        self._kill_session.set()

    # --- the session loop -------------------------------------------------------------------------

    async def _sessions(self) -> None:
        """Connect to one broker at a time, in order, for as long as the sink runs."""
        brokers = self.options.mqtt.brokers
        index = 0
        failures = 0
        while not self._closing:
            broker = brokers[index % len(brokers)]
            # Avoid a birth storm: after a broker restart every edge node would reconnect at once.
            delay = random.uniform(0, self.options.startup_delay) if self.options.startup_delay else 0.0
            if failures:
                delay += min(30.0, 0.5 * 2 ** min(failures, 6))
            if delay and await self._sleep_unless_closing(delay):
                return
            try:
                await self._session(broker)
                failures = 0
            except _MoveOn:
                log.warning("primary host %s is offline on %s: moving to the next broker", self._host(), broker)
                index += 1
                failures = 0
            except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
                failures += 1
                if failures == 1 or failures % 10 == 0:
                    log.warning("sparkplug %s: broker %s: %s", self.spec.id, broker, exc or type(exc).__name__)
                if len(brokers) > 1:
                    index += 1
            except Exception as exc:  # a bug must not end the edge node for good: log it, back off, retry
                failures += 1
                log.exception("sparkplug %s: session on %s failed: %s", self.spec.id, broker, exc)
            finally:
                self._ready.clear()
                self._client = None

    async def _sleep_unless_closing(self, delay: float) -> bool:
        try:
            async with asyncio.timeout(delay):
                await self._kill_session.wait()
        except TimeoutError:
            return False
        if self._closing:
            return True
        self._kill_session.clear()
        return False

    def _host(self) -> str:
        return self.options.primary_host_id or "-"

    async def _session(self, broker: BrokerAddress) -> None:
        self.bdseq = self.bdseq_store.next()
        self._kill_session.clear()
        self._host_online_ts = None
        will = aiomqtt.Will(self.model.topic_ndeath, self.model.death_payload(self.bdseq, ms(time.time())), qos=1)
        client = make_client(self.options.mqtt, broker, will=will, max_incoming=1000)
        fd: int | None = None
        try:
            async with client:
                fd = socket_fd(client)
                await self._run_session(client, broker)
        finally:
            disconnect_reason(client)
            release_stale_writer(client, fd)

    async def _run_session(self, client: aiomqtt.Client, broker: BrokerAddress) -> None:
        self.stats.sessions += 1
        self.stats.broker = str(broker)
        log.info("sparkplug %s: connected to %s (bdSeq %d)", self.spec.id, broker, self.bdseq)
        await client.subscribe(self.model.topic_ncmd, qos=1)
        await client.subscribe(self.model.topic_dcmd, qos=1)
        if self.options.primary_host_id:
            await client.subscribe(f"spBv1.0/STATE/{self.options.primary_host_id}", qos=1)
        else:
            await self._birth(client)
        listener = asyncio.create_task(self._listen(client))
        killer = asyncio.create_task(self._kill_session.wait())
        try:
            done, _ = await asyncio.wait({listener, killer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            listener.cancel()
            killer.cancel()
            with contextlib.suppress(BaseException):
                await listener
        self._ready.clear()
        if listener in done and listener.exception() is not None:
            exc = listener.exception()
            if isinstance(exc, _MoveOn):
                await self._say_goodbye(client)
            assert exc is not None
            raise exc
        # A planned end (close, or a failed delivery): tell the hosts before leaving.
        await self._say_goodbye(client)

    async def _say_goodbye(self, client: aiomqtt.Client) -> None:
        """NDEATH, then DISCONNECT (operational-behavior-edge-node-intentional-disconnect-ndeath).

        MQTT 5: the DISCONNECT carries reason code 0x04, "disconnect with Will message", so the broker
        also publishes the Will (the same bdSeq): a host that missed the first NDEATH still gets one.
        """
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError, OSError):
            payload = self.model.death_payload(self.bdseq, ms(time.time()))
            await client.publish(self.model.topic_ndeath, payload, qos=1, timeout=2.0)
            if self.options.mqtt.version == 5:
                await disconnect_with_will(client, within=2.0)

    async def _birth(self, client: aiomqtt.Client) -> None:
        async with self._lock:
            self._ready.clear()
            await self._publish(client, self.model.births(self.bdseq, ms(time.time())))
            self.stats.births += 1
            self._client = client
            self._ready.set()

    async def _listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = str(message.topic)
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if topic.startswith("spBv1.0/STATE/"):
                await self._on_state(client, payload)
            elif topic == self.model.topic_ncmd:
                await self._on_command(client, payload, None)
            elif topic.startswith(self.model.topic_dcmd[:-1]):
                await self._on_command(client, payload, topic.rsplit("/", 1)[-1])

    async def _on_state(self, client: aiomqtt.Client, payload: bytes) -> None:
        try:
            state = json.loads(payload)
            online = state["online"]
            stamp = int(state["timestamp"])
            if not isinstance(online, bool):
                raise ValueError("online is not a boolean")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring a malformed STATE message from host %s: %s", self._host(), exc)
            return
        if online:
            self._host_online_ts = stamp
            if not self._ready.is_set():
                await self._birth(client)
        elif self._ready.is_set() and (self._host_online_ts is None or stamp >= self._host_online_ts):
            raise _MoveOn()

    async def _on_command(self, client: aiomqtt.Client, payload: bytes, device: str | None) -> None:
        try:
            decoded = decode_payload(payload)
        except PayloadError as exc:
            self._refuse(device, "?", f"undecodable command payload ({exc})")
            return
        for metric in decoded.metrics:
            name = metric.name
            if device is None and name == REBIRTH and metric.WhichOneof("value") == "boolean_value":
                if metric.boolean_value:
                    self.stats.rebirth_requests += 1
                    log.info("sparkplug %s: rebirth requested", self.spec.id)
                    self.refusals.record(
                        "sparkplug.rebirth",
                        "mqtt client",
                        self.options.edge_node_id,
                        {"via": "sparkplug", "type": "NCMD", "metric": name},
                        f"Sparkplug rebirth requested of {self.options.edge_node_id}",
                        Severity.INFO,
                    )
                    if self._ready.is_set():
                        await self._birth(client)
                continue
            self._refuse(device, name or f"alias {metric.alias}", "writes from MQTT are not allowed")

    def _refuse(self, device: str | None, metric: str, reason: str) -> None:
        """Record a refused command. No device is ever written from MQTT (see the approved-commands issue)."""
        self.stats.refused_commands += 1
        target = f"{self.options.edge_node_id}/{device}" if device else self.options.edge_node_id
        kind = "DCMD" if device else "NCMD"
        event = Event(
            ts=time.time(),
            kind="audit",
            source=f"sink:{self.spec.id}",
            severity=Severity.MEDIUM,
            message=f"refused Sparkplug {kind} for {target} metric {metric!r}: {reason}",
            data={"action": "command.refused", "via": "sparkplug", "type": kind, "target": target, "metric": metric},
        )
        log.warning("%s", event.message)
        self.audit_events.append(event)
        del self.audit_events[:-100]
        # MQTT tells nothing of the sender (a broker may say who it authenticated, the message does not).
        self.refusals.record(
            "sparkplug.command.refused",
            "mqtt client",
            target,
            {"via": "sparkplug", **event.data},
            event.message,
            event.severity,
        )
