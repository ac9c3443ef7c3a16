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

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883


class MqttConfigError(ValueError):
    """A mistake in the MQTT options of a sink or of `seam host`; the message says what to write."""


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


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


def parse_broker(text: object) -> BrokerAddress:
    """``host:port``, ``mqtt://host:port`` or ``mqtts://host:port`` (TLS)."""
    if not isinstance(text, str) or not text.strip():
        raise MqttConfigError(f"a broker is written 'host:port' or 'mqtts://host:port', got {text!r}")
    rest = text.strip()
    tls = False
    if "://" in rest:
        scheme, _, rest = rest.partition("://")
        if scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise MqttConfigError(f"broker {text!r}: the scheme must be mqtt:// or mqtts://")
        tls = scheme in ("mqtts", "ssl")
    host, sep, port_text = rest.rpartition(":")
    if not sep:
        host, port_text = rest, ""
    host = host.strip("[]")
    if not host:
        raise MqttConfigError(f"broker {text!r} has no host name")
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise MqttConfigError(f"broker {text!r}: the port must be a number from 1 to 65535")
        port = int(port_text)
    else:
        port = DEFAULT_TLS_PORT if tls else DEFAULT_PORT
    return BrokerAddress(host, port, tls)


def _read_secret(options: Mapping[str, Any]) -> str | None:
    if "password" in options:
        raise MqttConfigError(
            "a password must not be written into the contract: use password_file (a file readable only by "
            "Seam) or password_env (the name of an environment variable)"
        )
    if "password_file" in options:
        path = Path(str(options["password_file"]))
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise MqttConfigError(f"password_file {str(path)!r} cannot be read: {exc.strerror}") from None
    if "password_env" in options:
        name = str(options["password_env"])
        value = os.environ.get(name)
        if value is None:
            raise MqttConfigError(f"password_env names {name!r}, but that environment variable is not set")
        return value
    return None


def _tls(options: Mapping[str, Any], any_tls_broker: bool) -> TlsSettings | None:
    raw = options.get("tls")
    if raw is None or raw is False:
        return TlsSettings() if any_tls_broker else None
    if raw is True:
        return TlsSettings()
    if not isinstance(raw, Mapping):
        raise MqttConfigError("tls is either true or a mapping with ca, cert, key and check_hostname")
    unknown = set(raw) - {"ca", "cert", "key", "check_hostname"}
    if unknown:
        raise MqttConfigError(f"tls has unknown keys {sorted(unknown)}: use ca, cert, key, check_hostname")
    for key in ("ca", "cert", "key"):
        if key in raw and not Path(str(raw[key])).is_file():
            raise MqttConfigError(f"tls.{key}: no file at {str(raw[key])!r}")
    if ("cert" in raw) != ("key" in raw):
        raise MqttConfigError("tls: mutual TLS needs both cert (the client certificate) and key (its private key)")
    check = raw.get("check_hostname", True)
    if not isinstance(check, bool):
        raise MqttConfigError("tls.check_hostname is true or false")
    return TlsSettings(
        ca_file=str(raw["ca"]) if "ca" in raw else None,
        cert_file=str(raw["cert"]) if "cert" in raw else None,
        key_file=str(raw["key"]) if "key" in raw else None,
        check_hostname=check,
    )


def _version(raw: object) -> int:
    text = str(raw).strip().lower()
    if text in ("5", "5.0", "v5"):
        return 5
    if text in ("3.1.1", "311", "v311", "4"):
        return 4
    raise MqttConfigError(f"mqtt_version {raw!r} is not supported: use 5 or 3.1.1")


#: The option keys parse_mqtt_options reads; every MQTT sink accepts these besides its own.
CONNECTION_KEYS = frozenset(
    {
        "broker",
        "brokers",
        "mqtt_version",
        "client_id",
        "username",
        "password",
        "password_file",
        "password_env",
        "tls",
        "qos",
        "keepalive",
        "timeout",
    }
)


def parse_mqtt_options(options: Mapping[str, Any], *, default_client_id: str) -> MqttSettings:
    """The connection part of a sink's options (the rest belongs to the sink)."""
    raw_brokers = options.get("brokers", options.get("broker"))
    if raw_brokers is None:
        raise MqttConfigError("no broker given: add brokers: ['host:1883'] (several for fail-over, in order)")
    if isinstance(raw_brokers, str):
        raw_brokers = [raw_brokers]
    if not isinstance(raw_brokers, list) or not raw_brokers:
        raise MqttConfigError("brokers is a list such as ['broker-a:8883', 'broker-b:8883']")
    brokers = tuple(parse_broker(b) for b in raw_brokers)
    qos = options.get("qos", 1)
    if qos not in (0, 1) or isinstance(qos, bool):
        raise MqttConfigError(f"qos {qos!r}: use 1 (acknowledged, the default) or 0 (fire and forget)")
    keepalive = options.get("keepalive", 30)
    if not isinstance(keepalive, int) or isinstance(keepalive, bool) or not 5 <= keepalive <= 3600:
        raise MqttConfigError(f"keepalive {keepalive!r}: a whole number of seconds from 5 to 3600")
    timeout = options.get("timeout", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise MqttConfigError(f"timeout {timeout!r}: a positive number of seconds")
    client_id = str(options.get("client_id") or default_client_id)
    username = options.get("username")
    return MqttSettings(
        brokers=brokers,
        version=_version(options.get("mqtt_version", 5)),
        client_id=client_id,
        username=str(username) if username is not None else None,
        password=_read_secret(options),
        keepalive=keepalive,
        qos=qos,
        tls=_tls(options, any(b.tls for b in brokers)),
        timeout=float(timeout),
    )


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
