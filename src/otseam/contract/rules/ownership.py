"""Ownership rules (OWN-*): every part of the interface has a person who answers for it, on the right side,
and nothing reaches a PLC without people from both sides agreeing."""

from __future__ import annotations

from collections.abc import Iterator

from otseam.contract.loader import LoadedContract, PathKey
from otseam.contract.models import Contract, Side
from otseam.contract.rules.registry import Hit, Severity, rule
from otseam.contract.rules.topology import is_ot, sink_point_keys


def _owned(contract: Contract) -> Iterator[tuple[PathKey, str, str | None, bool, bool]]:
    """(path, what, owner, owner required, is an OT asset) for everything that can have an owner."""
    for i, zone in enumerate(contract.zones):
        yield ("zones", i), f"zone '{zone.id}'", zone.owner, True, is_ot(zone.level)
    for i, conduit in enumerate(contract.conduits):
        ends = [contract.zone(conduit.from_zone), contract.zone(conduit.to_zone)]
        inside_ot = all(z is not None and is_ot(z.level) for z in ends)
        yield ("conduits", i), f"conduit '{conduit.id}'", conduit.owner, True, inside_ot
    for i, device in enumerate(contract.devices):
        home = contract.zone(device.zone)
        device_ot = home is not None and is_ot(home.level)
        yield ("devices", i), f"device '{device.id}'", device.owner, True, device_ot
        for j, point in enumerate(device.points):
            # A point without its own owner inherits the device's, which is checked above.
            if point.owner is not None:
                path: PathKey = ("devices", i, "points", j)
                yield path, f"point '{device.key(point)}'", point.owner, False, device_ot
    for i, sink in enumerate(contract.sinks):
        yield ("sinks", i), f"sink '{sink.id}'", sink.owner, False, False
    for i, command in enumerate(contract.commands):
        yield ("commands", i), f"command '{command.id}'", command.owner, False, False
    for i, objective in enumerate(contract.objectives):
        yield ("objectives", i), f"objective '{objective.id}'", objective.owner, False, False
    for i, computed in enumerate(contract.computed):
        # Whoever owns a formula answers for what the number means: it must be someone.
        yield ("computed", i), f"computed point '{computed.key}'", computed.owner, True, False


@rule(
    "OWN-001",
    Severity.ERROR,
    "Every zone, conduit, device and point has an owner who is declared under 'people'",
    "set 'owner:' to the id of a person under 'people:' (a point without one inherits its device's owner)",
)
def owners_exist(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    for path, what, owner, required, _ in _owned(contract):
        if owner is None:
            if required:
                yield Hit(path, f"{what} has no owner")
        elif contract.person(owner) is None:
            yield Hit((*path, "owner"), f"{what} is owned by '{owner}', who is not declared under 'people'")


@rule(
    "OWN-002",
    Severity.ERROR,
    "OT assets (zones at level 0-3, their devices and points, conduits inside OT) are owned by OT people",
    "make the owner a person with 'side: ot': the people who answer for the process own what touches it",
)
def ot_assets_owned_by_ot(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    for path, what, owner, _, ot_asset in _owned(contract):
        person = contract.person(owner)
        if ot_asset and person is not None and person.side != Side.OT:
            yield Hit((*path, "owner"), f"{what} is an OT asset but its owner '{person.id}' is on side '{person.side}'")


@rule(
    "OWN-003",
    Severity.ERROR,
    "The seam owner is declared and is on side 'seam'",
    "set 'seam_owner:' to a person with 'side: seam': the one with authority when OT and IT disagree",
)
def seam_owner(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    if contract.seam_owner is None:
        yield Hit((), "the contract names no seam owner")
        return
    person = contract.person(contract.seam_owner)
    if person is None:
        yield Hit(("seam_owner",), f"seam owner '{contract.seam_owner}' is not declared under 'people'")
    elif person.side != Side.SEAM:
        yield Hit(("seam_owner",), f"seam owner '{person.id}' is on side '{person.side}', not 'seam'")


@rule(
    "OWN-004",
    Severity.ERROR,
    "Every command needs two approvers from different sides, one of them OT",
    "list at least two approvers under 'approvers:', one with 'side: ot' and one from another side",
)
def command_approvers(loaded: LoadedContract) -> Iterator[Hit]:
    for i, command in enumerate(loaded.contract.commands):
        sides = {approver.side for approver in command.approvers}
        if len(command.approvers) < 2:
            yield Hit(("commands", i), f"command '{command.id}' has {len(command.approvers)} approver(s); two needed")
        elif Side.OT not in sides:
            yield Hit(("commands", i, "approvers"), f"no approver of command '{command.id}' is on the OT side")
        elif len(sides) < 2:
            yield Hit(("commands", i, "approvers"), f"all approvers of command '{command.id}' are on the OT side")


@rule(
    "OWN-005",
    Severity.WARNING,
    "Every approver role is held by a declared person on that side",
    "add the person under 'people:' with this side and role, or correct the role",
)
def approver_roles_held(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    held = {(p.side, p.role.strip().lower()) for p in contract.people}
    for i, command in enumerate(contract.commands):
        for j, approver in enumerate(command.approvers):
            if (approver.side, approver.role.strip().lower()) not in held:
                yield Hit(
                    ("commands", i, "approvers", j),
                    f"nobody on side '{approver.side}' holds role '{approver.role}' needed to approve "
                    f"command '{command.id}'",
                )


@rule(
    "OWN-006",
    Severity.WARNING,
    "The contract states its objectives, with success and failure written for both sides",
    "add an objective: the problem solved, and what success and failure look like for OT and for IT",
)
def objectives_complete(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    if not contract.objectives:
        yield Hit((), "the contract states no objective")
    for i, objective in enumerate(contract.objectives):
        if not objective.problem.strip():
            yield Hit(("objectives", i, "problem"), f"objective '{objective.id}' does not say what problem it solves")
        for outcome in ("success", "failure"):
            view = getattr(objective, outcome)
            for side in ("ot", "it"):
                if not str(getattr(view, side)).strip():
                    yield Hit(
                        ("objectives", i, outcome, side),
                        f"objective '{objective.id}' leaves {outcome} for the {side.upper()} side empty",
                    )


@rule(
    "OWN-007",
    Severity.INFO,
    "Every point has a consumer: someone named in 'consumers', or a sink that carries it",
    "name who uses the value in 'consumers:', add it to a sink, or remove the point and poll less",
)
def points_have_consumers(loaded: LoadedContract) -> Iterator[Hit]:
    contract = loaded.contract
    carried = {key for sink in contract.sinks for key in sink_point_keys(contract, sink)}
    for i, device in enumerate(contract.devices):
        for j, point in enumerate(device.points):
            if not point.consumers and device.key(point) not in carried:
                yield Hit(("devices", i, "points", j), f"nobody consumes point '{device.key(point)}'")
