"""What an edge node knows and says, without any I/O: births, deaths, data, sequence numbers.

The sink (edge.py) owns the connection; this module turns journal batches into the Sparkplug messages
to publish, in order. It is deliberately pure so that every rule of the specification can be checked
without a broker, and so that a failed delivery changes nothing: ``plan`` works on an overlay, and
the overlay becomes the node's state only when ``commit`` is called after the broker acknowledged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from otseam.contract.models import Contract, Point
from otseam.core.records import Batch, Event, Quality, Sample, Value
from otseam.protocols.sparkplug.codec import (
    BOOLEAN,
    DATATYPES,
    DOUBLE,
    FLOAT,
    INT64,
    MetricCodec,
    ValueMismatch,
    encode_payload,
    encode_plain_metric,
)

log = logging.getLogger(__name__)

NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"
BDSEQ = "bdSeq"

#: (value, quality, timestamp in ms) of one metric.
MetricState = tuple[Value, Quality, int]


def ms(seconds: float) -> int:
    return round(seconds * 1000)


def point_datatype(point: Point) -> int:
    """The Sparkplug datatype of a contract point. A scaled integer is no longer an integer."""
    datatype = DATATYPES[point.type]
    scaled = point.scale is not None and (point.scale.factor != 1.0 or point.scale.offset != 0.0)
    if scaled and datatype not in (FLOAT, DOUBLE, BOOLEAN) and point.type != "string":
        return DOUBLE
    return datatype


@dataclass(slots=True)
class Message:
    topic: str
    payload: bytes
    kind: str  # NBIRTH, DBIRTH, DDATA, DDEATH
    device: str | None = None
    metrics: int = 0


@dataclass(slots=True)
class Plan:
    """The messages for one batch, and the state the node is in once they are all acknowledged."""

    messages: list[Message] = field(default_factory=list)
    values: dict[str, MetricState] = field(default_factory=dict)
    online: dict[str, bool] = field(default_factory=dict)
    #: Samples not sent because nothing changed (report by exception).
    unchanged: int = 0
    #: Samples of points the contract does not declare (cannot be born, so not sent).
    unknown: int = 0
    #: Samples whose value does not fit the declared type (sent as null with their quality).
    mismatched: int = 0


class EdgeModel:
    def __init__(
        self,
        contract: Contract,
        group_id: str,
        edge_node_id: str,
        *,
        aliases: bool = True,
        report_by_exception: bool = True,
        max_metrics_per_message: int = 5000,
        datatype_in_data: bool = False,
        quality_codes: str = "sparkplug",
    ) -> None:
        self.group_id = group_id
        self.edge_node_id = edge_node_id
        self.report_by_exception = report_by_exception
        self.max_metrics_per_message = max_metrics_per_message
        prefix = f"{NAMESPACE}/{group_id}"
        self.topic_nbirth = f"{prefix}/NBIRTH/{edge_node_id}"
        self.topic_ndeath = f"{prefix}/NDEATH/{edge_node_id}"
        self.topic_ncmd = f"{prefix}/NCMD/{edge_node_id}"
        self.topic_dcmd = f"{prefix}/DCMD/{edge_node_id}/+"
        self._device_prefix = prefix
        #: point key -> (device id, codec); device id -> its point keys in contract order.
        self.points: dict[str, tuple[str, MetricCodec]] = {}
        self.device_points: dict[str, list[str]] = {}
        alias = 0
        for device in contract.devices:
            keys = self.device_points.setdefault(device.id, [])
            for point in device.points:
                alias += 1
                key = device.key(point)
                codec = MetricCodec.build(
                    point.id,
                    point_datatype(point),
                    alias if aliases else None,
                    aliases,
                    datatype_in_data=datatype_in_data,
                    quality_codes=quality_codes,
                )
                self.points[key] = (device.id, codec)
                keys.append(key)
        self.values: dict[str, MetricState] = {}
        #: Devices are online until their driver says otherwise.
        self.online: dict[str, bool] = dict.fromkeys(self.device_points, True)
        self.seq = 0
        self._warned: set[str] = set()

    # --- topics and counters --------------------------------------------------------------------

    def device_topic(self, kind: str, device: str) -> str:
        return f"{self._device_prefix}/{kind}/{self.edge_node_id}/{device}"

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    # --- session messages -----------------------------------------------------------------------

    def death_payload(self, bdseq: int, now_ms: int) -> bytes:
        """NDEATH (the MQTT Will): only bdSeq (an Int64, as Sparkplug 3.0 types it), and no seq."""
        return encode_payload(now_ms, [encode_plain_metric(BDSEQ, INT64, bdseq, now_ms)], None)

    def births(self, bdseq: int, now_ms: int) -> list[Message]:
        """NBIRTH with seq 0, then a DBIRTH for every online device (a new session or a rebirth)."""
        self.seq = 0
        metrics = [
            encode_plain_metric(BDSEQ, INT64, bdseq, now_ms),
            encode_plain_metric(REBIRTH, BOOLEAN, False, now_ms),
        ]
        messages = [Message(self.topic_nbirth, encode_payload(now_ms, metrics, 0), "NBIRTH", None, 2)]
        for device, is_online in self.online.items():
            if is_online:
                messages.append(self._device_birth(device, now_ms, self.values))
        return messages

    def _device_birth(self, device: str, now_ms: int, values: dict[str, MetricState]) -> Message:
        metrics: list[bytes] = []
        for key in self.device_points[device]:
            codec = self.points[key][1]
            state = values.get(key)
            if state is None:
                # Declared but never read: born as null, with bad quality, so no one mistakes it for a value.
                metrics.append(codec.encode(codec.birth_head, None, Quality.BAD_COMM, now_ms))
            else:
                metrics.append(self._encode(codec, codec.birth_head, key, state))
        payload = encode_payload(now_ms, metrics, self._next_seq())
        return Message(self.device_topic("DBIRTH", device), payload, "DBIRTH", device, len(metrics))

    def _encode(self, codec: MetricCodec, head: bytes, key: str, state: MetricState) -> bytes:
        value, quality, ts_ms = state
        try:
            return codec.encode(head, value, quality, ts_ms)
        except ValueMismatch as exc:
            if key not in self._warned:
                self._warned.add(key)
                log.warning("point %s: %s for Sparkplug datatype %d; published as null", key, exc, codec.datatype)
            return codec.encode(head, None, Quality.BAD_CONFIG, ts_ms)

    # --- data -----------------------------------------------------------------------------------

    def plan(self, batch: Batch, now_ms: int) -> Plan:
        """The messages that carry ``batch``, in journal order per device."""
        plan = Plan()
        overlay = plan.values
        online = plan.online
        pending: dict[str, list[bytes]] = {}
        points = self.points
        committed = self.values
        rbe = self.report_by_exception
        limit = self.max_metrics_per_message

        # Devices declared dead; almost always empty, so the per-sample check costs one truth test.
        offline = {device for device, up in self.online.items() if not up}

        def is_online(device: str) -> bool:
            return device not in offline

        def flush(device: str) -> None:
            metrics = pending.pop(device, None)
            if metrics:
                payload = encode_payload(now_ms, metrics, self._next_seq())
                plan.messages.append(
                    Message(self.device_topic("DDATA", device), payload, "DDATA", device, len(metrics))
                )

        for record in batch.records:
            if isinstance(record, Sample):
                entry = points.get(record.point)
                if entry is None:
                    plan.unknown += 1
                    if record.point not in self._warned:
                        self._warned.add(record.point)
                        log.warning("point %s is not in the contract: not published over Sparkplug", record.point)
                    continue
                device, codec = entry
                state: MetricState = (record.value, record.quality, int(record.source_ts * 1000 + 0.5))
                if rbe:
                    previous = overlay.get(record.point) or committed.get(record.point)
                    # Same value (of the same type) and quality: report by exception says nothing happened.
                    if (
                        previous is not None
                        and previous[1] == record.quality
                        and previous[0] == record.value
                        and type(previous[0]) is type(record.value)
                    ):
                        plan.unchanged += 1
                        continue
                overlay[record.point] = state
                if offline and device in offline:
                    if record.quality is Quality.GOOD:
                        # A good value from a device we declared dead: it is back. The birth carries it.
                        online[device] = True
                        offline.discard(device)
                        plan.messages.append(self._device_birth(device, now_ms, {**committed, **overlay}))
                    continue
                metrics = pending.get(device)
                if metrics is None:
                    metrics = pending[device] = []
                try:
                    metrics.append(codec.encode(codec.data_head, record.value, record.quality, state[2]))
                except ValueMismatch:
                    metrics.append(self._encode(codec, codec.data_head, record.point, state))
                if len(metrics) >= limit:
                    flush(device)
            elif isinstance(record, Event) and record.kind == "device.state":
                device = record.source
                if device not in self.device_points:
                    continue
                wanted = str(record.data.get("state", "")).lower()
                # "driver-failed" (the supervisor restarting a crashed driver) means no data either.
                if wanted in ("offline", "driver-failed") and is_online(device):
                    flush(device)
                    online[device] = False
                    offline.add(device)
                    payload = encode_payload(ms(record.ts), [], self._next_seq())
                    plan.messages.append(Message(self.device_topic("DDEATH", device), payload, "DDEATH", device))
                elif wanted == "online" and not is_online(device):
                    online[device] = True
                    offline.discard(device)
                    plan.messages.append(self._device_birth(device, now_ms, {**committed, **overlay}))
        for device in list(pending):
            flush(device)
        return plan

    def commit(self, plan: Plan) -> None:
        """The broker acknowledged every message of ``plan``: it is now what the hosts know."""
        self.values.update(plan.values)
        self.online.update(plan.online)
