"""The rule registry: every rule has a stable id, a severity, a title and a default hint.

Ids never change meaning once published: plants keep exceptions and audit notes keyed by them. A rule
is a function from the loaded contract to the places where it is broken (:class:`Hit`); the registry
turns hits into :class:`Finding` objects with file, line and column.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from otseam.contract.loader import LoadedContract, PathKey


class Severity(StrEnum):
    #: Breaks the architecture, ownership or an OT constraint: the contract must not run like this.
    ERROR = "error"
    #: Probably wrong or incomplete; fix it or accept it knowingly.
    WARNING = "warning"
    #: Worth knowing; does not make `seam check` fail.
    INFO = "info"


SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


@dataclass(frozen=True, slots=True)
class Hit:
    """One place where a rule is broken."""

    path: PathKey
    message: str
    #: Overrides the rule's default hint when the fix depends on the case.
    hint: str = ""
    #: (line, column), 1-based, when more precise than the path's (a character inside an expression).
    position: tuple[int, int] | None = None


RuleCheck = Callable[[LoadedContract], Iterable[Hit]]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    severity: Severity
    title: str
    hint: str
    check: RuleCheck


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    severity: Severity
    file: str
    line: int
    column: int
    path: str
    message: str
    hint: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = str(self.severity)
        return data


RULES: dict[str, Rule] = {}

#: The start of the message of a finding that says a rule itself failed (a bug in Seam, not the contract).
RULE_FAILED = "this rule could not be applied to the contract"


def rule(rule_id: str, severity: Severity, title: str, hint: str) -> Callable[[RuleCheck], RuleCheck]:
    """Register a rule function under a stable id."""

    def register(check: RuleCheck) -> RuleCheck:
        if rule_id in RULES:
            raise RuntimeError(f"rule id {rule_id} registered twice")
        RULES[rule_id] = Rule(rule_id, severity, title, hint, check)
        return check

    return register


def describe_path(path: PathKey) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def run(loaded: LoadedContract, rules: Iterable[Rule] | None = None) -> list[Finding]:
    """Every finding of every rule, most severe first, then in file order."""
    findings: list[Finding] = []
    for item in rules if rules is not None else RULES.values():
        try:
            hits = list(item.check(loaded))
        except Exception as exc:  # a bug in one rule must not hide the others' findings behind a traceback
            hits = [Hit((), f"{RULE_FAILED} ({type(exc).__name__}: {exc})", "please report this with the contract")]
        for hit in hits:
            pos = loaded.at(hit.path)
            line, column = hit.position or (pos.line, pos.column)
            findings.append(
                Finding(
                    rule=item.id,
                    severity=item.severity,
                    file=loaded.source.file,
                    line=line,
                    column=column,
                    path=describe_path(hit.path),
                    message=hit.message,
                    hint=hit.hint or item.hint,
                )
            )
    findings.sort(key=lambda f: (SEVERITY_ORDER[f.severity], f.line, f.column, f.rule))
    return findings


def iter_rules() -> Iterator[Rule]:
    yield from sorted(RULES.values(), key=lambda r: r.id)
