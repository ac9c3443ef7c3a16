"""The contract (`seam.yaml`): models, loading with positions, rules and rendering."""

from otseam.contract.loader import ContractError, LoadedContract, Problem, SourceMap, load, parse_text
from otseam.contract.models import Contract, Device, Point, SinkSpec

__all__ = [
    "Contract",
    "ContractError",
    "Device",
    "LoadedContract",
    "Point",
    "Problem",
    "SinkSpec",
    "SourceMap",
    "load",
    "parse_text",
]
