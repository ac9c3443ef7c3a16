"""Break-glass: one person on the OT node writes a declared command without the second approval.

For when the normal path is down (the DMZ unreachable, no IT approver awake) and the plant needs the
change now. What still holds: only commands the contract declares, values inside their range, a point
on a device this node polls, read before and read back after, everything in the audit log first.
What is waived: the second person, the command's window and rate. What it costs: the person signs a
reason with their own key; the session lasts at most ``MAX_DURATION_S``; opening it raises a
high-severity alert event that crosses to the IT side with the journal; and it stays an open review
until the seam owner closes it with their signature.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from otseam.audit.canonical import digest
from otseam.audit.files import atomic_write, locked
from otseam.audit.log import AuditUnavailable
from otseam.contract.models import Side
from otseam.control.authority import policy
from otseam.control.authority.document import CommandRequest, new_id, normalise_value
from otseam.control.authority.executor import Executor, to_engineering
from otseam.control.authority.keys import PURPOSE_BREAK_GLASS, PURPOSE_REVIEW
from otseam.control.authority.store import Signature
from otseam.core.records import Event, Severity

DEFAULT_DURATION_S = 15 * 60
MAX_DURATION_S = 60 * 60


class BreakGlassError(Exception):
    """Refused; ``status`` is the HTTP status the REST API answers with (409 unless said otherwise)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


def session_body(session_id: str, person: str, reason: str, opened: int, expires: int, node: str) -> dict[str, Any]:
    return {"id": session_id, "person": person, "reason": reason, "opened": opened, "expires": expires, "node": node}


class BreakGlass:
    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.directory = executor.directory / "breakglass"
        self._lock = executor.directory / "breakglass.lock"

    def _now_ms(self) -> int:
        return round(self.executor.clock() * 1000)

    def _path(self, session_id: str) -> Path:
        if not session_id.isalnum():
            raise BreakGlassError(f"'{session_id}' is not a break-glass session id", 404)
        return self.directory / f"{session_id}.json"

    def get(self, session_id: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self._path(session_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BreakGlassError(f"no break-glass session {session_id} on this node", 404) from None
        return data

    def sessions(self) -> list[dict[str, Any]]:
        if not self.directory.is_dir():
            return []
        found = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(self.directory.glob("*.json"))]
        return sorted(found, key=lambda s: s["session"]["opened"])

    def open_reviews(self) -> list[dict[str, Any]]:
        return [s for s in self.sessions() if s.get("review") is None]

    def available(self) -> bool:
        """Whether this node may hold break-glass sessions at all (it is in an OT zone)."""
        contract = self.executor.contract
        if not contract.nodes:
            return True
        node = contract.node(self.executor.node)
        zone = contract.zone(node.zone) if node is not None else None
        return zone is not None and zone.side is Side.OT

    def _ot_person(self, person_id: str) -> None:
        person = self.executor.contract.person(person_id)
        if person is None or person.side is not Side.OT:
            raise BreakGlassError(
                f"'{person_id}' is not an OT-side person of the contract; break-glass is OT's alone", 403
            )
        if not self.available():
            raise BreakGlassError(
                f"node '{self.executor.node}' is not in an OT zone; break-glass runs on the OT node only", 403
            )

    def prepare(self, person: str, reason: str, duration_s: float) -> dict[str, Any]:
        """The session document the person signs (not stored yet)."""
        self._ot_person(person)
        if not reason.strip():
            raise BreakGlassError("break-glass needs a reason", 422)
        if not 0 < duration_s <= MAX_DURATION_S:
            raise BreakGlassError(
                f"a break-glass session lasts more than 0 and at most {MAX_DURATION_S // 60} minutes", 422
            )
        now = self._now_ms()
        return session_body(new_id(), person, reason.strip(), now, now + round(duration_s * 1000), self.executor.node)

    def open(self, body: dict[str, Any], signature: Signature) -> dict[str, Any]:
        """Open a session signed by its person; raises the alert. Fails closed on the audit log."""
        self._ot_person(str(body["person"]))
        problem = self.executor.keyring.check(
            body["person"], signature.fingerprint, PURPOSE_BREAK_GLASS, digest(body), signature.signature
        )
        if problem:
            raise BreakGlassError(problem, 403)
        if (
            not isinstance(body.get("expires"), int)
            or not 0 < body["expires"] - self._now_ms() <= MAX_DURATION_S * 1000
        ):
            raise BreakGlassError("the session document is expired or longer than allowed: prepare a new one", 422)
        message = f"BREAK-GLASS opened by {body['person']} on {body['node'] or 'this node'}: {body['reason']}"
        record: dict[str, Any] = {"session": body, "signature": signature.as_dict(), "executions": [], "review": None}
        with locked(self._lock):
            if self._path(str(body["id"])).exists():  # a signed opening replayed must not reopen a session
                raise BreakGlassError(f"break-glass session {body['id']} was opened already")
            try:
                self.executor.audit.append(
                    "breakglass.open",
                    body["person"],
                    body["id"],
                    {"session": body, "signature": signature.as_dict()},
                    Severity.CRITICAL,
                    message,
                )
            except AuditUnavailable as exc:
                raise BreakGlassError(str(exc), 503) from None
            atomic_write(self._path(body["id"]), json.dumps(record, indent=1).encode())
        journal = self.executor.audit.journal
        if journal is not None:
            # An "alert" event: the console lists it with the other alerts, to be acknowledged.
            alert = Event(body["opened"] / 1000, "alert", f"breakglass/{body['id']}", Severity.HIGH, message, body)
            journal.append([alert])
        return record

    async def current(self, command: str) -> str:
        """The point's value now, as the text a request carries (what the person sees before writing)."""
        tgt = policy.target(self.executor.contract, command)
        async with self.executor.writers(tgt.device) as writer:
            value = to_engineering(tgt.point, await writer.read(tgt.point.id))
        return normalise_value(tgt.point, value)

    async def execute(self, session_id: str, command: str, value: object, observed: object) -> dict[str, Any]:
        record = self.get(session_id)
        body = record["session"]
        now = self._now_ms()
        if record.get("review") is not None:
            raise BreakGlassError(f"break-glass session {session_id} was closed by review")
        if now >= body["expires"]:
            raise BreakGlassError(f"break-glass session {session_id} has expired; open a new one with a reason")
        contract = self.executor.contract
        try:
            tgt = policy.target(contract, command)
            text = normalise_value(tgt.point, value)
            observed = normalise_value(tgt.point, observed)
        except (policy.PolicyError, ValueError) as exc:
            raise BreakGlassError(str(exc), 422) from None
        if contract.nodes and contract.node_of(tgt.device) != self.executor.node:
            raise BreakGlassError(
                f"device '{tgt.device.id}' is not polled by this node; break-glass writes only its own"
            )
        doc = CommandRequest(
            id=new_id(),
            command=command,
            point=tgt.command.point,
            value=text,
            unit=tgt.point.unit,
            observed=observed,
            reason=f"break-glass {session_id}: {body['reason']}",
            requester=body["person"],
            created=now,
            approve_by=body["expires"],
            execute_by=body["expires"],
            contract=self.executor.contract_hash,
            mode="break-glass",
        )
        try:
            policy.check_document(contract, doc, self.executor.contract_hash)
        except policy.PolicyError as exc:
            raise BreakGlassError(str(exc)) from None
        outcome = await self.executor.execute_local(doc, tgt, Severity.CRITICAL)
        with locked(self._lock):
            record = self.get(session_id)
            record["executions"].append(outcome)
            atomic_write(self._path(session_id), json.dumps(record, indent=1).encode())
        return outcome

    def review(self, session_id: str, person: str, note: str, signature: Signature) -> dict[str, Any]:
        """The seam owner closes the review of a session, with a note, signed over the session document."""
        contract = self.executor.contract
        if person != contract.seam_owner:
            raise BreakGlassError(
                f"only the seam owner ({contract.seam_owner or 'none declared'}) closes a break-glass review", 403
            )
        if not note.strip():
            raise BreakGlassError("a review needs a note", 422)
        with locked(self._lock):
            record = self.get(session_id)
            if record.get("review") is not None:
                raise BreakGlassError(f"the review of session {session_id} is already closed")
            problem = self.executor.keyring.check(
                person, signature.fingerprint, PURPOSE_REVIEW, digest(record["session"]), signature.signature
            )
            if problem:
                raise BreakGlassError(problem, 403)
            try:
                self.executor.audit.append(
                    "breakglass.review",
                    person,
                    session_id,
                    {"note": note.strip(), "signature": signature.as_dict()},
                    Severity.MEDIUM,
                    f"break-glass session {session_id} reviewed by {person}: {note.strip()}",
                )
            except AuditUnavailable as exc:
                raise BreakGlassError(str(exc), 503) from None
            record["review"] = {
                "person": person,
                "note": note.strip(),
                "at": self._now_ms(),
                "signature": signature.as_dict(),
            }
            atomic_write(self._path(session_id), json.dumps(record, indent=1).encode())
        return record
