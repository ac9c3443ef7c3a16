"""The subscriber of bench_peers.py: receives what every gateway publishes and records each value.

One MQTT session (persistent, QoS 1, so a broker restart does not lose what is published while it
reconnects) subscribes to the three gateways' topics:

* Seam: Sparkplug B, ``spBv1.0/bench/DBIRTH|DDATA/seam/<device>``; DDATA carries aliases, resolved
  from the DBIRTH (whose values count too: they are current values);
* ThingsBoard IoT Gateway: ``v1/gateway/telemetry``, ``{"<device>": [{"ts": ..., "values": {...}}]}``;
* Node-RED: ``bench/nodered/<device>``, ``{"r0": value, ...}`` per block.

Every value is ``j << 20 | cycle`` (see peers_sim.py) and every key is ``r<register address>``, so the
subscriber records, per value, the tag, the cycle and the receive time, nothing else (the analysis is
done afterwards with numpy, off the receiving path). It also answers the gateway's
``getSessionLimits`` request as a ThingsBoard server does (no limits): without an answer ThingsBoard's
gateway never starts sending.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt

from otseam.protocols.sparkplug.codec import decode_payload

CYCLE_BITS = 20
CYCLE_MASK = (1 << CYCLE_BITS) - 1
TOPICS = ("spBv1.0/bench/#", "v1/gateway/telemetry", "bench/nodered/#", "v1/devices/me/rpc/request/+")
#: What ThingsBoard answers a gateway's getSessionLimits with when no limit is configured.
SESSION_LIMITS = {"rateLimits": {}, "gatewayRateLimits": {}, "maxInflightMessages": 100, "maxPayloadSize": 65536}


@dataclass
class Record:
    """Everything one gateway delivered during one run: one row per value."""

    points: int
    tags: list[np.ndarray] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)
    received: list[np.ndarray] = field(default_factory=list)
    messages: int = 0
    undecodable: int = 0
    #: Values sent without a value (Seam's BAD_COMM samples when a first poll is late): not changes.
    nulls: int = 0

    def add(self, tags: list[int], values: list[int], now: float) -> None:
        self.tags.append(np.asarray(tags, dtype=np.int32))
        self.values.append(np.asarray(values, dtype=np.uint32))
        self.received.append(np.full(len(tags), now))
        self.messages += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(tag, cycle, received, wrong): wrong marks a value whose point bits are not its tag's."""
        if not self.tags:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0), np.zeros(0, dtype=bool)
        tags = np.concatenate(self.tags).astype(np.int64)
        values = np.concatenate(self.values).astype(np.int64)
        received = np.concatenate(self.received)
        wrong = (values >> CYCLE_BITS) != tags % self.points
        return tags, values & CYCLE_MASK, received, wrong


def tag_of(device: str, key: str, points: int) -> int:
    """Tag index of ``plc<n>`` / ``r<address>``: (n - 1) * points + address / 2."""
    return (int(device[3:]) - 1) * points + int(key.rpartition("/")[2][1:]) // 2


class Subscriber:
    def __init__(self, port: int, points: int) -> None:
        self.points = points
        self.record = Record(points)
        self.aliases: dict[tuple[str, int], int] = {}
        self.connected = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="bench-peers-subscriber", clean_session=False
        )
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_: self.connected.clear()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise SystemExit("the subscriber could not connect to the broker")

    def start_run(self) -> Record:
        """A new record for the next gateway; the previous one is returned by the caller's reference."""
        self.record = Record(self.points)
        self.aliases = {}
        return self.record

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason == 0:
            client.subscribe([(topic, 1) for topic in TOPICS])
            self.connected.set()

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.time()
        topic = message.topic
        try:
            if topic.startswith("spBv1.0/"):
                self._sparkplug(topic, message.payload, now)
            elif topic == "v1/gateway/telemetry":
                self._thingsboard(message.payload, now)
            elif topic.startswith("bench/nodered/"):
                self._keyed(topic.rpartition("/")[2], json.loads(message.payload), now)
            elif topic.startswith("v1/devices/me/rpc/request/"):
                request = json.loads(message.payload)
                if request.get("method") == "getSessionLimits":
                    reply = topic.replace("/request/", "/response/")
                    client.publish(reply, json.dumps(SESSION_LIMITS), qos=1)
        except Exception:  # counted, never fatal: a gateway's odd message must not stop the count
            self.record.undecodable += 1

    def _sparkplug(self, topic: str, data: bytes, now: float) -> None:
        parts = topic.split("/")
        if len(parts) != 5 or parts[2] not in ("DBIRTH", "DDATA"):
            return
        device = parts[4]
        payload = decode_payload(data)
        tags: list[int] = []
        values: list[int] = []
        if parts[2] == "DBIRTH":
            for metric in payload.metrics:
                if not metric.name.rpartition("/")[2].startswith("r"):
                    continue
                tag = tag_of(device, metric.name, self.points)
                self.aliases[(device, metric.alias)] = tag
                if not metric.is_null:
                    tags.append(tag)
                    values.append(metric.int_value)
        else:
            aliases = self.aliases
            for metric in payload.metrics:
                if metric.is_null:
                    self.record.nulls += 1
                    continue
                tags.append(aliases[(device, metric.alias)])
                values.append(metric.int_value)
        self.record.add(tags, values, now)

    def _thingsboard(self, data: bytes, now: float) -> None:
        for device, entries in json.loads(data).items():
            for entry in entries:
                self._keyed(device, entry["values"], now)

    def _keyed(self, device: str, values: dict[str, int], now: float) -> None:
        base = (int(device[3:]) - 1) * self.points
        self.record.add([base + int(key[1:]) // 2 for key in values], list(values.values()), now)


def change_times(cycles_file: Path) -> np.ndarray:
    """Epoch time of each cycle's change, indexed by cycle (NaN where unknown)."""
    pairs = [line.split() for line in cycles_file.read_text().splitlines() if line.strip()]
    times = np.full(max((int(c) for c, _ in pairs), default=0) + 1, np.nan)
    for cycle, at in pairs:
        times[int(cycle)] = float(at)
    return times


def read_times(reads_file: Path, points: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted keys ``tag << 20 | cycle``, time of the first read that served each) from the sim's read log."""
    rows = np.loadtxt(reads_file, ndmin=2) if reads_file.stat().st_size else np.zeros((0, 5))
    device, first, count, cycle, at = (rows[:, i] for i in range(5))
    per_read = (count // 2).astype(np.int64)
    which = np.repeat(np.arange(len(rows)), per_read)
    offset = np.arange(int(per_read.sum())) - np.repeat(np.cumsum(per_read) - per_read, per_read)
    tags = (device[which].astype(np.int64) - 1) * points + first[which].astype(np.int64) // 2 + offset
    keys = (tags << CYCLE_BITS) | cycle[which].astype(np.int64)
    order = np.lexsort((at[which], keys))
    unique, index = np.unique(keys[order], return_index=True)
    return unique, at[which][order][index]
