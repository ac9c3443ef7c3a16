"""The supervisor in-process: reload removing parts, the status view, metrics text."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

from prometheus_client import generate_latest
from rich.console import Console

from otseam.runtime.metrics import build_registry
from otseam.runtime.status import StatusView
from otseam.runtime.supervisor import Settings, Supervisor
from tests.core.seamrun import contract, file_sink, generator
from tests.support.wait import wait_until_async as wait_until

FLOW = '{id: flow, address: "walk:step=2"}'


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_reload_removing_a_device_and_a_sink(tmp_path: Path) -> None:
    (tmp_path / "seam.yaml").write_text(
        contract(generator("gen1", [FLOW]) + generator("gen2", [FLOW]), file_sink("keep") + file_sink("drop"))
    )
    supervisor = Supervisor(tmp_path / "seam.yaml", Settings(tick=0.1, watch=False))
    task = asyncio.create_task(supervisor.run())
    keep = tmp_path / "data" / "out" / "keep.jsonl"
    try:
        await wait_until(lambda: supervisor.plan is not None)
        await wait_until(lambda: {line.get("point") for line in lines(keep)} >= {"gen1/flow", "gen2/flow"})
        assert supervisor.journal is not None and "drop" in supervisor.journal.cursors()

        (tmp_path / "seam.yaml").write_text(contract(generator("gen1", [FLOW]), file_sink("keep")))
        assert await supervisor.reload()
        assert set(supervisor.components) == {"driver:gen1", "sink:keep"}
        assert "drop" not in supervisor.journal.cursors()

        def gen2_marked_stale() -> bool:
            return any(line.get("point") == "gen2/flow" and line["quality"] == "stale" for line in lines(keep))

        await wait_until(gen2_marked_stale)

        # The status view, as a person on a terminal sees it.
        console = Console(file=io.StringIO(), width=140, record=True)
        view = StatusView(supervisor, console=console)
        view.update()
        console.print(view.render())
        text = console.export_text()
        assert "gen1" in text and "keep" in text and "running" in text and "gen2" not in text
        assert "devices 1/1 up" in view.summary()

        metrics = generate_latest(build_registry(supervisor)).decode()
        assert 'seam_contract_reloads_total{result="ok"} 1.0' in metrics
        assert 'seam_sink_up{sink="keep"} 1.0' in metrics and 'sink="drop"' not in metrics
    finally:
        supervisor.request_stop()
        await asyncio.wait_for(task, 40)
    assert supervisor.state == "stopped"
    stale_after_removal = [line for line in lines(keep) if line.get("point") == "gen2/flow"]
    assert stale_after_removal[-1]["quality"] == "stale"
    assert [line["offset"] for line in lines(keep)] == list(range(1, len(lines(keep)) + 1))
