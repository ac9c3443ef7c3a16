"""Edge processing: computed points, windows, counters and multi-point alarms declared in the contract.

``expr`` parses the expression language, ``check`` types it, ``evaluate`` compiles it to closures,
``program`` turns a contract's ``computed:`` section into programs, ``engine`` runs them beside the
pipeline, ``streams`` holds windows, counters and rates, ``recover`` finds their state in the journal,
``lineage`` says what each computed point is made of. See docs/compute.md.
"""

from otseam.compute.engine import CHECKPOINT_KIND, Engine
from otseam.contract.formulas.expr import ExprError, parse
from otseam.contract.formulas.lineage import Lineage, lineage
from otseam.contract.formulas.program import Compiled, ComputeProblem, Program, compile_computed

__all__ = [
    "CHECKPOINT_KIND",
    "Compiled",
    "ComputeProblem",
    "Engine",
    "ExprError",
    "Lineage",
    "Program",
    "compile_computed",
    "lineage",
    "parse",
]
