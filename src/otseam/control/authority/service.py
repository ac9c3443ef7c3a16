"""The authority's service: request, approve, reject, list, show. No transport here.

The REST API and the command line are thin callers of :class:`AuthorityService`; each call names who
acts (:class:`Identity`, as the caller authenticated them) and gets back plain data or a
:class:`AuthorityError` whose message says why not. Every change is written to the audit log first:
if the audit log cannot be written, the change does not happen.

An approval is an Ed25519 signature over the request's SHA-256 by a key enrolled for the approver
(keys.py). The server never holds anyone's private key: the console or ``seam command approve`` signs
on the approver's side and sends the signature.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Any

from otseam.audit.log import AuditLog, AuditUnavailable, authority_dir
from otseam.contract.loader import ContractError, load
from otseam.contract.models import Contract, Side
from otseam.control.authority import policy
from otseam.control.authority.document import CommandRequest, DocumentError, contract_version, new_id, normalise_value
from otseam.control.authority.keys import PURPOSE_APPROVAL, PURPOSE_REJECTION, PURPOSE_REQUEST, Keyring
from otseam.control.authority.store import Entry, NotFound, Signature, Store
from otseam.core.plugins import JournalWriter
from otseam.core.records import Severity

log = logging.getLogger("otseam.control.authority")


class AuthorityError(Exception):
    """A refused operation. ``status`` suggests an HTTP status to the REST layer."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Identity:
    """Who acts, as authenticated by the caller (console session, key file on the command line)."""

    person_id: str
    side: Side | str
    role: str


def entry_view(entry: Entry, now_ms: int, contract: Contract) -> dict[str, Any]:
    view = entry.as_dict()
    view["state"] = entry.state(now_ms)
    try:
        missing = policy.quorum_problem(contract, entry.document, [a.person for a in entry.approvals])
    except policy.PolicyError as exc:
        missing = str(exc)
    view["missing"] = missing or ""
    return view


class AuthorityService:
    def __init__(
        self,
        contract_path: str | Path,
        data_dir: str | Path,
        *,
        node: str = "",
        clock: Callable[[], float] = time.time,
        tz: tzinfo | None = None,
        journal: JournalWriter | None = None,
        approval_window: float = policy.APPROVAL_WINDOW_S,
        execute_window: float = policy.EXECUTE_WINDOW_S,
        audit: AuditLog | None = None,
    ) -> None:
        try:
            self.contract: Contract = load(contract_path).contract
        except ContractError as exc:
            raise AuthorityError(f"the contract cannot be loaded: {exc}", 500) from None
        self.contract_hash = contract_version(contract_path)
        self.directory = authority_dir(data_dir)
        self.clock = clock
        self.tz = tz
        self.node = node
        self.approval_window = approval_window
        self.execute_window = execute_window
        self.keyring = Keyring(self.directory)
        self.store = Store(self.directory)
        self.audit = audit or AuditLog(self.directory, node=node, journal=journal, clock=clock)

    # --- helpers -----------------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return round(self.clock() * 1000)

    def _person(self, identity: Identity) -> None:
        person = self.contract.person(identity.person_id)
        if person is None:
            raise AuthorityError(f"'{identity.person_id}' is not a person in the contract", 403)
        if str(identity.side) != person.side.value or identity.role != person.role:
            raise AuthorityError(
                f"{identity.person_id} is {person.side.value} '{person.role}' in the contract, not "
                f"{identity.side} '{identity.role}'",
                403,
            )

    def _audit(
        self,
        kind: str,
        actor: str,
        subject: str,
        data: dict[str, Any],
        severity: Severity = Severity.INFO,
        message: str = "",
    ) -> None:
        try:
            self.audit.append(kind, actor, subject, data, severity, message)
        except AuditUnavailable as exc:
            raise AuthorityError(str(exc), 503) from None

    def _refuse(self, identity: Identity, kind: str, subject: str, reason: str, status: int = 409) -> AuthorityError:
        # A refusal is on record too; if even that cannot be written, the refusal stands anyway.
        with contextlib.suppress(AuditUnavailable):
            self.audit.append(kind, identity.person_id, subject, {"reason": reason}, Severity.MEDIUM, reason)
        return AuthorityError(reason, status)

    def executed_times(self, command_id: str) -> list[float]:
        return [
            e.outcome["at"] / 1000
            for e in self.store.all()
            if e.document.command == command_id and e.outcome and e.outcome.get("status") == "executed"
        ]

    # --- operations --------------------------------------------------------------------------------

    def prepare(self, identity: Identity, command: str, value: object, reason: str, observed: object) -> CommandRequest:
        """The document a request would be (not stored): the requester may sign it before submitting."""
        self._person(identity)
        try:
            tgt = policy.target(self.contract, command)
            text = normalise_value(tgt.point, value)
            seen = normalise_value(tgt.point, observed)
        except (policy.PolicyError, DocumentError) as exc:
            raise self._refuse(identity, "command.refused", command, str(exc), 422) from None
        now = self._now_ms()
        doc = CommandRequest(
            id=new_id(),
            command=command,
            point=tgt.command.point,
            value=text,
            unit=tgt.point.unit,
            observed=seen,
            reason=reason.strip(),
            requester=identity.person_id,
            created=now,
            approve_by=now + round(self.approval_window * 1000),
            execute_by=now + round((self.approval_window + self.execute_window) * 1000),
            contract=self.contract_hash,
        )
        try:
            policy.check_document(self.contract, doc, self.contract_hash)
        except policy.PolicyError as exc:
            raise self._refuse(identity, "command.refused", command, str(exc), 422) from None
        return doc

    def submit(self, identity: Identity, doc: CommandRequest, signature: Signature | None = None) -> dict[str, Any]:
        self._person(identity)
        if doc.requester != identity.person_id:
            raise self._refuse(identity, "command.refused", doc.command, "a request is submitted by its requester", 403)
        try:
            policy.check_document(self.contract, doc, self.contract_hash)
        except policy.PolicyError as exc:
            raise self._refuse(identity, "command.refused", doc.command, str(exc), 422) from None
        now = self._now_ms()
        if not doc.created - 60_000 <= now < doc.approve_by:
            raise self._refuse(
                identity, "command.refused", doc.command, "the request's times do not fit this node's clock"
            )
        if signature is not None:
            problem = self.keyring.check(
                identity.person_id, signature.fingerprint, PURPOSE_REQUEST, doc.digest, signature.signature
            )
            if problem:
                raise self._refuse(identity, "command.refused", doc.command, problem, 403)
            signature.at = now
        entry = Entry(doc, signature)

        def record() -> None:
            self._audit(
                "command.request",
                identity.person_id,
                doc.id,
                {"document": doc.body(), "digest": doc.digest, "signed": signature is not None},
                message=f"{identity.person_id} requests {doc.command} = {doc.value} {doc.unit}: {doc.reason}",
            )

        self.store.create(entry, before=record)
        return entry_view(entry, now, self.contract)

    def request(self, identity: Identity, command: str, value: object, reason: str, observed: object) -> dict[str, Any]:
        """Prepare and submit in one step (the REST API's request; the session authenticates)."""
        return self.submit(identity, self.prepare(identity, command, value, reason, observed))

    def approve(self, identity: Identity, request_id: str, fingerprint: str, signature: str) -> dict[str, Any]:
        self._person(identity)
        now = self._now_ms()
        try:
            with self.store.changing(request_id) as entry:
                doc = entry.document
                state = entry.state(now)
                if state != "pending":
                    raise AuthorityError(f"request {request_id} is {state}; it can no longer be approved")
                problem = policy.approver_problem(
                    self.contract, doc, identity.person_id, [a.person for a in entry.approvals]
                )
                problem = problem or self.keyring.check(
                    identity.person_id, fingerprint, PURPOSE_APPROVAL, doc.digest, signature
                )
                try:
                    target = policy.check_document(self.contract, doc, self.contract_hash)
                except policy.PolicyError as exc:
                    problem = problem or str(exc)
                else:
                    problem = problem or policy.timing_problem(
                        target.command, now / 1000, self.executed_times(doc.command), self.tz, "at approval, it"
                    )
                if problem:
                    raise AuthorityError(problem, 403)
                entry.approvals.append(Signature(identity.person_id, fingerprint, signature, now))
                complete = policy.quorum_problem(self.contract, doc, [a.person for a in entry.approvals]) is None
                if complete:
                    entry.approved_at = now
                self._audit(
                    "command.approve",
                    identity.person_id,
                    request_id,
                    {"digest": doc.digest, "fingerprint": fingerprint, "signature": signature, "complete": complete},
                    message=f"{identity.person_id} approves {doc.command} = {doc.value} {doc.unit}"
                    + (" (all approvals in)" if complete else ""),
                )
        except NotFound as exc:
            raise AuthorityError(str(exc), 404) from None
        except AuthorityError as exc:
            if exc.status != 503:
                self._refuse(identity, "command.approve.refused", request_id, str(exc))
            raise
        return entry_view(entry, now, self.contract)

    def reject(
        self, identity: Identity, request_id: str, reason: str, signature: Signature | None = None
    ) -> dict[str, Any]:
        """Anyone in the contract may stop a request that is still pending or approved, with a reason."""
        self._person(identity)
        if not reason.strip():
            raise AuthorityError("a rejection needs a reason", 422)
        now = self._now_ms()
        try:
            with self.store.changing(request_id) as entry:
                state = entry.state(now)
                if state not in ("pending", "approved"):
                    raise AuthorityError(f"request {request_id} is {state}; there is nothing to reject")
                if signature is not None:
                    problem = self.keyring.check(
                        identity.person_id,
                        signature.fingerprint,
                        PURPOSE_REJECTION,
                        entry.document.digest,
                        signature.signature,
                    )
                    if problem:
                        raise AuthorityError(problem, 403)
                entry.rejection = {
                    "person": identity.person_id,
                    "reason": reason.strip(),
                    "at": now,
                    "signature": signature.as_dict() if signature else None,
                }
                self._audit(
                    "command.reject",
                    identity.person_id,
                    request_id,
                    {"reason": reason.strip(), "signed": signature is not None},
                    message=f"{identity.person_id} rejects request {request_id}: {reason.strip()}",
                )
        except NotFound as exc:
            raise AuthorityError(str(exc), 404) from None
        return entry_view(entry, now, self.contract)

    def list(self, identity: Identity, state: str | None = None) -> list[dict[str, Any]]:
        self._person(identity)
        now = self._now_ms()
        views = [entry_view(e, now, self.contract) for e in self.store.all()]
        return [v for v in views if state is None or v["state"] == state]

    def show(self, identity: Identity, request_id: str) -> dict[str, Any]:
        self._person(identity)
        try:
            return entry_view(self.store.get(request_id), self._now_ms(), self.contract)
        except NotFound as exc:
            raise AuthorityError(str(exc), 404) from None

    # --- the OT node's side of the outbox ------------------------------------------------------------

    def ready(self) -> builtins.list[dict[str, Any]]:
        """Requests with every approval in and time left to execute: what the OT node fetches."""
        now = self._now_ms()
        return [e.as_dict() for e in self.store.all() if e.state(now) == "approved"]

    def report(self, request_id: str, outcome: dict[str, Any]) -> None:
        """The OT node's outcome for a request (executed, refused, failed, drift, readback-mismatch)."""
        try:
            with self.store.changing(request_id) as entry:
                if entry.outcome is not None:
                    return
                entry.outcome = dict(outcome)
                self._audit(
                    "command.outcome",
                    str(outcome.get("node", "ot")),
                    request_id,
                    dict(outcome),
                    Severity.INFO if outcome.get("status") == "executed" else Severity.HIGH,
                    f"request {request_id}: {outcome.get('status')} {outcome.get('detail', '')}".strip(),
                )
        except NotFound as exc:
            raise AuthorityError(str(exc), 404) from None
