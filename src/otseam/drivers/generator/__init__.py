"""The generator driver: signals computed from time (sine, ramp, square, seeded random walk), no device."""

from __future__ import annotations

from otseam.contract.models import Device
from otseam.core.plugins import PluginContext
from otseam.drivers.generator.driver import GeneratorConfigError, GeneratorDriver


def create(device: Device, context: PluginContext) -> GeneratorDriver:
    """Plugin entry point (``driver: generator`` in the contract)."""
    return GeneratorDriver(device)


__all__ = ["GeneratorConfigError", "GeneratorDriver", "create"]
