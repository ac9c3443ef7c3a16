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
    )
