"""The unit conversions ``convert(x, "from", "to")`` knows, and nothing more.

Each unit is ``(dimension, factor, offset)`` with ``value_in_base = value * factor + offset``. The table
is small on purpose: every entry is exact or the standard definition, and a conversion between
dimensions (bar to degC) is refused when the contract is checked, never at run time.
"""

from __future__ import annotations

UNITS: dict[str, tuple[str, float, float]] = {
    # temperature, base K
    "K": ("temperature", 1.0, 0.0),
    "degC": ("temperature", 1.0, 273.15),
    "degF": ("temperature", 5.0 / 9.0, 273.15 - 32.0 * 5.0 / 9.0),
    # pressure, base Pa
    "Pa": ("pressure", 1.0, 0.0),
    "hPa": ("pressure", 100.0, 0.0),
    "kPa": ("pressure", 1000.0, 0.0),
    "MPa": ("pressure", 1e6, 0.0),
    "mbar": ("pressure", 100.0, 0.0),
    "bar": ("pressure", 1e5, 0.0),
    "psi": ("pressure", 6894.757293168361, 0.0),
    # length, base m
    "mm": ("length", 0.001, 0.0),
    "cm": ("length", 0.01, 0.0),
    "m": ("length", 1.0, 0.0),
    "km": ("length", 1000.0, 0.0),
    "in": ("length", 0.0254, 0.0),
    "ft": ("length", 0.3048, 0.0),
    # volume, base m3
    "l": ("volume", 0.001, 0.0),
    "L": ("volume", 0.001, 0.0),
    "m3": ("volume", 1.0, 0.0),
    "gal": ("volume", 0.003785411784, 0.0),  # US gallon
    # volume flow, base m3/s
    "m3/s": ("flow", 1.0, 0.0),
    "m3/h": ("flow", 1.0 / 3600.0, 0.0),
    "l/s": ("flow", 0.001, 0.0),
    "L/s": ("flow", 0.001, 0.0),
    "l/min": ("flow", 0.001 / 60.0, 0.0),
    "L/min": ("flow", 0.001 / 60.0, 0.0),
    "l/h": ("flow", 0.001 / 3600.0, 0.0),
    "L/h": ("flow", 0.001 / 3600.0, 0.0),
    "gpm": ("flow", 0.003785411784 / 60.0, 0.0),  # US gallons per minute
    # mass, base kg
    "g": ("mass", 0.001, 0.0),
    "kg": ("mass", 1.0, 0.0),
    "t": ("mass", 1000.0, 0.0),
    "lb": ("mass", 0.45359237, 0.0),
    # time, base s
    "ms": ("time", 0.001, 0.0),
    "s": ("time", 1.0, 0.0),
    "min": ("time", 60.0, 0.0),
    "h": ("time", 3600.0, 0.0),
    "d": ("time", 86400.0, 0.0),
    # power, base W
    "W": ("power", 1.0, 0.0),
    "kW": ("power", 1000.0, 0.0),
    "MW": ("power", 1e6, 0.0),
    "hp": ("power", 745.6998715822702, 0.0),  # mechanical horsepower
    # energy, base J
    "J": ("energy", 1.0, 0.0),
    "kJ": ("energy", 1000.0, 0.0),
    "MJ": ("energy", 1e6, 0.0),
    "Wh": ("energy", 3600.0, 0.0),
    "kWh": ("energy", 3.6e6, 0.0),
    "MWh": ("energy", 3.6e9, 0.0),
    # ratio
    "%": ("ratio", 0.01, 0.0),
    "ppm": ("ratio", 1e-6, 0.0),
}


def conversion(source: str, target: str) -> tuple[float, float]:
    """``(a, b)`` such that ``value_in_target = a * value_in_source + b``; ValueError if impossible."""
    if source not in UNITS:
        raise ValueError(f"unit {source!r} is not in the conversion table")
    if target not in UNITS:
        raise ValueError(f"unit {target!r} is not in the conversion table")
    dim_s, factor_s, offset_s = UNITS[source]
    dim_t, factor_t, offset_t = UNITS[target]
    if dim_s != dim_t:
        raise ValueError(f"{source!r} is a {dim_s} and {target!r} a {dim_t}: they cannot be converted")
    return factor_s / factor_t, (offset_s - offset_t) / factor_t


def known_units() -> str:
    return ", ".join(UNITS)
