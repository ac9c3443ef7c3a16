"""What a ``type: sparkplug`` sink accepts in ``options``; `seam check` and the sink read this one model."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from otseam.contract.option_types import Flag, Seconds, Whole
from otseam.sinks.mqtt_common.options import MqttOptions

#: Sparkplug ids are topic levels: no MQTT wildcards, no level separator, not empty, and no control
#: characters (MQTT 3.1.1 section 1.5.3: topic names SHOULD NOT hold U+0001-U+001F or U+007F-U+009F).
_SPARKPLUG_ID = re.compile(r"^[^/+#\x00-\x1f\x7f-\x9f]{1,128}\Z")


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
    #: Sparkplug 3.0 publishes births and data at QoS 0 (store-and-forward is Seam's own, through the
    #: journal); 1 is a deviation, named in a startup warning.
    qos: Whole = Field(0, ge=0, le=1)
    #: Deviation: repeat the datatype in NDATA/DDATA (Sparkplug 3.0 says it SHOULD NOT be there).
    datatype_in_data: Flag = False
    #: "sparkplug" (0 bad, 192 good, 500 stale) or the deviation "opc" (64 for stale and uncertain).
    quality_codes: Literal["sparkplug", "opc"] = "sparkplug"

    @field_validator("group_id", "edge_node_id", "primary_host_id")
    @classmethod
    def _topic_level(cls, value: str | None) -> str | None:
        if value is not None and not _SPARKPLUG_ID.match(value):
            raise ValueError(f"{value!r} must be 1 to 128 characters without '/', '+', '#' or control characters")
        return value
