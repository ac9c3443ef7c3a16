"""Who may do what in the console and the REST API.

A console user is always one person of the contract. What they may do follows from an access role
(viewer, operator, engineer, seam-owner, admin), and which roles a person may hold follows from their
side and standing in the contract: only the OT side operates the plant, only the contract's seam owner
(or the seam side) speaks for the seam, only the seam side administers the node. The mapping lives here,
in one table, so a reviewer reads it in one place.
"""

from __future__ import annotations

from enum import StrEnum

from otseam.contract.models import Contract, Person, Side


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ENGINEER = "engineer"
    SEAM_OWNER = "seam-owner"
    ADMIN = "admin"


class Permission(StrEnum):
    #: Read the contract, live values, history, alerts, inventory, the link, health.
    READ = "read"
    #: Acknowledge an alert or alarm, with a comment.
    ACK = "alerts.ack"
    #: Create and revoke one's own API tokens.
    TOKENS = "tokens"
    #: See every user and token of the node, revoke any token.
    ADMIN = "admin"
    #: Ask for a declared command, or stop a request with a reason (the contract's policy still decides).
    COMMAND_REQUEST = "commands.request"
    #: Approve a command request with one's own key (the contract's approvers still decide who counts).
    COMMAND_APPROVE = "commands.approve"
    #: Propose a contract change and approve one with one's own key.
    CONTRACT_CHANGE = "contract.change"
    #: Open a break-glass session and write through it (the contract still decides: OT side, OT node).
    BREAK_GLASS = "breakglass"
    #: Close the review of a break-glass session (the contract still decides: its seam owner only).
    BREAK_GLASS_REVIEW = "breakglass.review"


#: The permissions of each role. Deny by default: a permission not listed is refused.
#: The authority's permissions only open the door: who may approve a given command is the contract's
#: ``approvers`` (side and role), checked by the authority service. A viewer reads; an administrator
#: manages the node's users and so takes no part in commands or contract changes (separation of duties).
_DECIDE = {Permission.COMMAND_REQUEST, Permission.COMMAND_APPROVE, Permission.CONTRACT_CHANGE}
GRANTS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ, Permission.TOKENS}),
    Role.OPERATOR: frozenset(
        {Permission.READ, Permission.TOKENS, Permission.ACK, Permission.COMMAND_REQUEST, Permission.BREAK_GLASS}
    ),
    Role.ENGINEER: frozenset({Permission.READ, Permission.TOKENS, Permission.ACK, *_DECIDE, Permission.BREAK_GLASS}),
    Role.SEAM_OWNER: frozenset(
        {Permission.READ, Permission.TOKENS, Permission.ACK, *_DECIDE, Permission.BREAK_GLASS_REVIEW}
    ),
    Role.ADMIN: frozenset({Permission.READ, Permission.TOKENS, Permission.ACK, Permission.ADMIN}),
}


def allowed(role: Role, permission: Permission) -> bool:
    return permission in GRANTS[role]


def roles_for(person: Person, contract: Contract) -> list[Role]:
    """The roles ``person`` may hold, weakest first."""
    roles = [Role.VIEWER, Role.ENGINEER]
    if person.side is Side.OT:
        roles.insert(1, Role.OPERATOR)
    if person.id == contract.seam_owner or person.side is Side.SEAM:
        roles.append(Role.SEAM_OWNER)
    if person.side is Side.SEAM:
        roles.append(Role.ADMIN)
    return roles


def default_role(person: Person, contract: Contract) -> Role:
    """The role a new user gets when none is given: read from the person's entry in the contract."""
    if person.id == contract.seam_owner:
        return Role.SEAM_OWNER
    text = person.role.lower()
    if "operator" in text and person.side is Side.OT:
        return Role.OPERATOR
    if "engineer" in text:
        return Role.ENGINEER
    return Role.VIEWER


def check_role(person: Person, role: Role, contract: Contract) -> None:
    """Raise ValueError with the reason when ``person`` may not hold ``role``."""
    possible = roles_for(person, contract)
    if role not in possible:
        why = {
            Role.OPERATOR: "only people of the OT side operate the plant",
            Role.SEAM_OWNER: "only the contract's seam_owner or a person of the seam side",
            Role.ADMIN: "only a person of the seam side administers the node",
        }.get(role, "")
        raise ValueError(
            f"{person.id} ({person.side} side, {person.role}) cannot be {role}: {why}; "
            f"possible roles: {', '.join(possible)}"
        )


def is_approver(person: Person, contract: Contract) -> bool:
    """True when a command of the contract names this person's side and role among its approvers."""
    return any(
        approver.side == person.side and approver.role == person.role
        for command in contract.commands
        for approver in command.approvers
    )


def totp_required(person: Person, contract: Contract) -> bool:
    policy = contract.control.totp
    return policy == "everyone" or (policy == "approvers" and is_approver(person, contract))
