"""Small contracts with computed points for the compute tests."""

from __future__ import annotations

from typing import Any

from otseam.contract.formulas.program import compile_computed
from otseam.contract.models import Contract
from otseam.core.records import Quality, Sample
from otseam.pipeline import Pipeline

#: The device points every test contract has: plc1/level (m), plc1/temp (degF), plc1/flow (m3/h),
#: plc1/pump (bool), plc1/mode (int16), plc1/name (string).
POINTS: list[dict[str, Any]] = [
    {"id": "level", "address": "sine", "unit": "m"},
    {"id": "level2", "address": "sine", "unit": "m"},
    {"id": "temp", "address": "sine", "unit": "degF"},
    {"id": "pressure", "address": "sine", "unit": "bar"},
    {"id": "flow", "address": "sine", "unit": "m3/h"},
    {"id": "pump", "address": "sine", "type": "bool"},
    {"id": "pump2", "address": "sine", "type": "bool"},
    {"id": "mode", "address": "sine", "type": "int16"},
    {"id": "name", "address": "sine", "type": "string"},
]


def contract(*computed: dict[str, Any]) -> Contract:
    return Contract.model_validate(
        {
            "site": {"enterprise": "acme", "site": "plant1"},
            "zones": [{"id": "cell", "level": 1, "sl": 2}],
            "devices": [
                {"id": "plc1", "driver": "generator", "endpoint": "generator://", "zone": "cell", "points": POINTS}
            ],
            "computed": list(computed),
        }
    )


def problems(*computed: dict[str, Any]) -> list[str]:
    return [f"{p.where}: {p.message}" for p in compile_computed(contract(*computed)).problems]


def pipeline(*computed: dict[str, Any]) -> Pipeline:
    return Pipeline.from_contract(contract(*computed))


def s(point: str, value: Any, ts: float, quality: Quality = Quality.GOOD) -> Sample:
    return Sample(f"plc1/{point}", value, quality, ts, ts)


def computed(records: list[Any], key: str) -> list[tuple[Any, Quality, float]]:
    """(value, quality, source_ts) of the samples of computed/<key> among ``records``."""
    return [
        (r.value, r.quality, r.source_ts) for r in records if isinstance(r, Sample) and r.point == f"computed/{key}"
    ]
