"""Reading a historian sink's ``options`` from the contract, with one clear message per mistake."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from otseam.contract.units import parse_duration


class HistorianConfigError(ValueError):
    """A historian sink's options are wrong; the message says which and how to fix it."""


def check_known(sink_id: str, options: Mapping[str, Any], known: Mapping[str, str]) -> None:
    """Refuse misspelt options: a retention that silently does nothing is worse than an error."""
    for key in options:
        if key not in known:
            listing = ", ".join(f"{name} ({meaning})" for name, meaning in known.items())
            raise HistorianConfigError(f"sink {sink_id}: unknown option {key!r}; the options are {listing}")


def duration_option(sink_id: str, options: Mapping[str, Any], key: str) -> float | None:
    if options.get(key) is None:
        return None
    try:
        seconds = parse_duration(options[key])
    except ValueError as exc:
        raise HistorianConfigError(f"sink {sink_id}: option {key}: {exc}") from None
    if seconds <= 0:
        raise HistorianConfigError(f"sink {sink_id}: option {key} must be longer than zero, e.g. '90d'")
    return seconds


def int_option(sink_id: str, options: Mapping[str, Any], key: str, default: int, minimum: int = 1) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise HistorianConfigError(f"sink {sink_id}: option {key} must be a whole number of at least {minimum}")
    return value


def str_option(sink_id: str, options: Mapping[str, Any], key: str) -> str | None:
    value = options.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise HistorianConfigError(f"sink {sink_id}: option {key} must be a non-empty text")
    return value
