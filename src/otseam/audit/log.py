"""The tamper-evident audit log of a node.

One JSON record per line in ``<authority dir>/audit.log``. Each record carries its sequence number,
the SHA-256 of the record before it (``prev``) and its own hash over the canonical encoding of
everything else, so an edited, removed or reordered record breaks the chain where it happened. After
every record the node signs the head (sequence and hash) with its own Ed25519 key into
``audit.head``: a log cut short no longer reaches the signed head. A signed checkpoint is also written
into the chain itself every ``checkpoint_every`` records, and ``checkpoint_seconds`` after the first
record it does not cover yet (at the next append, or when the node's housekeeping calls
:meth:`AuditLog.checkpoint_if_due`), so a quiet log is signed too. Every record is appended to the
node's journal as an event (kind ``audit.<what>``), so copies cross the diode and the IT side holds
signed heads the OT node cannot later take back.

Fail closed: :meth:`AuditLog.append` raises :class:`AuditUnavailable` when the record cannot be made
durable, and every caller that would change something (a request, an approval, a write to a PLC)
refuses to go on.

What this does not do: a person with the node's private key and write access to its files can rewrite
the whole log and sign a new head. The copies that crossed the diode (and their checkpoints) are what
shows it then; see docs/security.md.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from otseam.audit.canonical import CanonicalError, canonical, decimal_text, digest
from otseam.audit.files import atomic_write, locked
from otseam.audit.signing import PURPOSE_CHECKPOINT, fingerprint, sign, verify
from otseam.core.plugins import JournalWriter
from otseam.core.records import Event, Severity

log = logging.getLogger("otseam.audit")

GENESIS = "0" * 64
LOG_NAME = "audit.log"
HEAD_NAME = "audit.head"
NODE_KEY = "node.key"


def authority_dir(data_dir: str | Path) -> Path:
    """Where a node keeps its audit log, its signing key and the authority's files."""
    return Path(data_dir) / "authority"


class AuditUnavailable(RuntimeError):
    """The audit record could not be written: the action it records must not happen."""


def node_key(directory: Path) -> Ed25519PrivateKey:
    """This node's audit signing key, made on first use (mode 0600)."""
    path = directory / NODE_KEY
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        directory.mkdir(parents=True, exist_ok=True)
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        atomic_write(path, pem, 0o600)
        public = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        atomic_write(directory / (NODE_KEY + ".pub"), public, 0o644)
        return private
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditUnavailable(f"{path} is not an Ed25519 key")
    return key


def node_public_key(directory: Path, name: str = NODE_KEY + ".pub") -> Ed25519PublicKey:
    key = serialization.load_pem_public_key((directory / name).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the node's audit public key is not Ed25519")
    return key


def plain(value: Any) -> Any:
    """``value`` with every float written as its shortest decimal text, so it has a canonical form."""
    if isinstance(value, float):
        return decimal_text(value) if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def record_hash(record: dict[str, Any]) -> str:
    return digest({k: v for k, v in record.items() if k != "hash"})


def head_digest(seq: int, hash_: str) -> str:
    return digest({"seq": seq, "hash": hash_})


class AuditLog:
    """Append-only, hash-chained, with a signed head. Safe across threads and processes (file lock)."""

    def __init__(
        self,
        directory: str | Path,
        *,
        node: str = "",
        journal: JournalWriter | None = None,
        clock: Callable[[], float] = time.time,
        checkpoint_every: int = 100,
        checkpoint_seconds: float = 300.0,
        log_path: str | Path | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.path = Path(log_path) if log_path is not None else self.directory / LOG_NAME
        self.head_path = self.directory / HEAD_NAME
        self.node = node
        self.journal = journal
        self.clock = clock
        self.checkpoint_every = checkpoint_every
        #: A checkpoint once the oldest record no checkpoint covers is this old (0: by count only).
        self.checkpoint_seconds = checkpoint_seconds
        self._key: Ed25519PrivateKey | None = None

    def _signing_key(self) -> Ed25519PrivateKey:
        if self._key is None:
            self._key = node_key(self.directory)
        return self._key

    def _tail(self) -> tuple[int, str]:
        """The last record's sequence number and hash (0 and the genesis hash for an empty log)."""
        try:
            with open(self.path, "rb") as file:
                file.seek(0, os.SEEK_END)
                size = file.tell()
                if size == 0:
                    return 0, GENESIS
                back = 65536
                while True:
                    back = min(size, back)
                    file.seek(size - back)
                    chunk = file.read()
                    # The whole last line is in the chunk once a newline precedes it (or the file starts).
                    if back == size or b"\n" in chunk.rstrip(b"\n"):
                        break
                    back *= 4
        except FileNotFoundError:
            return 0, GENESIS
        if not chunk.endswith(b"\n"):
            raise ValueError("its last line is incomplete (cut off by a crash or edited); run 'seam audit verify'")
        try:
            last = json.loads(chunk.rstrip(b"\n").rsplit(b"\n", 1)[-1])
            return int(last["seq"]), str(last["hash"])
        except (ValueError, KeyError, TypeError):
            raise ValueError("its last record is not readable; run 'seam audit verify'") from None

    def append(
        self,
        kind: str,
        actor: str,
        subject: str,
        data: dict[str, Any] | None = None,
        severity: Severity = Severity.INFO,
        message: str = "",
    ) -> dict[str, Any]:
        """Write one record durably and return it; :class:`AuditUnavailable` if that is impossible."""
        try:
            with locked(self.directory / "audit.lock"):
                record = self._append_locked(kind, actor, subject, data or {}, severity, message)
                written = [record]
                seq = int(record["seq"])
                if (self.checkpoint_every and seq % self.checkpoint_every == 0) or self._time_due():
                    written.append(self._append_checkpoint(record))
        except AuditUnavailable:
            raise
        except (OSError, ValueError, CanonicalError) as exc:
            log.error("audit log %s cannot be written (%s): refusing the action", self.path, exc)
            raise AuditUnavailable(f"the audit log cannot be written ({exc}); nothing was done") from None
        for item in written:  # checkpoints cross too: the IT side then holds signed heads
            self._to_journal(item)
        return record

    def checkpoint_if_due(self) -> dict[str, Any] | None:
        """Sign a checkpoint if records wait for one longer than ``checkpoint_seconds``; the checkpoint
        record, or None when none is due. Cheap when nothing is due (one small file read), so the node
        calls it on every housekeeping tick. Raises :class:`AuditUnavailable` like :meth:`append`."""
        if not self.checkpoint_seconds or not self._time_due():
            return None
        try:
            with locked(self.directory / "audit.lock"):
                if not self._time_due():  # another writer signed it meanwhile
                    return None
                seq, hash_ = self._tail()
                checkpoint = self._append_checkpoint({"seq": seq, "hash": hash_})
        except (OSError, ValueError, CanonicalError) as exc:
            log.error("audit log %s: the due checkpoint cannot be written (%s)", self.path, exc)
            raise AuditUnavailable(f"the audit log cannot be written ({exc})") from None
        self._to_journal(checkpoint)
        return checkpoint

    def _time_due(self) -> bool:
        """True when the oldest record not covered by a checkpoint is ``checkpoint_seconds`` old."""
        if not self.checkpoint_seconds:
            return False
        since = self._head().get("unsigned_since")
        return isinstance(since, int) and self.clock() * 1000 - since >= self.checkpoint_seconds * 1000

    def _head(self) -> dict[str, Any]:
        try:
            head = json.loads(self.head_path.read_bytes())
        except (OSError, ValueError):
            return {}
        return head if isinstance(head, dict) else {}

    def _append_checkpoint(self, record: dict[str, Any]) -> dict[str, Any]:
        key = self._signing_key()
        signed = head_digest(int(record["seq"]), str(record["hash"]))
        checkpoint = {
            "through": record["seq"],
            "head": record["hash"],
            "key": fingerprint(key.public_key()),
            "signature": sign(key, PURPOSE_CHECKPOINT, signed),
        }
        return self._append_locked("checkpoint", "node", self.node, checkpoint, Severity.INFO, "")

    def _append_locked(
        self, kind: str, actor: str, subject: str, data: dict[str, Any], severity: Severity, message: str
    ) -> dict[str, Any]:
        seq, prev = self._tail()
        record: dict[str, Any] = {
            "seq": seq + 1,
            "ts": round(self.clock() * 1000),
            "node": self.node,
            "kind": kind,
            "actor": actor,
            "subject": subject,
            "severity": severity.label,
            "message": message,
            "data": plain(data),
            "prev": prev,
        }
        record["hash"] = record_hash(record)
        line = canonical(record) + b"\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(f"short write ({written} of {len(line)} bytes)")
            os.fsync(fd)
        finally:
            os.close(fd)
        key = self._signing_key()
        # When the oldest record not yet covered by a checkpoint was written (a scheduling hint for the
        # time-based checkpoint, outside the signature: verification never reads it).
        since = self._head().get("unsigned_since") if seq else None
        head = {
            "seq": record["seq"],
            "hash": record["hash"],
            "key": fingerprint(key.public_key()),
            "signature": sign(key, PURPOSE_CHECKPOINT, head_digest(record["seq"], record["hash"])),
            "unsigned_since": None if kind == "checkpoint" else since if isinstance(since, int) else record["ts"],
        }
        atomic_write(self.head_path, json.dumps(head).encode())
        return record

    def _to_journal(self, record: dict[str, Any]) -> None:
        if self.journal is None:
            return
        event = Event(
            record["ts"] / 1000,
            f"audit.{record['kind']}",
            record["subject"] or self.node or "authority",
            Severity[str(record["severity"]).upper()],
            record["message"] or f"{record['actor']}: {record['kind']} {record['subject']}",
            dict(record),
        )
        try:
            self.journal.append([event])
        except Exception as exc:  # the local log is the record; the journal is its copy
            log.error("audit record %s not appended to the journal: %s", record["seq"], exc)

    def records(self) -> Iterator[dict[str, Any]]:
        try:
            with open(self.path, encoding="utf-8") as file:
                for line in file:
                    if line.strip():
                        yield json.loads(line)
        except FileNotFoundError:
            return


def record_login(log: AuditLog, person: str, succeeded: bool, address: str = "", detail: str = "") -> None:
    """A console or API login, as the console records it (raises :class:`AuditUnavailable`: a login that
    cannot be recorded should be refused)."""
    kind = "login" if succeeded else "login.failed"
    severity = Severity.INFO if succeeded else Severity.MEDIUM
    message = f"{person or 'unknown user'} {'logged in' if succeeded else 'failed to log in'}"
    log.append(kind, person, address or "console", {"address": address, "detail": detail}, severity, message)


# --- verification ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Verdict:
    ok: bool
    records: int = 0
    checkpoints: int = 0
    #: The first problem, naming the record (sequence number and line) where the log stops being true.
    problem: str = ""
    first_bad_seq: int | None = None
    notes: list[str] = field(default_factory=list)


def _walk(
    parsed: list[tuple[int, dict[str, Any] | None]], first: int, first_prev: str, public: Ed25519PublicKey | None
) -> tuple[Verdict, dict[int, str]]:
    """Check the chain of ``parsed`` (line number, record) from sequence ``first`` whose ``prev`` is
    ``first_prev``: every hash, every link, every checkpoint and its signature."""
    seqs = {item["seq"] for _, item in parsed if item is not None}
    verdict = Verdict(ok=True)
    expected, prev = first, first_prev
    by_seq: dict[int, str] = {}

    for number, item in parsed:
        if item is None:
            return _failed(
                verdict,
                by_seq,
                expected,
                f"line {number} (where record {expected} belongs) is not a readable record: edited",
            )
        seq = item["seq"]
        if seq < expected:
            return _failed(
                verdict, by_seq, seq, f"record {seq} (line {number}) comes after record {expected - 1}: reordered"
            )
        if seq > expected:
            if expected in seqs:
                return _failed(
                    verdict, by_seq, expected, f"record {expected} is not at line {number}, where it belongs: reordered"
                )
            missing = f"record {expected}" if seq == expected + 1 else f"records {expected} to {seq - 1}"
            return _failed(
                verdict,
                by_seq,
                expected,
                f"{missing} removed: line {number} holds record {seq} after record {expected - 1}",
            )
        if record_hash(item) != item.get("hash"):
            return _failed(
                verdict, by_seq, seq, f"record {seq} (line {number}) was edited: its content does not match its hash"
            )
        if item.get("prev") != prev:
            return _failed(
                verdict,
                by_seq,
                seq - 1,
                f"record {seq - 1} was edited or replaced: record {seq} (line {number}) was chained to another hash",
            )
        if item.get("kind") == "checkpoint":
            problem = _checkpoint_problem(item, by_seq, public)
            if problem:
                return _failed(verdict, by_seq, seq, f"checkpoint record {seq} (line {number}): {problem}")
            verdict.checkpoints += 1
        by_seq[seq] = item["hash"]
        prev = item["hash"]
        expected += 1
    verdict.records = expected - first
    return verdict, by_seq


def _failed(verdict: Verdict, by_seq: dict[int, str], seq: int | None, text: str) -> tuple[Verdict, dict[int, str]]:
    verdict.ok, verdict.problem, verdict.first_bad_seq = False, text, seq
    return verdict, by_seq


def verify_log(log_path: str | Path, head_path: str | Path | None, public: Ed25519PublicKey | None) -> Verdict:
    """Walk the chain and name the first record edited, removed, reordered, or where the log was cut."""
    log_path = Path(log_path)
    try:
        lines = log_path.read_bytes().split(b"\n")
    except FileNotFoundError:
        lines = []
    if lines and lines[-1] == b"":
        lines.pop()
    parsed: list[tuple[int, dict[str, Any] | None]] = []
    for number, raw in enumerate(lines, 1):
        try:
            item = json.loads(raw)
            if not isinstance(item, dict) or not isinstance(item.get("seq"), int):
                item = None
        except ValueError:
            item = None
        parsed.append((number, item))
    verdict, by_seq = _walk(parsed, 1, GENESIS, public)
    if not verdict.ok:
        return verdict

    def fail(seq: int | None, text: str) -> Verdict:
        verdict.ok, verdict.problem, verdict.first_bad_seq = False, text, seq
        return verdict

    if head_path is None:
        verdict.notes.append("no signed head given: a log cut short after its last record cannot be detected")
        return verdict
    try:
        head = json.loads(Path(head_path).read_text(encoding="utf-8"))
        head_seq, head_hash = int(head["seq"]), str(head["hash"])
    except FileNotFoundError:
        if verdict.records == 0:
            return verdict
        return fail(None, f"the signed head {head_path} is missing: the log cannot be shown complete")
    except (ValueError, KeyError, TypeError):
        return fail(None, f"the signed head {head_path} is not readable")
    if public is not None and not verify(
        public, PURPOSE_CHECKPOINT, head_digest(head_seq, head_hash), head.get("signature", "")
    ):
        return fail(None, "the signed head's signature does not verify with the node's audit key")
    if head_seq > verdict.records:
        return fail(
            verdict.records + 1,
            f"truncated: the log ends at record {verdict.records}, the signed head is record {head_seq}",
        )
    if by_seq.get(head_seq) != head_hash:
        return fail(head_seq, f"record {head_seq} differs from the one the signed head names: edited")
    if head_seq < verdict.records:
        return fail(head_seq + 1, f"records after {head_seq} are not covered by the signed head: appended by hand")
    return verdict


def _checkpoint_problem(item: dict[str, Any], by_seq: dict[int, str], public: Ed25519PublicKey | None) -> str:
    data = item.get("data") or {}
    through, head = data.get("through"), data.get("head")
    if not isinstance(through, int) or by_seq.get(through) != head:
        return f"it names record {through} with a hash that record does not have"
    if public is not None:
        if data.get("key") != fingerprint(public):
            return "signed by another key than the node's"
        if not verify(public, PURPOSE_CHECKPOINT, head_digest(through, str(head)), str(data.get("signature", ""))):
            return "its signature does not verify"
    return ""


def verify_events(lines: Iterable[str], node: str, public: Ed25519PublicKey | None) -> Verdict:
    """Verify the audit records of ``node`` that crossed in the journal as events (one JSON event per
    line, as the ``file`` sink writes them, with the record in ``data``).

    Delivery is at least once and may start anywhere in the chain: repeats of a record are folded (a
    repeat that differs is tampering), the records are taken in sequence order and checked from the
    first one present. Records after the last signed checkpoint are reported as not yet covered by one.
    """
    found: dict[int, dict[str, Any]] = {}
    where: dict[int, int] = {}
    for number, line in enumerate(lines, 1):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict) or not str(event.get("kind", "")).startswith("audit."):
            continue
        record = event.get("data")
        if not isinstance(record, dict) or record.get("node") != node or not isinstance(record.get("seq"), int):
            continue
        seq = record["seq"]
        if seq in found and found[seq] != record:
            return Verdict(
                ok=False,
                problem=f"record {seq} arrived twice with different content (line {number})",
                first_bad_seq=seq,
            )
        found[seq] = record
        where.setdefault(seq, number)
    if not found:
        return Verdict(ok=False, problem=f"no audit records of node {node!r} in these events")
    ordered = [(seq, found[seq]) for seq in sorted(found)]
    first = ordered[0][1]
    parsed: list[tuple[int, dict[str, Any] | None]] = [(where[seq], record) for seq, record in ordered]
    verdict, _ = _walk(parsed, first["seq"], str(first.get("prev")), public)
    if verdict.ok:
        checkpoints = [seq for seq, r in ordered if r.get("kind") == "checkpoint"]
        covered = checkpoints[-1] if checkpoints else 0
        last = ordered[-1][0]
        if first["seq"] != 1:
            verdict.notes.append(f"the copy starts at record {first['seq']}")
        if covered < last:
            verdict.notes.append(f"records {covered + 1} to {last} are not covered by a signed checkpoint yet")
    return verdict


# --- export -----------------------------------------------------------------------------------------

#: RFC 5424 facility 13, "log audit".
FACILITY_AUDIT = 13
_SYSLOG_SEVERITY = {"info": 6, "low": 5, "medium": 4, "high": 3, "critical": 2}
#: The enterprise number RFC 5612 reserves for documentation; replace with your own if you have one.
SD_ID = "seam@32473"


def _sd_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _printable(text: str, limit: int) -> str:
    cleaned = "".join(c for c in text if 33 <= ord(c) <= 126)
    return (cleaned or "-")[:limit]


def syslog_line(record: dict[str, Any], hostname: str, app: str = "seam") -> str:
    """One record as an RFC 5424 message (UTF-8 MSG with BOM, structured data naming the chain)."""
    severity = _SYSLOG_SEVERITY.get(str(record.get("severity")), 6)
    moment = datetime.fromtimestamp(int(record["ts"]) / 1000, UTC)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    params = {
        "seq": str(record["seq"]),
        "hash": str(record["hash"]),
        "prev": str(record["prev"]),
        "actor": str(record.get("actor", "")),
        "subject": str(record.get("subject", "")),
        "node": str(record.get("node", "")),
    }
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_escape(v)}"' for k, v in params.items()) + "]"
    msg = record.get("message") or ""
    body = json.dumps({"message": msg, "data": record.get("data", {})}, ensure_ascii=False, sort_keys=True)
    return (
        f"<{FACILITY_AUDIT * 8 + severity}>1 {stamp} {_printable(hostname, 255)} {_printable(app, 48)} - "
        f"{_printable(str(record.get('kind', '')), 32)} {sd} \ufeff{body}"
    )
