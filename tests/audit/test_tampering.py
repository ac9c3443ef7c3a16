"""A tampered audit log with the records of every part (refused writes, sign-ins, acknowledgements,
tokens, break-glass, checkpoints by time) is named at the record where it was tampered with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from otseam.audit.log import AuditLog, node_public_key, record_hash, record_login, verify_events, verify_log
from otseam.audit.refusals import Refusals
from otseam.audit.signing import PURPOSE_CHECKPOINT, fingerprint, sign
from otseam.core.records import Event
from tests.audit.test_checkpoints import Clock
from tests.control.authority.test_audit import Journal

KINDS = [
    "replica.write_attempt",
    "opcua.refused",
    "login.failed",
    "sparkplug.command.refused",
    "checkpoint",  # by time: 300 s after the first record
    "alert.ack",
    "token.create",
    "token.revoke",
    "breakglass.open",
    "login",
]


def written(tmp_path: Path) -> tuple[AuditLog, Journal]:
    """The records each part writes, through the parts' own ways of writing them."""
    clock, journal = Clock(), Journal()
    log = AuditLog(tmp_path / "authority", node="it-gateway", clock=clock, journal=journal, checkpoint_seconds=300)
    refusals = Refusals(log, "sinks")
    refusals.record(
        "replica.write_attempt", "modbus client", "replica/modbus", {"function": 6, "address": 100}, "refused"
    )
    refusals.record("opcua.refused", "mes", "opcua/ua", {"service": "Write"}, "refused")
    refusals.flush()
    clock.now += 100
    record_login(log, "it-lead", False, "127.0.0.1", "wrong password")
    clock.now += 100
    refusals.record("sparkplug.command.refused", "mqtt client", "edge1/plc1", {"metric": "level"}, "refused")
    refusals.close()
    clock.now += 100
    assert log.checkpoint_if_due() is not None  # a quiet log, signed by time
    for kind in ("alert.ack", "token.create", "token.revoke", "breakglass.open"):
        log.append(kind, "olga", "s1", {"note": kind})
    record_login(log, "olga", True, "127.0.0.1")
    assert [r["kind"] for r in log.records()] == KINDS
    return log, journal


def lines(log: AuditLog) -> list[str]:
    return log.path.read_text().splitlines()


def rewrite(log: AuditLog, text: list[str]) -> None:
    log.path.write_text("\n".join(text) + "\n")


def verdict_of(log: AuditLog) -> tuple[bool, str, int | None]:
    verdict = verify_log(log.path, log.head_path, node_public_key(log.directory))
    return verdict.ok, verdict.problem, verdict.first_bad_seq


def test_untouched_it_verifies(tmp_path: Path) -> None:
    log, journal = written(tmp_path)
    verdict = verify_log(log.path, log.head_path, node_public_key(log.directory))
    assert verdict.ok and verdict.records == 10 and verdict.checkpoints == 1, verdict.problem
    copy = [json.dumps({"kind": r.kind, "data": r.data}) for r in journal.records if isinstance(r, Event)]
    assert verify_events(copy, "it-gateway", node_public_key(log.directory)).ok


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        # A refused write made to look like a read: edited.
        (
            lambda t: [t[0].replace('"function":6', '"function":3'), *t[1:]],
            (False, "record 1 (line 1) was edited: its content does not match its hash", 1),
        ),
        # The refused OPC UA write removed.
        (lambda t: [t[0], *t[2:]], (False, "record 2 removed: line 2 holds record 3 after record 1", 2)),
        # The failed sign-in moved after the Sparkplug refusal.
        (
            lambda t: [t[0], t[1], t[3], t[2], *t[4:]],
            (False, "record 3 is not at line 3, where it belongs: reordered", 3),
        ),
        # The break-glass opening and the sign-in after it cut off.
        (lambda t: t[:8], (False, "truncated: the log ends at record 8, the signed head is record 10", 9)),
        # The token revocation's actor changed and the chain re-hashed from there by hand: the head says so.
        ("rehash", (False, "record 10 differs from the one the signed head names: edited", 10)),
    ],
)
def test_each_tampering_is_named(tmp_path: Path, tamper: object, expected: tuple[bool, str, int | None]) -> None:
    log, _ = written(tmp_path)
    text = lines(log)
    if tamper == "rehash":
        records = [json.loads(line) for line in text]
        records[7]["actor"] = "nobody"
        for i in range(7, len(records)):
            records[i]["prev"] = records[i - 1]["hash"]
            records[i]["hash"] = record_hash(records[i])
        text = [json.dumps(r) for r in records]
    else:
        text = tamper(text)  # type: ignore[operator]
    rewrite(log, text)
    assert verdict_of(log) == expected


def test_a_checkpoint_forged_with_another_key_is_named(tmp_path: Path) -> None:
    log, _ = written(tmp_path)
    records = [json.loads(line) for line in lines(log)]
    forger = Ed25519PrivateKey.generate()
    checkpoint = records[4]
    checkpoint["data"]["key"] = fingerprint(forger.public_key())
    checkpoint["data"]["signature"] = sign(forger, PURPOSE_CHECKPOINT, "0" * 64)
    for i in range(4, len(records)):
        records[i]["prev"] = records[i - 1]["hash"]
        records[i]["hash"] = record_hash(records[i])
    rewrite(log, [json.dumps(r) for r in records])
    assert verdict_of(log) == (False, "checkpoint record 5 (line 5): signed by another key than the node's", 5)


def test_the_copy_in_the_journal_names_an_edited_refusal(tmp_path: Path) -> None:
    log, journal = written(tmp_path)
    copy = [json.dumps({"kind": r.kind, "data": r.data}) for r in journal.records if isinstance(r, Event)]
    edited = json.loads(copy[3])
    assert edited["kind"] == "audit.sparkplug.command.refused"
    edited["data"]["data"]["metric"] = "harmless"
    copy[3] = json.dumps(edited)
    verdict = verify_events(copy, "it-gateway", node_public_key(log.directory))
    assert not verdict.ok and verdict.problem.startswith("record 4 (line 4) was edited")
