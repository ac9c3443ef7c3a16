"""What a ``driver: generator`` device accepts in ``options``; `seam check` and the driver read this one model."""

from __future__ import annotations

from pydantic import Field

from otseam.contract.option_types import PluginOptions, Seconds


class GeneratorConfigError(ValueError):
    """The device's generator settings cannot be used."""


class Options(PluginOptions):
    #: Seed of the signals' noise; the device id by default, so each device differs but repeats.
    seed: str | int | None = None
    #: A fixed total of samples per second over all points, instead of one per point per poll.
    rate: float | None = Field(None, gt=0, allow_inf_nan=False)
    #: How often the rate mode hands over a batch.
    tick: Seconds = Field(0.05, gt=0)
    #: Fail on purpose after this long, to rehearse a driver failure.
    fail_after: Seconds | None = Field(None, gt=0)
