"""`seam host` against a real Mosquitto: Tahu's edge node, our edge node, rebirths, scale-out."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otseam.contract.models import SinkSpec
from otseam.core.plugins import PluginContext
from otseam.core.records import Batch, Quality, Sample
from otseam.host.app import HostApp
from otseam.host.cli import run_host
from otseam.host.store import SqliteStore
from otseam.protocols.sparkplug import codec
from otseam.sinks import sparkplug
from otseam.sinks.mqtt_common import parse_mqtt_options
from tests.sinks.sparkplug.support import INTEROP, capture, contract, publish_raw, tls_mosquitto, wait_until
from tests.support import servers

SEAM = str(Path(sys.executable).with_name("seam"))


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_leftover_hosts() -> Iterator[None]:
    """Whatever a test does, every `seam host` it started is gone afterwards."""
    yield
    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.wait()


class HostProcess:
    def __init__(self, *args: str) -> None:
        # In a directory of its own: the host keeps a small journal of its node beside its data.
        self.workdir = tempfile.mkdtemp(prefix="seam-host-test-")
        self.process = subprocess.Popen(
            [SEAM, "host", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            cwd=self.workdir,
        )
        _STARTED.append(self.process)
        line = self.process.stdout.readline() if self.process.stdout else ""
        if "online" not in line:
            self.process.kill()
            raise AssertionError(
                f"seam host did not come online: {line!r} {self.process.stderr.read() if self.process.stderr else ''}"
            )

    def stop(self) -> str:
        """SIGTERM, then the summary it prints."""
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=20)
        assert self.process.returncode == 0, err
        return out

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(sql))


def make_sink(tmp_path: Path, port: int, **options: Any) -> sparkplug.SparkplugSink:
    spec = SinkSpec(
        id="spb",
        type="sparkplug",
        options={
            "brokers": [f"127.0.0.1:{port}"],
            "group_id": "plant",
            "edge_node_id": "edge1",
            "startup_delay": 0,
            **options,
        },
    )
    return sparkplug.create(spec, PluginContext(contract(), str(tmp_path)))


def flow(start: int, count: int) -> Batch:
    now = time.time()
    return Batch("j", list(range(start, start + count)),
                 [Sample("plc1/flow", float(i), Quality.GOOD, 1_700_000_000 + i / 1000, now) for i in range(start, start + count)])  # fmt: skip


def start_tahu_edge(port: int, messages: int) -> subprocess.Popen[str]:
    """Eclipse Tahu's JavaScript edge node: group tahu, node node7, device dev1."""
    return subprocess.Popen(
        ["node", str(INTEROP / "sparkplug_edge.js"), f"mqtt://127.0.0.1:{port}", "tahu", "node7", "dev1", str(messages)],
        cwd=INTEROP, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.fixture
def broker() -> Iterator[servers.Mosquitto]:
    with servers.mosquitto() as b:
        yield b


async def test_host_ingests_tahus_edge_node_and_tracks_its_state(tmp_path: Path, broker: servers.Mosquitto) -> None:
    db = tmp_path / "host.db"
    host = HostProcess("--broker", f"127.0.0.1:{broker.port}", "--host-id", "scada", "--db", str(db))
    async with capture(broker.port, "spBv1.0/STATE/#") as cap:
        await cap.wait_for(lambda: len(cap.messages) == 1)
        state = cap.messages[0]
        assert state.retain and state.qos == 1 and json.loads(state.payload)["online"] is True
        edge = start_tahu_edge(broker.port, 200)
        try:
            assert edge.stdout is not None and edge.stdout.readline().strip() == "done 200"
            query = "SELECT count(*) FROM sparkplug_metrics WHERE group_id='tahu' AND device='dev1'"
            await wait_until(lambda: rows(db, query)[0][0] == 402, within=20, what="births and 200 DDATA stored")
            assert rows(db, "SELECT online FROM sparkplug_state WHERE edge_node='node7' AND device=''") == [(1,)]
        finally:
            assert edge.stdin is not None
            edge.stdin.close()  # Tahu's client stops: NDEATH
            edge.wait(10)
        await wait_until(
            lambda: rows(db, "SELECT online FROM sparkplug_state WHERE edge_node='node7' AND device='dev1'") == [(0,)],
            what="node death marks its devices offline",
        )
        values = rows(db, "SELECT metric, value FROM sparkplug_metrics WHERE device='dev1' ORDER BY ts_ms, metric")
        counts = [v for m, v in values if m == "count"]
        levels = [v for m, v in values if m == "level"]
        assert counts == [0.0] + [float(-i) for i in range(1, 201)], "Int32 negatives decoded"
        assert levels == [0.0] + [i * 0.5 for i in range(1, 201)]
        assert rows(db, "SELECT count(*) FROM sparkplug_metrics WHERE edge_node='node7' AND device=''") == [(1,)]
        host.kill()  # kill -9: the broker publishes the Will, retained
        await cap.wait_for(lambda: len(cap.messages) == 2)
        assert json.loads(cap.messages[1].payload)["online"] is False
    async with capture(broker.port, "spBv1.0/STATE/#") as late:
        await late.wait_for(lambda: len(late.messages) == 1)
        assert late.messages[0].retain and json.loads(late.messages[0].payload)["online"] is False


async def test_host_asks_for_rebirth_on_a_seq_gap_and_an_unknown_alias(
    tmp_path: Path, broker: servers.Mosquitto
) -> None:
    store = SqliteStore(str(tmp_path / "h.db"))
    settings_ = parse_mqtt_options({"brokers": [f"127.0.0.1:{broker.port}"]}, default_client_id="seam-host-h")
    host = HostApp(settings_, "h", store, rebirth_interval=0.0)
    running = asyncio.create_task(host.run())
    await host.online.wait()
    sink = make_sink(tmp_path, broker.port)
    try:
        async with capture(broker.port) as cap:
            await sink.start()
            await sink.deliver(flow(0, 5))
            await wait_until(lambda: host.stats.metrics_stored == 5)
            assert host.stats.rebirth_requests == 0
            # A DDATA whose seq skips ahead: something was lost in between.
            metric = codec.MetricCodec.build("", codec.DOUBLE, 1, True)  # alias 1: plc1/level
            gap = codec.encode_payload(1, [metric.encode(metric.data_head, 1.0, Quality.GOOD, 1)], 200)
            publish_raw(broker.port, "spBv1.0/plant/DDATA/edge1/plc1", gap)
            await cap.wait_for(lambda: len(cap.of("NBIRTH")) == 2)
            assert host.stats.seq_gaps == 1 and host.stats.rebirth_requests == 1
            (ncmd,) = cap.of("NCMD")
            assert codec.decode_payload(ncmd.payload).metrics[0].name == "Node Control/Rebirth"
            await wait_until(lambda: host.nodes[("plant", "edge1")].seq == len(contract().devices))
            # The right next seq but an alias nobody declared.
            seq = (host.nodes[("plant", "edge1")].seq or 0) + 1
            unknown = codec.MetricCodec.build("", codec.DOUBLE, 999, True)
            odd = codec.encode_payload(1, [unknown.encode(unknown.data_head, 1.0, Quality.GOOD, 1)], seq)
            publish_raw(broker.port, "spBv1.0/plant/DDATA/edge1/plc1", odd)
            await cap.wait_for(lambda: len(cap.of("NBIRTH")) == 3)
            assert host.stats.unknown_aliases == 1
            # Data keeps flowing in the new session, and nothing was stored twice.
            await sink.deliver(flow(5, 5))
            await wait_until(lambda: host.stats.metrics_stored == 11, what="the new session's data stored")
    finally:
        await sink.close()
        host.stop()
        await running
        await store.close()
    flow_rows = "SELECT count(*), min(value), max(value) FROM sparkplug_metrics WHERE metric='flow'"
    assert rows(tmp_path / "h.db", flow_rows) == [(10, 0.0, 9.0)]


def level_data(seq: int, value: float) -> bytes:
    """A DDATA of plc1/level (alias 1 in the sink's births) with this seq."""
    metric = codec.MetricCodec.build("", codec.DOUBLE, 1, True)
    return codec.encode_payload(1, [metric.encode(metric.data_head, value, Quality.GOOD, int(value))], seq)


async def test_tck_id_operational_behavior_host_reordering_start_success_and_rebirth(
    tmp_path: Path, broker: servers.Mosquitto
) -> None:
    """Reordered messages are put back in seq order with no rebirth; one that never comes gets a rebirth
    after the reorder timeout, and what was held is stored all the same."""
    store = SqliteStore(str(tmp_path / "h.db"))
    settings_ = parse_mqtt_options({"brokers": [f"127.0.0.1:{broker.port}"]}, default_client_id="seam-host-r")
    # Long enough that the swapped pair is always put back in order, however slow the machine.
    host = HostApp(settings_, "h", store, rebirth_interval=0.0, reorder_timeout=120.0)
    running = asyncio.create_task(host.run())
    await host.online.wait()
    sink = make_sink(tmp_path, broker.port)
    topic = "spBv1.0/plant/DDATA/edge1/plc1"
    try:
        async with capture(broker.port) as cap:
            await sink.start()
            await sink.deliver(flow(0, 5))
            await wait_until(lambda: host.stats.metrics_stored == 5)
            seq = host.nodes[("plant", "edge1")].seq or 0
            # Two messages swapped on the way (as a broker cluster may do with QoS 0).
            publish_raw(broker.port, topic, level_data((seq + 2) % 256, 2.0))
            await wait_until(lambda: host.stats.reordered == 1, what="the early message held")
            assert host.stats.metrics_stored == 5
            publish_raw(broker.port, topic, level_data((seq + 1) % 256, 1.0))
            await wait_until(lambda: host.stats.metrics_stored == 7, what="both applied once the missing one came")
            assert (host.stats.seq_gaps, host.stats.rebirth_requests) == (0, 0)
            assert host.nodes[("plant", "edge1")].seq == (seq + 2) % 256
            # One that never comes: after the reorder timeout, a gap, a rebirth, and the held one stored.
            host.reorder_timeout = 0.2
            publish_raw(broker.port, topic, level_data((seq + 4) % 256, 4.0))
            await cap.wait_for(lambda: len(cap.of("NCMD")) == 1)
            await wait_until(lambda: host.stats.metrics_stored >= 8, what="the held message stored all the same")
            assert host.stats.seq_gaps == 1 and host.stats.rebirth_requests == 1
    finally:
        await sink.close()
        host.stop()
        await running
        await store.close()
    # The level values in the order their seqs say, each once.
    stored = rows(tmp_path / "h.db", "SELECT value, seq FROM sparkplug_metrics WHERE metric='level' ORDER BY seq")
    assert [value for value, _ in stored] == [1.0, 2.0, 4.0]


async def test_two_hosts_share_the_data_and_store_it_once(
    tmp_path: Path, broker: servers.Mosquitto, pg_server: servers.Postgres
) -> None:
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS sparkplug_metrics, sparkplug_state, sparkplug_sessions")
    common = ["--broker", f"127.0.0.1:{broker.port}", "--dsn", pg_server.dsn, "--share-group", "historians"]
    first = HostProcess(*common, "--host-id", "hist-a")
    second = HostProcess(*common, "--host-id", "hist-b")
    # The deviation qos 1: at Sparkplug's QoS 0 the broker drops messages for a subscriber that falls behind
    # (these hosts write each message to PostgreSQL before the next), and this test counts every one.
    sink = make_sink(tmp_path, broker.port, max_metrics_per_message=20, report_by_exception=False, qos=1)
    await sink.start()
    total = 2000
    for start in range(0, total, 250):
        await sink.deliver(flow(start, 250))
    # Replay everything in a new session (as after a crash): new bdSeq, new seq numbers, same values.
    await sink.close()
    await sink.start()
    for start in range(0, total, 500):
        await sink.deliver(flow(start, 500))
    # Markers after the replay, one message each: the broker hands a shared subscription's messages to
    # its hosts in turn, and each host works through its share in order, so once every marker is stored
    # both hosts have been through their share of the replay.
    markers = 10
    for i in range(markers):
        await sink.deliver(flow(total + i, 1))
    await sink.close()

    def stored() -> int:
        with psycopg.connect(pg_server.dsn) as conn:
            row = conn.execute("SELECT count(*) FROM sparkplug_metrics WHERE metric='flow'").fetchone()
            return int(row[0]) if row else 0

    await wait_until(lambda: stored() == total + markers, within=30, what="every value and marker stored")
    summaries = [json.loads(h.stop().splitlines()[-1].split("stopped ", 1)[1]) for h in (first, second)]
    # Both hosts took a share of the data; together they stored each value exactly once.
    assert all(s["metrics_stored"] > 0 for s in summaries)
    assert sum(s["metrics_stored"] for s in summaries) == total + markers
    assert sum(s["metrics_duplicate"] for s in summaries) >= total
    with psycopg.connect(pg_server.dsn) as conn:
        distinct = conn.execute("SELECT count(DISTINCT value) FROM sparkplug_metrics WHERE metric='flow'").fetchone()
    assert distinct == (total + markers,)


def test_seam_host_refuses_bad_arguments_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (dict(brokers=["127.0.0.1:99999"], host_id="h", db="x.db"), "port must be a number"),
        (dict(brokers=["127.0.0.1:1"], host_id="a/b", db="x.db"), "--host-id"),
        (dict(brokers=["127.0.0.1:1"], host_id="h", db="x.db", share_group="g", mqtt_version="3.1.1"), "MQTT 5"),
        (dict(brokers=["127.0.0.1:1"], host_id="h", db="x.db", tls_ca="/nonexistent.pem"), "no file"),
        (dict(brokers=["127.0.0.1:1"], host_id="h", db="x.db", share_group="a+b"), "--share-group"),
    ]  # fmt: skip
    defaults: dict[str, Any] = dict(db=None, dsn=None, share_group=None, mqtt_version="5", tls_ca=None,
                                    tls_cert=None, tls_key=None, username=None, password_env=None)  # fmt: skip
    for args, message in cases:
        assert run_host(**{**defaults, **args}) == 2, args
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    # And once through the real command line.
    result = subprocess.run(
        [SEAM, "host", "--broker", "127.0.0.1:1", "--host-id", "h"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "give exactly one of --db" in result.stderr and "Traceback" not in result.stderr


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    topic=st.sampled_from(
        ["spBv1.0/g/NBIRTH/n", "spBv1.0/g/DDATA/n/d", "spBv1.0/g/DBIRTH/n/d", "spBv1.0/g/NDEATH/n", "spBv1.0/x", "a/b"]
    ),
    payload=st.binary(max_size=300),
)
def test_hostile_payloads_never_crash_the_host(tmp_path: Path, topic: str, payload: bytes) -> None:
    async def run() -> None:
        store = SqliteStore(str(tmp_path / "fuzz.db"))
        host = HostApp(parse_mqtt_options({"brokers": ["127.0.0.1:1"]}, default_client_id="x"), "h", store)
        await host.handle(None, topic, payload)
        await store.close()

    asyncio.run(run())


def test_environment_has_node() -> None:
    assert subprocess.run(["node", "--version"], capture_output=True, check=False).returncode == 0
    assert os.path.isdir(INTEROP / "node_modules" / "sparkplug-client")


async def test_kill_minus_9_of_the_host_loses_nothing(tmp_path: Path, broker: servers.Mosquitto) -> None:
    """With the deviations that ask for it (a persistent host session, QoS 1 from the edge), the broker keeps
    the host's session: what it queued, or sent without an ack, arrives after a restart."""
    db = tmp_path / "host.db"
    args = ("--broker", f"127.0.0.1:{broker.port}", "--host-id", "scada", "--db", str(db), "--session-expiry", "3600")
    host = HostProcess(*args)
    sink = make_sink(tmp_path, broker.port, max_metrics_per_message=20, qos=1)
    await sink.start()
    total = 3000
    query = "SELECT count(*) FROM sparkplug_metrics WHERE metric='flow'"
    try:
        for start in range(0, 1000, 100):
            await sink.deliver(flow(start, 100))
        await wait_until(lambda: rows(db, query)[0][0] >= 300, what="the host to be storing")
        host.kill()  # kill -9, possibly in the middle of a write
        for start in range(1000, total, 100):
            await sink.deliver(flow(start, 100))  # the broker acknowledges and queues for the dead host
        host = HostProcess(*args)
        await wait_until(lambda: rows(db, query)[0][0] == total, within=30, what="every value after the restart")
    finally:
        await sink.close()
        host.stop()
    values = [v for (v,) in rows(db, "SELECT value FROM sparkplug_metrics WHERE metric='flow' ORDER BY ts_ms")]
    assert values == [float(i) for i in range(total)]


async def test_seam_host_over_mutual_tls_with_mqtt_311(tmp_path: Path) -> None:
    with tls_mosquitto() as (_broker, _tls_port, mtls_port, pki):
        db = tmp_path / "host.db"
        host = HostProcess(
            "--broker", f"mqtts://127.0.0.1:{mtls_port}", "--host-id", "scada", "--db", str(db),
            "--mqtt-version", "3.1.1", "--tls-ca", str(pki.ca), "--tls-cert", str(pki.client_cert),
            "--tls-key", str(pki.client_key),
        )  # fmt: skip
        tls = {"ca": str(pki.ca), "cert": str(pki.client_cert), "key": str(pki.client_key)}
        sink = make_sink(tmp_path, mtls_port, brokers=[f"mqtts://127.0.0.1:{mtls_port}"], tls=tls,
                         mqtt_version="3.1.1", primary_host_id="scada")  # fmt: skip
        await sink.start()
        try:
            await sink.deliver(flow(0, 50))
            query = "SELECT count(*) FROM sparkplug_metrics WHERE metric='flow'"
            await wait_until(lambda: rows(db, query) == [(50,)], what="50 values over mutual TLS and MQTT 3.1.1")
        finally:
            await sink.close()
            host.stop()


async def test_host_reconnects_after_a_broker_restart(tmp_path: Path, broker: servers.Mosquitto) -> None:
    store = SqliteStore(str(tmp_path / "h.db"))
    settings_ = parse_mqtt_options({"brokers": [f"127.0.0.1:{broker.port}"], "timeout": 2.0}, default_client_id="h")
    host = HostApp(settings_, "scada", store)
    running = asyncio.create_task(host.run())
    await host.online.wait()
    sink = make_sink(tmp_path, broker.port, primary_host_id="scada", timeout=2.0)
    await sink.start()
    try:
        await sink.deliver(flow(0, 10))
        await wait_until(lambda: host.stats.metrics_stored == 10, what="before the outage")
        broker.stop()
        await wait_until(lambda: not host.online.is_set(), what="the host to notice")
        await asyncio.sleep(1.0)  # the behaviour: an outage of a while, the host retrying with backoff meanwhile
        broker.start_again()

        # The broker lost its retained STATE: the edge births only after the host is back online.
        async def delivered() -> bool:
            try:
                await sink.deliver(flow(10, 10))
            except Exception:
                return False
            return True

        await wait_until(delivered, what="the edge to deliver again", within=20, interval=0.25)
        await wait_until(lambda: host.stats.metrics_stored == 20, within=30, what="after the outage")
    finally:
        await sink.close()
        host.stop()
        await running
        await store.close()
    assert rows(tmp_path / "h.db", "SELECT count(*) FROM sparkplug_metrics WHERE metric='flow'") == [(20,)]
