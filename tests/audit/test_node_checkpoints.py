"""A running node signs a quiet audit log on its own: the supervisor's housekeeping writes the checkpoint
(and the journal carries it), with no further record to trigger it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from otseam.audit.log import AuditLog, authority_dir, node_public_key, verify_log
from otseam.core.records import Event
from otseam.runtime.supervisor import Settings, Supervisor
from tests.control.node import CONTRACT
from tests.diode.harness import read_all
from tests.support.wait import wait_until


async def test_the_running_node_signs_a_quiet_log(tmp_path: Path) -> None:
    (tmp_path / "seam.yaml").write_text(CONTRACT)
    settings = Settings(watch=False, drain_timeout=5.0, tick=0.05, audit_checkpoint_seconds=0.2)
    supervisor = Supervisor(tmp_path / "seam.yaml", settings)
    await supervisor.start()
    task = asyncio.create_task(supervisor.run())
    try:
        # Another part of the node writes one record (as a sink refusing a write would), then nothing.
        writer = AuditLog(authority_dir(supervisor.data_dir), node=supervisor.node, journal=supervisor.journal)
        writer.append("replica.write_attempt", "modbus client", "replica/modbus", {"function": 6})
        log = AuditLog(authority_dir(supervisor.data_dir))

        def signed() -> bool:
            return [r["kind"] for r in log.records()] == ["replica.write_attempt", "checkpoint"]

        await asyncio.to_thread(wait_until, signed, "the housekeeping tick's checkpoint", 30)
    finally:
        supervisor.request_stop()
        await task
    verdict = verify_log(log.path, log.head_path, node_public_key(log.directory))
    assert verdict.ok and verdict.checkpoints == 1, verdict.problem
    assert supervisor.journal is not None
    kinds = [r.kind for r in read_all(supervisor.journal) if isinstance(r, Event) and r.kind.startswith("audit.")]
    assert kinds == ["audit.replica.write_attempt", "audit.checkpoint"]
