"""The edge node against a real Mosquitto, checked by an independent subscriber and Tahu's decoder."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otseam.audit.log import AuditLog, node_public_key, verify_log
from otseam.contract.models import SinkSpec
from otseam.core.plugins import PluginContext
from otseam.core.records import Batch, Quality, Sample
from otseam.host.app import HostApp
from otseam.host.store import SqliteStore
from otseam.protocols.sparkplug import codec
from otseam.sinks import sparkplug
from otseam.sinks.mqtt_common import MqttConfigError, parse_mqtt_options
from otseam.sinks.sparkplug.edge import SparkplugSink
from tests.support import servers

from .support import capture, contract, publish_raw, tahu_decode, tls_mosquitto, wait_until


def make_sink(tmp_path: Path, port: int | list[int], **options: Any) -> SparkplugSink:
    ports = port if isinstance(port, list) else [port]
    opts: dict[str, Any] = {
        "brokers": [f"127.0.0.1:{p}" for p in ports],
        "group_id": "plant",
        "edge_node_id": "edge1",
        "startup_delay": 0,
        "timeout": 3.0,
        **options,
    }
    spec = SinkSpec(id="spb", type="sparkplug", options=opts)
    return sparkplug.create(spec, PluginContext(contract(), str(tmp_path)))


def samples(start: int, count: int, point: str = "plc1/flow") -> Batch:
    now = time.time()
    records = [
        Sample(point, float(i), Quality.GOOD, 1_700_000_000 + i / 1000, now) for i in range(start, start + count)
    ]
    return Batch("journal-a", list(range(start, start + count)), list(records))


async def deliver_eventually(sink: SparkplugSink, batch: Batch, attempts: int = 60) -> None:
    """What the sink runner does: offer the same batch again until it is acknowledged."""

    async def acknowledged() -> bool:
        try:
            await sink.deliver(batch)
        except Exception:
            return False
        return True

    await wait_until(acknowledged, what="the batch to be acknowledged", within=attempts * 0.25, interval=0.25)


@pytest.fixture
async def broker() -> AsyncIterator[servers.Mosquitto]:
    with servers.mosquitto() as b:
        yield b


@pytest.mark.parametrize("version", ["5", "3.1.1"])
async def test_every_message_decodes_with_tahu_and_says_what_we_sent(
    tmp_path: Path, broker: servers.Mosquitto, version: str
) -> None:
    async with capture(broker.port) as cap:
        sink = make_sink(tmp_path, broker.port, mqtt_version=version)
        await sink.start()
        now = time.time()
        values: list[tuple[str, object]] = [
            ("plc1/level", 1.25),
            ("plc1/flow", -2.5e10),
            ("plc1/count", -12),
            ("plc1/total", -(2**40)),
            ("plc1/ucount", 65000),
            ("plc1/running", True),
            ("plc1/mode", "AUTO"),
            ("plc1/scaled", 12.3),
            ("plc2/pressure", 3.5),
        ]
        records = [Sample(k, v, Quality.GOOD, 1_700_000_000.123, now) for k, v in values]  # type: ignore[arg-type]
        records.append(Sample("plc1/level", None, Quality.BAD_COMM, 1_700_000_001.0, now))
        await sink.deliver(Batch("j", list(range(1, len(records) + 1)), list(records)))
        await sink.close()
        # MQTT 5: the NDEATH, then the Will the broker sends for DISCONNECT reason 0x04. MQTT 3.1.1: the NDEATH.
        deaths = 2 if version == "5" else 1
        await cap.wait_for(lambda: len(cap.of("NDEATH")) == deaths)
    kinds = [m.topic.split("/")[2] for m in cap.messages]
    assert kinds == ["NBIRTH", "DBIRTH", "DBIRTH", "DDATA", "DDATA"] + ["NDEATH"] * deaths
    decoded = tahu_decode(m.payload for m in cap.messages)
    assert all(d["ok"] for d in decoded)
    tahu = [d["tahu"] for d in decoded]
    # NBIRTH: seq 0, bdSeq, Rebirth false.
    assert str(tahu[0]["seq"]) == "0"
    nbirth = {m["name"]: m for m in tahu[0]["metrics"]}
    assert nbirth["Node Control/Rebirth"]["value"] is False and nbirth["Node Control/Rebirth"]["type"] == "Boolean"
    assert str(nbirth["bdSeq"]["value"]) == "0" and nbirth["bdSeq"]["type"] == "Int64"
    # DBIRTH: every point with its type and alias; seq follows.
    dbirth = {m["name"]: m for m in tahu[1]["metrics"]}
    assert [str(t["seq"]) for t in tahu[:5]] == ["0", "1", "2", "3", "4"]
    assert dbirth["level"]["type"] == "Float" and dbirth["count"]["type"] == "Int16"
    assert dbirth["total"]["type"] == "Int64" and dbirth["mode"]["type"] == "String"
    assert dbirth["scaled"]["type"] == "Double"
    alias_to_name = {str(m["alias"]): m["name"] for t in tahu[1:3] for m in t["metrics"]}
    # DDATA: values by alias, with timestamp and quality, exactly as Tahu reads them.
    data = {alias_to_name[str(m["alias"])]: m for t in tahu[3:5] for m in t["metrics"]}
    seen = {alias_to_name[str(m["alias"])] + str(i): m for t in tahu[3:5] for i, m in enumerate(t["metrics"])}
    assert len(seen) == len(values) + 1
    assert data["flow"]["value"] == -2.5e10
    assert data["count"]["value"] == -12
    # Int64 travels as two's complement in long_value. Tahu 1.0.3 would sign it with Long.toSigned(), but its
    # `instanceof Long` check fails against protobufjs's own copy of `long`, so it hands back the unsigned
    # 64-bit pattern: compare that pattern.
    assert int(data["total"]["value"]) % 2**64 == -(2**40) % 2**64
    assert data["ucount"]["value"] == 65000
    assert data["running"]["value"] is True
    assert data["mode"]["value"] == "AUTO"
    assert data["scaled"]["value"] == 12.3
    assert data["pressure"]["value"] == 3.5
    assert str(data["flow"]["timestamp"]) == "1700000000123"
    assert data["flow"]["properties"]["Quality"] == {"type": "Int32", "value": 192}
    # The last level sample is null with bad quality (the earlier good one is in the same message).
    levels = [m for t in tahu[3:5] for m in t["metrics"] if alias_to_name[str(m["alias"])] == "level"]
    assert levels[0]["value"] == pytest.approx(1.25)
    assert levels[1]["value"] is None and levels[1]["properties"]["Quality"]["value"] == 0
    assert [m.get("isNull") for d in decoded[3:5] for m in d["raw"]["metrics"]].count(True) == 1
    # Sparkplug 3.0: DDATA metrics carry the alias only, no name and no datatype (Tahu took it from the birth).
    assert all("datatype" not in m and "name" not in m for d in decoded[3:5] for m in d["raw"]["metrics"])
    # NDEATH: bdSeq of the session, no seq.
    ndeath = tahu[5]
    assert "seq" not in ndeath
    assert [(m["name"], str(m["value"])) for m in ndeath["metrics"]] == [("bdSeq", "0")]


async def test_will_carries_bdseq_which_survives_restarts(tmp_path: Path, broker: servers.Mosquitto) -> None:
    async with capture(broker.port) as cap:

        def death_bdseqs() -> list[int]:
            """One per session: a planned MQTT 5 goodbye is the NDEATH and the Will, both with its bdSeq."""
            found = [codec.decode_payload(m.payload).metrics[0].long_value for m in cap.of("NDEATH")]
            return sorted(set(found))

        for expected in (0, 1):
            sink = make_sink(tmp_path, broker.port, keepalive=5)
            await sink.start()
            await sink.deliver(samples(0, 1))
            assert sink.bdseq == expected
            await sink.close()
        # A third session dies without saying goodbye: the broker publishes the Will.
        sink = make_sink(tmp_path, broker.port, keepalive=5)
        await sink.start()
        await sink.deliver(samples(5, 1))
        assert sink._client is not None
        # Cut the TCP connection under the client: no NDEATH, no DISCONNECT, so the broker sends the Will.
        sock = sink._client._client.socket()
        assert sock is not None
        sock.shutdown(socket.SHUT_RDWR)
        await wait_until(lambda: len(death_bdseqs()) == 3, within=20, what="the Will")
        # The sink comes back by itself, in a new session. Until it noticed the loss, a delivery may fail:
        # the sink runner would offer the same batch again, as this loop does.
        await deliver_eventually(sink, samples(6, 1))
        await sink.close()
    births = [codec.decode_payload(m.payload) for m in cap.of("NBIRTH")]
    deaths = [codec.decode_payload(m.payload) for m in cap.of("NDEATH")]
    # Each session one more; a delivery that raced the cut may have cost one more session: still consecutive.
    bdseqs = [b.metrics[0].long_value for b in births]
    assert bdseqs == list(range(len(bdseqs))) and len(bdseqs) >= 4
    assert sorted({d.metrics[0].long_value for d in deaths})[:3] == [0, 1, 2]
    assert all(m.qos == 1 and not m.retain for m in cap.of("NDEATH"))
    assert (tmp_path / "sparkplug" / "spb" / "bdseq").read_text().strip() == str(bdseqs[-1])


async def test_waits_for_the_primary_host_then_moves_broker_when_it_goes_offline(tmp_path: Path) -> None:
    with servers.mosquitto() as first, servers.mosquitto() as second:
        async with capture(first.port) as cap1, capture(second.port) as cap2:
            sink = make_sink(tmp_path, [first.port, second.port], primary_host_id="scada", timeout=1.0)
            await sink.start()
            with pytest.raises(ConnectionError):
                await sink.deliver(samples(0, 1))  # no host yet: nothing may be published
            assert cap1.of("NBIRTH") == []
            stamp = int(time.time() * 1000)
            for port in (first.port, second.port):
                publish_raw(
                    port, "spBv1.0/STATE/scada", json.dumps({"online": True, "timestamp": stamp}).encode(), True
                )
            await sink.deliver(samples(1, 1))
            assert len(cap1.of("NBIRTH")) == 1 and cap2.of("NBIRTH") == []
            # An offline STATE older than the online one is stale and ignored.
            old = json.dumps({"online": False, "timestamp": stamp - 1}).encode()
            publish_raw(first.port, "spBv1.0/STATE/scada", old)
            await sink.deliver(samples(2, 1))
            assert sink.stats.broker.endswith(str(first.port))
            publish_raw(first.port, "spBv1.0/STATE/scada", json.dumps({"online": False, "timestamp": stamp}).encode())
            await cap1.wait_for(lambda: len(cap1.of("NDEATH")) >= 1)
            await deliver_eventually(sink, samples(3, 1))
            await sink.close()
            await cap2.wait_for(lambda: len(cap2.of("NDEATH")) >= 1)
    assert sink.stats.broker.endswith(str(second.port))
    assert len(cap2.of("NBIRTH")) == 1
    values = [codec.decode_payload(m.payload).metrics[0].double_value for m in cap1.of("DDATA") + cap2.of("DDATA")]
    assert values == [1.0, 2.0, 3.0]


async def test_rebirth_on_ncmd_and_every_other_command_is_refused_and_audited(
    tmp_path: Path, broker: servers.Mosquitto
) -> None:
    async with capture(broker.port) as cap:
        sink = make_sink(tmp_path, broker.port)
        await sink.start()
        await sink.deliver(samples(0, 1))

        def command(name: str, datatype: int, value: object) -> bytes:
            return codec.encode_payload(1, [codec.encode_plain_metric(name, datatype, value, 1)], None)  # type: ignore[arg-type]

        publish_raw(broker.port, "spBv1.0/plant/NCMD/edge1", command("Node Control/Rebirth", codec.BOOLEAN, True))
        await cap.wait_for(lambda: len(cap.of("NBIRTH")) == 2)
        publish_raw(broker.port, "spBv1.0/plant/DCMD/edge1/plc1", command("level", codec.FLOAT, 9.0))
        publish_raw(broker.port, "spBv1.0/plant/NCMD/edge1", command("Node Control/Reboot", codec.BOOLEAN, True))
        publish_raw(broker.port, "spBv1.0/plant/NCMD/edge1", b"\xff\xff not protobuf")
        await wait_until(lambda: sink.stats.refused_commands == 3, what="three refusals")
        await sink.deliver(samples(1, 1))
        await sink.close()
    births = cap.of("NBIRTH")
    assert [codec.decode_payload(b.payload).seq for b in births] == [0, 0]
    bdseqs = {codec.decode_payload(b.payload).metrics[0].long_value for b in births}
    assert bdseqs == {0}, "a rebirth keeps the session's bdSeq"
    assert len(cap.of("DBIRTH")) == 4
    audits = sink.audit_events
    assert [e.kind for e in audits] == ["audit"] * 3
    assert audits[0].data["type"] == "DCMD" and audits[0].data["metric"] == "level"
    assert audits[1].data["metric"] == "Node Control/Reboot"
    assert "refused" in audits[2].message
    # Every command that arrived is a record of the node's hash-chained audit log (the sink's close
    # wrote what was queued), the rebirth included.
    audit = AuditLog(tmp_path / "authority")
    records = [(r["kind"], r["data"]["metric"]) for r in audit.records()]
    assert records == [
        ("sparkplug.rebirth", "Node Control/Rebirth"),
        ("sparkplug.command.refused", "level"),
        ("sparkplug.command.refused", "Node Control/Reboot"),
        ("sparkplug.command.refused", "?"),
    ]
    assert verify_log(audit.path, audit.head_path, node_public_key(audit.directory)).ok


async def test_deliver_raises_while_the_broker_is_down_and_resumes_after(tmp_path: Path) -> None:
    with servers.mosquitto() as broker:
        sink = make_sink(tmp_path, broker.port, timeout=1.0)
        await sink.start()
        await sink.deliver(samples(0, 10))
        broker.stop()
        with pytest.raises((ConnectionError, OSError, TimeoutError, Exception)):
            await sink.deliver(samples(10, 10))
        broker.start_again()
        async with capture(broker.port) as cap:
            await deliver_eventually(sink, samples(10, 10))
            await sink.close()
            await cap.wait_for(lambda: len(cap.of("NDEATH")) >= 1)
        values = [m.double_value for d in cap.of("DDATA") for m in codec.decode_payload(d.payload).metrics]
        assert values == [float(i) for i in range(10, 20)]
        assert sink.stats.sessions == 2


async def test_edge_and_host_over_mutual_tls(tmp_path: Path) -> None:
    with tls_mosquitto() as (broker, _tls_port, mtls_port, pki):
        tls = {"ca": str(pki.ca), "cert": str(pki.client_cert), "key": str(pki.client_key)}
        store = SqliteStore(str(tmp_path / "h.db"))
        host = HostApp(
            parse_mqtt_options({"brokers": [f"mqtts://127.0.0.1:{mtls_port}"], "tls": tls}, default_client_id="h"),
            "scada",
            store,
        )
        running = asyncio.create_task(host.run())
        await host.online.wait()
        sink = make_sink(
            tmp_path, mtls_port, brokers=[f"mqtts://127.0.0.1:{mtls_port}"], tls=tls, primary_host_id="scada"
        )
        await sink.start()
        await sink.deliver(samples(0, 100))
        await wait_until(lambda: host.stats.metrics_stored == 100, what="100 values over mutual TLS")
        await sink.close()
        host.stop()
        await running
        await store.close()
        assert sink.stats.broker.startswith("mqtts://")
        # The same edge without its certificate never gets a session.
        bare = make_sink(
            tmp_path / "bare",
            mtls_port,
            brokers=[f"mqtts://127.0.0.1:{mtls_port}"],
            tls={"ca": str(pki.ca)},
            timeout=1.0,
        )
        await bare.start()
        with pytest.raises(ConnectionError):
            await bare.deliver(samples(0, 1))
        await bare.close()
        assert bare.stats.sessions == 0
        assert broker.port != mtls_port


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "the required option 'group_id' is missing"),
        ({"group_id": "a/b", "edge_node_id": "e"}, "without '/'"),
        ({"group_id": "g", "edge_node_id": "e", "qos": 2}, "qos"),
        ({"group_id": "g", "edge_node_id": "e", "password": "hunter2"}, "must not be written"),
        ({"group_id": "g", "edge_node_id": "e", "mqtt_version": 4.0}, "mqtt_version"),
        ({"group_id": "g", "edge_node_id": "e", "colour": 1}, "unknown option 'colour'"),
        ({"group_id": "g", "edge_node_id": "e", "tls": {"ca": "/nonexistent"}}, "no file"),
        ({"group_id": "g", "edge_node_id": "e", "startup_delay": "soon"}, "startup_delay"),
    ],
)
def test_bad_options_are_one_clear_error(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    spec = SinkSpec(id="s", type="sparkplug", options={"brokers": ["127.0.0.1:1"], **options})
    with pytest.raises(MqttConfigError, match=message) as info:
        sparkplug.create(spec, PluginContext(contract(), str(tmp_path)))
    assert "hunter2" not in str(info.value)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(max_size=200), device=st.sampled_from([None, "plc1", "nope"]), state=st.binary(max_size=80))
def test_hostile_commands_and_state_never_crash_the_edge(
    tmp_path: Path, payload: bytes, device: str | None, state: bytes
) -> None:
    sink = make_sink(tmp_path, 1, primary_host_id="scada")

    async def run() -> None:
        await sink._on_command(None, payload, device)  # type: ignore[arg-type]
        await sink._on_state(None, state)  # type: ignore[arg-type]

    asyncio.run(run())
    # Whatever arrived, nothing but a rebirth request or an audited refusal came of it.
    assert len(sink.audit_events) == sink.stats.refused_commands
    assert all(e.kind == "audit" and e.data["action"] == "command.refused" for e in sink.audit_events)
    assert sink.stats.births == 0 and sink.stats.messages == 0


async def test_deviating_settings_are_named_at_startup(
    tmp_path: Path, broker: servers.Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    conformant = make_sink(tmp_path, broker.port)
    assert conformant.options.mqtt.qos == 0 and conformant.options.deviations() == []
    sink = make_sink(tmp_path, broker.port, qos=1, datatype_in_data=True, quality_codes="opc")
    with caplog.at_level("WARNING"):
        await sink.start()
        await sink.close()
    warned = [r.getMessage() for r in caplog.records if "deviates from Sparkplug B 3.0" in r.getMessage()]
    assert len(warned) == 3
    assert any("qos 1" in w for w in warned) and any("datatype_in_data" in w for w in warned)
    assert any("500" in w for w in warned)


def test_a_host_with_a_persistent_session_is_named_a_deviation(tmp_path: Path) -> None:
    settings = parse_mqtt_options({"brokers": ["127.0.0.1:1"]}, default_client_id="h")
    assert HostApp(settings, "scada", SqliteStore(str(tmp_path / "a.db"))).deviations() == []
    persistent = HostApp(settings, "scada", SqliteStore(str(tmp_path / "b.db")), session_expiry=3600)
    assert "Clean Start" in persistent.deviations()[0]
