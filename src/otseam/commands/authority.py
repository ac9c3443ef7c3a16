"""`seam command ...`, `seam contract ...` and `seam audit ...`: the authority from a terminal.

Each command acts on one node's store (``<node data dir>/authority``) on this machine, the same one the
node's REST API serves. A person acts with ``--as PERSON --key FILE``: the key file (0600, never on
the command line itself) signs what they do, and the node checks the signature against its keyring.
Exit status: 0 done, 1 refused (the message says why), 2 unusable input.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from otseam.audit.canonical import digest
from otseam.audit.log import (
    AuditLog,
    AuditUnavailable,
    authority_dir,
    node_public_key,
    syslog_line,
    verify_events,
    verify_log,
)
from otseam.contract.loader import ContractError, load
from otseam.contract.models import Contract
from otseam.contract.units import parse_duration
from otseam.control.authority import keys, pki
from otseam.control.authority.breakglass import DEFAULT_DURATION_S, BreakGlass, BreakGlassError
from otseam.control.authority.changes import describe
from otseam.control.authority.governance import MARKER, ChangeControl, GovernanceError, turn_on
from otseam.control.authority.service import AuthorityError, AuthorityService, Identity
from otseam.control.authority.store import Signature

command_app = typer.Typer(help="Two-person commands: keys, requests, approvals, break-glass.", no_args_is_help=True)
contract_app = typer.Typer(help="Contract change control: propose, diff, approve, status.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log: verify, export.", no_args_is_help=True)

ContractOpt = Annotated[Path, typer.Option("--contract", "-c", help="The contract file.")]
NodeOpt = Annotated[str | None, typer.Option("--node", help="The node whose store to use (optional with one node).")]
AsOpt = Annotated[str, typer.Option("--as", help="Who acts: a person id of the contract.")]
KeyOpt = Annotated[Path, typer.Option("--key", help="That person's private key file (mode 0600).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _contract(path: Path) -> Contract:
    try:
        return load(path).contract
    except ContractError as exc:
        raise _fail(f"{path}:\n{exc}") from None
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror}") from None


def _node_dir(path: Path, node: str | None) -> tuple[str, Path]:
    from otseam.runtime.supervisor import StartupError, resolve_node

    contract = _contract(path)
    try:
        node_id = resolve_node(contract, node)
    except StartupError as exc:
        raise _fail(str(exc)) from None
    data = Path(contract.data_dir(node_id))
    return node_id, data if data.is_absolute() else path.parent / data


def _service(path: Path, node: str | None) -> AuthorityService:
    node_id, data = _node_dir(path, node)
    try:
        return AuthorityService(path, data, node=node_id)
    except AuthorityError as exc:
        raise _fail(str(exc)) from None


def _identity(contract: Contract, person: str) -> Identity:
    found = contract.person(person)
    if found is None:
        raise _fail(f"'{person}' is not a person in the contract")
    return Identity(person, found.side, found.role)


def _key(path: Path) -> Ed25519PrivateKey:
    try:
        return keys.load_private(path)
    except keys.KeyProblem as exc:
        raise _fail(str(exc)) from None


def _signature(person: str, key_path: Path, purpose: str, digest_hex: str) -> Signature:
    private = _key(key_path)
    return Signature(person, keys.fingerprint(private.public_key()), keys.sign(private, purpose, digest_hex))


def _print_view(view: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(view, indent=1))
        return
    doc = view["document"]
    when = datetime.fromtimestamp(doc["created"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    typer.echo(f"{doc['id']}  {view['state']:<18} {doc['command']}: {doc['point']} = {doc['value']} {doc['unit']}")
    typer.echo(f"    requested by {doc['requester']} at {when}: {doc['reason']}")
    typer.echo(f"    saw {doc['observed']} {doc['unit']}; sha256 {view['digest']}")
    for approval in view["approvals"]:
        typer.echo(f"    approved by {approval['person']} ({approval['fingerprint']})")
    if view.get("missing") and view["state"] == "pending":
        typer.echo(f"    still needed: {view['missing']}")
    if view.get("rejection"):
        typer.echo(f"    rejected by {view['rejection']['person']}: {view['rejection']['reason']}")
    if view.get("outcome"):
        typer.echo(f"    outcome: {view['outcome'].get('status')} {view['outcome'].get('detail', '')}")


# --- keys ----------------------------------------------------------------------------------------------


@command_app.command("keygen")
def keygen(
    person: Annotated[str, typer.Argument(help="Whose key: a person id of the contract.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The private key file to create (mode 0600).")],
) -> None:
    """Make a person's Ed25519 key pair: the private key stays with them, the .pub is enrolled on nodes."""
    try:
        public, fingerprint = keys.generate(person, out)
    except (keys.KeyProblem, OSError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"private key {out} (keep it; mode 0600), public key {public}\nfingerprint {fingerprint}")


@command_app.command("enroll")
def enroll(
    public: Annotated[Path, typer.Argument(help="A public key file made by 'seam command keygen'.")],
    contract: ContractOpt = Path("seam.yaml"),
    node: NodeOpt = None,
) -> None:
    """Enroll a person's public key on this node (listed by fingerprint, recorded in the audit log)."""
    service = _service(contract, node)
    try:
        key, person = keys.parse_public(public.read_text(encoding="utf-8"))
    except (keys.KeyProblem, OSError) as exc:
        raise _fail(str(exc)) from None
    if service.contract.person(person) is None:
        raise _fail(f"'{person}' is not a person in the contract")
    try:
        entry = service.keyring.enroll(key, person)
        service.audit.append("key.enroll", person, entry.fingerprint, {"fingerprint": entry.fingerprint})
    except (keys.KeyProblem, OSError) as exc:
        raise _fail(str(exc), 1) from None
    typer.echo(f"enrolled {person} {entry.fingerprint}")


@command_app.command("keys")
def list_keys(contract: ContractOpt = Path("seam.yaml"), node: NodeOpt = None) -> None:
    """The keys enrolled on this node, by person and fingerprint."""
    service = _service(contract, node)
    for entry in service.keyring.entries():
        state = "revoked" if entry.revoked_at else "active"
        typer.echo(f"{entry.person:<20} {entry.fingerprint}  {state}")


@command_app.command("revoke")
def revoke(
    fingerprint: Annotated[str, typer.Argument(help="The fingerprint of the key, as 'seam command keys' lists it.")],
    contract: ContractOpt = Path("seam.yaml"),
    node: NodeOpt = None,
) -> None:
    """Revoke an enrolled key on this node: its signatures no longer count, from now on (audited)."""
    service = _service(contract, node)
    try:
        entry = service.keyring.revoke(fingerprint, round(time.time() * 1000))
        service.audit.append("key.revoke", entry.person, fingerprint, {"fingerprint": fingerprint})
    except (keys.KeyProblem, AuditUnavailable) as exc:
        raise _fail(str(exc), 1) from None
    typer.echo(f"revoked {entry.person} {fingerprint}")


@command_app.command("certs")
def certs(
    directory: Annotated[Path, typer.Argument(help="Where to write ca.pem, <dmz>.pem/.key, <ot>.pem/.key.")],
    dmz_host: Annotated[str, typer.Option("--dmz-host", help="The address or name the OT node connects to.")],
    dmz_node: Annotated[str, typer.Option("--dmz-node", help="The DMZ node's id (its certificate name).")] = "dmz",
    ot_node: Annotated[str, typer.Option("--ot-node", help="The OT node's id (its certificate name).")] = "ot-edge",
) -> None:
    """A small private CA and the two certificates of a command conduit (mutual TLS)."""
    if (directory / "ca.key").exists():
        raise _fail(f"{directory} already holds a CA; nothing written")
    pki.make_ca(directory)
    pki.issue(directory, dmz_node, [dmz_host], directory, server=True)
    pki.issue(directory, ot_node, [], directory, server=False)
    typer.echo(
        f"wrote {directory}/ca.pem, {dmz_node}.pem/.key (server), {ot_node}.pem/.key (client); keep ca.key offline"
    )


# --- requests --------------------------------------------------------------------------------------------


@command_app.command("request")
def request(
    command: Annotated[str, typer.Argument(help="A command id declared in the contract.")],
    value: Annotated[str, typer.Argument(help="The value to write, in the point's unit.")],
    observed: Annotated[str, typer.Option("--observed", help="The point's value as you see it now.")],
    reason: Annotated[str, typer.Option("--reason", help="Why: the approvers read this.")],
    person: AsOpt,
    key: KeyOpt,
    contract: ContractOpt = Path("seam.yaml"),
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Request a declared command; the request is signed with your key and waits for approvals."""
    service = _service(contract, node)
    identity = _identity(service.contract, person)
    try:
        doc = service.prepare(identity, command, value, reason, observed)
        view = service.submit(identity, doc, _signature(person, key, keys.PURPOSE_REQUEST, doc.digest))
    except AuthorityError as exc:
        raise _fail(str(exc), 1) from None
    _print_view(view, as_json)


@command_app.command("approve")
def approve(
    request_id: Annotated[str, typer.Argument(help="The request id.")],
    person: AsOpt,
    key: KeyOpt,
    contract: ContractOpt = Path("seam.yaml"),
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve a request: your key signs the SHA-256 of exactly the document shown."""
    service = _service(contract, node)
    identity = _identity(service.contract, person)
    try:
        entry = service.store.get(request_id)
    except LookupError as exc:
        raise _fail(str(exc), 1) from None
    doc = entry.document
    signature = _signature(person, key, keys.PURPOSE_APPROVAL, doc.digest)
    try:
        view = service.approve(identity, request_id, signature.fingerprint, signature.signature)
    except AuthorityError as exc:
        raise _fail(str(exc), 1) from None
    _print_view(view, as_json)


@command_app.command("reject")
def reject(
    request_id: Annotated[str, typer.Argument(help="The request id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why not: the requester reads this.")],
    person: AsOpt,
    key: KeyOpt,
    contract: ContractOpt = Path("seam.yaml"),
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reject a request with a reason; this ends it."""
    service = _service(contract, node)
    identity = _identity(service.contract, person)
    try:
        doc = service.store.get(request_id).document
        view = service.reject(identity, request_id, reason, _signature(person, key, keys.PURPOSE_REJECTION, doc.digest))
    except LookupError as exc:
        raise _fail(str(exc), 1) from None
    except AuthorityError as exc:
        raise _fail(str(exc), 1) from None
    _print_view(view, as_json)


@command_app.command("list")
def list_requests(
    person: AsOpt,
    state: Annotated[str | None, typer.Option("--state", help="pending, approved, executed, rejected, ...")] = None,
    contract: ContractOpt = Path("seam.yaml"),
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Requests on this node, oldest first."""
    service = _service(contract, node)
    try:
        views = service.list(_identity(service.contract, person), state)
    except AuthorityError as exc:
        raise _fail(str(exc), 1) from None
    if as_json:
        typer.echo(json.dumps(views, indent=1))
        return
    for view in views:
        _print_view(view, False)


@command_app.command("show")
def show(
    request_id: Annotated[str, typer.Argument(help="The request id.")],
    person: AsOpt,
    contract: ContractOpt = Path("seam.yaml"),
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One request: its document, approvals and outcome."""
    service = _service(contract, node)
    try:
        view = service.show(_identity(service.contract, person), request_id)
    except AuthorityError as exc:
        raise _fail(str(exc), 1) from None
    _print_view(view, as_json)


# --- break-glass (OT node only) ----------------------------------------------------------------------------


def _breakglass(contract: Path, node: str | None) -> BreakGlass:
    from otseam.control.authority.executor import Executor

    node_id, data = _node_dir(contract, node)
    return BreakGlass(Executor(contract, data, node=node_id))


@command_app.command("break-glass")
def break_glass(
    command: Annotated[str, typer.Argument(help="A command id declared in the contract.")],
    value: Annotated[str, typer.Argument(help="The value to write, in the point's unit.")],
    reason: Annotated[str, typer.Option("--reason", help="Why the normal path cannot be used: mandatory.")],
    person: AsOpt,
    key: KeyOpt,
    duration: Annotated[str, typer.Option("--for", help="How long the session lasts (at most 1h).")] = "15min",
    session: Annotated[str | None, typer.Option("--session", help="Use this open session of yours.")] = None,
    contract: ContractOpt = Path("seam.yaml"),
    node: NodeOpt = None,
) -> None:
    """One person writes a declared command on the OT node, raising an alert and an open review."""
    glass = _breakglass(contract, node)
    try:
        seconds = parse_duration(duration) if duration else DEFAULT_DURATION_S
        if session is None:
            body = glass.prepare(person, reason, seconds)
            record = glass.open(body, _signature(person, key, keys.PURPOSE_BREAK_GLASS, digest(body)))
            session = str(record["session"]["id"])
            typer.echo(f"break-glass session {session} open until {body['expires']} ms; an alert was raised")
        elif glass.get(session)["session"]["person"] != person:
            raise BreakGlassError(f"session {session} is not yours")
        observed = asyncio.run(glass.current(command))
        outcome = asyncio.run(glass.execute(session, command, value, observed))
    except (BreakGlassError, ValueError) as exc:
        raise _fail(str(exc), 1) from None
    typer.echo(f"{outcome['status']}: {outcome['detail']}")
    if outcome["status"] != "executed":
        raise typer.Exit(1)


@command_app.command("reviews")
def reviews(contract: ContractOpt = Path("seam.yaml"), node: NodeOpt = None) -> None:
    """Break-glass sessions whose review the seam owner has not closed."""
    for record in _breakglass(contract, node).open_reviews():
        body = record["session"]
        typer.echo(f"{body['id']}  {body['person']}: {body['reason']}  ({len(record['executions'])} write(s))")


@command_app.command("review")
def review(
    session: Annotated[str, typer.Argument(help="The break-glass session id.")],
    note: Annotated[str, typer.Option("--note", help="What the review found.")],
    person: AsOpt,
    key: KeyOpt,
    contract: ContractOpt = Path("seam.yaml"),
    node: NodeOpt = None,
) -> None:
    """Close the review of a break-glass session (the seam owner only)."""
    glass = _breakglass(contract, node)
    try:
        body = glass.get(session)["session"]
        glass.review(session, person, note, _signature(person, key, keys.PURPOSE_REVIEW, digest(body)))
    except BreakGlassError as exc:
        raise _fail(str(exc), 1) from None
    typer.echo(f"review of {session} closed")


# --- contract change control ---------------------------------------------------------------------------------


def _change_control(contract: Path, node: str | None) -> ChangeControl:
    node_id, data = _node_dir(contract, node)
    directory = authority_dir(data)
    return ChangeControl(directory, AuditLog(directory, node=node_id), time.time)


@contract_app.command("diff")
def diff(
    old: Annotated[Path, typer.Argument(help="The contract in force.")],
    new: Annotated[Path, typer.Argument(help="The changed contract.")],
) -> None:
    """What a change does, in words, and the zones it touches."""
    changes = describe(_contract(old), _contract(new))
    for line in changes.lines:
        typer.echo(("! " if line in changes.widening else "  ") + line)
    typer.echo(f"zones touched: {', '.join(sorted(changes.zones)) or 'none'}")


@contract_app.command("propose")
def propose(
    new: Annotated[Path, typer.Argument(help="The changed contract.")],
    person: AsOpt,
    contract: ContractOpt = Path("seam.yaml"),
    node: NodeOpt = None,
) -> None:
    """Record a changed contract as a proposal (a new revision voids approvals of earlier ones)."""
    control = _change_control(contract, node)
    try:
        proposal = control.propose(new.read_text(encoding="utf-8"), contract.read_text(encoding="utf-8"), person)
    except (GovernanceError, OSError) as exc:
        raise _fail(str(exc), 1) from None
    _print_proposal(proposal)


def _print_proposal(proposal: dict[str, Any]) -> None:
    typer.echo(f"r{proposal['revision']}  {proposal['status']}  sha256 {proposal['digest']}")
    for line in proposal["changes"]:
        typer.echo(("  ! " if line in proposal["widening"] else "    ") + line)
    signed = {a["person"] for a in proposal["approvals"]}
    for person, why in proposal["required"].items():
        typer.echo(f"    {'approved' if person in signed else 'needs   '} {person} ({why})")


@contract_app.command("approve")
def approve_contract(
    revision: Annotated[str, typer.Argument(help="The proposal's revision, e.g. r3.")],
    person: AsOpt,
    key: KeyOpt,
    contract: ContractOpt = Path("seam.yaml"),
    node: NodeOpt = None,
) -> None:
    """Sign a proposal's bundle hash; with the last approval the signed bundle is written."""
    control = _change_control(contract, node)
    try:
        number = control.parse_revision(revision)
        proposal = control._load(number)
        signed = _signature(person, key, keys.PURPOSE_BUNDLE, proposal["digest"])
        proposal = control.approve(number, person, signed)
    except GovernanceError as exc:
        raise _fail(str(exc), 1) from None
    _print_proposal(proposal)
    if proposal["status"] == "approved":
        typer.echo(f"signed bundle: {control.bundle_path(number)}")


@contract_app.command("status")
def status(contract: ContractOpt = Path("seam.yaml"), node: NodeOpt = None) -> None:
    """Every proposal on this node and who still has to approve it."""
    control = _change_control(contract, node)
    typer.echo(f"governance: {'on' if (control.directory / MARKER).exists() else 'off'}")
    for proposal in control.all():
        _print_proposal(proposal)


@contract_app.command("governance")
def governance(
    state: Annotated[str, typer.Argument(help="'on': seam run loads only signed bundles from now on.")],
    contract: ContractOpt = Path("seam.yaml"),
    node: NodeOpt = None,
) -> None:
    """Turn governance on for this node (turning it off is not a command: it is a change of the node)."""
    if state != "on":
        raise _fail("the only state to set is 'on'")
    control = _change_control(contract, node)
    try:
        turn_on(control.directory, contract.read_text(encoding="utf-8"), control.audit)
    except (OSError, AuditUnavailable) as exc:
        raise _fail(str(exc), 1) from None
    typer.echo("governance on: seam run loads only a contract bundle signed by its quorum")


# --- audit -----------------------------------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(
    contract: ContractOpt = Path("seam.yaml"),
    node: NodeOpt = None,
    log: Annotated[Path | None, typer.Option("--log", help="Verify this copy of a log instead.")] = None,
    head: Annotated[Path | None, typer.Option("--head", help="Its signed head file.")] = None,
    public_key: Annotated[
        Path | None, typer.Option("--public-key", help="The node's audit public key (node.key.pub), for a copy.")
    ] = None,
    events: Annotated[
        Path | None,
        typer.Option(
            "--events", help="Verify the records of --node that crossed as events (JSON lines of a file sink)."
        ),
    ] = None,
) -> None:
    """Check the chain and the signed head; name the first record edited, removed, reordered or cut off."""
    node_id, data = _node_dir(contract, node)
    directory = authority_dir(data)
    if events is not None:
        if public_key is None:
            raise _fail("--events needs --public-key: the audit public key of the node the records come from")
        try:
            public = node_public_key(public_key.parent, public_key.name)
            with events.open(encoding="utf-8") as lines:
                verdict = verify_events(lines, node_id, public)
        except (OSError, ValueError) as exc:
            raise _fail(str(exc)) from None
        if not verdict.ok:
            typer.echo(f"TAMPERED: {verdict.problem}")
            raise typer.Exit(1)
        typer.echo(f"ok: {verdict.records} records of {node_id}, {verdict.checkpoints} signed checkpoints")
        for note in verdict.notes:
            typer.echo(f"note: {note}")
        return
    log_path = log or directory / "audit.log"
    head_path = head or directory / "audit.head"
    if not log_path.exists():
        raise _fail(f"no audit log at {log_path}")
    try:
        public = node_public_key(public_key.parent, public_key.name) if public_key else node_public_key(directory)
    except (OSError, ValueError) as exc:
        raise _fail(f"the node's audit public key cannot be read: {exc}") from None
    verdict = verify_log(log_path, head_path, public)
    if verdict.ok:
        typer.echo(f"ok: {verdict.records} records, {verdict.checkpoints} signed checkpoints, head signed")
        return
    typer.echo(f"TAMPERED: {verdict.problem}")
    raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    contract: ContractOpt = Path("seam.yaml"),
    node: NodeOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    hostname: Annotated[str | None, typer.Option("--hostname", help="HOSTNAME of each message.")] = None,
) -> None:
    """The audit log as RFC 5424 syslog messages, one per line, for a SIEM."""
    node_id, data = _node_dir(contract, node)
    log = AuditLog(authority_dir(data), node=node_id)
    host = hostname or socket.gethostname()
    out = output.open("w", encoding="utf-8") if output else sys.stdout
    try:
        for record in log.records():
            out.write(syslog_line(record, host) + "\n")
    finally:
        if output:
            out.close()


def register(app: typer.Typer) -> None:
    app.add_typer(command_app, name="command")
    app.add_typer(contract_app, name="contract")
    app.add_typer(audit_app, name="audit")


__all__ = ["register"]
