"""`seam run` as a real process: generator driver → pipeline → journal → file sink, over HTTP and signals."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otseam.journal import Journal
from tests.core.seamrun import SeamRun, contract, file_sink, generator, metric, records

LEVEL = '{id: level, address: "sine:period=3s", range: {low: 0, high: 100}, deadband: "0.5%", heartbeat: 2s}'
FLOW = '{id: flow, address: "walk:step=2"}'
TEMP = '{id: temp, address: "ramp:period=5s,low=10,high=30", unit: degC}'


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def write(workdir: Path, text: str) -> None:
    # Written beside and renamed, as an editor or a deployment tool would, so a reload never sees half a file.
    tmp = workdir / "seam.yaml.new"
    tmp.write_text(text)
    tmp.replace(workdir / "seam.yaml")


def assert_complete(workdir: Path, lines: list[dict[str, Any]]) -> None:
    """Every record the journal holds reached the file exactly once, in journal order, and the file is
    valid JSON lines throughout (no torn line left by a crash)."""
    text = (workdir / "data" / "out" / "archive.jsonl").read_text()
    assert text.endswith("\n") and [json.loads(line) for line in text.splitlines()] == lines
    offsets = [line["offset"] for line in lines]
    assert offsets == list(range(1, len(offsets) + 1)), "offsets must be 1..N without gaps or duplicates"
    with Journal.open(workdir / "data" / "journal") as journal:
        assert journal.last_offset == offsets[-1]


def test_run_delivers_answers_health_and_metrics_and_stops_cleanly(workdir: Path) -> None:
    token = "k3ep-this-0ut-of-logs"
    write(workdir, contract(generator("gen1", [LEVEL, FLOW]), file_sink()))
    run = SeamRun(workdir, env={"SEAM_API_TOKEN": token})
    try:
        run.wait_started()
        run.wait_for(lambda: len(records(workdir)) > 30, "records in the file")

        # Garbage and a half-open request on the HTTP port: answered or dropped, never a crash.
        for junk in (b"\x00\xff\x16\x03\x01 not http\r\n\r\n", b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"A" * 70000):
            with socket.create_connection(("127.0.0.1", run.port), timeout=5) as sock:
                sock.sendall(junk)
                with contextlib.suppress(OSError):
                    sock.recv(1024)
        health = run.health()
        assert health["status"] == "ok"
        assert health["components"]["driver:gen1"]["state"] == "running"
        assert health["components"]["sink:archive"]["state"] == "running"

        status, body = run.get("/metrics")
        assert status == 401 and "bearer token" in body
        # A rate needs two ticks of the supervisor (one second apart) before it is known.
        run.wait_for(lambda: metric(run.get("/metrics", token=token)[1], "seam_points_per_second") > 0, "a rate")
        status, _ = run.get("/metrics", token="wrong")
        assert status == 401
        status, body = run.get("/metrics", token=token)
        assert status == 200
        assert metric(body, "seam_points_total", 'device="gen1"') > 30
        assert metric(body, "seam_sink_delivered_records_total", 'sink="archive"') > 0
        assert metric(body, "seam_sink_lag_records", 'sink="archive"') >= 0
        assert metric(body, "seam_journal_depth") >= 0
        assert metric(body, "seam_journal_oldest_age_seconds") >= 0
        assert metric(body, "seam_device_latency_seconds", 'device="gen1"') >= 0
        assert metric(body, "seam_device_errors_total", 'device="gen1"') == 0
        assert metric(body, "process_resident_memory_bytes") > 0
    finally:
        code = run.stop()
    assert code == 0, run.output
    assert "all sinks drained" in run.output
    assert token not in run.output
    assert "Traceback" not in run.output
    lines = records(workdir)
    assert_complete(workdir, lines)
    flow = [line for line in lines if line.get("point") == "gen1/flow"]
    # Stopping marks the points stale with their original source time: nothing looks live after exit.
    assert flow[-1]["quality"] == "stale" and flow[-1]["source_ts"] == flow[-2]["source_ts"]


def test_sink_outage_resumes_without_loss_or_duplicates(workdir: Path) -> None:
    write(workdir, contract(generator("gen1", [LEVEL, FLOW]), file_sink()))
    run = SeamRun(workdir)
    try:
        run.wait_started()
        run.wait_for(lambda: len(records(workdir)) > 10, "first records")
        out = workdir / "data" / "out"
        out.rename(workdir / "data" / "out.saved")
        out.write_text("the sink's directory is gone")
        run.wait_for(lambda: run.health()["components"]["sink:archive"]["delivery_errors"] >= 2, "failed deliveries")
        # The backlog shows in /health (its journal figures are at most a second old).
        run.wait_for(lambda: run.health()["components"]["sink:archive"]["lag_records"] > 0, "lag reported")
        health = run.health()
        assert health["status"] == "degraded"
        assert health["components"]["driver:gen1"]["state"] == "running"  # the outage touches nothing else
        out.unlink()
        (workdir / "data" / "out.saved").rename(out)
        run.wait_for(lambda: run.health()["status"] == "ok", "recovery")
    finally:
        code = run.stop()
    assert code == 0, run.output
    assert_complete(workdir, records(workdir))


def test_sighup_starts_added_devices_and_points_and_keeps_the_rest_running(workdir: Path) -> None:
    write(workdir, contract(generator("gen1", [FLOW]), file_sink()))
    run = SeamRun(workdir, "--no-watch")
    try:
        run.wait_started()
        run.wait_for(lambda: len(records(workdir)) > 10, "first records")
        since = run.health()["components"]["driver:gen1"]["since"]
        write(workdir, contract(generator("gen1", [FLOW]) + generator("gen2", [TEMP]), file_sink()))
        run.signal(signal.SIGHUP)
        run.wait_for(lambda: any(line.get("point") == "gen2/temp" for line in records(workdir)), "the added point")
        health = run.health()
        assert health["components"]["driver:gen1"]["since"] == since, "an unchanged driver must not be restarted"
        assert health["reloads"]["ok"] == 1
        first_temp = next(line["offset"] for line in records(workdir) if line.get("point") == "gen2/temp")
        run.wait_for(
            lambda: any(line.get("point") == "gen1/flow" and line["offset"] > first_temp for line in records(workdir)),
            "gen1 still flowing after the reload",
        )

        # A point added to a running device: that device's driver restarts with it, gen2 does not.
        since2 = run.health()["components"]["driver:gen2"]["since"]
        write(workdir, contract(generator("gen1", [FLOW, LEVEL]) + generator("gen2", [TEMP]), file_sink()))
        run.signal(signal.SIGHUP)
        run.wait_for(lambda: any(line.get("point") == "gen1/level" for line in records(workdir)), "gen1's new point")
        assert run.health()["components"]["driver:gen2"]["since"] == since2
    finally:
        code = run.stop()
    assert code == 0, run.output
    lines = records(workdir)
    assert_complete(workdir, lines)
    audit = [line["data"] for line in lines if line.get("kind") == "audit.contract"]
    assert [a["devices_added"] for a in audit] == [["gen2"], []]
    assert audit[1]["devices_changed"] == ["gen1"]


def test_broken_contract_on_reload_keeps_the_old_one_running(workdir: Path) -> None:
    write(workdir, contract(generator("gen1", [FLOW]), file_sink()))
    run = SeamRun(workdir)  # the file watch, no signal
    try:
        run.wait_started()
        run.wait_for(lambda: len(records(workdir)) > 5, "first records")
        broken = '{id: temp, address: "triangle:period=5s"}'
        write(workdir, contract(generator("gen1", [FLOW, broken]), file_sink()))
        run.wait_for(lambda: "reload refused" in run.output, "the refused reload")
        assert "gen1/temp" in run.output and "unknown generator shape 'triangle'" in run.output
        count = len(records(workdir))
        run.wait_for(lambda: len(records(workdir)) > count + 5, "data still flowing")
        health = run.health()
        assert health["reloads"] == {"ok": 0, "failed": 1, "last_error": health["reloads"]["last_error"]}
        assert "triangle" in health["reloads"]["last_error"]
        assert health["components"]["driver:gen1"]["restarts"] == 0

        write(workdir, contract(generator("gen1", [FLOW]), file_sink()) + "  - {id: oops\n")  # YAML error
        run.wait_for(lambda: run.health()["reloads"]["failed"] == 2, "second refused reload")
        assert "YAML syntax" in run.health()["reloads"]["last_error"]
    finally:
        code = run.stop()
    assert code == 0, run.output
    assert "Traceback" not in run.output
    assert_complete(workdir, records(workdir))


def test_a_failing_driver_is_restarted_and_the_others_never_notice(workdir: Path) -> None:
    crashy = generator("crashy", [FLOW], options="{fail_after: 500ms}")
    write(workdir, contract(generator("gen1", [FLOW]) + crashy, file_sink()))
    run = SeamRun(workdir)
    try:
        run.wait_started()

        def restarted() -> bool:
            component = run.health()["components"]["driver:crashy"]
            return bool(component["restarts"] >= 1 and component["errors"] >= 2)

        run.wait_for(restarted, "crashy restarted")
        health = run.health()
        assert "rehearsed failure" in health["components"]["driver:crashy"]["last_error"]
        assert health["components"]["driver:gen1"] | {"since": 0} == {
            "state": "running",
            "restarts": 0,
            "errors": 0,
            "last_error": "",
            "last_error_ts": None,
            "since": 0,
        }
        _, body = run.get("/metrics")
        assert metric(body, "seam_component_restarts_total", 'component="driver:crashy"') >= 1
        assert metric(body, "seam_device_errors_total", 'device="crashy"') >= 2
    finally:
        code = run.stop()
    assert code == 0, run.output
    lines = records(workdir)
    assert_complete(workdir, lines)
    crashy_flow = [line for line in lines if line.get("point") == "crashy/flow"]
    stale = [line for line in crashy_flow if line["quality"] == "stale"]
    assert stale, "while its driver is down the device's points are marked stale"
    # A stale re-send keeps the source time of the value it repeats.
    for line in stale:
        before = [x for x in crashy_flow if x["offset"] < line["offset"] and x["quality"] == "good"]
        assert line["source_ts"] == before[-1]["source_ts"]
    events = [line for line in lines if line.get("kind") == "device.state" and line["from"] == "crashy"]
    assert len(events) >= 2


def seam(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otseam.cli", *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def test_startup_problems_are_clear_messages_not_tracebacks(workdir: Path) -> None:
    missing = seam("run", str(workdir / "nope.yaml"), "--http", "off", cwd=workdir)
    assert missing.returncode == 2 and "file not found" in missing.stderr

    write(workdir, contract(generator("gen1", ['{id: t, address: "sine:period=fast"}']), file_sink()))
    bad_point = seam("run", str(workdir / "seam.yaml"), "--http", "off", cwd=workdir)
    assert bad_point.returncode == 2 and "point gen1/t" in bad_point.stderr and "period" in bad_point.stderr

    text = contract(generator("gen1", [FLOW]), file_sink()).replace("driver: generator", "driver: gnerator")
    write(workdir, text)
    no_driver = seam("run", str(workdir / "seam.yaml"), "--http", "off", cwd=workdir)
    assert no_driver.returncode == 2 and "no driver named 'gnerator'" in no_driver.stderr

    write(workdir, contract(generator("gen1", [FLOW]), file_sink()))
    bad_http = seam("run", str(workdir / "seam.yaml"), "--http", "localhost", cwd=workdir)
    assert bad_http.returncode == 2 and "host:port" in bad_http.stderr

    # Deny by default: metrics beyond this machine need a token.
    exposed = seam("run", str(workdir / "seam.yaml"), "--http", "0.0.0.0:0", cwd=workdir)
    assert exposed.returncode == 2 and "without a token" in exposed.stderr

    for result in (missing, bad_point, no_driver, bad_http, exposed):
        assert "Traceback" not in result.stderr + result.stdout


def test_killed_and_restarted_it_resumes_without_loss_or_duplicates(workdir: Path) -> None:
    write(workdir, contract(generator("gen1", [FLOW, TEMP]), file_sink()))
    first = SeamRun(workdir)
    try:
        first.wait_started()
        first.wait_for(lambda: len(records(workdir)) > 50, "records before the crash")
    finally:
        first.kill()  # SIGKILL: no drain, no commit of what was in flight
    count = len(records(workdir))
    second = SeamRun(workdir)
    try:
        second.wait_started()
        second.wait_for(lambda: len(records(workdir)) > count + 50, "records after the restart")
    finally:
        code = second.stop()
    assert code == 0, second.output
    assert_complete(workdir, records(workdir))
