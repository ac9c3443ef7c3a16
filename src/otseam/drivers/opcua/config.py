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

from otseam.contract import plugin_options
from otseam.contract.models import Device, Point
from otseam.contract.units import NodeId, parse_node_id
from otseam.drivers.opcua.options import (
    SECURITY_POLICIES,
    Mode,
    OpcUaConfigError,
    Options,
    SecurityMode,
    parse_endpoint,
)

__all__ = [
    "SECURITY_POLICIES",
    "OpcUaConfigError",
    "PointSpec",
    "Settings",
    "parse_endpoint",
    "parse_options",
    "point_specs",
    "requests_per_second",
]


class Security:
    """The security settings as the session uses them; validated in ``options.py``."""

    def __init__(self, options: Options) -> None:
        self.policy: str = options.security_policy
        self.mode: SecurityMode = options.effective_mode
        self.certificate = options.certificate or ""
        self.private_key = options.private_key or ""
        self.server_certificate = options.server_certificate or ""
        self.username = options.username or ""
        self.password_env = options.password_env or ""
        self.password_file = options.password_file or ""

    def password(self) -> str | None:
        """Read at connect time, never stored in the options nor logged."""
        if self.password_env:
            return os.environ.get(self.password_env)
        if self.password_file:
            return Path(self.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        return None


@dataclass(frozen=True, slots=True)
class Settings:
    """A device's options with every default filled in, as the driver and session use them."""

    security: Security
    mode: Mode = "subscribe"
    max_items_per_call: int = 1000
    max_nodes_per_read: int = 1000
    server_deadband: bool = True
    max_backoff: float = 30.0
    session_timeout: float = 60.0


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


def parse_options(device: Device, contract_path: str = "", *, environment: bool = True) -> Settings:
    """``environment``: whether the files the options name must exist here (not when only planning)."""
    options = plugin_options.parse(
        Options,
        device.options,
        f"device {device.id}",
        OpcUaConfigError,
        contract_path=contract_path,
        environment=environment,
    )
    longest = max([device.poll, *(p.poll for p in device.points if p.poll is not None)])
    return Settings(
        mode=options.mode,
        max_items_per_call=options.max_items_per_call,
        max_nodes_per_read=options.max_nodes_per_read,
        server_deadband=options.server_deadband,
        max_backoff=options.max_backoff,
        # A session must outlive the longest silence between our requests, or the server drops it.
        session_timeout=options.session_timeout or max(60.0, 4 * longest),
        security=Security(options),
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
    options = parse_options(device, environment=False)
    specs = point_specs(device)
    if not specs:
        return 0.0
    if options.mode == "subscribe":
        return 1.0 / device.poll
    groups: dict[float, int] = {}
    for spec in specs:
        groups[spec.interval] = groups.get(spec.interval, 0) + 1
    return sum(math.ceil(count / options.max_nodes_per_read) / interval for interval, count in groups.items())
