"""Sparkplug B 3.0 conformance of the edge node and the host application, one test per tck-id.

Each test is named after the assertion of the specification it checks (``tck-id-...``, dashes as
underscores). The evidence is gathered once per module against a real Mosquitto: what the edge node and
the host sent on the wire (a relay records every MQTT packet, see wire.py), what an independent
subscriber received, and every payload decoded by Eclipse Tahu's JavaScript codec. The Eclipse TCK
itself needs a HiveMQ broker and Java artifacts; these tests check the same statements with what runs
here. Only the default (conformant) settings are used.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from otseam.contract.models import SinkSpec
from otseam.core.plugins import PluginContext
from otseam.core.records import Batch, Event, Quality, Sample, Severity
from otseam.host.app import HostApp
from otseam.host.store import SqliteStore
from otseam.protocols.sparkplug import codec
from otseam.sinks import sparkplug
from otseam.sinks.mqtt_common import parse_mqtt_options
from tests.support import servers
from tests.support.wait import wait_until_async

from . import wire
from .support import Capture, Captured, contract, publish_raw, tahu_decode

GROUP, EDGE = "plant", "edge1"


@dataclass
class Evidence:
    #: Edge sessions through the relay: [MQTT 5 with rebirth and device death, MQTT 3.1.1].
    edge: list[wire.Session] = field(default_factory=list)
    #: The host's connection through the relay.
    host: list[wire.Session] = field(default_factory=list)
    #: Everything an independent subscriber received (spBv1.0/#), in order.
    received: list[Captured] = field(default_factory=list)
    #: Tahu's decoding of the edge's publications in session order (births typed the data).
    tahu: list[dict[str, Any]] = field(default_factory=list)
    host_republished_online: bool = False


def _sink(tmp: Path, port: int, **options: Any) -> sparkplug.SparkplugSink:
    opts = {"brokers": [f"127.0.0.1:{port}"], "group_id": GROUP, "edge_node_id": EDGE, "startup_delay": 0, **options}
    return sparkplug.create(SinkSpec(id="spb", type="sparkplug", options=opts), PluginContext(contract(), str(tmp)))


def _batch(records: list[Any], first: int) -> Batch:
    return Batch("j", list(range(first, first + len(records))), records)


async def _edge_sessions(tmp: Path, broker: servers.Mosquitto, cap: Capture, evidence: Evidence) -> None:
    async with wire.relay(broker.port) as relay:
        sink = _sink(tmp, relay.port)
        await sink.start()
        now = time.time()
        await sink.deliver(
            _batch(
                [
                    Sample("plc1/level", 1.5, Quality.GOOD, now, now),
                    Sample("plc1/flow", 2.5, Quality.STALE, now, now),
                    Sample("plc1/count", -3, Quality.BAD_COMM, now, now),
                    Sample("plc2/pressure", 4.5, Quality.GOOD, now, now),
                ],
                1,
            )
        )
        offline = Event(now, "device.state", "plc2", Severity.HIGH, "plc2 lost", {"state": "offline"})
        online = Event(now, "device.state", "plc2", Severity.INFO, "plc2 back", {"state": "online"})
        await sink.deliver(_batch([offline], 5))
        await sink.deliver(_batch([online, Sample("plc2/pressure", 4.75, Quality.GOOD, now, now)], 6))
        rebirth = codec.encode_payload(
            1, [codec.encode_plain_metric("Node Control/Rebirth", codec.BOOLEAN, True, 1)], 0
        )
        publish_raw(broker.port, f"spBv1.0/{GROUP}/NCMD/{EDGE}", rebirth)
        await wait_until_async(lambda: len(cap.of("NBIRTH")) == 2, "the rebirth")
        await sink.deliver(_batch([Sample("plc1/level", 1.75, Quality.GOOD, now + 1, now)], 8))
        await sink.close()
        await wait_until_async(lambda: len(cap.of("NDEATH")) == 2, "the NDEATH and the Will")

        sink = _sink(tmp, relay.port, mqtt_version="3.1.1")
        await sink.start()
        await sink.deliver(_batch([Sample("plc1/level", 2.0, Quality.GOOD, now + 2, now)], 9))
        await sink.close()
        await wait_until_async(lambda: len(cap.of("NDEATH")) == 3, "the 3.1.1 NDEATH")
        evidence.edge = list(relay.sessions)


async def _host_session(tmp: Path, broker: servers.Mosquitto, evidence: Evidence) -> None:
    async with wire.relay(broker.port) as relay:
        store = SqliteStore(str(tmp / "host.db"))
        settings = parse_mqtt_options({"brokers": [f"127.0.0.1:{relay.port}"], "timeout": 3.0}, default_client_id="h")
        app = HostApp(settings, "scada", store, rebirth_interval=0.0)
        task = asyncio.create_task(app.run())
        await asyncio.wait_for(app.online.wait(), 15)
        # A node the host never saw being born sends data: the host asks it for a rebirth (NCMD).
        data = codec.encode_payload(int(time.time() * 1000), [], 3)
        publish_raw(broker.port, f"spBv1.0/{GROUP}/DDATA/stranger/dev", data)
        # Someone says this host is offline while it is online: it must say it is online again.
        publish_raw(broker.port, "spBv1.0/STATE/scada", json.dumps({"online": False, "timestamp": 1}).encode(), True)

        def state_publishes() -> list[wire.Publish]:
            return [p for s in relay.sessions for p in s.publishes() if p.topic == "spBv1.0/STATE/scada"]

        def ncmds() -> list[wire.Publish]:
            return [p for s in relay.sessions for p in s.publishes() if "/NCMD/" in p.topic]

        await wait_until_async(lambda: len(state_publishes()) >= 2 and ncmds(), "the host's answers")
        evidence.host_republished_online = json.loads(state_publishes()[1].payload)["online"] is True
        app.stop()
        await task
        await store.close()
        evidence.host = list(relay.sessions)


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Evidence]:
    tmp = tmp_path_factory.mktemp("conformance")
    found = Evidence()
    with servers.mosquitto() as broker:
        cap = Capture(broker.port, ("spBv1.0/#",)).start()
        try:
            asyncio.run(_edge_sessions(tmp, broker, cap, found))
            found.received = [m for m in cap.messages if "/STATE/" not in m.topic]
        finally:
            cap.stop()
        asyncio.run(_host_session(tmp, broker, found))
    publications = [p for s in found.edge for p in s.publishes() if p.topic.startswith("spBv1.0/")]
    found.tahu = tahu_decode(p.payload for p in publications)
    assert all(d["ok"] for d in found.tahu), found.tahu
    yield found


# --- helpers over the evidence -------------------------------------------------------------------


def sent(evidence: Evidence, kind: str, session: int | None = None) -> list[wire.Publish]:
    sessions = evidence.edge if session is None else [evidence.edge[session]]
    return [p for s in sessions for p in s.publishes() if p.topic.split("/")[2:3] == [kind]]


def decoded(evidence: Evidence, kind: str) -> list[dict[str, Any]]:
    publications = [p for s in evidence.edge for p in s.publishes() if p.topic.startswith("spBv1.0/")]
    return [d["tahu"] for p, d in zip(publications, evidence.tahu, strict=True) if p.topic.split("/")[2] == kind]


def raw(evidence: Evidence, kind: str) -> list[dict[str, Any]]:
    publications = [p for s in evidence.edge for p in s.publishes() if p.topic.startswith("spBv1.0/")]
    return [d["raw"] for p, d in zip(publications, evidence.tahu, strict=True) if p.topic.split("/")[2] == kind]


def metrics_by_name(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in message["metrics"]}


def session_sequence(evidence: Evidence, session: int) -> list[tuple[str, int | None]]:
    """(message type, seq) of every message of one session, in the order sent; NDEATH has no seq."""
    out: list[tuple[str, int | None]] = []
    for p in evidence.edge[session].publishes():
        if not p.topic.startswith("spBv1.0/"):
            continue
        payload = codec.decode_payload(p.payload)
        out.append((p.topic.split("/")[2], int(payload.seq) if payload.HasField("seq") else None))
    return out


# --- connection ----------------------------------------------------------------------------------


def test_tck_id_principles_persistence_clean_session_50(evidence: Evidence) -> None:
    connect = evidence.edge[0].connect()
    assert connect.version == 5 and connect.clean and connect.session_expiry == 0


def test_tck_id_principles_persistence_clean_session_311(evidence: Evidence) -> None:
    connect = evidence.edge[1].connect()
    assert connect.version == 4 and connect.clean


def test_tck_id_message_flow_edge_node_birth_publish_will_message(evidence: Evidence) -> None:
    assert all(s.connect().will for s in evidence.edge)


def test_tck_id_message_flow_edge_node_birth_publish_will_message_qos(evidence: Evidence) -> None:
    assert all(s.connect().will_qos == 1 for s in evidence.edge)


def test_tck_id_message_flow_edge_node_birth_publish_will_message_will_retained(evidence: Evidence) -> None:
    assert not any(s.connect().will_retain for s in evidence.edge)


def test_tck_id_message_flow_edge_node_birth_publish_will_message_topic_and_payload_bdseq(evidence: Evidence) -> None:
    # The Will of session 0 was delivered by the broker (DISCONNECT 0x04): topic, QoS 1, bdSeq Int64 0.
    wills = [m for m in evidence.received if m.topic == f"spBv1.0/{GROUP}/NDEATH/{EDGE}"]
    assert len(wills) == 3 and all(m.qos == 1 and not m.retain for m in wills)
    (tahu,) = tahu_decode([wills[1].payload])
    assert [(m["name"], m["type"], str(m["value"])) for m in tahu["tahu"]["metrics"]] == [("bdSeq", "Int64", "0")]


def test_tck_id_message_flow_edge_node_ncmd_subscribe(evidence: Evidence) -> None:
    stream = evidence.edge[0].packets()
    subscribes = [p.body for p in stream if p.kind == wire.SUBSCRIBE]
    assert any(f"spBv1.0/{GROUP}/NCMD/{EDGE}".encode() in body for body in subscribes)


def test_tck_id_message_flow_edge_node_birth_publish_connect(evidence: Evidence) -> None:
    for session in evidence.edge:
        kinds = [p.kind for p in session.packets()]
        assert kinds[0] == wire.CONNECT and wire.PUBLISH in kinds


# --- NBIRTH --------------------------------------------------------------------------------------


def test_tck_id_topics_nbirth_mqtt(evidence: Evidence) -> None:
    births = sent(evidence, "NBIRTH")
    assert len(births) == 3 and all(p.qos == 0 and not p.retain for p in births)


def test_tck_id_topics_nbirth_topic(evidence: Evidence) -> None:
    assert {p.topic for p in sent(evidence, "NBIRTH")} == {f"spBv1.0/{GROUP}/NBIRTH/{EDGE}"}


def test_tck_id_topics_nbirth_seq_num(evidence: Evidence) -> None:
    assert [str(m["seq"]) for m in decoded(evidence, "NBIRTH")] == ["0", "0", "0"]


def test_tck_id_topics_nbirth_timestamp(evidence: Evidence) -> None:
    now_ms = time.time() * 1000
    assert all(0 < int(m["timestamp"]) <= now_ms for m in decoded(evidence, "NBIRTH"))


def test_tck_id_topics_nbirth_bdseq_included_and_typed_int64(evidence: Evidence) -> None:
    for message in decoded(evidence, "NBIRTH"):
        assert metrics_by_name(message)["bdSeq"]["type"] == "Int64"


def test_tck_id_topics_nbirth_bdseq_matching(evidence: Evidence) -> None:
    # The Will registered at CONNECT carries the bdSeq of the NBIRTH of that session.
    for index, session in enumerate(evidence.edge):
        nbirth = codec.decode_payload(sent(evidence, "NBIRTH", index)[0].payload)
        will_bdseq = codec.decode_payload(_will_payload(session)).metrics[0].long_value
        assert nbirth.metrics[0].name == "bdSeq" and nbirth.metrics[0].long_value == will_bdseq


def _will_payload(session: wire.Session) -> bytes:
    """The Will payload of a CONNECT (after the client id and, on MQTT 5, the Will properties)."""
    packet = session.packets()[0]
    body, connect = packet.body, session.connect()
    at = body.index(connect.client_id.encode()) + len(connect.client_id)
    if connect.version == 5:
        length = body[at]  # Will properties: short in practice (one-byte length)
        at += 1 + length
    topic_len = int.from_bytes(body[at : at + 2], "big")
    at += 2 + topic_len
    size = int.from_bytes(body[at : at + 2], "big")
    return body[at + 2 : at + 2 + size]


def test_tck_id_topics_nbirth_bdseq_increment(evidence: Evidence) -> None:
    values = [metrics_by_name(m)["bdSeq"]["value"] for m in decoded(evidence, "NBIRTH")]
    assert [str(v) for v in values] == ["0", "0", "1"], "rebirth keeps the bdSeq, a new CONNECT adds one"


def test_tck_id_topics_nbirth_rebirth_metric(evidence: Evidence) -> None:
    for message in decoded(evidence, "NBIRTH"):
        rebirth = metrics_by_name(message)["Node Control/Rebirth"]
        assert rebirth["type"] == "Boolean" and rebirth["value"] is False


# --- DBIRTH, DDATA, DDEATH -----------------------------------------------------------------------


def test_tck_id_topics_dbirth_mqtt(evidence: Evidence) -> None:
    births = sent(evidence, "DBIRTH")
    assert len(births) >= 5 and all(p.qos == 0 and not p.retain for p in births)


def test_tck_id_topics_ddata_mqtt(evidence: Evidence) -> None:
    data = sent(evidence, "DDATA")
    assert data and all(p.qos == 0 and not p.retain for p in data)


def test_tck_id_topics_ddeath_mqtt(evidence: Evidence) -> None:
    deaths = sent(evidence, "DDEATH")
    assert [p.topic for p in deaths] == [f"spBv1.0/{GROUP}/DDEATH/{EDGE}/plc2"]
    assert all(p.qos == 0 and not p.retain for p in deaths)


def test_tck_id_topics_dbirth_metrics(evidence: Evidence) -> None:
    # Every metric of a DBIRTH has a name, an alias, a datatype and a value (or is_null), with a timestamp.
    for message in raw(evidence, "DBIRTH"):
        for metric in message["metrics"]:
            assert metric["name"] and metric["alias"] and metric["datatype"] and metric["timestamp"]
            assert metric.get("isNull") or any(k.endswith("Value") for k in metric)


def test_tck_id_payloads_alias_birth_requirement(evidence: Evidence) -> None:
    aliases = [m["alias"] for message in raw(evidence, "DBIRTH")[:2] for m in message["metrics"]]
    assert len(aliases) == len(set(aliases)), "aliases are unique across the edge node (payloads-alias-uniqueness)"


def test_tck_id_payloads_alias_data_cmd_requirement(evidence: Evidence) -> None:
    for message in raw(evidence, "DDATA"):
        assert all("name" not in m and m["alias"] for m in message["metrics"])


def test_tck_id_payloads_metric_datatype_not_req(evidence: Evidence) -> None:
    for message in raw(evidence, "DDATA"):
        assert all("datatype" not in m for m in message["metrics"])
    typed = [d["typedFromBirth"] for d in evidence.tahu if d["typedFromBirth"]]
    assert sum(typed) == sum(len(m["metrics"]) for m in raw(evidence, "DDATA"))


def test_tck_id_payloads_metric_datatype_req(evidence: Evidence) -> None:
    for kind in ("NBIRTH", "DBIRTH"):
        assert all(m["datatype"] for message in raw(evidence, kind) for m in message["metrics"])


def test_tck_id_payloads_name_birth_data_requirement(evidence: Evidence) -> None:
    for kind in ("NBIRTH", "DBIRTH", "DDATA"):
        assert all(m["timestamp"] for message in raw(evidence, kind) for m in message["metrics"])


def test_tck_id_payloads_propertyset_quality_value_type_and_value(evidence: Evidence) -> None:
    qualities = [
        m["properties"]["Quality"]
        for message in decoded(evidence, "DDATA") + decoded(evidence, "DBIRTH")
        for m in message["metrics"]
    ]
    assert {q["type"] for q in qualities} == {"Int32"}
    assert {q["value"] for q in qualities} <= {0, 192, 500}
    # The stale sample is 500, not the OPC DA 64.
    first_data = decoded(evidence, "DDATA")[0]
    assert sorted(m["properties"]["Quality"]["value"] for m in first_data["metrics"]) == [0, 192, 500]


def test_tck_id_message_flow_device_birth_publish_nbirth_wait(evidence: Evidence) -> None:
    for session in range(len(evidence.edge)):
        kinds = [kind for kind, _ in session_sequence(evidence, session)]
        assert kinds[0] == "NBIRTH"


def test_tck_id_payloads_dbirth_order(evidence: Evidence) -> None:
    # No DDATA for a device before its DBIRTH in the session, nor between its DDEATH and the next DBIRTH.
    for session in evidence.edge:
        alive: set[str] = set()
        for p in session.publishes():
            parts = p.topic.split("/")
            if len(parts) < 5:
                continue
            if parts[2] == "DBIRTH":
                alive.add(parts[4])
            elif parts[2] == "DDEATH":
                alive.discard(parts[4])
            elif parts[2] == "DDATA":
                assert parts[4] in alive


def test_tck_id_payloads_sequence_num_always_included(evidence: Evidence) -> None:
    for session in range(len(evidence.edge)):
        for kind, seq in session_sequence(evidence, session):
            assert (seq is None) == (kind == "NDEATH"), (kind, seq)


def test_tck_id_payloads_sequence_num_incrementing(evidence: Evidence) -> None:
    # topics-dbirth-seq, topics-ddata-seq-num, topics-ddeath-seq-num: one more than the previous message,
    # counted from the NBIRTH's 0 (a rebirth starts again at 0).
    for session in range(len(evidence.edge)):
        previous: int | None = None
        for kind, seq in session_sequence(evidence, session):
            if kind == "NDEATH":
                continue
            if kind == "NBIRTH":
                assert seq == 0
            else:
                assert previous is not None and seq == (previous + 1) % 256, (kind, seq, previous)
            previous = seq


def test_tck_id_topics_ddata_timestamp(evidence: Evidence) -> None:
    assert all(int(m["timestamp"]) > 0 for m in decoded(evidence, "DDATA"))


# --- NDEATH and the end of a session -------------------------------------------------------------


def test_tck_id_topics_ndeath_payload(evidence: Evidence) -> None:
    for message in decoded(evidence, "NDEATH"):
        assert [m["name"] for m in message["metrics"]] == ["bdSeq"]
        assert message["metrics"][0]["type"] == "Int64"


def test_tck_id_topics_ndeath_seq(evidence: Evidence) -> None:
    assert all("seq" not in m for m in decoded(evidence, "NDEATH"))


def test_tck_id_operational_behavior_edge_node_intentional_disconnect_ndeath(evidence: Evidence) -> None:
    for session in evidence.edge:
        kinds = [(p.kind, p.body) for p in session.packets()]
        last_publish = max(i for i, (k, _) in enumerate(kinds) if k == wire.PUBLISH)
        assert b"/NDEATH/" in kinds[last_publish][1]
        assert kinds[-1][0] == wire.DISCONNECT and last_publish < len(kinds) - 1


def test_tck_id_operational_behavior_edge_node_intentional_disconnect_packet(evidence: Evidence) -> None:
    # Immediately after the NDEATH: a DISCONNECT; on MQTT 5 with reason code 0x04 (disconnect with Will).
    mqtt5, mqtt311 = evidence.edge
    assert wire.disconnect_reason(mqtt5.packets()[-1]) == 0x04
    assert mqtt311.packets()[-1].kind == wire.DISCONNECT and mqtt311.packets()[-1].body == b""


# --- the host application ------------------------------------------------------------------------


def test_tck_id_message_flow_phid_sparkplug_clean_session_50(evidence: Evidence) -> None:
    connect = evidence.host[0].connect()
    assert connect.version == 5 and connect.clean and connect.session_expiry == 0


def test_tck_id_host_topic_phid_death_required(evidence: Evidence) -> None:
    connect = evidence.host[0].connect()
    assert connect.will and connect.will_qos == 1 and connect.will_retain


def test_tck_id_message_flow_phid_sparkplug_subscription(evidence: Evidence) -> None:
    kinds = [p.kind for p in evidence.host[0].packets()]
    first_publish = kinds.index(wire.PUBLISH)
    assert wire.SUBSCRIBE in kinds[:first_publish]


def test_tck_id_host_topic_phid_birth_qos_and_retain(evidence: Evidence) -> None:
    state = [p for p in evidence.host[0].publishes() if p.topic == "spBv1.0/STATE/scada"]
    assert state[0].qos == 1 and state[0].retain
    payload = json.loads(state[0].payload)
    assert payload["online"] is True and isinstance(payload["timestamp"], int)


def test_tck_id_host_topic_phid_birth_payload_timestamp(evidence: Evidence) -> None:
    # The birth's timestamp is the one of the Will registered at CONNECT.
    birth = json.loads(next(p for p in evidence.host[0].publishes() if p.topic == "spBv1.0/STATE/scada").payload)
    assert str(birth["timestamp"]).encode() in evidence.host[0].packets()[0].body


def test_tck_id_message_flow_hid_sparkplug_state_message_delivered(evidence: Evidence) -> None:
    assert evidence.host_republished_online


def test_tck_id_topics_ncmd_mqtt(evidence: Evidence) -> None:
    ncmds = [p for p in evidence.host[0].publishes() if "/NCMD/" in p.topic]
    assert ncmds and all(p.qos == 0 and not p.retain for p in ncmds)
    (tahu,) = tahu_decode([ncmds[0].payload])
    assert [(m["name"], m["value"]) for m in tahu["tahu"]["metrics"]] == [("Node Control/Rebirth", True)]


def test_tck_id_host_topic_phid_death_payload_timestamp_disconnect_clean(evidence: Evidence) -> None:
    # On a planned stop the host publishes its death (online false) before the DISCONNECT.
    packets = evidence.host[0].packets()
    assert packets[-1].kind == wire.DISCONNECT
    last = wire.publish([p for p in packets if p.kind == wire.PUBLISH][-1], 5)
    assert last.topic == "spBv1.0/STATE/scada" and json.loads(last.payload)["online"] is False
