"""MQTT connection settings, parsed from a sink's ``options`` with one clear error per mistake.

Secrets never appear in the contract itself: a password is read from a file or an environment
variable that the contract names, and it is excluded from every ``repr`` so it cannot reach a log.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from otseam.contract import plugin_options
from otseam.sinks.mqtt_common.options import (
    BrokerAddress,
    MqttConfigError,
    MqttOptions,
    mqtt_version,
    parse_broker,
)

__all__ = [
    "CONNECTION_KEYS",
    "BrokerAddress",
    "MqttConfigError",
    "MqttOptions",
    "MqttSettings",
    "TlsSettings",
    "make_client",
    "parse_broker",
    "parse_mqtt_options",
    "settings_from",
]


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """Server verification against ``ca_file``; a client certificate and key for mutual TLS."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    #: Checking the broker's name against its certificate is on unless explicitly switched off.
    check_hostname: bool = True

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = self.check_hostname
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


@dataclass(frozen=True, slots=True)
class MqttSettings:
    brokers: tuple[BrokerAddress, ...]
    #: 4 is MQTT 3.1.1 (its protocol level on the wire), 5 is MQTT 5.
    version: int = 5
    client_id: str = ""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    keepalive: int = 30
    qos: int = 1
    tls: TlsSettings | None = None
    #: Seconds to wait for a connection or an acknowledgement before calling it an outage.
    timeout: float = 10.0

    @property
    def protocol(self) -> aiomqtt.ProtocolVersion:
        return aiomqtt.ProtocolVersion.V5 if self.version == 5 else aiomqtt.ProtocolVersion.V311


#: The option keys every MQTT sink accepts besides its own.
CONNECTION_KEYS = frozenset(MqttOptions.model_fields)


def _secret(options: MqttOptions) -> str | None:
    if options.password_file is not None:
        try:
            return Path(options.password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise MqttConfigError(f"password_file {options.password_file!r} cannot be read: {exc.strerror}") from None
    if options.password_env is not None:
        value = os.environ.get(options.password_env)
        if value is None:
            raise MqttConfigError(
                f"password_env names {options.password_env!r}, but that environment variable is not set"
            )
        return value
    return None


def settings_from(options: MqttOptions, *, default_client_id: str) -> MqttSettings:
    """The connection part of a sink's validated options (the rest belongs to the sink)."""
    brokers = tuple(parse_broker(b) for b in options.broker_list())
    tls = options.tls
    return MqttSettings(
        brokers=brokers,
        version=mqtt_version(options.mqtt_version),
        client_id=options.client_id or default_client_id,
        username=options.username,
        password=_secret(options),
        keepalive=options.keepalive,
        qos=options.qos,
        tls=(
            TlsSettings(tls.ca, tls.cert, tls.key, tls.check_hostname)
            if tls is not None
            else (TlsSettings() if any(b.tls for b in brokers) else None)
        ),
        timeout=float(options.timeout),
    )


def parse_mqtt_options(
    options: Mapping[str, Any], *, default_client_id: str, where: str = "mqtt", contract_path: str = ""
) -> MqttSettings:
    """Connection settings from a mapping of connection options only (``seam host`` builds one from flags)."""
    model = plugin_options.parse(MqttOptions, options, where, MqttConfigError, contract_path=contract_path)
    return settings_from(model, default_client_id=default_client_id)


def make_client(
    settings: MqttSettings,
    broker: BrokerAddress,
    *,
    will: aiomqtt.Will | None = None,
    client_id: str | None = None,
    clean: bool = True,
    max_incoming: int = 0,
    session_expiry: int = 0,
) -> aiomqtt.Client:
    """An unconnected aiomqtt client for ``broker`` (enter it with ``async with``).

    ``clean=False`` resumes the broker's session for this client id (MQTT 5: kept for
    ``session_expiry`` seconds after a disconnect), so what was queued or unacknowledged for it while
    it was away is delivered when it returns.
    ``max_incoming`` bounds the queue of received messages not yet handled (0: unbounded); a sink
    receives only a few commands, a host application must not drop data, so each chooses.
    """
    tls = settings.tls if (broker.tls or settings.tls) else None
    kwargs: dict[str, Any] = {}
    if settings.version == 5:
        kwargs["clean_start"] = clean
        if session_expiry:
            connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            connect.SessionExpiryInterval = session_expiry
            kwargs["properties"] = connect
    else:
        kwargs["clean_session"] = clean
    return aiomqtt.Client(
        broker.host,
        broker.port,
        username=settings.username,
        password=settings.password,
        identifier=client_id or settings.client_id,
        protocol=settings.protocol,
        will=will,
        keepalive=settings.keepalive,
        timeout=settings.timeout,
        tls_context=tls.context() if tls else None,
        max_inflight_messages=1000,
        max_queued_incoming_messages=max_incoming,
        **kwargs,
    )
