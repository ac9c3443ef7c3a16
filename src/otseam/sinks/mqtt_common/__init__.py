"""What the MQTT sinks and `seam host` share: broker addresses, protocol version, TLS, credentials.

This package is not a sink itself; ``type: mqtt_common`` in a contract is refused by ``create``.
The options model (``options.py``) is importable without the MQTT client library, so `seam check`
can validate a sink's options without loading it; the rest is loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, NoReturn

from otseam.sinks.mqtt_common.options import BrokerAddress, MqttConfigError, MqttOptions, parse_broker

if TYPE_CHECKING:
    from otseam.sinks.mqtt_common.settings import (
        CONNECTION_KEYS,
        MqttSettings,
        TlsSettings,
        make_client,
        parse_mqtt_options,
        settings_from,
    )

__all__ = [
    "CONNECTION_KEYS",
    "BrokerAddress",
    "MqttConfigError",
    "MqttOptions",
    "MqttSettings",
    "TlsSettings",
    "create",
    "make_client",
    "parse_broker",
    "parse_mqtt_options",
    "settings_from",
]

_LAZY = {"CONNECTION_KEYS", "MqttSettings", "TlsSettings", "make_client", "parse_mqtt_options", "settings_from"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("otseam.sinks.mqtt_common.settings"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def create(spec: object, context: object) -> NoReturn:
    raise MqttConfigError("mqtt_common holds shared MQTT settings and is not a sink: use type sparkplug or uns_json")
