"""What a ``type: uns_json`` sink accepts in ``options``; `seam check` and the sink read this one model."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from otseam.contract.option_types import Flag
from otseam.sinks.mqtt_common.options import MqttOptions

_LEVEL_FORBIDDEN = set("+#\x00")


class Options(MqttOptions):
    #: Keep each point's last value on the broker.
    retain: Flag = True
    #: "iso" (ISO 8601 UTC, milliseconds) or "ms" (integer milliseconds since the epoch).
    timestamps: Literal["iso", "ms"] = "iso"
    #: Replaces the ISA-95 path from the contract when set (e.g. "uns/v1/acme/plant1").
    topic_prefix: str | None = None

    @field_validator("topic_prefix")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip("/") or _LEVEL_FORBIDDEN & set(value) or value.startswith("$"):
            raise ValueError("a topic path without '+', '#' or a leading '$'")
        return value.strip("/")
