"""The host application: STATE, ingestion of births and data, online state, rebirth requests.

Session bookkeeping follows Sparkplug B 3.0: an NBIRTH opens an edge node session (its bdSeq names
it), seq numbers must follow each other modulo 256, aliases are declared in births, and an NDEATH only
counts when its bdSeq matches the session it claims to end (a late Will of an older session is
ignored). Whenever the story does not add up (a seq gap, an unknown alias, data from a node that never
was born), the host asks that node for a rebirth with an NCMD, at most once per ``rebirth_interval``.

Reordering: a broker (a cluster especially) may deliver QoS 0 messages out of order. A message a few
seqs ahead of the one expected is held for ``reorder_timeout`` seconds; when the missing ones arrive,
everything is applied in seq order and nothing is asked. When the timeout expires first, the gap is
counted, a rebirth is requested (tck-id-operational-behavior-host-reordering-rebirth), and what was held
is still applied, in seq order: the host never throws away data it received.

Scale-out: with ``share_group`` several hosts split the data messages between them through an MQTT 5
shared subscription, while every host still receives every birth and death (plain subscriptions), so
each one knows every alias and online state. A shared subscription hands each host only part of the
sequence, so seq gap detection is off in that mode; storage is idempotent, so the births that every
host stores are stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field

import aiomqtt

from otseam.host.store import MetricRow, StateRow, Store
from otseam.protocols.sparkplug.codec import (
    BOOLEAN,
    PayloadError,
    decode_payload,
    encode_payload,
    encode_plain_metric,
    metric_quality,
    metric_value,
)
from otseam.sinks.mqtt_common import BrokerAddress, MqttSettings, make_client
from otseam.sinks.mqtt_common.sockets import disconnect_reason, release_stale_writer, socket_fd

log = logging.getLogger(__name__)

NAMESPACE = "spBv1.0"
_SKIP_METRICS = ("bdSeq", "Node Control/")


@dataclass(frozen=True, slots=True)
class Held:
    kind: str
    device: str
    decoded: object
    now_ms: int


#: A message at most this many seqs ahead of the expected one may be a reordering; further ahead (or
#: behind: a duplicate) it is a gap at once.
REORDER_WINDOW = 128


@dataclass(slots=True)
class NodeSession:
    bdseq: int | None = None
    seq: int | None = None
    online: bool = False
    #: alias -> (metric name, datatype, device or ''), declared by the births of this session.
    aliases: dict[int, tuple[str, int, str]] = field(default_factory=dict)
    #: (device, metric name) -> datatype.
    datatypes: dict[tuple[str, str], int] = field(default_factory=dict)
    devices: dict[str, bool] = field(default_factory=dict)
    last_rebirth_request: float = 0.0
    #: seq -> a message that arrived ahead of its turn, held until the missing ones come or time runs out.
    held: dict[int, Held] = field(default_factory=dict)
    reorder_timer: asyncio.TimerHandle | None = None

    def release_timer(self) -> None:
        if self.reorder_timer is not None:
            self.reorder_timer.cancel()
            self.reorder_timer = None

    def snapshot(self) -> str:
        return json.dumps(
            {
                "bdseq": self.bdseq,
                "online": self.online,
                "aliases": [[a, *v] for a, v in self.aliases.items()],
                "datatypes": [[d, m, t] for (d, m), t in self.datatypes.items()],
                "devices": self.devices,
            }
        )

    @classmethod
    def restore(cls, text: str) -> NodeSession:
        """A session saved by a previous run; seq unknown until the next message."""
        data = json.loads(text)
        return cls(
            bdseq=data["bdseq"],
            seq=None,
            online=bool(data["online"]),
            aliases={int(a): (str(n), int(t), str(d)) for a, n, t, d in data["aliases"]},
            datatypes={(str(d), str(m)): int(t) for d, m, t in data["datatypes"]},
            devices={str(k): bool(v) for k, v in data["devices"].items()},
        )


@dataclass(slots=True)
class HostStats:
    messages: int = 0
    metrics_stored: int = 0
    metrics_duplicate: int = 0
    births: int = 0
    deaths: int = 0
    seq_gaps: int = 0
    reordered: int = 0
    unknown_aliases: int = 0
    rebirth_requests: int = 0
    malformed: int = 0


class HostApp:
    def __init__(
        self,
        settings: MqttSettings,
        host_id: str,
        store: Store,
        *,
        share_group: str | None = None,
        rebirth_interval: float = 5.0,
        reorder_timeout: float = 2.0,
        session_expiry: int = 0,
    ) -> None:
        if share_group and settings.version != 5:
            raise ValueError("shared subscriptions (--share-group) need MQTT 5")
        self.settings = settings
        self.host_id = host_id
        self.store = store
        self.share_group = share_group
        self.rebirth_interval = rebirth_interval
        #: Seconds a message that arrived ahead of its seq waits for the missing ones; 0 asks at once.
        self.reorder_timeout = reorder_timeout
        #: Messages are applied one at a time, whether they come from the broker or from a reorder
        #: timeout: the order of a node's session is the order of its seqs.
        self._applying = asyncio.Lock()
        self._client: aiomqtt.Client | None = None
        self._expiries: set[asyncio.Task[None]] = set()
        #: Seconds the broker keeps this host's session (and queues its messages) while it is away.
        #: 0 (Clean Start, Session Expiry 0) is what Sparkplug 3.0 requires of a host
        #: (message-flow-phid-sparkplug-clean-session-50/-311); anything else is a named deviation.
        self.session_expiry = session_expiry
        #: The timestamp of this session's STATE (the Will's and the birth's): repeated if re-announced.
        self._stamp = 0
        self.nodes: dict[tuple[str, str], NodeSession] = {}
        self.stats = HostStats()
        self.online = asyncio.Event()
        self._stop = asyncio.Event()
        self.state_topic = f"{NAMESPACE}/STATE/{host_id}"

    def deviations(self) -> list[str]:
        """Each setting that departs from Sparkplug B 3.0, in words for a startup warning."""
        if self.session_expiry:
            return [
                f"session expiry {self.session_expiry}s: a persistent session (Sparkplug 3.0 requires Clean Start "
                "and Session Expiry 0, message-flow-phid-sparkplug-clean-session-50)"
            ]
        return []

    def summary(self) -> dict[str, int]:
        return dataclasses.asdict(self.stats)

    def stop(self) -> None:
        self._stop.set()

    # --- connection -------------------------------------------------------------------------------

    async def restore(self) -> None:
        """Pick up the node sessions a previous run knew (births are not repeated for a restarted host)."""
        for group, node, snapshot in await self.store.load_sessions():
            try:
                self.nodes[(group, node)] = NodeSession.restore(snapshot)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("host %s: ignoring the saved session of %s/%s: %s", self.host_id, group, node, exc)

    async def _save(self, group: str, node: str, session: NodeSession) -> None:
        await self.store.save_session(group, node, session.snapshot())

    async def run(self) -> None:
        """Stay connected (brokers in order) until ``stop``; STATE offline is published on the way out."""
        for deviation in self.deviations():
            log.warning("host %s deviates from Sparkplug B 3.0: %s", self.host_id, deviation)
        await self.restore()
        index = 0
        failures = 0
        while not self._stop.is_set():
            broker = self.settings.brokers[index % len(self.settings.brokers)]
            try:
                await self._session(broker)
                failures = 0
                continue
            except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
                failures += 1
                if failures == 1 or failures % 10 == 0:
                    log.warning("host %s: broker %s: %s", self.host_id, broker, exc or type(exc).__name__)
                index += 1
            except Exception as exc:  # the historian refused a write (database down, disk full, ...)
                failures += 1
                log.error("host %s: cannot store (%s: %s); reconnecting", self.host_id, type(exc).__name__, exc)
            self.online.clear()
            # Back off before the next attempt, whichever side failed: never a busy loop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(30.0, 0.5 * 2 ** min(failures, 6))):
                    await self._stop.wait()
        # Stopping: what was held waiting for a missing seq is stored all the same.
        async with self._applying:
            for (group, node), session in self.nodes.items():
                with contextlib.suppress(Exception):
                    await self._flush_held(None, group, node, session, reason=None)

    def _state(self, online: bool, stamp: int) -> bytes:
        return json.dumps({"online": online, "timestamp": stamp}).encode()

    async def _session(self, broker: BrokerAddress) -> None:
        stamp = self._stamp = int(time.time() * 1000)
        will = aiomqtt.Will(self.state_topic, self._state(False, stamp), qos=1, retain=True)
        # A persistent session (client id from the host id): what the broker queued for this host while
        # it was down, or had sent without an acknowledgement when it died, arrives when it is back.
        client = make_client(
            self.settings,
            broker,
            will=will,
            client_id=self.settings.client_id,
            clean=not self.session_expiry,
            session_expiry=self.session_expiry,
        )
        fd: int | None = None
        try:
            async with client:
                fd = socket_fd(client)
                await self._run_session(client, stamp, broker)
        finally:
            disconnect_reason(client)
            release_stale_writer(client, fd)

    async def _run_session(self, client: aiomqtt.Client, stamp: int, broker: BrokerAddress) -> None:
        client._client.manual_ack_set(True)
        if self.share_group:
            share = f"$share/{self.share_group}/"
            for kind in ("NBIRTH", "NDEATH", "DBIRTH", "DDEATH"):
                await client.subscribe(f"{NAMESPACE}/+/{kind}/#", qos=1)
            for kind in ("NDATA", "DDATA"):
                await client.subscribe(f"{share}{NAMESPACE}/+/{kind}/#", qos=1)
            await client.subscribe(self.state_topic, qos=1)
        else:
            await client.subscribe(f"{NAMESPACE}/#", qos=1)
        # STATE after the subscriptions: an edge node that births on it finds us listening.
        await client.publish(self.state_topic, self._state(True, stamp), qos=1, retain=True)
        self.online.set()
        log.info("host %s: online on %s", self.host_id, broker)
        listener = asyncio.create_task(self._listen(client))
        stopper = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait({listener, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            listener.cancel()
            stopper.cancel()
            with contextlib.suppress(BaseException):
                await listener
        self.online.clear()
        if listener in done and listener.exception() is not None:
            exc = listener.exception()
            assert exc is not None
            raise exc
        # Planned: say we are leaving (retained, like the Will would) before DISCONNECT.
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await client.publish(self.state_topic, self._state(False, stamp), qos=1, retain=True, timeout=2.0)

    async def _listen(self, client: aiomqtt.Client) -> None:
        paho = client._client
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            await self.handle(client, str(message.topic), payload)
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # A cancellation that a publish's wait_for swallowed (Python 3.11 can lose one that
                # lands just as the publish completes): honour it, or the host never stops.
                raise asyncio.CancelledError
            # Acknowledged only once stored: a host that falls behind holds the broker back (its inflight
            # window) instead of queueing in its own memory, and a failed write is never acknowledged.
            if message.qos > 0:
                paho.ack(message.mid, message.qos)

    # --- messages ---------------------------------------------------------------------------------

    async def handle(self, client: aiomqtt.Client | None, topic: str, payload: bytes) -> None:
        """One Sparkplug message. Never raises for what a network peer sent."""
        async with self._applying:
            self._client = client
            await self._handle(client, topic, payload)

    async def _handle(self, client: aiomqtt.Client | None, topic: str, payload: bytes) -> None:
        if topic == self.state_topic:
            await self._on_own_state(client, payload)
            return
        parts = topic.split("/")
        if len(parts) < 4 or parts[0] != NAMESPACE or parts[1] == "STATE":
            return
        group, kind, node = parts[1], parts[2], parts[3]
        device = parts[4] if len(parts) > 4 else ""
        if kind in ("NCMD", "DCMD"):
            return
        self.stats.messages += 1
        try:
            decoded = decode_payload(payload)
        except PayloadError as exc:
            self.stats.malformed += 1
            if self.stats.malformed == 1 or self.stats.malformed % 1000 == 0:
                log.warning("host %s: %s on %s (%d so far)", self.host_id, exc, topic, self.stats.malformed)
            return
        session = self.nodes.setdefault((group, node), NodeSession())
        now_ms = int(time.time() * 1000)
        seq = int(decoded.seq) if decoded.HasField("seq") else None
        if kind == "NBIRTH":
            # What was held belongs to the session this birth ends: applied first (the gap counted).
            await self._flush_held(client, group, node, session, reason=None)
            await self._on_nbirth(group, node, session, decoded, seq, now_ms)
            return
        if kind == "NDEATH":
            await self._flush_held(client, group, node, session, reason=None)
            await self._on_ndeath(group, node, session, decoded, now_ms)
            return
        if not session.online:
            # Data or a device message from a node whose birth we never saw (we started after it did).
            await self._request_rebirth(client, group, node, session, "no birth seen for this node")
            return
        if self.share_group:
            await self._apply(client, group, node, session, Held(kind, device, decoded, now_ms), seq)
            return
        await self._in_seq_order(client, group, node, session, Held(kind, device, decoded, now_ms), seq)

    async def _in_seq_order(
        self, client: aiomqtt.Client | None, group: str, node: str, session: NodeSession, message: Held, seq: int | None
    ) -> None:
        if session.seq is None and seq is not None:
            session.seq = seq - 1  # a restored session: the first message sets the reference
        expected = None if session.seq is None else (session.seq + 1) % 256
        if seq is not None and seq == expected:
            session.seq = seq
            await self._apply(client, group, node, session, message, seq)
            await self._apply_held_in_turn(client, group, node, session)
            return
        ahead = None if seq is None or expected is None else (seq - expected) % 256
        if self.reorder_timeout > 0 and ahead is not None and 0 < ahead < REORDER_WINDOW:
            assert seq is not None
            session.held[seq] = message
            self.stats.reordered += 1
            if session.reorder_timer is None:
                loop = asyncio.get_running_loop()
                session.reorder_timer = loop.call_later(self.reorder_timeout, self._reorder_expired, group, node)
            return
        self.stats.seq_gaps += 1
        await self._request_rebirth(client, group, node, session, "seq gap")
        session.seq = seq
        await self._apply(client, group, node, session, message, seq)

    async def _apply_held_in_turn(
        self, client: aiomqtt.Client | None, group: str, node: str, session: NodeSession
    ) -> None:
        """Apply what was held for as long as the next seq is among it."""
        while session.seq is not None and (following := (session.seq + 1) % 256) in session.held:
            session.seq = following
            await self._apply(client, group, node, session, session.held.pop(following), following)
        if not session.held:
            session.release_timer()

    def _reorder_expired(self, group: str, node: str) -> None:
        task = asyncio.ensure_future(self._give_up_waiting(group, node))
        self._expiries.add(task)
        task.add_done_callback(self._expiries.discard)

    async def _give_up_waiting(self, group: str, node: str) -> None:
        """The missing seqs did not come in time: count the gap, ask for a rebirth, apply what was held."""
        async with self._applying:
            session = self.nodes.get((group, node))
            if session is None:
                return
            session.reorder_timer = None
            try:
                await self._flush_held(self._client, group, node, session, "seq gap (reorder timeout)")
            except Exception as exc:  # the store refused: nothing to acknowledge here, say it
                log.error("host %s: cannot store held messages of %s/%s: %s", self.host_id, group, node, exc)

    async def _flush_held(
        self, client: aiomqtt.Client | None, group: str, node: str, session: NodeSession, reason: str | None
    ) -> None:
        """Apply what was held, in seq order, counting the gap it waited on; ask for a rebirth if
        ``reason`` (not when a birth or a death ends the session anyway)."""
        if not session.held:
            return
        session.release_timer()
        self.stats.seq_gaps += 1
        if reason is not None:
            await self._request_rebirth(client, group, node, session, reason)
        start = session.seq if session.seq is not None else 0
        for seq in sorted(session.held, key=lambda s: (s - start) % 256):
            session.seq = seq
            await self._apply(client, group, node, session, session.held.pop(seq), seq)

    async def _apply(
        self, client: aiomqtt.Client | None, group: str, node: str, session: NodeSession, message: Held, seq: int | None
    ) -> None:
        kind, device, decoded, now_ms = message.kind, message.device, message.decoded, message.now_ms
        if kind == "DBIRTH":
            self.stats.births += 1
            session.devices[device] = True
            await self._store(group, node, device, session, decoded, seq, now_ms, birth=True)
            await self.store.set_state(StateRow(group, node, device, True, session.bdseq, now_ms))
            await self._save(group, node, session)
        elif kind == "DDEATH":
            self.stats.deaths += 1
            session.devices[device] = False
            await self.store.set_state(StateRow(group, node, device, False, session.bdseq, now_ms))
            await self._save(group, node, session)
        elif kind in ("DDATA", "NDATA"):
            unknown = await self._store(group, node, device, session, decoded, seq, now_ms, birth=False)
            if unknown:
                self.stats.unknown_aliases += unknown
                await self._request_rebirth(client, group, node, session, f"{unknown} metrics with unknown aliases")

    async def _on_own_state(self, client: aiomqtt.Client | None, payload: bytes) -> None:
        """Someone (or a stale retained Will) says this host is offline while it is online: say otherwise
        (message-flow-hid-sparkplug-state-message-delivered)."""
        try:
            online = json.loads(payload).get("online")
        except (ValueError, AttributeError):
            online = None
        if online is False and client is not None and self.online.is_set():
            log.info(
                "host %s: an offline STATE for this host arrived while online; publishing online again", self.host_id
            )
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await client.publish(self.state_topic, self._state(True, self._stamp), qos=1, retain=True, timeout=2.0)

    async def _on_nbirth(
        self, group: str, node: str, session: NodeSession, decoded: object, seq: int | None, now_ms: int
    ) -> None:
        bdseq = None
        for metric in getattr(decoded, "metrics", []):
            if metric.name == "bdSeq":
                value = metric_value(metric)
                bdseq = int(value) if isinstance(value, int) else None
        # A new session: forget the previous one's aliases and devices.
        fresh = NodeSession(bdseq=bdseq, seq=seq if seq is not None else 0, online=True)
        fresh.last_rebirth_request = session.last_rebirth_request
        self.nodes[(group, node)] = fresh
        self.stats.births += 1
        await self._store(group, node, "", fresh, decoded, seq, now_ms, birth=True)
        await self.store.set_state(StateRow(group, node, "", True, bdseq, now_ms))
        await self._save(group, node, fresh)

    async def _on_ndeath(self, group: str, node: str, session: NodeSession, decoded: object, now_ms: int) -> None:
        bdseq = None
        for metric in getattr(decoded, "metrics", []):
            if metric.name == "bdSeq":
                value = metric_value(metric)
                bdseq = int(value) if isinstance(value, int) else None
        if session.bdseq is not None and bdseq is not None and bdseq != session.bdseq:
            log.info(
                "host %s: ignoring NDEATH of %s/%s bdSeq %s (current session %s)",
                self.host_id,
                group,
                node,
                bdseq,
                session.bdseq,
            )
            return
        self.stats.deaths += 1
        session.online = False
        for device in session.devices:
            session.devices[device] = False
            await self.store.set_state(StateRow(group, node, device, False, session.bdseq, now_ms))
        await self.store.set_state(StateRow(group, node, "", False, session.bdseq, now_ms))
        await self._save(group, node, session)

    async def _store(
        self,
        group: str,
        node: str,
        device: str,
        session: NodeSession,
        decoded: object,
        seq: int | None,
        now_ms: int,
        *,
        birth: bool,
    ) -> int:
        """Store the metrics of a message; returns how many had an alias we do not know."""
        rows: list[MetricRow] = []
        unknown = 0
        payload_ts = int(getattr(decoded, "timestamp", 0)) or now_ms
        for metric in getattr(decoded, "metrics", []):
            name = metric.name
            datatype = int(metric.datatype)
            owner = device
            if birth:
                if metric.HasField("alias"):
                    session.aliases[int(metric.alias)] = (name, datatype, device)
                session.datatypes[(device, name)] = datatype
            elif not name:
                known = session.aliases.get(int(metric.alias)) if metric.HasField("alias") else None
                if known is None:
                    unknown += 1
                    continue
                name, datatype, owner = known
            elif not datatype:
                datatype = session.datatypes.get((device, name), 0)
            if name.startswith(_SKIP_METRICS):
                continue
            value = metric_value(metric, datatype)
            if birth and value is None:
                continue  # a birth declares a metric that has no value yet: nothing to record
            ts = int(metric.timestamp) if metric.HasField("timestamp") else payload_ts
            number: float | None = None
            text: str | None = None
            if isinstance(value, bool | int | float):
                number = float(value)
            elif isinstance(value, str):
                text = value
            rows.append(
                MetricRow(
                    group, node, owner, name, ts, number, text, datatype, metric_quality(metric),
                    value is None, session.bdseq, seq, now_ms,
                )
            )  # fmt: skip
        new = await self.store.write(rows)
        self.stats.metrics_stored += new
        self.stats.metrics_duplicate += len(rows) - new
        return unknown

    async def _request_rebirth(
        self, client: aiomqtt.Client | None, group: str, node: str, session: NodeSession, reason: str
    ) -> None:
        now = time.monotonic()
        if client is None or now - session.last_rebirth_request < self.rebirth_interval:
            return
        session.last_rebirth_request = now
        self.stats.rebirth_requests += 1
        log.info("host %s: asking %s/%s for a rebirth (%s)", self.host_id, group, node, reason)
        stamp = int(time.time() * 1000)
        payload = encode_payload(stamp, [encode_plain_metric("Node Control/Rebirth", BOOLEAN, True, stamp)], None)
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await client.publish(f"{NAMESPACE}/{group}/NCMD/{node}", payload, qos=0, timeout=2.0)
