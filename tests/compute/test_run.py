"""Computed points under `seam run` (the supervisor in-process, a real journal and file sink): a counter
survives a reload that changes another formula, a clean restart and a kill (its state is in the journal)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from otseam.compute.recover import last_checkpoint
from otseam.runtime.metrics import build_registry
from otseam.runtime.supervisor import Settings, Supervisor
from tests.core.seamrun import contract, file_sink, generator
from tests.support.wait import wait_until as shared_wait_until
from tests.support.wait import wait_until_async

POINTS = ['{id: flow, address: "constant:value=2", unit: "m3/h"}', '{id: level, address: "constant:value=3", unit: m}']


def computed_section(pct_divisor: float) -> str:
    return f"""\
computed:
  - id: volume
    owner: olga
    unit: m3
    counter: {{kind: total, of: gen1/flow, per: 1s}}
  - id: pct
    owner: olga
    unit: "%"
    expression: $gen1/level / {pct_divisor} * 100
"""


def write(workdir: Path, pct_divisor: float) -> None:
    text = contract(generator("gen1", POINTS, poll="50ms"), file_sink("keep")) + computed_section(pct_divisor)
    (workdir / "seam.yaml").write_text(text)


def lines(workdir: Path) -> list[dict[str, Any]]:
    path = workdir / "data" / "out" / "keep.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def values(workdir: Path, key: str) -> list[Any]:
    return [line["value"] for line in lines(workdir) if line.get("point") == key]


async def wait_until(condition: Callable[[], bool], within: float = 30.0) -> None:
    await wait_until_async(condition, "the computed values", within)


def wait_sync(condition: Callable[[], bool], within: float = 30.0) -> None:
    shared_wait_until(condition, "a checkpoint", within)


async def run_for(workdir: Path, until: Callable[[], bool], reload_to: float | None = None) -> None:
    supervisor = Supervisor(workdir / "seam.yaml", Settings(tick=0.1, watch=False))
    task = asyncio.create_task(supervisor.run())
    try:
        await wait_until(until)
        if reload_to is not None:
            before = values(workdir, "computed/volume")[-1]
            write(workdir, reload_to)
            assert await supervisor.reload()
            await wait_until(lambda: 3 / reload_to * 100 in values(workdir, "computed/pct"))
            after = values(workdir, "computed/volume")
            # The counter carried on through the reload: it never went back.
            assert after[-1] >= before and after == sorted(after)
        metrics = generate_latest(build_registry(supervisor)).decode()
        assert "seam_compute_errors_total 0.0" in metrics
        assert re.search(r"^seam_compute_evaluations_total [1-9]", metrics, re.MULTILINE)
    finally:
        supervisor.request_stop()
        await asyncio.wait_for(task, 40)


async def test_counter_state_survives_reload_and_restart(tmp_path: Path) -> None:
    write(tmp_path, 4.0)
    await run_for(tmp_path, lambda: any(v >= 1.0 for v in values(tmp_path, "computed/volume")), reload_to=5.0)
    assert 75.0 in values(tmp_path, "computed/pct") and 60.0 in values(tmp_path, "computed/pct")
    checkpoint = last_checkpoint(tmp_path / "data" / "journal")
    assert checkpoint is not None and "computed/volume" in checkpoint.data["points"]
    stopped_at = values(tmp_path, "computed/volume")[-1]
    seen = len(values(tmp_path, "computed/volume"))

    await run_for(tmp_path, lambda: len(values(tmp_path, "computed/volume")) > seen + 5)
    resumed = values(tmp_path, "computed/volume")[seen:]
    assert resumed[0] >= stopped_at and resumed == sorted(resumed)


def test_counter_state_survives_a_kill(tmp_path: Path) -> None:
    """No clean stop: the periodic checkpoint in the journal is what the next start recovers."""
    write(tmp_path, 4.0)
    env = {**os.environ, "SEAM_COMPUTE_CHECKPOINT_EVERY": "0.5"}
    command = [sys.executable, "-m", "otseam.cli", "run", str(tmp_path / "seam.yaml"), "--http", "127.0.0.1:0"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_sync(lambda: (c := last_checkpoint(tmp_path / "data" / "journal")) is not None and _total(c.data) >= 1.0)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    checkpoint = last_checkpoint(tmp_path / "data" / "journal")
    assert checkpoint is not None
    saved = _total(checkpoint.data)
    seen = len(values(tmp_path, "computed/volume"))

    asyncio.run(run_for(tmp_path, lambda: len(values(tmp_path, "computed/volume")) > seen + 3))
    resumed = values(tmp_path, "computed/volume")[seen:]
    assert resumed[0] >= saved


def _total(data: dict[str, Any]) -> float:
    return float(data["points"]["computed/volume"]["state"]["total"])
