"""The driver for one OPC UA server (one contract device).

What a plant can rely on:

* ``run`` never returns and never raises for a device fault. A lost link, a Bad status on the
  subscription, a server that stops answering Publish requests, a restart of the server: each ends the
  connection, the points go STALE (last value, its original source timestamp) and the driver connects
  again after an exponential, jittered backoff. The session is re-activated rather than replaced when
  the server still holds it, so reconnects never pile up sessions on the server.
* Subscribe mode (default): one subscription per device, publishing interval = the device's poll,
  monitored items created in batches (one CreateMonitoredItems call per ``max_items_per_call``
  nodes), sampling interval per point. The server sends a keep-alive every interval, so silence is
  noticed by a watchdog within two publishing intervals. Several Publish requests stay in flight and
  the responses are read from their bytes (notification.py), not by asyncua's decoder.
* Poll mode: all nodes due in a cycle are read with one Read call per ``max_nodes_per_read`` nodes.
* A node the server does not have is BAD_CONFIG for that point only; a value of the wrong type is
  BAD_CONFIG, never passed on; Bad/Uncertain statuses become qualities (see convert.py).
* No write path: the driver only reads and subscribes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import math
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from otseam.contract.models import Device
from otseam.contract.units import NodeId
from otseam.core.plugins import Emit
from otseam.core.records import Event, Quality, Record, Sample, Severity, Value, device_state
from otseam.drivers.opcua._ua import ua, ua_binary
from otseam.drivers.opcua.config import PointSpec, Settings, parse_endpoint, parse_options, point_specs
from otseam.drivers.opcua.convert import WRONG, converter, decode, status_name, status_quality
from otseam.drivers.opcua.notification import Change, Publish, from_result, read_create_results, read_publish
from otseam.drivers.opcua.session import Session

log = logging.getLogger("otseam.drivers.opcua")

# asyncua's client logs each lost link with a traceback of its own; this driver reports every fault in
# plain words, once. Anyone who configured asyncua's logging keeps their setting.
_asyncua_client_log = logging.getLogger("asyncua.client")
if _asyncua_client_log.level == logging.NOTSET:
    _asyncua_client_log.setLevel(logging.CRITICAL)

_GOOD = Quality.GOOD
_UNCERTAIN = Quality.UNCERTAIN
_STALE = Quality.STALE
_BAD_COMM = Quality.BAD_COMM
_BAD_CONFIG = Quality.BAD_CONFIG
_BAD_DEVICE = Quality.BAD_DEVICE
_WRONG = WRONG
#: A subscription's status codes are few: each is mapped to a quality once.
_quality_of = functools.cache(status_quality)
_FILTER_REFUSED = frozenset(
    {
        ua.StatusCodes.BadMonitoredItemFilterUnsupported,
        ua.StatusCodes.BadFilterNotAllowed,
        ua.StatusCodes.BadDeadbandFilterInvalid,
    }
)


@dataclass(slots=True)
class _Due:
    """A group of points polled at one interval, and when it is next due."""

    at: float
    interval: float
    indexes: list[int]


class Fault(Exception):
    """The connection cannot go on; the message says why, in words for the log."""


def to_ua_node(node: NodeId) -> ua.NodeId:
    """The contract's node id as asyncua's, built directly (a string id may contain ';' or '=')."""
    if node.kind == "i":
        return ua.NodeId(int(node.identifier), node.namespace, ua.NodeIdType.Numeric)
    if node.kind == "g":
        return ua.NodeId(uuid.UUID(node.identifier), node.namespace, ua.NodeIdType.Guid)
    if node.kind == "b":
        return ua.NodeId(base64.b64decode(node.identifier), node.namespace, ua.NodeIdType.ByteString)
    return ua.NodeId(node.identifier, node.namespace, ua.NodeIdType.String)


def backoff_delay(failures: int, base: float, ceiling: float) -> float:
    """Exponential backoff with jitter: many gateways restarting at once must not reconnect in step."""
    delay: float = min(ceiling, base * 2.0 ** min(failures, 20))
    return delay * random.uniform(0.5, 1.0)


def _publish_requests(items: int) -> int:
    """Publish requests kept in flight: two for a small subscription (one answered while the other
    waits), more for a large one, whose values come in many responses per publishing interval."""
    return min(8, 2 + items // 10_000)


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class OpcUaDriver:
    def __init__(self, device: Device, contract_path: str = "") -> None:
        self.device = device
        self.url = device.endpoint.strip()
        self.host, self.port = parse_endpoint(self.url, device.id)
        self.options: Settings = parse_options(device, contract_path)
        self.specs: list[PointSpec] = point_specs(device)
        for spec in self.specs:
            try:
                to_ua_node(spec.node)
            except ValueError as exc:
                raise ValueError(f"device {device.id}: node id {spec.node}: {exc}") from None
        self.timeout = device.constraints.timeout
        self.interval = device.poll
        self._label = f"{device.id} ({self.url})"
        count = len(self.specs)
        self._keys = [s.key for s in self.specs]
        self._convert: list[Callable[[Any], object]] = [converter(s.type, s.length) for s in self.specs]
        self._nodes = [to_ua_node(s.node) for s in self.specs]
        #: The quality last emitted per point (None: nothing yet), the last usable value and its time.
        self.quality: list[Quality | None] = [None] * count
        self.last_value: list[Value] = [None] * count
        self.last_ts: list[float] = [0.0] * count
        self._emit_lock = asyncio.Lock()
        self._emit: Emit | None = None
        self._online: bool | None = None
        #: When the device last changed between connecting, online and offline (wall clock).
        self._state_since = time.time()
        self._last_error = ""
        self._subscription_id: int | None = None
        #: The subscription of a connection given up: deleted if the session comes back with it.
        self._previous_subscription: int | None = None
        self._last_publish = 0.0
        self._fault: str = ""
        self._fault_event = asyncio.Event()
        self._publishers: list[asyncio.Task[None]] = []
        #: Sequence numbers of data messages received, acknowledged with the next Publish request.
        self._acks: list[ua.SubscriptionAcknowledgement] = []
        self._data_seen = False
        self.session: Session | None = None
        #: Revised by the server at subscription time.
        self.publishing_interval = self.interval
        self.keepalive_count = 1
        #: When every monitored item of the current subscription had been created (monotonic; 0: not yet).
        self.subscribed_at = 0.0

    @property
    def subscription_id(self) -> int | None:
        """The server's id of the current subscription (None while disconnected or polling)."""
        return self._subscription_id

    # --- the task ------------------------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        self._emit = emit
        if not self.specs:
            log.warning("%s: no points to read", self._label)
            await asyncio.Event().wait()
        security = self.options.security
        if security.username and security.policy == "None":
            # Whether the password is encrypted then depends on the server's user token policy.
            log.warning(
                "%s: security_policy None: the password of user %r may cross the network unencrypted; "
                "use security_policy Basic256Sha256 with security_mode SignAndEncrypt",
                self._label,
                security.username,
            )
        session = Session(self.url, self.options, self.timeout, self.device.id)
        self.session = session
        failures = 0
        try:
            while True:
                try:
                    await self._connected(session)
                except asyncio.CancelledError:
                    raise
                except Fault as exc:
                    self._note(str(exc))
                except (OSError, TimeoutError, ua.UaError) as exc:
                    self._note(_describe(exc, self.timeout))
                except Exception:
                    # Our own bug or an unexpected answer: say so loudly, and carry on.
                    log.exception("%s: unexpected error; reconnecting", self._label)
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # A cancellation the client library swallowed (its wait_for can lose one that lands
                    # just as an answer does): honour it rather than reconnect.
                    raise asyncio.CancelledError
                await self._went_away()
                await session.drop()
                if self._data_seen:
                    failures = 0
                    self._data_seen = False
                delay = backoff_delay(failures, 1.0, self.options.max_backoff)
                failures += 1
                log.info("%s: reconnecting in %.1fs", self._label, delay)
                await asyncio.sleep(delay)
        finally:
            self._subscription_id = None
            await session.close()

    async def _connected(self, session: Session) -> None:
        self._fault = ""
        self._fault_event.clear()
        async with asyncio.timeout(4 * self.timeout):
            reused = await session.open()
        log.info("%s: session %s", self._label, "re-activated" if reused else "created")
        items, reads = await self._server_limits(session)
        if self.options.mode == "poll":
            await self._poll(session, reads)
        else:
            try:
                await self._subscribe(session, reused, items)
                await self._watch(session)
            finally:
                await self._stop_publishing()

    async def _server_limits(self, session: Session) -> tuple[int, int]:
        """The smaller of our option and what the server publishes as its per-call limits."""
        items, reads = self.options.max_items_per_call, self.options.max_nodes_per_read
        ids = [
            ua.NodeId(ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall),
            ua.NodeId(ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead),
        ]
        try:
            values = await session.uasession.read_attributes(ids, ua.AttributeIds.Value)
        except ua.UaStatusCodeError:
            return items, reads
        limits: list[int | None] = [None, None]
        for slot, value in enumerate(values[:2]):
            variant = getattr(value, "Value", None)
            raw = getattr(variant, "Value", None) if _code(value) & 0x80000000 == 0 else None
            if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
                limits[slot] = raw
        return min(items, limits[0] or items), min(reads, limits[1] or reads)

    # --- subscribe mode ------------------------------------------------------------------------

    async def _subscribe(self, session: Session, reused: bool, per_call: int) -> None:
        uasession = session.uasession
        old, self._previous_subscription = self._previous_subscription, None
        if reused and old is not None:
            # The re-activated session still holds the old subscription: start afresh so every point
            # gets its current value again.
            with contextlib.suppress(Exception):
                await uasession.delete_subscriptions([old])
        interval_ms = self.interval * 1000
        # The server must keep the subscription through a session timeout's worth of silence.
        lifetime = max(3, math.ceil(self.options.session_timeout * 1000 / interval_ms))
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=interval_ms,
            RequestedLifetimeCount=lifetime,
            RequestedMaxKeepAliveCount=1,
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
            Priority=0,
        )
        result = await self._create_subscription(uasession, params)
        self._subscription_id = result.SubscriptionId
        self.publishing_interval = result.RevisedPublishingInterval / 1000 or self.interval
        self.keepalive_count = max(1, int(result.RevisedMaxKeepAliveCount))
        self._last_publish = time.monotonic()
        self._acks = []
        # Publishing starts before the items exist: the first values flow while the rest are created.
        for number in range(_publish_requests(len(self.specs))):
            self._publishers.append(
                asyncio.get_running_loop().create_task(
                    self._publish_loop(uasession), name=f"opcua-publish {self.device.id} {number}"
                )
            )
        pending = list(range(len(self.specs)))
        with_filter = True
        refused_filters: list[int] = []
        while pending:
            batch = pending[:per_call]
            try:
                results = await self._create_items(uasession, batch, with_filter)
            except ua.UaStatusCodeError as exc:
                if (
                    exc.code in (ua.StatusCodes.BadTooManyOperations, ua.StatusCodes.BadEncodingLimitsExceeded)
                    and per_call > 1
                ):
                    per_call = max(1, per_call // 2)
                    log.info(
                        "%s: the server refused %d items in one call; trying %d", self._label, len(batch), per_call
                    )
                    continue
                raise
            pending = pending[len(batch) :]
            out: list[Record] = []
            now = time.time()
            for index, code in zip(batch, results, strict=False):
                if code & 0x80000000 == 0:
                    continue
                if with_filter and code & 0xFFFF0000 in _FILTER_REFUSED and self.specs[index].deadband is not None:
                    refused_filters.append(index)
                    continue
                self._bad_point(index, code, now, out)
            if out:
                await self._emit_records(out)
            if not pending and refused_filters:
                log.info(
                    "%s: the server refused the deadband filter of %d item(s); they report every change and "
                    "the pipeline applies the deadband",
                    self._label,
                    len(refused_filters),
                )
                pending, refused_filters, with_filter = refused_filters, [], False
        # Creating many items can take longer than the watchdog allows: its clock starts now.
        self._last_publish = self.subscribed_at = time.monotonic()
        log.info(
            "%s: subscribed to %d node(s), publishing every %gs",
            self._label,
            len(self.specs),
            self.publishing_interval,
        )

    async def _create_subscription(
        self, uasession: Any, params: ua.CreateSubscriptionParameters
    ) -> ua.CreateSubscriptionResult:
        """CreateSubscription without asyncua's publish loop (one request in flight, its own decoder):
        the driver runs its own (``_publish_loop``)."""
        request = ua.CreateSubscriptionRequest()
        request.Parameters = params
        body = await uasession._send_request(request)
        response = ua_binary.struct_from_binary(ua.CreateSubscriptionResponse, body)
        response.ResponseHeader.ServiceResult.check()
        result: ua.CreateSubscriptionResult = response.Parameters
        return result

    async def _stop_publishing(self) -> None:
        tasks, self._publishers = self._publishers, []
        for task in tasks:
            task.cancel()
        if tasks:
            # asyncio.wait neither raises the tasks' CancelledError nor swallows one aimed at us.
            await asyncio.wait(tasks, timeout=self.timeout)

    async def _create_items(self, uasession: Any, batch: list[int], with_filter: bool) -> list[int]:
        """The status code of each item created."""
        requests = []
        publishing_ms = self.publishing_interval * 1000
        for index in batch:
            spec = self.specs[index]
            sampling_ms = spec.interval * 1000
            item_filter = None
            if with_filter and self.options.server_deadband and spec.deadband is not None:
                kind, amount = spec.deadband
                item_filter = ua.DataChangeFilter(
                    Trigger=ua.DataChangeTrigger.StatusValue,
                    DeadbandType=ua.DeadbandType.Absolute if kind == "absolute" else ua.DeadbandType.Percent,
                    DeadbandValue=amount,
                )
            parameters = ua.MonitoringParameters(
                ClientHandle=index,
                SamplingInterval=sampling_ms,
                # Room for two publishing intervals of samples: every sample the contract asked for
                # survives a Publish answered late (a busy client or server), not only the last one.
                QueueSize=2 * max(1, math.ceil(publishing_ms / sampling_ms)),
                DiscardOldest=True,
            )
            if item_filter is not None:
                parameters.Filter = item_filter
            requests.append(
                ua.MonitoredItemCreateRequest(
                    ItemToMonitor=ua.ReadValueId(NodeId=self._nodes[index], AttributeId=ua.AttributeIds.Value),
                    MonitoringMode=ua.MonitoringMode.Reporting,
                    RequestedParameters=parameters,
                )
            )
        params = ua.CreateMonitoredItemsParameters(
            SubscriptionId=self._subscription_id,
            TimestampsToReturn=ua.TimestampsToReturn.Both,
            ItemsToCreate=requests,
        )
        request = ua.CreateMonitoredItemsRequest()
        request.Parameters = params
        header, codes = read_create_results(await uasession._send_request(request))
        header.ServiceResult.check()
        if len(codes) != len(batch):
            raise Fault(f"the server answered {len(codes)} results for {len(batch)} monitored items")
        return codes

    async def _on_publish(self, result: ua.PublishResult) -> None:
        """A Publish response asyncua decoded (a test's message, or one decoded elsewhere)."""
        await self._handle_publish(from_result(result))

    async def _publish_loop(self, uasession: Any) -> None:
        """Keep one Publish request outstanding, for ever; several of these run side by side.

        A server caps the notifications per response (node-opcua at 1,000), so with a single request
        in flight a client of 100,000 monitored items waits out a round trip per thousand values.
        The response is read by :func:`read_publish`, not by asyncua's decoder (see notification.py).
        """
        while True:
            request = ua.PublishRequest()
            request.Parameters.SubscriptionAcknowledgements, self._acks = self._acks, []
            try:
                body = await uasession._send_request(request, timeout=0)
            except ua.UaStatusCodeError as exc:
                if exc.code == ua.StatusCodes.BadTimeout:
                    continue
                if exc.code == ua.StatusCodes.BadTooManyPublishRequests:
                    return  # the server holds as many of our requests as it accepts: the others go on
                self._fail(f"the server answered {status_name(exc.code)} to a Publish request")
                return
            except (OSError, ua.UaError) as exc:
                self._fail(f"a Publish request failed ({_describe(exc, self.timeout)})")
                return
            try:
                header, publish = read_publish(body)
            except Exception as exc:  # a malformed response from a broken or hostile server
                self._fail(f"a Publish response could not be read ({exc.__class__.__name__}: {exc})")
                return
            code = header.ServiceResult.value
            if code & 0x80000000:
                self._fail(f"the server answered {status_name(code)} to a Publish request")
                return
            await self._handle_publish(publish)

    def _fail(self, reason: str) -> None:
        if not self._fault:
            self._fault = reason
        self._fault_event.set()

    async def _handle_publish(self, publish: Publish) -> None:
        try:
            await self._publish_received(publish)
        except Exception:
            # Our own bug: say so here, and start afresh.
            log.exception("%s: unexpected error handling a Publish response; reconnecting", self._label)
            self._fail("a Publish response could not be handled")

    async def _publish_received(self, publish: Publish) -> None:
        subscription = publish.subscription_id
        if subscription != self._subscription_id:
            return
        self._last_publish = time.monotonic()
        if publish.has_data:
            self._acks.append(ua.SubscriptionAcknowledgement(subscription, publish.sequence_number))
        for code in publish.status_changes:
            if code & 0x80000000:
                self._fail(f"the server reported {status_name(code)} for the subscription")
        if not publish.changes:
            return
        out = self._changes(publish.changes)
        if out:
            self._data_seen = True
            async with self._emit_lock:
                # A response still in flight when the connection was given up must not undo STALE.
                if subscription == self._subscription_id and self._emit is not None:
                    await self._emit(out)
            self._last_publish = time.monotonic()

    def _changes(self, changes: list[Change]) -> list[Record]:
        """Samples of a Publish response's data changes: ``decode`` and ``_record`` unrolled, as this
        runs once per value at up to hundreds of thousands of values a second."""
        received = time.time()
        out: list[Record] = []
        if self._online is not True:
            self._record_online(out)
        append = out.append
        count = len(self._keys)
        keys, convert, qualities = self._keys, self._convert, self.quality
        last_value, last_ts = self.last_value, self.last_ts
        quality_of = _quality_of
        make = tuple.__new__
        for handle, raw, code, when in changes:
            if not 0 <= handle < count:
                continue  # not a handle we gave: ignore rather than guess
            ts = when or received
            quality = _GOOD if code == 0 else quality_of(code)
            if quality > _UNCERTAIN:
                value = None
            elif raw is None:
                value, quality = None, _BAD_DEVICE  # Good status but no value: nothing usable for us
            else:
                value = convert[handle](raw)
                if value is _WRONG:
                    value, quality = None, _BAD_CONFIG
                else:
                    last_value[handle] = value  # type: ignore[call-overload]
                    last_ts[handle] = ts
            qualities[handle] = quality
            append(make(Sample, (keys[handle], value, quality, ts, received)))
        return out

    async def _watch(self, session: Session) -> None:
        """Return never; raise :class:`Fault` when the subscription or the link fails."""
        # With a keep-alive every interval, two intervals of silence mean the server or the link is gone.
        allowed = self.publishing_interval * (self.keepalive_count + 1)
        if self.keepalive_count > 1:
            log.info(
                "%s: the server sends keep-alives only every %d publishing intervals; silence is noticed after %.1fs",
                self._label,
                self.keepalive_count,
                allowed,
            )
        check = max(0.05, min(self.publishing_interval / 4, 1.0))
        while True:
            await _wait_briefly(self._fault_event, check)
            if self._fault:
                raise Fault(self._fault)
            if session.lost.is_set():
                raise Fault("the server closed the connection")
            silent = time.monotonic() - self._last_publish
            if silent > allowed and not self._emit_lock.locked():
                raise Fault(
                    f"no Publish response for {silent:.1f}s (publishing interval {self.publishing_interval:g}s)"
                )

    # --- poll mode -----------------------------------------------------------------------------

    async def _poll(self, session: Session, per_read: int) -> None:
        groups: dict[float, list[int]] = {}
        for spec in self.specs:
            groups.setdefault(spec.interval, []).append(spec.index)
        now = time.monotonic()
        schedule = [_Due(now, interval, indexes) for interval, indexes in sorted(groups.items())]
        uasession = session.uasession
        while True:
            now = time.monotonic()
            wake = min(entry.at for entry in schedule)
            if wake > now:
                await _wait_briefly(session.lost, wake - now)
            if session.lost.is_set():
                raise Fault("the server closed the connection")
            now = time.monotonic()
            for entry in schedule:
                if entry.at > now:
                    continue
                for chunk in _chunks(entry.indexes, per_read):
                    await self._read(uasession, chunk)
                entry.at += entry.interval
                if entry.at <= time.monotonic():  # fell behind: skip missed cycles instead of bursting
                    entry.at = time.monotonic() + entry.interval

    async def _read(self, uasession: Any, chunk: Sequence[int]) -> None:
        params = ua.ReadParameters(
            MaxAge=0,
            TimestampsToReturn=ua.TimestampsToReturn.Both,
            NodesToRead=[ua.ReadValueId(NodeId=self._nodes[i], AttributeId=ua.AttributeIds.Value) for i in chunk],
        )
        try:
            async with asyncio.timeout(self.timeout):
                results = await uasession.read(params)
        except TimeoutError:
            raise Fault(f"no answer to a Read within {self.timeout:g}s") from None
        if len(results) != len(chunk):
            raise Fault(f"the server answered {len(results)} values for {len(chunk)} nodes")
        received = time.time()
        out: list[Record] = []
        convert = self._convert
        for index, data in zip(chunk, results, strict=True):
            value, quality, ts = decode(data, convert[index], received)
            self._record(index, value, quality, ts, received, out)
        self._data_seen = True
        await self._emit_records(out)

    # --- qualities and events --------------------------------------------------------------------

    def _record(
        self, index: int, value: Value, quality: Quality, ts: float, received: float, out: list[Record]
    ) -> None:
        if self._online is not True:
            self._record_online(out)
        if quality <= _UNCERTAIN:
            self.last_value[index] = value
            self.last_ts[index] = ts
        self.quality[index] = quality
        out.append(Sample(self._keys[index], value, quality, ts, received))

    def _record_online(self, out: list[Record]) -> None:
        self._online = True
        self._state_since = time.time()
        log.info("%s: online", self._label)
        out.append(self._state_event("online", Severity.INFO))
        self._last_error = ""

    def _bad_point(self, index: int, code: int, now: float, out: list[Record]) -> None:
        quality = status_quality(code)
        spec = self.specs[index]
        log.warning("%s: %s (%s): %s", self._label, spec.key, spec.node, status_name(code))
        self.quality[index] = quality
        out.append(Sample(self._keys[index], None, quality, now, now))

    async def _went_away(self) -> None:
        """Every point that had a value becomes STALE (value and time kept), the rest BAD_COMM."""
        out: list[Record] = []
        async with self._emit_lock:
            if self._subscription_id is not None:
                self._previous_subscription = self._subscription_id
            self._subscription_id = None
            self.subscribed_at = 0.0
            now = time.time()
            for index, quality in enumerate(self.quality):
                if quality is _BAD_CONFIG or quality is _STALE or quality is _BAD_COMM:
                    continue
                if quality is not None and quality <= _UNCERTAIN:
                    self.quality[index] = _STALE
                    out.append(Sample(self._keys[index], self.last_value[index], _STALE, self.last_ts[index], now))
                else:
                    self.quality[index] = _BAD_COMM
                    out.append(Sample(self._keys[index], None, _BAD_COMM, now, now))
            if self._online is not False:
                self._online = False
                self._state_since = time.time()
                log.warning("%s: offline", self._label)
                out.append(self._state_event("offline", Severity.MEDIUM))
            if out and self._emit is not None:
                await self._emit(out)

    async def _emit_records(self, out: list[Record]) -> None:
        async with self._emit_lock:
            if self._emit is not None:
                await self._emit(out)

    def _note(self, error: str) -> None:
        """Log a connection problem once, not at every retry."""
        if error != self._last_error:
            log.warning("%s: %s", self._label, error)
            self._last_error = error

    def _state_event(self, state: str, severity: Severity) -> Event:
        return device_state(self.device.id, state, severity, endpoint=self.url)

    # --- what /health, /metrics and the status line show -----------------------------------------

    @property
    def healthy(self) -> bool:
        """False while the server cannot be reached: a running driver is not a device that is up."""
        return self._online is not False

    def health(self) -> dict[str, object]:
        state = {None: "connecting", True: "online", False: "offline"}[self._online]
        report: dict[str, object] = {"device": state, "since": self._state_since, "endpoint": self.url}
        if self._online is False:
            report["last_error"] = self._last_error or "no answer"
        return report


async def _wait_briefly(event: asyncio.Event, seconds: float) -> None:
    """Wait for the event, at most ``seconds``.

    Not ``asyncio.wait_for``: on Python 3.11 it returns normally when the task is cancelled in the very
    iteration its inner wait completes, and the cancellation is lost. A driver stopped at that moment
    went on polling for ever and its stop never returned. ``asyncio.timeout`` keeps every cancellation.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


def _code(result: Any) -> int:
    """The status code value of a result or DataValue; a missing one counts as Good (the OPC UA default)."""
    status = getattr(result, "StatusCode", None)
    value = getattr(status, "value", 0)
    return value if isinstance(value, int) else 0


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g}s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running, and is this its port?)"
    if isinstance(exc, ua.UaStatusCodeError):
        return f"the server answered {status_name(exc.code)}"
    text = str(exc) or exc.__class__.__name__
    if isinstance(exc, ConnectionError):
        return f"the connection closed ({text})"
    return text
