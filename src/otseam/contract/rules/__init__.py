"""The rules of `seam check`. Importing this package registers every rule."""

from otseam.contract.rules import architecture, compute, data, nodes, operations, ownership, references
from otseam.contract.rules.registry import RULES, Finding, Hit, Rule, Severity, iter_rules, run

__all__ = [
    "RULES",
    "Finding",
    "Hit",
    "Rule",
    "Severity",
    "architecture",
    "compute",
    "data",
    "iter_rules",
    "nodes",
    "operations",
    "ownership",
    "references",
    "run",
]
