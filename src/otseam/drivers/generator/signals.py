"""The signal shapes a generator point can produce, parsed from its ``address``.

An address is a shape name with optional ``key=value`` parameters::

    sine                         # offset 50, amplitude 50, period 60 s
    sine:period=10s,amplitude=5,offset=20
    ramp:low=0,high=100,period=5min
    square:low=0,high=1,period=2s
    walk:low=0,high=100,step=0.5,start=50
    random:low=-1,high=1
    constant:value=42

Periodic shapes are pure functions of the sample time, so two runs (or two machines) produce the same
value at the same instant; ``walk`` and ``random`` are seeded per point, so a run is reproducible.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from otseam.contract.units import parse_duration

_PARAMS: dict[str, dict[str, float]] = {
    "sine": {"period": 60.0, "amplitude": 50.0, "offset": 50.0, "phase": 0.0},
    "ramp": {"period": 60.0, "low": 0.0, "high": 100.0},
    "square": {"period": 10.0, "low": 0.0, "high": 1.0},
    "walk": {"low": 0.0, "high": 100.0, "step": 1.0, "start": 50.0},
    "random": {"low": 0.0, "high": 100.0},
    "constant": {"value": 0.0},
}
_DURATIONS = {"period"}


@dataclass(slots=True)
class Signal:
    shape: str
    params: dict[str, float]
    rng: random.Random
    state: float = 0.0

    def value(self, t: float) -> float:
        return _SHAPES[self.shape](self, t)


def _sine(s: Signal, t: float) -> float:
    p = s.params
    return p["offset"] + p["amplitude"] * math.sin(2 * math.pi * t / p["period"] + p["phase"])


def _ramp(s: Signal, t: float) -> float:
    p = s.params
    return p["low"] + (p["high"] - p["low"]) * ((t / p["period"]) % 1.0)


def _square(s: Signal, t: float) -> float:
    p = s.params
    return p["low"] if (t / p["period"]) % 1.0 < 0.5 else p["high"]


def _walk(s: Signal, t: float) -> float:
    p = s.params
    nxt = s.state + s.rng.uniform(-p["step"], p["step"])
    # Reflect at the bounds so the walk stays in range without sticking to them.
    if nxt > p["high"]:
        nxt = 2 * p["high"] - nxt
    if nxt < p["low"]:
        nxt = 2 * p["low"] - nxt
    s.state = min(max(nxt, p["low"]), p["high"])
    return s.state


def _random(s: Signal, t: float) -> float:
    return s.rng.uniform(s.params["low"], s.params["high"])


def _constant(s: Signal, t: float) -> float:
    return s.params["value"]


_SHAPES: dict[str, Callable[[Signal, float], float]] = {
    "sine": _sine,
    "ramp": _ramp,
    "square": _square,
    "walk": _walk,
    "random": _random,
    "constant": _constant,
}


def parse_signal(address: str, seed: str) -> Signal:
    """Parse a generator address; ``ValueError`` says what is wrong and what is allowed."""
    shape, _, rest = address.strip().partition(":")
    if shape not in _PARAMS:
        raise ValueError(f"unknown generator shape {shape!r}: use one of {', '.join(_PARAMS)}")
    params = dict(_PARAMS[shape])
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in params:
            raise ValueError(
                f"{item!r} is not a parameter of {shape}: write key=value with key one of {', '.join(params)}"
            )
        try:
            params[key] = parse_duration(text.strip()) if key in _DURATIONS else float(text)
        except ValueError as exc:
            raise ValueError(f"{shape} parameter {key}: {exc}") from None
        if not math.isfinite(params[key]):
            raise ValueError(f"{shape} parameter {key} must be a finite number")
    if "period" in params and params["period"] <= 0:
        raise ValueError(f"{shape} period must be longer than zero")
    if "low" in params and params["low"] > params["high"]:
        raise ValueError(f"{shape}: low ({params['low']:g}) is above high ({params['high']:g})")
    if shape == "walk" and params["step"] < 0:
        raise ValueError("walk step cannot be negative")
    signal = Signal(shape, params, random.Random(seed))
    if shape == "walk":
        signal.state = min(max(params["start"], params["low"]), params["high"])
    return signal
