"""The OPC UA part of a device's contract entry: endpoint, options, security, and their validation.

Errors are :class:`OpcUaConfigError` (a ``ValueError``) naming the device and saying what to write
instead; the supervisor shows the message, never a traceback. Nothing here touches the network, so the
supervisor can validate a contract before anything starts.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from otseam.contract.models import Device, Point
from otseam.contract.units import NodeId, parse_duration, parse_node_id
from otseam.core.plugins import unknown_options

Mode = Literal["subscribe", "poll"]
SecurityMode = Literal["None", "Sign", "SignAndEncrypt"]
SECURITY_POLICIES = ("None", "Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss")

_OPTION_KEYS = {
    "mode",
    "max_items_per_call",
    "max_nodes_per_read",
    "server_deadband",
    "max_backoff",
    "session_timeout",
    "security_policy",
    "security_mode",
    "certificate",
    "private_key",
    "server_certificate",
    "username",
    "password_env",
    "password_file",
}


class OpcUaConfigError(ValueError):
    """The contract asks for something the OPC UA driver cannot do."""


@dataclass(frozen=True, slots=True)
class Security:
    policy: str = "None"
    mode: SecurityMode = "None"
    certificate: str = ""
    private_key: str = ""
    server_certificate: str = ""
    username: str = ""
    password_env: str = ""
    password_file: str = ""

    def password(self) -> str | None:
        """Read at connect time, never stored in the options nor logged."""
        if self.password_env:
            return os.environ.get(self.password_env)
        if self.password_file:
            return Path(self.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        return None


@dataclass(frozen=True, slots=True)
class Options:
    mode: Mode = "subscribe"
    #: Monitored items per CreateMonitoredItems call (servers publish a limit, often 1,000 or more).
    max_items_per_call: int = 1000
    #: Nodes per Read call in poll mode (the server's MaxNodesPerRead).
    max_nodes_per_read: int = 1000
    #: Pass a point's deadband to the server as a DataChangeFilter (the pipeline applies it anyway).
    server_deadband: bool = True
    max_backoff: float = 30.0
    #: Requested session timeout, seconds: how long the server keeps a session whose link dropped, so
    #: that a reconnect can re-activate it instead of leaving it behind.
    session_timeout: float = 60.0
    security: Security = Security()


@dataclass(frozen=True, slots=True)
class PointSpec:
    """One point as the driver needs it."""

    index: int
    key: str
    node: NodeId
    type: str
    length: int | None
    #: Sampling interval (subscribe) or poll interval (poll), seconds.
    interval: float
    #: ("absolute", value) or ("percent", value) to pass to the server, or None.
    deadband: tuple[str, float] | None


def parse_endpoint(text: str, device_id: str) -> tuple[str, int]:
    """``opc.tcp://host:port/path`` → (host, port); the whole URL is what the client connects to."""
    parts = urlsplit(text.strip())
    hint = "write opc.tcp://HOST:PORT/PATH, e.g. opc.tcp://10.10.1.30:4840/plant"
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


def _int(raw: dict[str, Any], key: str, default: int, low: int, high: int, device_id: str) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise OpcUaConfigError(
            f"device {device_id}: options.{key} must be a whole number from {low} to {high}, got {value!r}"
        )
    return value


def _seconds(raw: dict[str, Any], key: str, default: float, low: float, high: float, device_id: str) -> float:
    value = raw.get(key, default)
    if isinstance(value, str):
        try:
            value = parse_duration(value)
        except ValueError as exc:
            raise OpcUaConfigError(f"device {device_id}: options.{key}: {exc}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise OpcUaConfigError(
            f"device {device_id}: options.{key} is a duration from {low:g}s to {high:g}s (e.g. '30s'), got {value!r}"
        )
    return float(value)


def _text(raw: dict[str, Any], key: str, device_id: str) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str):
        raise OpcUaConfigError(f"device {device_id}: options.{key} must be text, got {value!r}")
    return value


def _security(raw: dict[str, Any], device_id: str) -> Security:
    where = f"device {device_id}"
    policy = raw.get("security_policy", "None")
    if policy not in SECURITY_POLICIES:
        raise OpcUaConfigError(
            f"{where}: options.security_policy must be one of {', '.join(SECURITY_POLICIES)}, got {policy!r}"
        )
    default_mode = "None" if policy == "None" else "SignAndEncrypt"
    mode = raw.get("security_mode", default_mode)
    if mode not in ("None", "Sign", "SignAndEncrypt"):
        raise OpcUaConfigError(f"{where}: options.security_mode must be None, Sign or SignAndEncrypt, got {mode!r}")
    if (policy == "None") != (mode == "None"):
        raise OpcUaConfigError(
            f"{where}: security_policy {policy} and security_mode {mode} do not go together; use None with None, "
            "or a policy such as Basic256Sha256 with Sign or SignAndEncrypt"
        )
    security = Security(
        policy=policy,
        mode=mode,
        certificate=_text(raw, "certificate", device_id),
        private_key=_text(raw, "private_key", device_id),
        server_certificate=_text(raw, "server_certificate", device_id),
        username=_text(raw, "username", device_id),
        password_env=_text(raw, "password_env", device_id),
        password_file=_text(raw, "password_file", device_id),
    )
    if policy != "None":
        if not security.certificate or not security.private_key:
            raise OpcUaConfigError(
                f"{where}: security_policy {policy} needs options.certificate and options.private_key "
                "(the client's certificate and key files, PEM or DER)"
            )
        for key in ("certificate", "private_key", "server_certificate"):
            path = getattr(security, key)
            if path and not Path(path).is_file():
                raise OpcUaConfigError(f"{where}: options.{key}: no file at {path!r}")
    elif security.certificate or security.private_key or security.server_certificate:
        raise OpcUaConfigError(f"{where}: certificates are only used with a security_policy other than None")
    if security.password_env and security.password_file:
        raise OpcUaConfigError(
            f"{where}: give the password either in options.password_env or options.password_file, not both"
        )
    if (security.password_env or security.password_file) and not security.username:
        raise OpcUaConfigError(f"{where}: a password needs options.username")
    if security.password_file and not Path(security.password_file).is_file():
        raise OpcUaConfigError(f"{where}: options.password_file: no file at {security.password_file!r}")
    return security


def parse_options(device: Device) -> Options:
    raw = device.options
    problem = unknown_options(device.id, "OPC UA", raw, _OPTION_KEYS)
    if problem:
        raise OpcUaConfigError(problem)
    mode = raw.get("mode", "subscribe")
    if mode not in ("subscribe", "poll"):
        raise OpcUaConfigError(f"device {device.id}: options.mode is 'subscribe' or 'poll', got {mode!r}")
    deadband = raw.get("server_deadband", True)
    if not isinstance(deadband, bool):
        raise OpcUaConfigError(f"device {device.id}: options.server_deadband is true or false, got {deadband!r}")
    longest = max([device.poll, *(p.poll for p in device.points if p.poll is not None)])
    return Options(
        mode=mode,
        max_items_per_call=_int(raw, "max_items_per_call", 1000, 1, 100_000, device.id),
        max_nodes_per_read=_int(raw, "max_nodes_per_read", 1000, 1, 100_000, device.id),
        server_deadband=deadband,
        max_backoff=_seconds(raw, "max_backoff", 30.0, 0.1, 3600.0, device.id),
        # A session must outlive the longest silence between our requests, or the server drops it.
        session_timeout=_seconds(raw, "session_timeout", max(60.0, 4 * longest), 1.0, 86400.0, device.id),
        security=_security(raw, device.id),
    )


def _deadband(point: Point) -> tuple[str, float] | None:
    band = point.deadband
    if band is None or point.type in ("bool", "string"):
        return None
    if band.absolute is not None:
        return ("absolute", band.absolute)
    if band.percent is not None:
        if point.range is not None:
            # Our percent is of the contract's range: send it as an absolute band so the server's own
            # EURange (which it may not have) does not matter.
            return ("absolute", band.percent / 100.0 * (point.range.high - point.range.low))
        return ("percent", band.percent)
    return None


def point_specs(device: Device) -> list[PointSpec]:
    specs: list[PointSpec] = []
    seen: set[str] = set()
    for index, point in enumerate(device.points):
        where = f"device {device.id}, point {point.id}"
        if point.id in seen:
            raise OpcUaConfigError(f"device {device.id}: point id {point.id!r} appears twice")
        seen.add(point.id)
        try:
            node = parse_node_id(point.address)
        except ValueError as exc:
            raise OpcUaConfigError(f"{where}: {exc}") from None
        interval = point.poll if point.poll is not None else device.poll
        if interval <= 0 or not math.isfinite(interval):
            raise OpcUaConfigError(f"{where}: the poll interval must be positive")
        specs.append(PointSpec(index, device.key(point), node, point.type, point.length, interval, _deadband(point)))
    return specs


def requests_per_second(device: Device) -> float:
    """Requests per second this driver sends to ``device`` in steady state.

    Subscribe mode: one Publish request per publishing interval (the device's poll). Poll mode: one
    Read per poll interval group and chunk of ``max_nodes_per_read`` nodes.
    """
    options = parse_options(device)
    specs = point_specs(device)
    if not specs:
        return 0.0
    if options.mode == "subscribe":
        return 1.0 / device.poll
    groups: dict[float, int] = {}
    for spec in specs:
        groups[spec.interval] = groups.get(spec.interval, 0) + 1
    return sum(math.ceil(count / options.max_nodes_per_read) / interval for interval, count in groups.items())
