"""What an operator's tooling sees of `seam run`: systemd readiness and watchdog over a real unix
datagram socket, and JSON logs a collector can read line by line."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from otseam.runtime import logfmt, sdnotify
from tests.core.seamrun import SeamRun, contract, file_sink, generator, records
from tests.support.wait import wait_until

FLOW = '{id: flow, address: "walk:step=2"}'


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """The service manager's end: a unix datagram socket, as systemd binds for NOTIFY_SOCKET."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    yield path, sock
    sock.close()


def drain(sock: socket.socket, into: list[str]) -> list[str]:
    while True:
        try:
            into.append(sock.recv(4096).decode())
        except BlockingIOError:
            return into


def test_ready_watchdog_and_stopping_reach_the_service_manager(
    tmp_path: Path, manager: tuple[str, socket.socket]
) -> None:
    path, sock = manager
    (tmp_path / "seam.yaml").write_text(contract(generator("gen1", [FLOW]), file_sink()))
    # A 0.4 s watchdog: Seam pings every 0.2 s.
    run = SeamRun(tmp_path, "--no-watch", env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    got: list[str] = []
    try:
        run.wait_started()
        run.wait_for(lambda: any(m.startswith("READY=1") for m in drain(sock, got)), "READY=1")
        run.wait_for(lambda: drain(sock, got).count("WATCHDOG=1") >= 3, "three WATCHDOG=1 pings")
    finally:
        assert run.stop() == 0
    wait_until(lambda: "STOPPING=1" in drain(sock, got), "STOPPING=1")
    assert [m for m in got if m.startswith("READY=1")] == [f"READY=1\nSTATUS=running {tmp_path / 'seam.yaml'}"]


def test_notify_speaks_to_an_abstract_socket_and_is_silent_without_a_manager() -> None:
    name = f"seam-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert sdnotify.notify("READY=1", {"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(100) == b"READY=1"
    assert not sdnotify.notify("READY=1", {})
    assert not sdnotify.notify("READY=1", {"NOTIFY_SOCKET": "relative/path"})
    # A socket that is gone is a warning, never a crash of the node.
    assert not sdnotify.notify("READY=1", {"NOTIFY_SOCKET": "/nonexistent/notify.sock"})


def test_watchdog_interval_is_half_and_only_for_this_process() -> None:
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "10000000"}) == 5.0
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}) == 5.0
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}) is None
    assert sdnotify.watchdog_interval({"WATCHDOG_USEC": "nonsense"}) is None
    assert sdnotify.watchdog_interval({}) is None


def test_json_logs_are_one_object_per_line(tmp_path: Path) -> None:
    (tmp_path / "seam.yaml").write_text(contract(generator("gen1", [FLOW]), file_sink()))
    run = SeamRun(tmp_path, "--no-watch", "--log-format", "json")
    try:
        run.wait_for(lambda: len(records(tmp_path)) > 5, "records in the file")
    finally:
        assert run.stop() == 0
    lines = [line for line in run.lines if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line, not some: a collector takes them all
    assert parsed and all({"ts", "level", "logger", "message"} <= set(p) for p in parsed)
    assert any("running" in p["message"] for p in parsed)
    assert all(p["ts"].endswith("Z") for p in parsed)


def test_json_formatter_carries_extra_fields_and_exceptions() -> None:
    import logging

    formatter = logfmt.JsonFormatter()
    record = logging.LogRecord("otseam.core", logging.WARNING, __file__, 1, "device %s down", ("plc1",), None)
    record.device = "plc1"
    out = json.loads(formatter.format(record))
    assert out["message"] == "device plc1 down" and out["device"] == "plc1" and out["level"] == "warning"
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "RuntimeError: boom" in json.loads(formatter.format(record))["exception"]


def test_an_unknown_log_format_is_exit_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "otseam.cli", "--log-format", "xml", "check", "x.yaml"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "--log-format" in result.stderr


def test_the_diode_receiver_tells_the_service_manager_too(tmp_path: Path, manager: tuple[str, socket.socket]) -> None:
    import secrets
    import signal
    import subprocess
    import sys

    from tests.support.servers import free_port

    path, sock = manager
    key = tmp_path / "key"
    key.write_text(secrets.token_hex(32))
    receiver = subprocess.Popen(
        [sys.executable, "-m", "otseam.cli", "diode", "receive", "--journal", str(tmp_path / "it"),
         "--listen", f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}", "--key-file", str(key)],
        env={**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    got: list[str] = []
    try:
        wait_until(lambda: any(m.startswith("READY=1") for m in drain(sock, got)), "READY=1")
        wait_until(lambda: drain(sock, got).count("WATCHDOG=1") >= 2, "two WATCHDOG=1 pings")
    finally:
        receiver.send_signal(signal.SIGTERM)
        assert receiver.wait(30) == 0
    wait_until(lambda: "STOPPING=1" in drain(sock, got), "STOPPING=1")
    assert "READY=1\nSTATUS=diode receive" in got
