"""Building small contracts for pipeline tests."""

from __future__ import annotations

from typing import Any

from otseam.contract.models import Contract
from otseam.core.records import Quality, Sample
from otseam.pipeline import Pipeline


def contract_with(*points: dict[str, Any]) -> Contract:
    return Contract.model_validate(
        {
            "site": {"enterprise": "acme", "site": "plant1"},
            "zones": [{"id": "cell", "level": 1, "sl": 2}],
            "devices": [
                {
                    "id": "plc1",
                    "driver": "generator",
                    "endpoint": "generator://",
                    "zone": "cell",
                    "points": [{"address": "sine", **p} for p in points],
                }
            ],
        }
    )


def pipeline_with(*points: dict[str, Any]) -> Pipeline:
    return Pipeline.from_contract(contract_with(*points))


def sample(point: str, value: Any, ts: float, quality: Quality = Quality.GOOD) -> Sample:
    return Sample(f"plc1/{point}", value, quality, ts, ts)
