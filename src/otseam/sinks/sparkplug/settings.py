"""A sparkplug sink's options, validated by ``options.Options``, as the edge node uses them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from otseam.contract import plugin_options
from otseam.sinks.mqtt_common import MqttConfigError, MqttSettings, settings_from
from otseam.sinks.sparkplug.options import Options


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


def parse_options(options: Mapping[str, Any], *, sink_id: str, contract_path: str = "") -> SparkplugOptions:
    model = plugin_options.parse(
        Options, options, f"sparkplug sink {sink_id}", MqttConfigError, contract_path=contract_path
    )
    return SparkplugOptions(
        mqtt=settings_from(model, default_client_id=f"seam-{model.group_id}-{model.edge_node_id}"),
        group_id=model.group_id,
        edge_node_id=model.edge_node_id,
        primary_host_id=model.primary_host_id,
        aliases=model.aliases,
        report_by_exception=model.report_by_exception,
        startup_delay=model.startup_delay,
        max_metrics_per_message=model.max_metrics_per_message,
        datatype_in_data=model.datatype_in_data,
        quality_codes=model.quality_codes,
    )
