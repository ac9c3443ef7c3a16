"""Operations rules (OPS-*): Seam lives within the plant's constraints, and writes are bounded."""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterator

from otseam.contract.loader import LoadedContract
from otseam.contract.models import Device, RestartTolerance
from otseam.contract.rules.registry import Hit, Severity, rule


def requests_per_second(device: Device) -> tuple[float, str]:
    """How many requests a second polling ``device`` will send, and how that was worked out.

    A driver that plans its reads (Modbus merges neighbouring registers into one request) exposes
    ``requests_per_second(device)``; otherwise every point is assumed to cost one request per poll.
    The driver is imported lazily so that checking a contract never requires every driver to exist.
    """
    try:
        module = importlib.import_module(f"otseam.drivers.{device.driver}")
    except Exception:  # a missing or broken driver package: fall back to the conservative estimate
        module = None
    planner = getattr(module, "requests_per_second", None)
    if callable(planner):
        try:
            return float(planner(device)), "as planned by the driver"
        except Exception:  # the planner is another team's code; its failure must not stop a check
            pass
    total = 0.0
    for point in device.points:
        interval = point.poll if point.poll is not None else device.poll
        total += math.inf if interval <= 0 else 1.0 / interval
    return total, "one request per point per poll"


@rule(
    "OPS-001",
    Severity.ERROR,
    "Polling never exceeds a device's declared maximum request rate",
    "poll less often (device or point 'poll'), poll fewer points, or agree a higher 'max_request_rate' with OT",
)
def polling_within_rate(loaded: LoadedContract) -> Iterator[Hit]:
    for i, device in enumerate(loaded.contract.devices):
        limit = device.constraints.max_request_rate
        if limit is None or not device.points:
            continue
        rate, how = requests_per_second(device)
        if rate > limit * (1 + 1e-9):
            yield Hit(
                ("devices", i, "constraints", "max_request_rate"),
                f"device '{device.id}' would be polled at {rate:.3g} requests/s ({how}), above its declared "
                f"maximum of {limit:.3g}/s",
            )


@rule(
    "OPS-002",
    Severity.WARNING,
    "Every polled device declares the request rate it tolerates",
    "ask the device's OT owner and write it as 'constraints: {max_request_rate: \"10/s\"}'",
)
def rate_declared(loaded: LoadedContract) -> Iterator[Hit]:
    for i, device in enumerate(loaded.contract.devices):
        if device.points and device.constraints.max_request_rate is None:
            yield Hit(("devices", i), f"device '{device.id}' does not declare a maximum request rate")


@rule(
    "OPS-003",
    Severity.WARNING,
    "A device that must never restart declares the pause between requests and the timeout it needs",
    "write 'pause_between_requests' and 'timeout' under its constraints, as agreed with its OT owner",
)
def fragile_device_pacing(loaded: LoadedContract) -> Iterator[Hit]:
    for i, device in enumerate(loaded.contract.devices):
        constraints = device.constraints
        if constraints.restart_tolerance != RestartTolerance.NONE:
            continue
        missing = [key for key in ("pause_between_requests", "timeout") if key not in constraints.model_fields_set]
        if missing:
            yield Hit(
                ("devices", i, "constraints", "restart_tolerance"),
                f"device '{device.id}' tolerates no restart but does not declare {' or '.join(missing)}",
            )


@rule(
    "OPS-004",
    Severity.ERROR,
    "A command only writes a point declared writable",
    "set 'writable: true' on the point, with its OT owner's agreement, or remove the command",
)
def command_point_writable(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    for i, command in enumerate(contract.commands):
        found = contract.find_point(command.point)
        if found and not found[1].writable:
            yield Hit(
                ("commands", i, "point"), f"command '{command.id}' writes '{command.point}', which is not writable"
            )


@rule(
    "OPS-005",
    Severity.WARNING,
    "A command is bounded: a rate, and a value range for anything but a switch",
    "add 'rate:' (e.g. '6/h') and, for a numeric point, 'range: {low: ..., high: ...}'",
)
def command_bounded(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    for i, command in enumerate(contract.commands):
        if command.rate is None:
            yield Hit(("commands", i), f"command '{command.id}' may be executed at any rate")
        found = contract.find_point(command.point)
        if found and found[1].type not in ("bool", "string") and command.range is None:
            yield Hit(("commands", i), f"command '{command.id}' may write any value to '{command.point}'")
