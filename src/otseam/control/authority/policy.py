"""The policy a request must satisfy, read from the contract's ``commands`` section.

Pure functions of the contract, the request, the approvers and the time: the same checks run where
requests are approved and again on the OT node before it writes, against its own copy of the contract.
Each check returns the reason in words (``None`` when it passes), so a refusal always says why.

* Only a command declared in the contract can be requested; its point must exist and be writable, its
  value inside the command's range (and the point's), its unit the point's unit.
* The command enters OT through a declared two-way conduit; without one nothing executes.
* At least two distinct people approve, never the requester; every approver the command lists (side
  and role) is matched by a different person; at least one approver is on the OT side and owns the
  zone of the device, or holds a role the command names.
* ``window`` (the plant's local time on the deciding node) and ``rate`` hold at approval and again at
  execution. A rate of N per unit is read as at most N executions in any sliding hour (N per day for
  rates written per day): ``max(1, floor(rate * T))`` in any ``T = max(1 h, 1 / rate)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from itertools import permutations

from otseam.contract.models import Command, Contract, Device, Direction, Person, Point, Side
from otseam.contract.units import parse_window
from otseam.control.authority.document import CommandRequest, DocumentError, normalise_value

#: How long approvals are accepted after a request is made, unless the caller says otherwise.
APPROVAL_WINDOW_S = 15 * 60
#: How long the OT node may execute once the approval window closes.
EXECUTE_WINDOW_S = 15 * 60


class PolicyError(Exception):
    """A request, approval or execution the contract does not allow; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    command: Command
    device: Device
    point: Point


def target(contract: Contract, command_id: str) -> Target:
    command = next((c for c in contract.commands if c.id == command_id), None)
    if command is None:
        declared = ", ".join(c.id for c in contract.commands) or "none"
        raise PolicyError(f"'{command_id}' is not a command declared in the contract (declared: {declared})")
    found = contract.find_point(command.point)
    if found is None:
        raise PolicyError(f"command '{command.id}' writes '{command.point}', which is not a declared point")
    device, point = found
    if not point.writable:
        raise PolicyError(f"command '{command.id}' writes '{command.point}', which the contract does not mark writable")
    return Target(command, device, point)


def conduit_problem(contract: Contract, command: Command) -> str | None:
    """Why ``command`` cannot cross into OT, or None: a declared two-way conduit into the device's side."""
    if command.conduit is None:
        return f"command '{command.id}' names no conduit; nothing executes without a declared two-way conduit"
    conduit = contract.conduit(command.conduit)
    if conduit is None:
        return f"command '{command.id}' names conduit '{command.conduit}', which is not declared"
    if conduit.direction is not Direction.TWO_WAY:
        return f"command '{command.id}' would cross one-way conduit '{conduit.id}'; a command never does"
    return None


def value_problem(tgt: Target, value: str) -> str | None:
    command, point = tgt.command, tgt.point
    try:
        normalise_value(point, value)
    except DocumentError as exc:
        return str(exc)
    if point.type in ("bool", "string"):
        return None
    number = Decimal(value)
    for name, bounds in (("command's range", command.range), ("point's range", point.range)):
        if bounds is not None and not Decimal(repr(bounds.low)) <= number <= Decimal(repr(bounds.high)):
            return f"{value} is outside the {name} {bounds.low:g} to {bounds.high:g} of '{command.id}'"
    return None


def check_document(contract: Contract, doc: CommandRequest, contract_hash: str) -> Target:
    """Everything about the document itself; raises :class:`PolicyError`. Returns what it writes."""
    if doc.contract != contract_hash:
        raise PolicyError(
            f"request {doc.id} was made under contract {doc.contract[:12]}, not the one in force here "
            f"({contract_hash[:12]}); it must be made again"
        )
    tgt = target(contract, doc.command)
    if doc.point != tgt.command.point:
        raise PolicyError(
            f"request {doc.id} names point '{doc.point}', but '{doc.command}' writes '{tgt.command.point}'"
        )
    if doc.unit != tgt.point.unit:
        raise PolicyError(f"request {doc.id} is in '{doc.unit}', the point is in '{tgt.point.unit}'")
    problem = conduit_problem(contract, tgt.command) or value_problem(tgt, doc.value)
    if problem:
        raise PolicyError(problem)
    if contract.person(doc.requester) is None:
        raise PolicyError(f"requester '{doc.requester}' is not a person in the contract")
    if not doc.reason.strip():
        raise PolicyError("a request needs a reason")
    if not doc.created < doc.approve_by <= doc.execute_by:
        raise PolicyError(f"request {doc.id} has times out of order (created < approve_by <= execute_by)")
    return tgt


def approver_problem(contract: Contract, doc: CommandRequest, person_id: str, already: Iterable[str]) -> str | None:
    person = contract.person(person_id)
    if person is None:
        return f"'{person_id}' is not a person in the contract"
    if person_id == doc.requester:
        return f"{person_id} made request {doc.id} and cannot approve it"
    if person_id in set(already):
        return f"{person_id} has already approved request {doc.id}"
    return None


def _roles_named(command: Command) -> set[str]:
    return {a.role for a in command.approvers}


def quorum_problem(contract: Contract, doc: CommandRequest, approvers: Sequence[str]) -> str | None:
    """None when ``approvers`` (distinct person ids) are enough to execute ``doc``; else what is missing."""
    tgt = target(contract, doc.command)
    people: list[Person] = []
    for person_id in dict.fromkeys(approvers):
        person = contract.person(person_id)
        if person is not None and person_id != doc.requester:
            people.append(person)
    if len(people) < 2:
        have = "no approvals yet, 2 needed" if not people else f"{len(people)} of 2 approvals"
        return f"{have} from people other than the requester"
    specs = tgt.command.approvers
    if specs and not _match_all(specs, people):
        wanted = "; ".join(f"{s.side.value} {s.role}" for s in specs)
        return f"the command needs a different approver for each of: {wanted}"
    zone = contract.zone(tgt.device.zone)
    roles = _roles_named(tgt.command)
    if not any(p.side is Side.OT and ((zone is not None and zone.owner == p.id) or p.role in roles) for p in people):
        owner = zone.owner if zone is not None and zone.owner else "no one"
        return (
            f"no approver is on the OT side owning zone '{tgt.device.zone}' ({owner}) or holding a role the command "
            f"names ({', '.join(sorted(roles)) or 'none'})"
        )
    return None


def _match_all(specs: Sequence[object], people: Sequence[Person]) -> bool:
    """Whether each approver spec can be given its own person (specs are few: try the orders)."""
    if len(people) < len(specs):
        return False
    for chosen in permutations(people, len(specs)):
        if all(p.side is s.side and p.role == s.role for p, s in zip(chosen, specs, strict=True)):  # type: ignore[attr-defined]
            return True
    return False


def rate_limit(rate: float) -> tuple[int, float]:
    """(N, T): at most N executions in any T seconds, for a rate in executions per second."""
    span = max(3600.0, 1.0 / rate)
    return max(1, math.floor(rate * span + 1e-9)), span


def timing_problem(
    command: Command, now: float, executed: Sequence[float], tz: tzinfo | None, when: str = "now"
) -> str | None:
    """Window and rate at ``now`` (seconds since the epoch), given earlier execution times."""
    if command.window:
        moment = datetime.fromtimestamp(now, tz) if tz is not None else datetime.fromtimestamp(now).astimezone()
        if not parse_window(command.window).allows(moment.weekday(), moment.hour * 60 + moment.minute):
            return f"'{command.id}' may run only {command.window}; {when} is {moment:%a %H:%M %Z}".rstrip()
    if command.rate:
        count, span = rate_limit(command.rate)
        recent = sum(1 for t in executed if now - span < t <= now)
        if recent >= count:
            return f"'{command.id}' already ran {recent} time(s) in the last {span / 3600:g} h; at most {count} allowed"
    return None
