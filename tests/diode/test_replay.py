"""Backfill without a back channel: the receiver restarts for 10 s while data streams, reports the gap
(journal offsets, source times), `seam diode replay` re-sends that range through the running sink, and
the IT journal ends with every sample exactly once.

Real parts: the IT side is `seam diode receive` in its own process (stopped with SIGTERM, restarted),
read through its /health; the OT side is the diode_send sink as `seam run` creates it (the node's
journal and data directory in its plugin context) fed by the sink runner; the replay is the `seam diode
replay` command in its own process.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import sys
import urllib.request
from pathlib import Path
from typing import Any

from otseam.contract.loader import load
from otseam.core.plugins import PluginContext, create_sink
from otseam.core.records import Quality, Record, Sample
from otseam.journal import Journal
from otseam.runtime.sinkrunner import SinkStats, run_sink
from otseam.sinks.diode_send import DiodeSendSink
from tests.diode.harness import read_all
from tests.support.servers import free_port
from tests.support.wait import wait_until_async

SEAM = str(Path(sys.executable).parent / "seam")

CONTRACT = """\
version: 1
site: {{enterprise: acme, site: works}}
zones:
  - {{id: cell, level: 1, sl: 2}}
devices:
  - id: plc1
    driver: modbus
    endpoint: tcp://10.0.0.5:502
    zone: cell
    unit: 1
    points:
      - {{id: level, address: "hr:100", type: float32}}
journal: {{path: ./ot-data/journal}}
sinks:
  - id: to-it
    type: diode_send
    options: {{target: "127.0.0.1:{port}", key_file: key, rate: 50Mbit/s, beacon_interval: 200ms,
               snapshot_interval: 0s}}
"""


def health(port: int) -> dict[str, Any] | None:
    """The diode link's part of the receiving node's /health (the diode_receive source's own report)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            result: dict[str, Any] = json.load(response)["components"]["source:diode"].get("detail", {})
            return result if "receiver" in result else None
    except OSError:
        return None


async def until(condition: Any, within: float, what: str) -> Any:
    """The suite's wait, with ``condition`` (a blocking HTTP read) run in a thread."""
    return await wait_until_async(lambda: asyncio.to_thread(condition), what, within, interval=0.1)


async def test_a_gap_from_a_receiver_restart_is_replayed_and_every_sample_lands_once(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(secrets.token_hex(32))
    udp = free_port()
    contract_file = tmp_path / "seam.yaml"
    contract_file.write_text(CONTRACT.format(port=udp))
    contract = load(contract_file).contract
    ot = Journal.open(tmp_path / "ot-data" / "journal")
    context = PluginContext(
        contract=contract, data_dir=str(tmp_path / "ot-data"), journal=ot, contract_path=str(contract_file)
    )
    sink = create_sink(contract.sinks[0], context)
    assert isinstance(sink, DiodeSendSink)
    metrics = free_port()
    receive = [SEAM, "diode", "receive", "--journal", str(tmp_path / "it"), "--listen", f"127.0.0.1:{udp}",
               "--key-file", str(tmp_path / "key"), "--metrics", f"127.0.0.1:{metrics}"]  # fmt: skip

    async def start_receiver(stats: Path) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *receive, "--stats-file", str(stats), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        await until(lambda: health(metrics), 30, "the receiver's /health")
        return process

    first = await start_receiver(tmp_path / "first.json")
    stop = asyncio.Event()
    runner = asyncio.create_task(run_sink(sink, ot.reader("to-it"), stats=SinkStats("to-it"), stop=stop))
    written: list[Record] = []
    streaming = True

    async def stream() -> None:  # 500 samples a second, gateway time = offset
        while streaming:
            offset = ot.next_offset()
            batch: list[Record] = [
                Sample("plc1/level", float(o), Quality.GOOD, float(o), float(o)) for o in range(offset, offset + 5)
            ]
            ot.append(batch)
            written.extend(batch)
            await asyncio.sleep(0.01)

    feeder = asyncio.create_task(stream())
    await until(lambda: (h := health(metrics)) and h["receiver"]["records"] > 500, 30, "records arriving")
    first.send_signal(signal.SIGTERM)
    assert await first.wait() == 0
    await asyncio.sleep(10)  # the receiver is down for 10 s while data streams: the scenario itself
    second = await start_receiver(tmp_path / "second.json")
    report = await until(
        lambda: (h := health(metrics)) and [m for m in h["missing"] if m["last_offset"] is not None],
        30,
        "the gap's offsets",
    )
    (gap,) = report
    assert gap["reason"] == "sent while this receiver was not listening" and gap["blocks"] > 0
    streaming = False
    await feeder
    total = len(written)
    assert gap["last_offset"] - gap["first_offset"] > 1000  # about 5,000 samples were sent into the void

    replay = await asyncio.create_subprocess_exec(
        SEAM, "diode", "replay", "--contract", str(contract_file),
        "--from-offset", str(gap["first_offset"]), "--to-offset", str(gap["last_offset"]),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await replay.communicate()
    assert replay.returncode == 0, out.decode()
    assert f"re-sent {gap['last_offset'] - gap['first_offset'] + 1} record(s)" in out.decode()

    first_records = json.loads((tmp_path / "first.json").read_text())["records"]
    await until(
        lambda: (h := health(metrics)) and h["receiver"]["records"] + first_records >= total,
        30,
        "every sample on the IT side",
    )
    second.send_signal(signal.SIGTERM)
    assert await second.wait() == 0
    stop.set()
    await runner
    ot.close()
    it = Journal.open(tmp_path / "it")
    samples = [r for r in read_all(it) if isinstance(r, Sample)]
    it.close()
    keys = sorted(s.gateway_ts for s in samples)
    assert keys == [s.gateway_ts for s in written]  # every sample, exactly once
    stats = json.loads((tmp_path / "second.json").read_text())
    assert stats["replayed_records"] == gap["last_offset"] - gap["first_offset"] + 1


def test_replay_refuses_what_it_cannot_do_with_one_clear_error(tmp_path: Path) -> None:
    import subprocess

    (tmp_path / "key").write_text(secrets.token_hex(32))
    contract_file = tmp_path / "seam.yaml"
    contract_file.write_text(CONTRACT.format(port=free_port()))

    def replay(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SEAM, "diode", "replay", "--contract", str(contract_file), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    backwards = replay("--from-offset", "10", "--to-offset", "5")
    assert backwards.returncode == 2 and "after to_offset" in backwards.stderr
    nothing = replay()
    assert nothing.returncode == 2 and "needs a range" in nothing.stderr
    bad_time = replay("--since", "yesterday")
    assert bad_time.returncode == 2 and "2026-12-07T01:30:00Z" in bad_time.stderr
    not_running = replay("--from-offset", "1", "--to-offset", "5")
    assert not_running.returncode == 2 and "has not run on this node" in not_running.stderr
    (tmp_path / "ot-data" / "diode-replay" / "to-it").mkdir(parents=True)  # it ran once, but not now
    unanswered = replay("--from-offset", "1", "--to-offset", "5", "--wait", "1")
    assert unanswered.returncode == 2 and "no running diode_send sink" in unanswered.stderr
    assert not list((tmp_path / "ot-data" / "diode-replay" / "to-it").iterdir())  # the request was withdrawn
    for result in (backwards, nothing, bad_time, not_running, unanswered):
        assert "Traceback" not in result.stderr
