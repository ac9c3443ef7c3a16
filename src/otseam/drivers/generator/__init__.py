"""The generator driver: signals computed from time (sine, ramp, square, seeded random walk), no device."""

from __future__ import annotations

from otseam.contract.models import Device
from otseam.core.plugins import PluginContext
from otseam.drivers.generator.driver import GeneratorConfigError, GeneratorDriver
from otseam.drivers.generator.signals import Signal, parse_signal


def create(device: Device, context: PluginContext) -> GeneratorDriver:
    """Plugin entry point (``driver: generator`` in the contract)."""
    return GeneratorDriver(device)


def parse_address(text: object) -> Signal:
    """A point's address (``sine:period=60s``), checked when the contract is loaded."""
    if not isinstance(text, str):
        raise ValueError(f"a generator address is text such as 'sine:period=60s', got {text!r}")
    return parse_signal(text, "check")


__all__ = ["GeneratorConfigError", "GeneratorDriver", "create", "parse_address"]
