"""What the MQTT sinks and `seam host` share: broker addresses, protocol version, TLS, credentials.

This package is not a sink itself; ``type: mqtt_common`` in a contract is refused by ``create``.
"""

from __future__ import annotations

from typing import NoReturn

from otseam.sinks.mqtt_common.settings import (
    CONNECTION_KEYS,
    BrokerAddress,
    MqttConfigError,
    MqttSettings,
    TlsSettings,
    make_client,
    parse_broker,
    parse_mqtt_options,
)

__all__ = [
    "CONNECTION_KEYS",
    "BrokerAddress",
    "MqttConfigError",
    "MqttSettings",
    "TlsSettings",
    "create",
    "make_client",
    "parse_broker",
    "parse_mqtt_options",
]


def create(spec: object, context: object) -> NoReturn:
    raise MqttConfigError("mqtt_common holds shared MQTT settings and is not a sink: use type sparkplug or uns_json")
