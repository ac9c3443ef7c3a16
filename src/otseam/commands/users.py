"""`seam user add|list|remove|passwd|totp|token|revoke`: the console's users, kept on the node.

Passwords are read from a prompt (asked twice) or, when standard input is not a terminal, from its first
line. Never from an argument: arguments are visible to every local user in the process list and end up
in shell histories.
"""

from __future__ import annotations

import getpass
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from otseam.audit.log import AuditUnavailable
from otseam.contract.models import Contract
from otseam.contract.units import parse_duration
from otseam.control.roles import Permission, Role, check_role, default_role, totp_required
from otseam.control.users import UserError, UserStore

user_app = typer.Typer(
    help="The console's users: who may sign in to this node, and as which person.", no_args_is_help=True
)

ContractArg = Annotated[Path, typer.Argument(help="The contract (seam.yaml).")]
NodeOpt = Annotated[str | None, typer.Option("--node", help="The node whose users these are (with several nodes).")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"seam user: {message}", err=True)
    return typer.Exit(2)


def node_data_dir(contract_path: Path, contract: Contract, node: str | None) -> Path:
    """Where the node keeps its data: the directory of the journal, relative to the contract file."""
    from otseam.control.view import data_dir_for

    try:
        return data_dir_for(contract_path, contract, node)
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _open(contract_path: Path, node: str | None) -> tuple[Contract, UserStore]:
    from otseam.contract.loader import ContractError, load

    try:
        loaded = load(contract_path)
    except ContractError as exc:
        raise _fail(f"the contract cannot be used:\n{exc}") from None
    return loaded.contract, UserStore(node_data_dir(loaded.path, loaded.contract, node))


def _on_record(
    contract_path: Path, node: str | None, kind: str, user: str, subject: str, message: str, actor: str | None = None
) -> None:
    """A record of the node's hash-chained audit log, written from the command line (the running node's
    journal does not see it; ``seam audit verify`` does). Raises AuditUnavailable."""
    from otseam.audit.log import AuditLog, authority_dir
    from otseam.contract.loader import load
    from otseam.runtime.supervisor import StartupError, resolve_node

    loaded = load(contract_path)
    try:
        node_id = resolve_node(loaded.contract, node)
    except StartupError as exc:
        raise _fail(str(exc)) from None
    data_dir = node_data_dir(loaded.path, loaded.contract, node)
    if actor is None:
        account = UserStore(data_dir).get(user)
        actor = account.person if account is not None else user
    audit = AuditLog(authority_dir(data_dir), node=node_id)
    audit.append(kind, actor, subject, {"user": user, "via": "command line"}, message=message)


def _read_password(confirm: bool) -> str:
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line:
            raise _fail("no password on standard input (give it as the first line)")
        return line.rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Again: ") != first:
        raise _fail("the two passwords differ; nothing was changed")
    return first


def _new_totp_secret(name: str, contract: Contract) -> str:
    import pyotp

    secret = pyotp.random_base32()
    uri = pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=f"Seam {contract.site.site}")
    # Shown on the terminal of the person running the command (never logged): enter it in the app.
    typer.echo(f"TOTP secret for {name}: {secret}\n  (or this URI as a QR code: {uri})")
    return secret


@user_app.command("add")
def add(
    contract: ContractArg,
    name: Annotated[str, typer.Argument(help="The user name to sign in with.")],
    person: Annotated[str, typer.Option("--person", help="The person of the contract this user is.")],
    role: Annotated[
        Role | None, typer.Option("--role", help="Access role; by default read from the person's contract entry.")
    ] = None,
    totp: Annotated[bool, typer.Option("--totp", help="Enrol a TOTP second factor now.")] = False,
    node: NodeOpt = None,
) -> None:
    """Add a user tied to a person of the contract."""
    loaded, store = _open(contract, node)
    entry = loaded.person(person)
    if entry is None:
        known = ", ".join(p.id for p in loaded.people) or "none declared"
        raise _fail(f"the contract has no person {person!r} (people: {known})")
    chosen = role or default_role(entry, loaded)
    try:
        check_role(entry, chosen, loaded)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    password = _read_password(confirm=True)
    secret = _new_totp_secret(name, loaded) if totp else None
    try:
        store.add(name, person, chosen, password, secret)
    except UserError as exc:
        raise _fail(str(exc)) from None
    try:
        _on_record(contract, node, "user.add", name, name, f"user {name} added for {person}, role {chosen}")
    except AuditUnavailable as exc:  # access granted off the record is not granted
        store.remove(name)
        raise _fail(f"user {name} NOT added: the audit log cannot be written: {exc}") from None
    typer.echo(f"added {name}: {entry.name} ({entry.side} side), role {chosen}")
    if totp_required(entry, loaded) and secret is None:
        typer.echo(f"note: the contract requires a TOTP code from {name}; enrol with 'seam user totp'", err=True)


@user_app.command("list")
def list_users(contract: ContractArg, node: NodeOpt = None) -> None:
    """List the users and their active tokens."""
    loaded, store = _open(contract, node)
    users = store.users()
    if not users:
        typer.echo("no users yet: add one with 'seam user add'")
        return
    now = time.time()
    for user in users:
        person = loaded.person(user.person)
        who = f"{person.name}, {person.side} side" if person else "not in the contract any more: cannot sign in"
        active = [t for t in store.tokens(user.name) if t.active(now)]
        typer.echo(
            f"{user.name:<16} {user.role:<10} {user.person} ({who})"
            f"{'  totp' if user.totp else ''}{f'  {len(active)} token(s)' if active else ''}"
        )


@user_app.command("remove")
def remove(
    contract: ContractArg, name: Annotated[str, typer.Argument(help="The user to remove.")], node: NodeOpt = None
) -> None:
    """Remove a user; their tokens are revoked and their sessions end at their next request."""
    _, store = _open(contract, node)
    account = store.get(name)
    try:
        revoked = store.remove(name)
    except UserError as exc:
        raise _fail(str(exc)) from None
    person = account.person if account is not None else name
    try:  # removing only takes access away: it stands, and says what is missing from the record
        _on_record(contract, node, "user.remove", name, name, f"user {name} ({person}) removed", actor=person)
        for token_id in revoked:
            message = f"API token {token_id} revoked with its user {name}"
            _on_record(contract, node, "token.revoke", name, token_id, message, actor=person)
    except AuditUnavailable as exc:
        raise _fail(f"user {name} removed, but NOT on record: {exc}") from None
    typer.echo(f"removed {name}" + (f"; {len(revoked)} token(s) revoked" if revoked else ""))


@user_app.command("passwd")
def passwd(contract: ContractArg, name: Annotated[str, typer.Argument(help="The user.")], node: NodeOpt = None) -> None:
    """Set a user's password."""
    _, store = _open(contract, node)
    if store.get(name) is None:
        raise _fail(f"no user {name}")
    try:
        store.set_password(name, _read_password(confirm=True))
    except UserError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"password of {name} changed")


@user_app.command("totp")
def totp(
    contract: ContractArg,
    name: Annotated[str, typer.Argument(help="The user.")],
    off: Annotated[bool, typer.Option("--off", help="Remove the second factor instead.")] = False,
    node: NodeOpt = None,
) -> None:
    """Enrol (or remove) a TOTP second factor."""
    loaded, store = _open(contract, node)
    if store.get(name) is None:
        raise _fail(f"no user {name}")
    store.set_totp(name, None if off else _new_totp_secret(name, loaded))
    typer.echo(f"TOTP of {name} {'removed' if off else 'enrolled'}")


@user_app.command("token")
def token(
    contract: ContractArg,
    name: Annotated[str, typer.Argument(help="The user the token acts for.")],
    label: Annotated[str, typer.Option("--name", help="What the token is for, e.g. 'grafana'.")],
    scope: Annotated[list[Permission], typer.Option("--scope", help="What it may do (repeat).")] = [  # noqa: B006
        Permission.READ
    ],
    expires: Annotated[str | None, typer.Option("--expires", help="Lifetime, e.g. '90d'; none by default.")] = None,
    node: NodeOpt = None,
) -> None:
    """Create an API token for a machine; it is printed once and stored only as a hash."""
    from otseam.control.roles import allowed

    _, store = _open(contract, node)
    user = store.get(name)
    if user is None:
        raise _fail(f"no user {name}")
    refused = [s for s in scope if not allowed(user.role, s)]
    if refused:
        raise _fail(f"{name} is {user.role} and cannot grant {', '.join(refused)}")
    lifetime = None
    if expires:
        try:
            lifetime = time.time() + parse_duration(expires)
        except ValueError as exc:
            raise _fail(f"--expires: {exc}") from None
    created, secret = store.create_token(name, label, list(scope), lifetime)
    try:
        _on_record(contract, node, "token.create", name, created.id, f"{name}: API token {created.id} ({label})")
    except AuditUnavailable as exc:
        store.revoke_token(created.id)  # a token not on record must not work
        raise _fail(f"{exc}; the token was not created") from None
    typer.echo(f"token {created.id} for {name} ({', '.join(created.scopes)}):", err=True)
    typer.echo(secret)


@user_app.command("revoke")
def revoke(
    contract: ContractArg, token_id: Annotated[str, typer.Argument(help="The token id.")], node: NodeOpt = None
) -> None:
    """Revoke an API token."""
    _, store = _open(contract, node)
    try:
        token = store.revoke_token(token_id)
    except UserError as exc:
        raise _fail(str(exc)) from None
    try:
        _on_record(contract, node, "token.revoke", token.user, token_id, f"API token {token_id} revoked")
    except AuditUnavailable as exc:  # revoking only takes access away: it stands, and says what is missing
        raise _fail(f"token {token_id} revoked, but NOT on record: {exc}") from None
    typer.echo(f"token {token_id} revoked")


def register(app: typer.Typer) -> None:
    app.add_typer(user_app, name="user")
