"""The MQTT connection options every MQTT sink accepts, as a typed model; light imports only.

`seam check` validates a sink's options against the sink's ``Options`` (a subclass of
:class:`MqttOptions`) without loading the MQTT client; the sink builds its connection from the same
model. A password is never written into the contract: it is read from a file or an environment
variable that the contract names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from otseam.contract.option_types import ExistingFile, Flag, PluginOptions, Text, Whole, environment_checked

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


def mqtt_version(raw: object) -> int:
    """4 is MQTT 3.1.1 (its protocol level on the wire), 5 is MQTT 5."""
    text = str(raw).strip().lower()
    if text in ("5", "5.0", "v5"):
        return 5
    if text in ("3.1.1", "311", "v311", "4"):
        return 4
    raise MqttConfigError(f"mqtt_version {raw!r} is not supported: use 5 or 3.1.1")


class TlsOptions(BaseModel, extra="forbid", frozen=True):
    """Server verification against ``ca``; a client certificate and key for mutual TLS."""

    ca: ExistingFile | None = None
    cert: ExistingFile | None = None
    key: ExistingFile | None = None
    #: Checking the broker's name against its certificate is on unless explicitly switched off.
    check_hostname: Flag = True

    @model_validator(mode="after")
    def _pair(self) -> TlsOptions:
        if (self.cert is None) != (self.key is None):
            raise ValueError("mutual TLS needs both cert (the client certificate) and key (its private key)")
        return self


def _tls_flag(value: object) -> object:
    if value is True:
        return {}
    if value is False:
        return None
    return value


class MqttOptions(PluginOptions):
    broker: str | None = None
    #: Brokers in fail-over order: 'host:1883', 'mqtts://host:8883'.
    brokers: list[str] | str | None = None
    mqtt_version: str | int | float = 5
    client_id: Text | None = None
    username: Text | None = None
    #: Refused with a message: a password never goes into the contract.
    password: object = Field(None, json_schema_extra={"refused": True})
    password_file: ExistingFile | None = None
    #: The name of an environment variable holding the password, read when the sink starts.
    password_env: Text | None = None
    #: true (verify the broker against the system's CAs), or a mapping with ca, cert, key, check_hostname.
    tls: Annotated[TlsOptions | None, BeforeValidator(_tls_flag)] = None
    #: 1 (acknowledged) or 0 (fire and forget).
    qos: Whole = Field(1, ge=0, le=1)
    keepalive: Whole = Field(30, ge=5, le=3600)
    #: Seconds to wait for a connection or an acknowledgement before calling it an outage.
    timeout: float = Field(10.0, gt=0, le=3600, allow_inf_nan=False)

    @field_validator("password")
    @classmethod
    def _no_password(cls, value: object) -> object:
        if value is not None:
            raise ValueError(
                "a password must not be written into the contract: use password_file (a file readable only by "
                "Seam) or password_env (the name of an environment variable)"
            )
        return value

    @field_validator("password_env")
    @classmethod
    def _env_set(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and environment_checked(info) and value not in os.environ:
            raise ValueError(f"password_env names {value!r}, but that environment variable is not set")
        return value

    @field_validator("mqtt_version")
    @classmethod
    def _version(cls, value: str | int | float) -> str | int | float:
        try:
            mqtt_version(value)
        except MqttConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _brokers_given(self) -> MqttOptions:
        listed = self.broker_list()
        if not listed:
            raise ValueError("no broker given: add brokers: ['host:1883'] (several for fail-over, in order)")
        for text in listed:
            try:
                parse_broker(text)
            except MqttConfigError as exc:
                raise ValueError(str(exc)) from None
        return self

    def broker_list(self) -> list[str]:
        raw = self.brokers if self.brokers is not None else self.broker
        if raw is None:
            return []
        return [raw] if isinstance(raw, str) else list(raw)
