"""What a ``driver: opcua`` device accepts in its contract entry: ``options`` and the endpoint.

One definition serves both `seam check` (which loads this file alone, without asyncua) and the driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from otseam.contract.option_types import ExistingFile, Flag, PluginOptions, Seconds, Text, Whole

if TYPE_CHECKING:
    from otseam.contract.models import Device

Mode = Literal["subscribe", "poll"]
SecurityMode = Literal["None", "Sign", "SignAndEncrypt"]
SecurityPolicy = Literal["None", "Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"]
SECURITY_POLICIES = ("None", "Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss")


class OpcUaConfigError(ValueError):
    """The contract asks for something the OPC UA driver cannot do."""


class Options(PluginOptions):
    """``device.options`` of an OPC UA device."""

    mode: Mode = "subscribe"
    #: Monitored items per CreateMonitoredItems call (servers publish a limit, often 1,000 or more).
    max_items_per_call: Whole = Field(1000, ge=1, le=100_000)
    #: Nodes per Read call in poll mode (the server's MaxNodesPerRead).
    max_nodes_per_read: Whole = Field(1000, ge=1, le=100_000)
    #: Pass a point's deadband to the server as a DataChangeFilter (the pipeline applies it anyway).
    server_deadband: Flag = True
    max_backoff: Seconds = Field(30.0, ge=0.1, le=3600)
    #: Requested session timeout: how long the server keeps a session whose link dropped. Unset, it is
    #: the larger of 60 s and four times the device's longest poll interval.
    session_timeout: Seconds | None = Field(None, ge=1, le=86400)
    security_policy: SecurityPolicy = "None"
    #: Defaults to SignAndEncrypt with a policy, None without one.
    security_mode: SecurityMode | None = None
    certificate: ExistingFile | None = None
    private_key: ExistingFile | None = None
    server_certificate: ExistingFile | None = None
    username: Text | None = None
    password_env: Text | None = None
    password_file: ExistingFile | None = None

    @property
    def effective_mode(self) -> SecurityMode:
        if self.security_mode is not None:
            return self.security_mode
        return "None" if self.security_policy == "None" else "SignAndEncrypt"

    @model_validator(mode="after")
    def _security_fits(self) -> Options:
        policy, mode = self.security_policy, self.effective_mode
        if (policy == "None") != (mode == "None"):
            raise ValueError(
                f"security_policy {policy} and security_mode {mode} do not go together; use None with None, "
                "or a policy such as Basic256Sha256 with Sign or SignAndEncrypt"
            )
        if policy != "None" and (not self.certificate or not self.private_key):
            raise ValueError(
                f"security_policy {policy} needs certificate and private_key "
                "(the client's certificate and key files, PEM or DER)"
            )
        if policy == "None" and (self.certificate or self.private_key or self.server_certificate):
            raise ValueError("certificates are only used with a security_policy other than None")
        if self.password_env and self.password_file:
            raise ValueError("give the password either in password_env or password_file, not both")
        if (self.password_env or self.password_file) and not self.username:
            raise ValueError("a password needs username")
        return self


ENDPOINT_FORM = "opc.tcp://HOST:PORT/PATH, e.g. opc.tcp://10.10.1.30:4840/plant"


def parse_endpoint(text: str, device_id: str) -> tuple[str, int]:
    """``opc.tcp://host:port/path`` → (host, port); the whole URL is what the client connects to."""
    hint = f"write {ENDPOINT_FORM}"
    try:
        parts = urlsplit(text.strip())
    except ValueError:
        raise OpcUaConfigError(f"device {device_id}: endpoint {text!r} is not a URL; {hint}") from None
    if parts.scheme != "opc.tcp":
        raise OpcUaConfigError(f"device {device_id}: endpoint {text!r} is not an OPC UA endpoint; {hint}")
    if parts.username or parts.password:
        # The endpoint is not repeated: it holds a password.
        raise OpcUaConfigError(
            f"device {device_id}: the endpoint carries credentials (user:password@); put the user in options.username and "
            "the password in an environment variable (options.password_env) or a file (options.password_file)"
        )
    try:
        port = parts.port if parts.port is not None else 4840
    except ValueError:
        raise OpcUaConfigError(f"device {device_id}: endpoint {text!r} has an invalid port; {hint}") from None
    if not parts.hostname or port == 0:
        raise OpcUaConfigError(f"device {device_id}: endpoint {text!r} has no host or port; {hint}")
    return parts.hostname, port


def check_device(device: Device, options: Options) -> list[tuple[str, str]]:
    """The device fields only this driver understands, as `seam check` reports them."""
    try:
        parse_endpoint(device.endpoint, device.id)
    except OpcUaConfigError as exc:
        return [("endpoint", str(exc).removeprefix(f"device {device.id}: "))]
    return []
