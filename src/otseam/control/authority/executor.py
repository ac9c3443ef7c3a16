"""Execution of approved commands, on the OT node.

The OT node trusts nothing it is handed: for every approved request it fetched it checks, against its
own copy of the contract and its own keyring, that the command is declared, the document is the one
the contract allows, every signature is genuine and the approvers make a quorum, the time is inside
the execute window, the command's window and rate allow it now, and that this request was never
handled here before (a replayed request gets its first outcome back, nothing is written again). Then
it reads the point: if the value drifted from what the approvers saw, it stops. Otherwise it writes
through the driver, reads back until the value is there (within the command's tolerance) or the
read-back timeout passes, and reports the outcome. Each step is in the audit log before it happens;
if the audit log cannot be written, nothing is written to the PLC.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import struct
import time
from collections.abc import Callable
from datetime import tzinfo
from pathlib import Path
from typing import Any, Protocol

from otseam.audit.files import atomic_write, locked
from otseam.audit.log import AuditLog, AuditUnavailable, authority_dir
from otseam.contract.loader import load
from otseam.contract.models import Contract, Device, Point, Side
from otseam.control.authority import policy
from otseam.control.authority.document import CommandRequest, DocumentError, contract_version, python_value
from otseam.control.authority.keys import PURPOSE_APPROVAL, Keyring
from otseam.core.plugins import JournalWriter
from otseam.core.records import Severity, Value

log = logging.getLogger("otseam.control.authority")


class Writer(Protocol):
    async def __aenter__(self) -> Writer: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def read(self, point_id: str) -> Value: ...

    async def write(self, point_id: str, value: Value) -> None: ...


def open_writer(device: Device) -> Writer:
    """The driver's write path for ``device`` (drivers expose ``open_writer``)."""
    import importlib

    module = importlib.import_module(f"otseam.drivers.{device.driver}")
    factory = getattr(module, "open_writer", None)
    if factory is None:
        raise policy.PolicyError(f"the '{device.driver}' driver has no write path; no command can write to it")
    writer: Writer = factory(device)
    return writer


# --- engineering units and raw values ----------------------------------------------------------------


class Unrepresentable(ValueError):
    pass


def to_raw(point: Point, value: bool | int | float | str) -> Value:
    """The raw value the device holds for an engineering ``value`` (the contract's scaling undone)."""
    if point.scale is None or isinstance(value, bool | str):
        return value
    raw = (float(value) - point.scale.offset) / point.scale.factor
    if point.type in ("float32", "float64"):
        return raw
    nearest = round(raw)
    if abs(raw - nearest) > 1e-9 * max(1.0, abs(raw)):
        step = point.scale.factor
        raise Unrepresentable(
            f"{value} is not a whole number of steps of {step:g} from {point.scale.offset:g}: the register cannot hold it"
        )
    return nearest


def to_engineering(point: Point, raw: Value) -> Value:
    if point.scale is None or isinstance(raw, bool | str) or raw is None:
        return raw
    return raw * point.scale.factor + point.scale.offset


def _stored(point: Point, raw: Value) -> Value:
    """What the device will hold after ``raw`` is written: float32 rounds."""
    if point.type == "float32" and isinstance(raw, float):
        return float(struct.unpack(">f", struct.pack(">f", raw))[0])
    return raw


def matches(point: Point, expected: Value, actual: Value, tolerance: float) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool) or isinstance(expected, str):
        return expected == actual
    if not isinstance(expected, int | float) or not isinstance(actual, int | float):
        return False
    slack = tolerance + 1e-9 * max(1.0, abs(float(expected)))
    if point.type == "float32":
        slack += abs(float(expected)) * 2**-23 * (abs(point.scale.factor) if point.scale else 1.0)
    return math.isclose(float(expected), float(actual), abs_tol=slack, rel_tol=0.0)


# --- the ledger of what this node handled -------------------------------------------------------------


class Ledger:
    """Request ids this node handled, with their outcomes: a request is executed at most once."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "executed.json"
        self._lock = directory / "executed.lock"

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data: dict[str, dict[str, Any]] = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return data

    def get(self, request_id: str) -> dict[str, Any] | None:
        return self._load().get(request_id)

    def executed_times(self, command: str) -> list[float]:
        return [
            o["at"] / 1000
            for o in self._load().values()
            if o.get("command") == command and o.get("status") == "executed"
        ]

    def claim(self, request_id: str, outcome: dict[str, Any]) -> dict[str, Any] | None:
        """Record ``outcome`` for a request not seen before; the earlier outcome if it was."""
        with locked(self._lock):
            data = self._load()
            if request_id in data:
                return data[request_id]
            data[request_id] = outcome
            atomic_write(self.path, json.dumps(data, indent=1).encode())
            return None

    def settle(self, request_id: str, outcome: dict[str, Any]) -> None:
        with locked(self._lock):
            data = self._load()
            data[request_id] = outcome
            atomic_write(self.path, json.dumps(data, indent=1).encode())


class Executor:
    def __init__(
        self,
        contract_path: str | Path,
        data_dir: str | Path,
        *,
        node: str = "",
        conduit: str | None = None,
        clock: Callable[[], float] = time.time,
        tz: tzinfo | None = None,
        journal: JournalWriter | None = None,
        writers: Callable[[Device], Writer] = open_writer,
        poll_interval: float = 0.1,
    ) -> None:
        self.contract: Contract = load(contract_path).contract
        self.contract_hash = contract_version(contract_path)
        self.directory = authority_dir(data_dir)
        self.node = node
        self.conduit = conduit
        self.clock = clock
        self.tz = tz
        self.keyring = Keyring(self.directory)
        self.ledger = Ledger(self.directory)
        self.audit = AuditLog(self.directory, node=node, journal=journal, clock=clock)
        self.writers = writers
        self.poll_interval = poll_interval
        #: Requests being executed by this process right now.
        self._running: set[str] = set()

    def places(self, device: Device) -> bool:
        """Whether ``device`` is polled by this node (always, for a contract without nodes)."""
        return not self.contract.nodes or self.contract.node_of(device) == self.node

    def concerns(self, item: object) -> bool:
        """Whether a fetched entry is for a device of this node; entries for other OT nodes are left to
        them (not executed, not reported). Anything unreadable concerns us: it is refused and reported."""
        try:
            command = str(item["document"]["command"])  # type: ignore[index]
        except (KeyError, TypeError):
            return True
        found = next((c for c in self.contract.commands if c.id == command), None)
        point = self.contract.find_point(found.point) if found else None
        return point is None or self.places(point[0])

    def _outcome(self, doc_id: str, command: str, status: str, detail: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": doc_id,
            "command": command,
            "status": status,
            "detail": detail,
            "node": self.node,
            "at": round(self.clock() * 1000),
            **extra,
        }

    def verify(self, item: dict[str, Any]) -> tuple[CommandRequest, policy.Target]:
        """Everything that must hold before this node touches the device; :class:`policy.PolicyError`."""
        try:
            doc = CommandRequest.from_body(item.get("document"))
        except DocumentError as exc:
            raise policy.PolicyError(f"not a request document: {exc}") from None
        if doc.mode != "two-person":
            raise policy.PolicyError("a break-glass document is never fetched: break-glass runs on the OT node only")
        tgt = policy.check_document(self.contract, doc, self.contract_hash)
        if self.conduit is not None and tgt.command.conduit != self.conduit:
            raise policy.PolicyError(
                f"'{doc.command}' enters OT through conduit '{tgt.command.conduit}', not '{self.conduit}', "
                "the one this node fetched it from"
            )
        if not self.places(tgt.device):
            raise policy.PolicyError(
                f"device '{tgt.device.id}' is polled by node '{self.contract.node_of(tgt.device)}', not this one"
            )
        zone = self.contract.zone(tgt.device.zone)
        if zone is None or zone.side is not Side.OT:
            raise policy.PolicyError(
                f"device '{tgt.device.id}' is not in an OT zone; commands execute on the OT node only"
            )
        approvers: list[str] = []
        for raw in item.get("approvals") or []:
            try:
                person, fingerprint, signature = str(raw["person"]), str(raw["fingerprint"]), str(raw["signature"])
            except (KeyError, TypeError):
                raise policy.PolicyError("an approval without person, fingerprint and signature") from None
            problem = policy.approver_problem(self.contract, doc, person, approvers)
            problem = problem or self.keyring.check(person, fingerprint, PURPOSE_APPROVAL, doc.digest, signature)
            if problem:
                raise policy.PolicyError(f"approval refused: {problem}")
            approvers.append(person)
        missing = policy.quorum_problem(self.contract, doc, approvers)
        if missing:
            raise policy.PolicyError(f"not enough approvals: {missing}")
        now = self.clock()
        if now * 1000 >= doc.execute_by:
            raise policy.PolicyError(f"the execute window of request {doc.id} has closed")
        if now * 1000 < doc.created:
            raise policy.PolicyError(f"request {doc.id} was made in the future of this node's clock")
        problem = policy.timing_problem(tgt.command, now, self.ledger.executed_times(doc.command), self.tz)
        if problem:
            raise policy.PolicyError(problem)
        return doc, tgt

    async def execute(self, item: dict[str, Any]) -> dict[str, Any]:
        """Verify and execute one approved request; returns the outcome (also kept and audited)."""
        if not isinstance(item, dict):
            outcome = self._outcome("?", "?", "refused", "not a request entry")
            self._record("command.write.refused", outcome, Severity.HIGH)
            return outcome
        raw_doc = item.get("document")
        doc_id = str(raw_doc.get("id", "?")) if isinstance(raw_doc, dict) else "?"
        command = str(raw_doc.get("command", "?")) if isinstance(raw_doc, dict) else "?"
        earlier = self.ledger.get(doc_id)
        if earlier is not None:
            if earlier.get("status") == "executing" and doc_id not in self._running:
                # Claimed, never settled: the node stopped during the write. Nobody knows what the
                # device holds, so it is not written again; people must look.
                earlier = self._outcome(
                    doc_id,
                    command,
                    "failed",
                    "interrupted during execution (the node stopped); check the point's value",
                )
                self.ledger.settle(doc_id, earlier)
                self._record("command.outcome", earlier, Severity.HIGH)
            return earlier
        try:
            doc, tgt = self.verify(item)
        except policy.PolicyError as exc:
            outcome = self._outcome(doc_id, command, "refused", str(exc))
            self._record("command.write.refused", outcome, Severity.HIGH)
            return outcome
        return await self.execute_local(doc, tgt, Severity.MEDIUM)

    async def execute_local(self, doc: CommandRequest, tgt: policy.Target, severity: Severity) -> dict[str, Any]:
        """Audit, claim in the ledger, write, read back: for a request verified by the caller."""
        started = self._outcome(doc.id, doc.command, "executing", "")
        try:
            self.audit.append(
                "command.execute",
                doc.requester if doc.mode == "break-glass" else "node",
                doc.id,
                {"digest": doc.digest, "point": doc.point, "value": doc.value, "unit": doc.unit, "mode": doc.mode},
                severity,
                f"executing {doc.command} ({doc.mode}): {doc.point} = {doc.value} {doc.unit}",
            )
        except AuditUnavailable as exc:
            return self._outcome(doc.id, doc.command, "refused", str(exc))
        earlier = self.ledger.claim(doc.id, started)
        if earlier is not None:  # another executor took it between our check and now
            return earlier
        self._running.add(doc.id)
        try:
            outcome = await self._write(doc, tgt)
            self.ledger.settle(doc.id, outcome)
        finally:
            self._running.discard(doc.id)
        self._record("command.outcome", outcome, Severity.INFO if outcome["status"] == "executed" else Severity.HIGH)
        return outcome

    def _record(self, kind: str, outcome: dict[str, Any], severity: Severity) -> None:
        try:
            self.audit.append(
                kind, "node", outcome["id"], outcome, severity, f"{outcome['status']}: {outcome['detail']}"
            )
        except AuditUnavailable:
            log.error("the outcome of request %s could not be audited: %s", outcome["id"], outcome)

    async def _write(self, doc: CommandRequest, tgt: policy.Target) -> dict[str, Any]:
        point = tgt.point
        engineering = python_value(point, doc.value)
        observed = python_value(point, doc.observed)
        try:
            raw = to_raw(point, engineering)
        except Unrepresentable as exc:
            return self._outcome(doc.id, doc.command, "refused", str(exc))
        expected = to_engineering(point, _stored(point, raw))
        outcome: dict[str, Any] | None = None
        try:
            async with self.writers(tgt.device) as writer:
                outcome = await self._exchange(doc, tgt, writer, raw, expected, observed)
        except Exception as exc:
            if outcome is not None:  # the device was written; only closing it failed
                log.warning("closing %s after request %s: %s", tgt.device.id, doc.id, exc)
                return outcome
            # Opening the device failed before anything was sent (the exchange catches the driver's errors).
            return self._outcome(doc.id, doc.command, "failed", f"{tgt.device.id}: {exc}")
        assert outcome is not None
        return outcome

    async def _exchange(
        self, doc: CommandRequest, tgt: policy.Target, writer: Writer, raw: Value, expected: Value, observed: Value
    ) -> dict[str, Any]:
        """Read, compare with what the approvers saw, write, read back."""
        point, command = tgt.point, tgt.command
        try:
            current = to_engineering(point, await writer.read(point.id))
        except Exception as exc:
            return self._outcome(doc.id, doc.command, "failed", f"reading {doc.point} before writing: {exc}")
        if not matches(point, observed, current, command.tolerance):
            return self._outcome(
                doc.id,
                doc.command,
                "drift",
                f"{doc.point} is {current}, the approvers saw {doc.observed}; nothing written",
                before=current,
            )
        try:
            await writer.write(point.id, raw)
        except Exception as exc:
            after = await self._read_quietly(writer, point)
            return self._outcome(
                doc.id,
                doc.command,
                "failed",
                f"the write failed: {exc}; {doc.point} now reads {after}",
                before=current,
                after=after,
            )
        deadline = time.monotonic() + command.readback_timeout
        last: Value = None
        while True:
            last = await self._read_quietly(writer, point)
            if matches(point, expected, last, command.tolerance):
                return self._outcome(
                    doc.id,
                    doc.command,
                    "executed",
                    f"{doc.point} = {last} (was {current})",
                    before=current,
                    after=last,
                )
            if time.monotonic() >= deadline:
                return self._outcome(
                    doc.id,
                    doc.command,
                    "readback-mismatch",
                    f"wrote {doc.value}, {doc.point} reads {last} after {command.readback_timeout:g}s",
                    before=current,
                    after=last,
                )
            await asyncio.sleep(self.poll_interval)

    async def _read_quietly(self, writer: Writer, point: Point) -> Value:
        try:
            return to_engineering(point, await writer.read(point.id))
        except Exception:
            return None
