"""The ``options`` of a ``type: sparkplug`` sink, checked once with a clear message per mistake."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from otseam.contract.units import parse_duration
from otseam.sinks.mqtt_common import CONNECTION_KEYS, MqttConfigError, MqttSettings, parse_mqtt_options

#: Sparkplug ids are topic levels: no MQTT wildcards, no level separator, not empty.
_SPARKPLUG_ID = re.compile(r"^[^/+#]{1,128}$")

_KNOWN = CONNECTION_KEYS | {
    "group_id",
    "edge_node_id",
    "primary_host_id",
    "aliases",
    "report_by_exception",
    "startup_delay",
    "max_metrics_per_message",
    "datatype_in_data",
    "quality_codes",
}


@dataclass(frozen=True, slots=True)
class SparkplugOptions:
    mqtt: MqttSettings
    group_id: str
    edge_node_id: str
    primary_host_id: str | None = None
    aliases: bool = True
    report_by_exception: bool = True
    #: Upper bound of the random wait before each connection attempt (seconds).
    startup_delay: float = 2.0
    max_metrics_per_message: int = 5000
    #: Deviation: repeat the datatype in NDATA/DDATA (Sparkplug 3.0 says it SHOULD NOT be there).
    datatype_in_data: bool = False
    #: "sparkplug" (0 bad, 192 good, 500 stale) or the deviation "opc" (64 for stale and uncertain).
    quality_codes: str = "sparkplug"

    def deviations(self) -> list[str]:
        """Each setting that departs from Sparkplug B 3.0, in words for a startup warning."""
        found: list[str] = []
        if self.mqtt.qos != 0:
            found.append(
                f"qos {self.mqtt.qos}: births, data and DDEATH go at QoS {self.mqtt.qos}; "
                "Sparkplug 3.0 requires QoS 0 (topics-nbirth-mqtt, topics-ddata-mqtt)"
            )
        if self.datatype_in_data:
            found.append("datatype_in_data: DATA metrics repeat the datatype (payloads-metric-datatype-not-req)")
        if self.quality_codes != "sparkplug":
            found.append("quality_codes opc: stale is sent as 64, not 500 as Sparkplug 3.0 defines it")
        if not self.aliases:
            found.append("aliases false: DATA metrics carry names, which Sparkplug 3.0 allows only without aliases")
        return found


def _sparkplug_id(options: Mapping[str, Any], key: str, required: bool) -> str | None:
    value = options.get(key)
    if value is None:
        if required:
            raise MqttConfigError(f"sparkplug sink: {key} is required")
        return None
    if not isinstance(value, str) or not _SPARKPLUG_ID.match(value):
        raise MqttConfigError(f"sparkplug sink: {key} {value!r} must be 1 to 128 characters without '/', '+' or '#'")
    return value


def _flag(options: Mapping[str, Any], key: str, default: bool) -> bool:
    value = options.get(key, default)
    if not isinstance(value, bool):
        raise MqttConfigError(f"sparkplug sink: {key} is true or false, got {value!r}")
    return value


def parse_options(options: Mapping[str, Any], *, sink_id: str) -> SparkplugOptions:
    unknown = set(options) - _KNOWN
    if unknown:
        raise MqttConfigError(f"sparkplug sink {sink_id!r}: unknown options {sorted(unknown)}; known: {sorted(_KNOWN)}")
    group_id = _sparkplug_id(options, "group_id", required=True)
    edge_node_id = _sparkplug_id(options, "edge_node_id", required=True)
    assert group_id is not None and edge_node_id is not None
    try:
        delay = parse_duration(options.get("startup_delay", "2s"))
    except ValueError as exc:
        raise MqttConfigError(f"sparkplug sink: startup_delay: {exc}") from None
    per_message = options.get("max_metrics_per_message", 5000)
    if not isinstance(per_message, int) or isinstance(per_message, bool) or not 1 <= per_message <= 100_000:
        raise MqttConfigError("sparkplug sink: max_metrics_per_message is a whole number from 1 to 100000")
    quality_codes = options.get("quality_codes", "sparkplug")
    if quality_codes not in ("sparkplug", "opc"):
        raise MqttConfigError(f"sparkplug sink: quality_codes {quality_codes!r}: use sparkplug (the default) or opc")
    mqtt = parse_mqtt_options(options, default_client_id=f"seam-{group_id}-{edge_node_id}")
    # Sparkplug 3.0 publishes births and data at QoS 0; the shared MQTT options default to 1.
    mqtt = replace(mqtt, qos=options.get("qos", 0))
    return SparkplugOptions(
        mqtt=mqtt,
        group_id=group_id,
        edge_node_id=edge_node_id,
        primary_host_id=_sparkplug_id(options, "primary_host_id", required=False),
        aliases=_flag(options, "aliases", True),
        report_by_exception=_flag(options, "report_by_exception", True),
        startup_delay=delay,
        max_metrics_per_message=per_message,
        datatype_in_data=_flag(options, "datatype_in_data", False),
        quality_codes=quality_codes,
    )
