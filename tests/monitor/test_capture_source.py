"""The ``capture`` source: options as `seam check` reads them, a capture file in-process, and a live
capture of real Modbus traffic (mbpoll against `seam sim`) under `seam run`, its alerts in the node's
journal, delivered by the node's sink, and its kernel counters in /health and /metrics."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError

from otseam.contract.models import SourceSpec
from otseam.core.plugins import PluginContext, create_source
from otseam.core.records import Event, Record
from otseam.sources.capture import Options
from otseam.sources.capture.source import CaptureSource
from tests.core.seamrun import PEOPLE_AND_ZONES, SeamRun, file_sink, generator, records
from tests.monitor import traffic
from tests.monitor.traffic import PEER_HOST, SIM_HOST, server_port
from tests.support.wait import wait_until_async

POINT = '{id: flow, address: "walk:step=2"}'


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one of 'interface'"),
        ({"interface": "lo", "file": "x.pcap"}, "exactly one of 'interface'"),
        ({"interface": "lo", "modbus_ports": [70000]}, "less than or equal to 65535"),
        ({"interface": "lo", "allow_masters": ["plc-7"]}, "valid IP"),
        ({"interface": "lo", "interfce": "eth0"}, "Extra inputs are not permitted"),
        ({"interface": "lo", "receive_buffer": 10}, "greater than or equal to 65536"),
    ],
)
def test_options_are_checked(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Options.model_validate(options)


def test_the_sample_configuration_is_valid() -> None:
    import yaml

    sample = yaml.safe_load((Path(__file__).parents[2] / "src/otseam/sources/capture/sample.yaml").read_text())
    for source in sample["sources"]:
        assert source["type"] == "capture"
        Options.model_validate(source["options"])


def _context(tmp_path: Path, contract_path: str, registry: CollectorRegistry | None = None) -> PluginContext:
    from otseam.contract.loader import load

    contract_file = tmp_path / "seam.yaml"
    contract_file.write_text(PEOPLE_AND_ZONES + "devices:\n" + generator("gen1", [POINT]) + "sinks:\n" + file_sink())
    return PluginContext(
        load(contract_file).contract, str(tmp_path), metrics=registry, contract_path=contract_path or str(contract_file)
    )


async def test_a_capture_file_is_analysed_once_and_reported(corpus: dict[str, Path], tmp_path: Path) -> None:
    capture = tmp_path / "plant.pcap"
    capture.write_bytes(corpus["pymodbus.pcap"].read_bytes())
    registry = CollectorRegistry()
    context = _context(tmp_path, "", registry)
    spec = SourceSpec(
        id="replay",
        type="capture",
        options={"file": "plant.pcap", "modbus_ports": [server_port(corpus["pymodbus.pcap"])]},
    )
    source = create_source(spec, context)
    assert isinstance(source, CaptureSource)
    received: list[Record] = []
    done = asyncio.Event()

    async def emit(records_: Sequence[Record]) -> None:
        received.extend(records_)
        done.set()

    task = asyncio.create_task(source.run(emit))
    try:
        await asyncio.wait_for(done.wait(), 30)
        rules = {r.source for r in received if isinstance(r, Event) and r.kind == "alert"}
        assert {"MB-004", "MB-006", "MB-008"} <= rules
        assert {r.data["ip"] for r in received if isinstance(r, Event) and r.kind == "inventory.new_asset"} == {
            PEER_HOST,
            SIM_HOST,
        }
        assert source.healthy and source.health()["finished"] is True
        text = generate_latest(registry).decode()
        assert 'seam_capture_frames_total{source="replay"}' in text
        assert 'seam_capture_up{source="replay"} 1.0' in text
        assert not task.done(), "a source runs until it is cancelled"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_file_that_cannot_be_read_is_down_in_health(tmp_path: Path) -> None:
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)
    source = create_source(SourceSpec(id="bad", type="capture", options={"file": str(fifo)}), _context(tmp_path, ""))
    assert isinstance(source, CaptureSource)

    async def emit(records_: Sequence[Record]) -> None:
        raise AssertionError("nothing to emit")

    task = asyncio.create_task(source.run(emit))
    try:
        await wait_until_async(lambda: source.error, "the capture source to report its error", interval=0.01)
        assert "is a FIFO" in source.error
        assert not source.healthy and "is a FIFO" in str(source.health()["error"])
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_live_capture_under_seam_run(tmp_path: Path) -> None:
    """mbpoll writes to the sim from a host the contract's source does not allow: the node's capture
    source sees it on lo and its alerts reach the node's file sink through the journal."""
    with traffic.running_sim() as sim:
        (tmp_path / "seam.yaml").write_text(
            PEOPLE_AND_ZONES
            + "devices:\n"
            + generator("gen1", [POINT])
            + "sinks:\n"
            + file_sink()
            + f"""\
sources:
  - id: span
    type: capture
    owner: olga
    options:
      interface: lo
      modbus_ports: [{sim.modbus_port}]
      allow_masters: [127.0.0.9]
      allow_from_contract: false
      receive_buffer: 8388608
"""
        )
        run = SeamRun(tmp_path)
        try:
            run.wait_started()
            run.wait_for(lambda: run.health()["components"]["source:span"]["state"] == "running", "the source")

            def capturing() -> bool:
                detail = run.health()["components"]["source:span"].get("detail", {})
                return bool(detail.get("capturing"))

            run.wait_for(capturing, "the capture socket")
            traffic.mbpoll(sim.modbus_port)

            def alerted() -> list[dict[str, object]]:
                return [r for r in records(tmp_path) if r.get("type") == "event" and r.get("kind") == "alert"]

            def written() -> list[dict[str, object]]:
                # lo also carries other tests' traffic, to other sims on SIM_HOST too, which the monitor
                # recognises as Modbus on a port it was not told of: only the flow to this sim's port is ours.
                return [
                    a
                    for a in alerted()
                    if a["from"] == "MB-001"
                    and a["data"]["dst"] == SIM_HOST  # type: ignore[index]
                    and a["data"]["dport"] == sim.modbus_port  # type: ignore[index]
                ]

            run.wait_for(lambda: len(written()) >= 4, "the four write alerts in the sink")
            health = run.health()
            detail = health["components"]["source:span"]["detail"]
            assert detail["frames"] > 0 and detail["kernel_received"] >= detail["frames"]
            # Drops depend on the machine's load; when there were some, the source says so.
            assert detail["kernel_dropped"] == 0 or "dropped" in str(detail["problem"])
            assert detail["alerts"] >= 1 and detail["assets"] >= 2
            functions = {a["data"]["function"] for a in written()}  # type: ignore[index]
            assert functions == {5, 6, 15, 16} and all(a["data"]["src"] == PEER_HOST for a in written())  # type: ignore[index]
        finally:
            assert run.stop() == 0, run.output
