"""Plain MQTT for a Unified Namespace: one topic per point along the ISA-95 path, JSON payloads.

Topic: ``<enterprise>/<site>[/<area>][/<line>]/<device>/<point>`` from the contract's ``site`` and
point keys. Events go to ``<site path>/_events/<kind>`` (kind dots become slashes).

Payload (one JSON object per sample)::

    {"value": 12.5, "quality": "good", "unit": "degC",
     "ts": "2026-11-26T07:01:02.345Z", "source_ts": "2026-11-26T07:01:02.300Z",
     "source": "<journal id>", "offset": 1234}

``ts`` is when Seam received the value (gateway time) and ``source_ts`` when the device produced it;
both are ISO 8601 UTC with milliseconds, or integers of milliseconds since the epoch with
``timestamps: ms``. ``source`` and ``offset`` identify the record in the edge's journal: delivery is
at-least-once (a replay after an outage or a crash repeats records), and a consumer that must not
count a value twice deduplicates on that pair. Non-finite numbers (NaN, infinity) have no JSON
spelling and are sent as ``null`` with their quality.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from otseam.contract import plugin_options
from otseam.contract.models import SinkSpec
from otseam.core.plugins import PluginContext
from otseam.core.records import Batch, Event, Sample
from otseam.sinks.mqtt_common import MqttConfigError, MqttSettings, settings_from
from otseam.sinks.mqtt_common.connection import MqttConnection
from otseam.sinks.mqtt_common.publish import publish_all
from otseam.sinks.uns_json.options import Options


@dataclass(frozen=True, slots=True)
class UnsOptions:
    mqtt: MqttSettings
    retain: bool = True
    #: "iso" (ISO 8601 UTC, milliseconds) or "ms" (integer milliseconds since the epoch).
    timestamps: str = "iso"
    #: Replaces the ISA-95 path from the contract when set (e.g. "uns/v1/acme/plant1").
    topic_prefix: str | None = None


def parse_options(options: Mapping[str, Any], *, sink_id: str, contract_path: str = "") -> UnsOptions:
    model = plugin_options.parse(
        Options, options, f"uns_json sink {sink_id}", MqttConfigError, contract_path=contract_path
    )
    return UnsOptions(
        mqtt=settings_from(model, default_client_id=f"seam-uns-{sink_id}"),
        retain=model.retain,
        timestamps=model.timestamps,
        topic_prefix=model.topic_prefix,
    )


def iso_ms(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class UnsJsonSink:
    def __init__(self, spec: SinkSpec, context: PluginContext, options: UnsOptions) -> None:
        self.spec = spec
        self.options = options
        self.root = options.topic_prefix or "/".join(context.contract.site.path)
        self.units = {key: point.unit for device in context.contract.devices for point in device.points
                      for key in (device.key(point),)}  # fmt: skip
        self.connection = MqttConnection(options.mqtt)
        self._stamp = iso_ms if options.timestamps == "iso" else (lambda s: round(s * 1000))
        self.published = 0

    def topic(self, point_key: str) -> str:
        return f"{self.root}/{point_key}"

    def encode(self, source: str, offset: int, record: Sample | Event) -> tuple[str, bytes]:
        stamp = self._stamp
        if isinstance(record, Sample):
            value = record.value
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            body: dict[str, Any] = {
                "value": value,
                "quality": record.quality.label,
                "unit": self.units.get(record.point, ""),
                "ts": stamp(record.gateway_ts),
                "source_ts": stamp(record.source_ts),
                "source": source,
                "offset": offset,
            }
            return self.topic(record.point), json.dumps(body, separators=(",", ":")).encode()
        body = {
            "kind": record.kind,
            "source_id": record.source,
            "severity": record.severity.label,
            "message": record.message,
            "data": record.data,
            "ts": stamp(record.ts),
            "source": source,
            "offset": offset,
        }
        topic = f"{self.root}/_events/{record.kind.replace('.', '/')}"
        return topic, json.dumps(body, separators=(",", ":"), default=str).encode()

    async def start(self) -> None:
        # Connecting lazily in deliver: a broker that is down at start-up is an outage like any other.
        return None

    async def deliver(self, batch: Batch) -> None:
        if not batch.records:
            return
        messages = [self.encode(batch.source, o, r) for o, r in zip(batch.offsets, batch.records, strict=True)]
        client = await self.connection.client()
        try:
            await publish_all(
                client,
                ((topic, payload, self.options.retain) for topic, payload in messages),
                qos=self.options.mqtt.qos,
                within=self.options.mqtt.timeout,
            )
        except BaseException:
            # A connection that failed once is not trusted again: the retry starts on a fresh one.
            await self.connection.drop()
            raise
        self.published += len(messages)

    async def close(self) -> None:
        await self.connection.close()
