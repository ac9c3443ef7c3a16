"""Refused writes on record: in order, off the event loop, bounded, and never silent when unrecordable."""

from __future__ import annotations

from pathlib import Path

from otseam.audit.files import locked
from otseam.audit.log import AuditLog, node_public_key, verify_log
from otseam.audit.refusals import Refusals
from tests.control.authority.test_audit import Journal


def test_refusals_are_chained_in_the_order_they_happened(tmp_path: Path) -> None:
    journal = Journal()
    audit = AuditLog(tmp_path / "authority", node="it-gateway", journal=journal)
    refusals = Refusals(audit, "test")
    for address in range(5):
        refusals.record("replica.write_attempt", "modbus client", "replica", {"address": address}, "refused")
    refusals.close()
    assert [r["data"]["address"] for r in audit.records()] == [0, 1, 2, 3, 4]
    assert refusals.stats.recorded == 5 and refusals.stats.unrecorded == 0
    assert verify_log(audit.path, audit.head_path, node_public_key(audit.directory)).ok
    assert [getattr(r, "kind", "") for r in journal.records] == ["audit.replica.write_attempt"] * 5


def test_a_flood_is_folded_into_a_counted_record(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "authority", node="it-gateway")
    refusals = Refusals(audit, "test", limit=3)
    # Hold the log's lock as another writer would: the worker waits, the refusals pile up.
    with locked(audit.directory / "audit.lock"):
        for address in range(10):
            refusals.record("opcua.refused", "mes", "opcua", {"address": address}, "refused")
        assert refusals.stats.folded == 7
    refusals.flush()
    records = list(audit.records())
    assert [r["data"]["address"] for r in records] == [0, 1, 2, 2]
    assert records[-1]["data"]["folded"] == 7 and records[-1]["message"].startswith("7 more refusals")
    refusals.close()


def test_what_a_client_sent_is_bounded(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "authority", node="it-gateway")
    refusals = Refusals(audit, "test")
    huge = "x" * 100_000
    refusals.record("login.failed", huge, huge, {"user": huge, "targets": [huge] * 1000}, huge)
    refusals.close()
    (record,) = audit.records()
    assert len(record["actor"]) == 503 and len(record["message"]) == 2003
    assert len(record["data"]["targets"]) == 50 and len(record["data"]["targets"][0]) == 503
