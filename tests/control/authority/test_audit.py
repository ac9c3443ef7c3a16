"""The audit log: every tampering is named at the record where it happened; a log that cannot be
written refuses the action."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from otseam.audit.log import AuditLog, AuditUnavailable, node_public_key, syslog_line, verify_log
from otseam.control.authority.service import AuthorityError
from otseam.core.records import Event, Record
from tests.control.authority.helpers import Clock, identity, service


class Journal:
    """A journal writer that keeps what it is given (the real one is the node's)."""

    source = "test"

    def __init__(self) -> None:
        self.records: list[Record] = []

    def append(self, records: list[Record]) -> int:  # type: ignore[override]
        self.records.extend(records)
        return len(self.records)


def written(tmp_path: Path, count: int = 12, every: int = 5) -> AuditLog:
    log = AuditLog(tmp_path / "a", node="ot-edge", clock=Clock(), checkpoint_every=every)
    for i in range(count):
        log.append("command.request", "it-lead", f"r{i}", {"i": i})
    return log


def lines(log: AuditLog) -> list[str]:
    return log.path.read_text().splitlines()


def check(log: AuditLog) -> tuple[bool, str, int | None]:
    verdict = verify_log(log.path, log.head_path, node_public_key(log.directory))
    return verdict.ok, verdict.problem, verdict.first_bad_seq


def test_an_untouched_log_verifies_with_signed_checkpoints(tmp_path: Path) -> None:
    log = written(tmp_path)
    verdict = verify_log(log.path, log.head_path, node_public_key(log.directory))
    # 12 records plus a checkpoint after records 5 and 11 (the checkpoint itself is record 6, 12).
    assert verdict.ok and verdict.records == 14 and verdict.checkpoints == 2, verdict.problem


def test_an_edited_record_is_named(tmp_path: Path) -> None:
    log = written(tmp_path)
    text = lines(log)
    text[3] = text[3].replace('"actor":"it-lead"', '"actor":"ot-lead"')
    log.path.write_text("\n".join(text) + "\n")
    assert check(log) == (False, "record 4 (line 4) was edited: its content does not match its hash", 4)


def test_an_edited_record_with_a_recomputed_hash_is_named_by_its_successor(tmp_path: Path) -> None:
    from otseam.audit.log import record_hash

    log = written(tmp_path)
    text = lines(log)
    record = json.loads(text[2])
    record["data"] = {"i": 99}
    record["hash"] = record_hash(record)
    text[2] = json.dumps(record)
    log.path.write_text("\n".join(text) + "\n")
    ok, problem, seq = check(log)
    assert not ok and seq == 3 and problem.startswith("record 3 was edited or replaced")


def test_a_removed_record_is_named(tmp_path: Path) -> None:
    log = written(tmp_path)
    text = lines(log)
    del text[6]
    log.path.write_text("\n".join(text) + "\n")
    assert check(log) == (False, "record 7 removed: line 7 holds record 8 after record 6", 7)


def test_reordered_records_are_named(tmp_path: Path) -> None:
    log = written(tmp_path)
    text = lines(log)
    text[7], text[8] = text[8], text[7]
    log.path.write_text("\n".join(text) + "\n")
    assert check(log) == (False, "record 8 is not at line 8, where it belongs: reordered", 8)


def test_truncation_is_named_against_the_signed_head(tmp_path: Path) -> None:
    log = written(tmp_path)
    text = lines(log)
    log.path.write_text("\n".join(text[:10]) + "\n")
    assert check(log) == (False, "truncated: the log ends at record 10, the signed head is record 14", 11)
    # Cut inside a line: the damaged last line is named.
    log.path.write_text("\n".join(text) + "\n" + text[0][:20])
    ok, problem, _ = check(log)
    assert not ok and "line 15" in problem
    # A head that is deleted is missing, not silently accepted.
    log.path.write_text("\n".join(text) + "\n")
    log.head_path.unlink()
    assert check(log)[1].startswith("the signed head")


def test_a_forged_head_is_refused(tmp_path: Path) -> None:
    log = written(tmp_path)
    head = json.loads(log.head_path.read_text())
    text = lines(log)
    log.path.write_text("\n".join(text[:10]) + "\n")
    head.update(seq=10, hash=json.loads(text[9])["hash"])
    log.head_path.write_text(json.dumps(head))
    assert check(log)[1] == "the signed head's signature does not verify with the node's audit key"


def test_records_cross_into_the_journal_as_events(tmp_path: Path) -> None:
    journal = Journal()
    log = AuditLog(tmp_path / "a", node="ot-edge", clock=Clock(), journal=journal, checkpoint_every=2)
    log.append("login.failed", "it-lead", "console", {"address": "127.0.0.1"})
    log.append("command.request", "it-lead", "r1", {})
    kinds = [r.kind for r in journal.records if isinstance(r, Event)]
    assert kinds == ["audit.login.failed", "audit.command.request", "audit.checkpoint"]
    assert json.loads(lines(log)[0])["hash"] == journal.records[0].data["hash"]  # type: ignore[union-attr]


def test_logins_and_failed_logins_are_records(tmp_path: Path) -> None:
    from otseam.audit.log import record_login

    log = AuditLog(tmp_path / "a", node="dmz", clock=Clock())
    record_login(log, "it-lead", True, "127.0.0.1")
    record_login(log, "it-lead", False, "127.0.0.1", "wrong password")
    records = list(log.records())
    assert [(r["kind"], r["severity"]) for r in records] == [("login", "info"), ("login.failed", "medium")]
    assert records[1]["data"]["detail"] == "wrong password"


def test_syslog_export_is_rfc5424(tmp_path: Path) -> None:
    log = written(tmp_path, 2)
    record = next(log.records())
    record["message"] = 'say "hi"'
    record["subject"] = 'a]b"c'
    line = syslog_line(record, "ot edge", "seam")
    pattern = (
        r"^<110>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z otedge seam - command\.request "
        r'\[seam@32473 seq="1" hash="[0-9a-f]{64}" prev="0{64}" actor="it-lead" subject="a\\]b\\"c" node="ot-edge"\] '
        "\ufeff"
    )
    assert re.match(pattern, line), line


def test_when_the_audit_log_cannot_be_written_nothing_happens(tmp_path: Path) -> None:
    svc, _, _ = service(tmp_path, Clock())
    svc.audit.directory.mkdir(parents=True, exist_ok=True)
    # A full disk: every write to /dev/full fails with ENOSPC.
    svc.audit.path.unlink(missing_ok=True)
    svc.audit.path.symlink_to("/dev/full")
    with pytest.raises(AuthorityError, match="audit log cannot be written") as raised:
        svc.request(identity("it-analyst"), "set-speed", 60, "tariff", 50)
    assert raised.value.status == 503
    assert svc.store.all() == []
    with pytest.raises(AuditUnavailable):
        svc.audit.append("x", "y", "z")


def test_the_copy_that_crossed_in_the_journal_verifies_on_its_own(tmp_path: Path) -> None:
    from otseam.audit.log import verify_events

    journal = Journal()
    log = AuditLog(tmp_path / "a", node="ot-edge", clock=Clock(), journal=journal, checkpoint_every=4)
    for i in range(10):
        log.append("command.execute", "node", f"r{i}", {"i": i})
    public = node_public_key(log.directory)
    lines = [json.dumps({"kind": r.kind, "data": r.data}) for r in journal.records if isinstance(r, Event)]
    # Delivered at least once, from record 3 on, out of order: still a chain.
    copy = lines[2:] + lines[5:7]
    copy.reverse()
    verdict = verify_events(copy, "ot-edge", public)
    # Records 1-4, 6-8, 10-12 and checkpoints 5, 9, 13 (every fourth record is followed by one).
    assert verdict.ok and verdict.checkpoints == 3 and verdict.records == 11, verdict.problem
    assert verdict.notes == ["the copy starts at record 3"]
    verdict = verify_events(lines[:11], "ot-edge", public)
    assert verdict.notes == ["records 10 to 11 are not covered by a signed checkpoint yet"]
    edited = json.loads(lines[6])
    edited["data"]["data"]["i"] = 99
    verdict = verify_events([*lines[:6], json.dumps(edited), *lines[7:]], "ot-edge", public)
    assert not verdict.ok and verdict.problem.startswith("record 7 (line 7) was edited")
    verdict = verify_events([*lines, json.dumps(edited)], "ot-edge", public)
    assert not verdict.ok and verdict.problem == "record 7 arrived twice with different content (line 14)"
