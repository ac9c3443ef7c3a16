"""What a ``type: sparkplug`` sink accepts in ``options``; `seam check` and the sink read this one model."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from otseam.contract.option_types import Flag, Seconds, Whole
from otseam.sinks.mqtt_common.options import MqttOptions

#: Sparkplug ids are topic levels: no MQTT wildcards, no level separator, not empty.
_SPARKPLUG_ID = re.compile(r"^[^/+#]{1,128}$")


class Options(MqttOptions):
    group_id: str
    edge_node_id: str
    #: The primary host application whose STATE decides whether this edge node publishes.
    primary_host_id: str | None = None
    aliases: Flag = True
    report_by_exception: Flag = True
    #: Upper bound of the random wait before each connection attempt.
    startup_delay: Seconds = Field(2.0, ge=0, le=3600)
    max_metrics_per_message: Whole = Field(5000, ge=1, le=100_000)

    @field_validator("group_id", "edge_node_id", "primary_host_id")
    @classmethod
    def _topic_level(cls, value: str | None) -> str | None:
        if value is not None and not _SPARKPLUG_ID.match(value):
            raise ValueError(f"{value!r} must be 1 to 128 characters without '/', '+' or '#'")
        return value
