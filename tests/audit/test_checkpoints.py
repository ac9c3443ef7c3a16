"""Checkpoints by time: a quiet audit log is signed too, and a forged time checkpoint is named."""

from __future__ import annotations

import json
from pathlib import Path

from otseam.audit.log import AuditLog, node_public_key, verify_events, verify_log
from tests.control.authority.test_audit import Journal


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def kinds(log: AuditLog) -> list[str]:
    return [r["kind"] for r in log.records()]


def test_a_quiet_log_is_signed_once_its_oldest_unsigned_record_is_old_enough(tmp_path: Path) -> None:
    clock, journal = Clock(), Journal()
    log = AuditLog(tmp_path, node="ot-edge", clock=clock, journal=journal, checkpoint_every=100, checkpoint_seconds=60)
    assert log.checkpoint_if_due() is None  # an empty log has nothing to sign
    log.append("replica.write_attempt", "modbus client", "replica", {})
    clock.now += 30
    log.append("opcua.refused", "mes", "opcua", {})
    clock.now += 29.999
    assert log.checkpoint_if_due() is None
    clock.now += 0.001  # 60 s after the first record no checkpoint covers
    checkpoint = log.checkpoint_if_due()
    assert checkpoint is not None and checkpoint["data"]["through"] == 2
    assert log.checkpoint_if_due() is None  # covered: nothing waits
    clock.now += 3600
    assert log.checkpoint_if_due() is None  # quiet and signed: no checkpoint of nothing
    assert kinds(log) == ["replica.write_attempt", "opcua.refused", "checkpoint"]
    verdict = verify_log(log.path, log.head_path, node_public_key(log.directory))
    assert verdict.ok and verdict.checkpoints == 1, verdict.problem
    # The copy in the journal is covered too: the IT side holds the signed checkpoint.
    lines = [json.dumps({"kind": r.kind, "data": r.data}) for r in journal.records]  # type: ignore[union-attr]
    verdict = verify_events(lines, "ot-edge", node_public_key(log.directory))
    assert verdict.ok and verdict.notes == [], verdict.notes


def trickle(log: AuditLog, clock: Clock, count: int, step: float, *, tick: bool = False) -> None:
    """``count`` records ``step`` seconds apart; ``tick``: the node's housekeeping runs between them."""
    for _ in range(count):
        log.append("login", "olga", "console", {})
        clock.now += step
        if tick:
            log.checkpoint_if_due()


def test_a_steady_trickle_gets_a_checkpoint_by_time_not_only_by_count(tmp_path: Path) -> None:
    clock = Clock()
    log = AuditLog(tmp_path, node="ot-edge", clock=clock, checkpoint_every=1000, checkpoint_seconds=60)
    trickle(log, clock, 7, 20)
    # Records at 0, 20, 40, 60 s: the fourth is 60 s after the first unsigned one, a checkpoint follows it.
    assert kinds(log) == ["login"] * 4 + ["checkpoint"] + ["login"] * 3
    assert list(log.records())[4]["data"]["through"] == 4


def test_checkpoints_by_time_are_verified_like_the_others(tmp_path: Path) -> None:
    clock = Clock()
    log = AuditLog(tmp_path, node="ot-edge", clock=clock, checkpoint_every=0, checkpoint_seconds=10)
    trickle(log, clock, 3, 11, tick=True)
    text = log.path.read_text().splitlines()
    assert [json.loads(line)["kind"] for line in text].count("checkpoint") == 3
    forged = json.loads(text[3])
    assert forged["kind"] == "checkpoint"
    forged["data"]["signature"] = json.loads(text[1])["data"]["signature"]  # an older, genuine signature
    text[3] = json.dumps(forged)
    log.path.write_text("\n".join(text) + "\n")
    verdict = verify_log(log.path, log.head_path, node_public_key(log.directory))
    assert not verdict.ok and verdict.first_bad_seq == 4
    assert verdict.problem == "record 4 (line 4) was edited: its content does not match its hash"


def test_count_only_when_time_is_off(tmp_path: Path) -> None:
    clock = Clock()
    log = AuditLog(tmp_path, node="ot-edge", clock=clock, checkpoint_every=3, checkpoint_seconds=0)
    log.append("login", "olga", "console", {})
    clock.now += 10**6
    assert log.checkpoint_if_due() is None
    log.append("login", "olga", "console", {})
    log.append("login", "olga", "console", {})
    assert kinds(log) == ["login"] * 3 + ["checkpoint"]
