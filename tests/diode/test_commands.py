"""`seam diode` as a user runs it: clear errors without tracebacks, and a full run with the replica."""

from __future__ import annotations

import json
import secrets
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from otseam.core.records import Quality, Sample
from otseam.journal import Journal
from tests.replica.test_modbus_replica import values
from tests.support.servers import Mosquitto, free_port
from tests.support.wait import wait_until

SEAM = str(Path(sys.executable).parent / "seam")

CONTRACT = """\
version: 1
site: {enterprise: acme, site: works}
zones:
  - {id: cell, level: 1, sl: 2}
devices:
  - id: plc1
    driver: modbus
    endpoint: tcp://10.0.0.5:502
    zone: cell
    unit: 1
    points:
      - {id: level, address: "hr:100", type: float32}
  - id: plc2
    driver: modbus
    endpoint: tcp://10.0.0.6:502
    zone: cell
    unit: 1
    points:
      - {id: level, address: "hr:100", type: float32}
sinks:
  - id: it-historian
    type: historian
    options: {path: it-historian.db}
"""


def mbpoll(*args: str) -> str:
    return subprocess.run(["mbpoll", "-m", "tcp", "-1", "-o", "2", *args], capture_output=True, text=True).stdout


def seam(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SEAM, "diode", *args], capture_output=True, text=True, timeout=60)


def received(health_port: int) -> int:
    """Records the running receiver has written, from its /health."""
    with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/health", timeout=2) as response:
        return int(json.load(response)["components"]["source:diode"]["detail"]["receiver"]["records"])


def test_user_mistakes_get_one_line_and_no_traceback(tmp_path: Path) -> None:
    key = tmp_path / "key"
    assert seam("keygen", str(key)).returncode == 0
    assert key.stat().st_mode & 0o077 == 0
    for args, expected in [
        (("keygen", str(key)), "never overwritten"),
        (("receive", "--journal", str(tmp_path / "it"), "--listen", "nowhere", "--key-file", str(key)), "host:port"),
        (("receive", "--journal", str(tmp_path / "it"), "--listen", "127.0.0.1:1", "--key-file", "nope"), "keygen"),
        (("receive", "--journal", str(tmp_path / "it"), "--listen", "127.0.0.1:1", "--key-file", str(key),
          "--k", "500"), "k must be"),
        (("send", "--journal", str(tmp_path / "ot"), "--target", "127.0.0.1:1", "--key-file", str(key),
          "--rate", "fast"), "800Mbit/s"),
        (("send", "--target", "127.0.0.1:1", "--key-file", str(key)), "--journal"),
    ]:  # fmt: skip
        result = seam(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert expected in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_send_and_receive_feed_the_replica_historian_and_mqtt(tmp_path: Path, mqtt_broker: Mosquitto) -> None:
    """Across the diode, then to the IT side's consumers: Modbus replica, SQLite historian, MQTT (UNS)."""
    key = tmp_path / "key"
    key.write_text(secrets.token_hex(32))
    (tmp_path / "seam.yaml").write_text(
        CONTRACT
        + f"""\
  - id: it-uns
    type: uns_json
    options: {{brokers: ["mqtt://127.0.0.1:{mqtt_broker.port}"], retain: true}}
"""
    )
    (tmp_path / "replica.yaml").write_text(
        f"modbus_replica:\n  listen: 127.0.0.1:{(replica_port := free_port())}\n  units: {{plc2: 2}}\n"
    )
    with Journal.open(tmp_path / "ot", source="edge") as journal:
        journal.append(
            [Sample("plc1/level", 7.25, Quality.GOOD, 1.0, 1.0), Sample("plc2/level", 3.5, Quality.GOOD, 1.0, 1.0)]
        )
    port = free_port(kind=2)  # SOCK_DGRAM
    log = tmp_path / "receiver.log"
    receiver = subprocess.Popen(
        [SEAM, "diode", "receive", "--journal", str(tmp_path / "it"), "--listen", f"127.0.0.1:{port}",
         "--key-file", str(key), "--contract", str(tmp_path / "seam.yaml"),
         "--replica-config", str(tmp_path / "replica.yaml"), "--sink", "it-historian", "--sink", "it-uns"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until(lambda: "listening on" in log.read_text(), "the receiver to listen", detail=log.read_text)
        sent = seam("send", "--journal", str(tmp_path / "ot"), "--target", f"127.0.0.1:{port}",
                    "--key-file", str(key), "--drain")  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        read = ["-p", str(replica_port), "-0", "-r", "100", "-c", "1", "-t", "4:float", "-B", "127.0.0.1"]
        got = wait_until(lambda: values(mbpoll("-a", "1", *read)), "the replica to serve unit 1", interval=0.1)
        assert got == {100: "7.25"}
        assert values(mbpoll("-a", "2", *read)) == {100: "3.5"}
        retained = subprocess.run(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(mqtt_broker.port), "-t", "acme/works/plc1/level",
             "-C", "1", "-W", "10"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        assert json.loads(retained.stdout)["value"] == 7.25
    finally:
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(15)
    assert "2 records written" in log.read_text()
    # The historian on the IT side was fed from the IT journal too (each sample once).
    with sqlite3.connect(tmp_path / "it-historian.db") as db:
        assert sorted(db.execute("SELECT value FROM samples").fetchall()) == [(3.5,), (7.25,)]


def test_send_takes_its_settings_from_the_contract(tmp_path: Path) -> None:
    """`seam diode send --contract`: the contract's diode_send sink, its point filter and its journal."""
    key = tmp_path / "key"
    key.write_text(secrets.token_hex(32))
    port = free_port(kind=2)
    (tmp_path / "seam.yaml").write_text(
        CONTRACT
        + f"""\
  - id: to-it
    type: diode_send
    points: ["plc1/*"]
    events: false
    options: {{target: "127.0.0.1:{port}", key_file: "{key}", rate: 50Mbit/s, offload: false}}
journal:
  path: {tmp_path / "ot"}
"""
    )
    with Journal.open(tmp_path / "ot", source="edge") as journal:
        journal.append(
            [Sample("plc1/level", 1.0, Quality.GOOD, 1.0, 1.0), Sample("plc2/level", 2.0, Quality.GOOD, 1.0, 1.0)]
        )
    log, health = tmp_path / "receiver.log", free_port()
    receiver = subprocess.Popen(
        [SEAM, "diode", "receive", "--journal", str(tmp_path / "it"), "--listen", f"127.0.0.1:{port}",
         "--key-file", str(key), "--no-offload", "--metrics", f"127.0.0.1:{health}"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until(lambda: "listening on" in log.read_text(), "the receiver to listen", detail=log.read_text)
        sent = seam("send", "--contract", str(tmp_path / "seam.yaml"), "--drain")
        assert sent.returncode == 0, sent.stderr
        wait_until(lambda: received(health) >= 1, "the record at the receiver", ignore=(OSError,))
    finally:
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(15)
    assert "1 records written" in log.read_text()  # plc2 is not in the sink's points
    assert seam("send", "--contract", str(tmp_path / "seam.yaml"), "--sink", "nope").returncode == 2
    contract = (tmp_path / "seam.yaml").read_text()
    (tmp_path / "seam.yaml").write_text(contract.replace("offload: false", "offload: maybe"))
    refused = seam("send", "--contract", str(tmp_path / "seam.yaml"), "--drain")
    assert refused.returncode == 2 and "option offload: true or false" in refused.stderr, refused.stderr


def test_metrics_are_it_side_only_and_denied_by_default(tmp_path: Path) -> None:
    """/metrics needs the bearer token when one is set, /health never does, and without a token the
    receiver refuses to serve metrics anywhere but loopback."""
    import urllib.error
    import urllib.request

    key = tmp_path / "key"
    key.write_text(secrets.token_hex(32))
    common = ("receive", "--journal", str(tmp_path / "it"), "--key-file", str(key))
    refused = seam(*common, "--listen", f"127.0.0.1:{free_port()}", "--metrics", "0.0.0.0:0")
    assert refused.returncode == 2 and "without a token" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr

    token = secrets.token_hex(16)
    token_file = tmp_path / "token"
    token_file.write_text(token)
    port = free_port()
    process = subprocess.Popen(
        [SEAM, "diode", *common, "--listen", f"127.0.0.1:{free_port()}", "--metrics", f"127.0.0.1:{port}",
         "--token-file", str(token_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:

        def answer() -> dict[str, Any]:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                return dict(json.load(response))

        health = wait_until(answer, "the receiver's /health", interval=0.2, ignore=(OSError,))
        # No sender: the link is down, and /health says so (the receiver itself is running).
        assert health["status"] == "degraded", health
        source = health["components"]["source:diode"]
        assert source["state"] == "running" and source["detail"]["link_up"] is False
        assert source["detail"]["problems"] == ["no sender heard yet"] and "datagrams" in source["detail"]["receiver"]
        try:
            urllib.request.urlopen(f"{base}/metrics", timeout=2)
            raise AssertionError("/metrics answered without the token")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
        request = urllib.request.Request(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=2) as response:
            assert "seam_diode_link_up" in response.read().decode()
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert token not in output and "Traceback" not in output
