"""The UNS publisher against a real Mosquitto: topics, JSON, retain, QoS, TLS and mutual TLS."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otseam.contract.models import SinkSpec
from otseam.core.plugins import PluginContext
from otseam.core.records import Batch, Event, Quality, Sample, Severity
from otseam.sinks import uns_json
from otseam.sinks.mqtt_common import MqttConfigError
from otseam.sinks.mqtt_common.publish import PublishRefused
from otseam.sinks.uns_json.sink import UnsJsonSink
from tests.sinks.sparkplug.support import Pki, capture, contract, make_pki, tls_mosquitto
from tests.support import servers


def make(tmp_path: Path, port: int, scheme: str = "", **options: Any) -> UnsJsonSink:
    spec = SinkSpec(
        id="uns", type="uns_json", options={"brokers": [f"{scheme}127.0.0.1:{port}"], "timeout": 3.0, **options}
    )
    return uns_json.create(spec, PluginContext(contract(), str(tmp_path)))


def batch() -> Batch:
    return Batch(
        "edge-a",
        [10, 11, 12, 13],
        [
            Sample("plc1/level", 2.5, Quality.GOOD, 1_700_000_000.123, 1_700_000_000.2),
            Sample("plc1/running", True, Quality.GOOD, 1_700_000_001.0, 1_700_000_001.0),
            Sample("plc2/pressure", float("nan"), Quality.BAD_DEVICE, 1_700_000_002.0, 1_700_000_002.0),
            Event(1_700_000_003.0, "device.state", "plc2", Severity.HIGH, "plc2 lost", {"state": "offline"}),
        ],
    )


@pytest.fixture
def broker() -> Iterator[servers.Mosquitto]:
    with servers.mosquitto() as b:
        yield b


async def test_topics_follow_the_isa95_path_with_json_values(tmp_path: Path, broker: servers.Mosquitto) -> None:
    async with capture(broker.port, "acme/#") as cap:
        sink = make(tmp_path, broker.port)
        await sink.start()
        await sink.deliver(batch())
        await sink.close()
        await cap.wait_for(lambda: len(cap.messages) == 4)
    by_topic = {m.topic: m for m in cap.messages}
    level = by_topic["acme/plant1/water/filters/plc1/level"]
    # A live subscriber sees retain=0 (MQTT clears it on live delivery); the late subscriber below sees it set.
    assert level.qos == 1
    assert json.loads(level.payload) == {
        "value": 2.5,
        "quality": "good",
        "unit": "m",
        "ts": "2023-11-14T22:13:20.200Z",
        "source_ts": "2023-11-14T22:13:20.123Z",
        "source": "edge-a",
        "offset": 10,
    }
    assert json.loads(by_topic["acme/plant1/water/filters/plc1/running"].payload)["value"] is True
    pressure = json.loads(by_topic["acme/plant1/water/filters/plc2/pressure"].payload)
    assert pressure["value"] is None and pressure["quality"] == "bad-device" and pressure["unit"] == "bar"
    event = json.loads(by_topic["acme/plant1/water/filters/_events/device/state"].payload)
    assert event["source_id"] == "plc2" and event["data"] == {"state": "offline"} and event["offset"] == 13
    # Retained: a consumer that connects later still gets each point's last value.
    async with capture(broker.port, "acme/plant1/water/filters/plc1/#") as late:
        await late.wait_for(lambda: len(late.messages) == 2)
    assert all(m.retain for m in late.messages)


async def test_no_retain_qos0_millisecond_timestamps_and_a_prefix(tmp_path: Path, broker: servers.Mosquitto) -> None:
    async with capture(broker.port, "uns/#") as cap:
        sink = make(tmp_path, broker.port, retain=False, qos=0, timestamps="ms", topic_prefix="uns/v1")
        await sink.deliver(batch())
        await sink.close()
        await cap.wait_for(lambda: len(cap.messages) == 4)
    level = next(m for m in cap.messages if m.topic == "uns/v1/plc1/level")
    assert not level.retain and level.qos == 0
    body = json.loads(level.payload)
    assert body["ts"] == 1_700_000_000_200 and body["source_ts"] == 1_700_000_000_123


async def test_deliver_raises_during_an_outage_and_works_after(tmp_path: Path, broker: servers.Mosquitto) -> None:
    sink = make(tmp_path, broker.port, timeout=1.0)
    await sink.deliver(batch())
    broker.stop()
    with pytest.raises(Exception):  # noqa: B017 - any failure will do: the runner retries the same batch
        await sink.deliver(batch())
    broker.start_again()
    async with capture(broker.port, "acme/#") as cap:
        await sink.deliver(batch())
        await cap.wait_for(lambda: len(cap.messages) >= 4)
    await sink.close()
    assert sink.connection.connects == 2


@pytest.fixture
def tls_broker() -> Iterator[tuple[servers.Mosquitto, int, int, Pki]]:
    with tls_mosquitto() as started:
        yield started


@pytest.mark.parametrize("version", ["5", "3.1.1"])
async def test_tls_and_mutual_tls(
    tmp_path: Path, tls_broker: tuple[servers.Mosquitto, int, int, Pki], version: str
) -> None:
    broker, tls_port, mtls_port, pki = tls_broker
    async with capture(broker.port, "acme/#") as cap:
        server_only = make(tmp_path, tls_port, "mqtts://", tls={"ca": str(pki.ca)}, mqtt_version=version)
        await server_only.deliver(batch())
        await server_only.close()
        mutual = make(
            tmp_path, mtls_port, "mqtts://", mqtt_version=version,
            tls={"ca": str(pki.ca), "cert": str(pki.client_cert), "key": str(pki.client_key)},
        )  # fmt: skip
        await mutual.deliver(batch())
        await mutual.close()
        await cap.wait_for(lambda: len(cap.messages) == 8)
    # Without a client certificate the mutual-TLS listener refuses us.
    anonymous = make(tmp_path, mtls_port, "mqtts://", tls={"ca": str(pki.ca)}, mqtt_version=version, timeout=2.0)
    with pytest.raises(ConnectionError):
        await anonymous.deliver(batch())
    # A broker certificate from a CA we do not trust is refused too.
    other = make_pki(tmp_path / "other")
    untrusting = make(tmp_path, tls_port, "mqtts://", tls={"ca": str(other.ca)}, mqtt_version=version, timeout=2.0)
    with pytest.raises(ConnectionError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        await untrusting.deliver(batch())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retain": "yes"}, "retain"),
        ({"timestamps": "unix"}, "timestamps"),
        ({"topic_prefix": "a/#"}, "topic_prefix"),
        ({"brokers": ["mqtt://"]}, "no host"),
        ({"brokers": "ftp://x:1"}, "scheme"),
        ({"tls": {"cert": "/etc/hostname"}}, "both cert"),
        ({"password_env": "SEAM_NO_SUCH_VARIABLE_X"}, "not set"),
    ],
)
def test_bad_options_are_one_clear_error(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    spec = SinkSpec(id="u", type="uns_json", options={"brokers": ["127.0.0.1:1"], **options})
    with pytest.raises(MqttConfigError, match=message):
        uns_json.create(spec, PluginContext(contract(), str(tmp_path)))


def test_password_comes_from_the_environment_and_never_shows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEAM_TEST_MQTT_PASSWORD", "s3cret-value")
    spec = SinkSpec(
        id="u",
        type="uns_json",
        options={"brokers": ["127.0.0.1:1"], "password_env": "SEAM_TEST_MQTT_PASSWORD", "username": "edge"},
    )
    sink = uns_json.create(spec, PluginContext(contract(), str(tmp_path)))
    assert sink.options.mqtt.password == "s3cret-value"
    assert "s3cret-value" not in repr(sink.options) and "s3cret-value" not in repr(sink.options.mqtt)


@pytest.fixture
def acl_broker() -> Iterator[servers.Mosquitto]:
    """A broker whose ACL lets us write under .../plc1/ only (outside tmp_path: Mosquitto may drop root)."""
    acl = Path(tempfile.mkdtemp(prefix="seam-acl-"))
    acl.chmod(0o755)
    (acl / "acl").write_text("topic read #\ntopic write acme/plant1/water/filters/plc1/#\n")
    (acl / "acl").chmod(0o644)
    try:
        with servers.mosquitto(extra_config=f"acl_file {acl / 'acl'}") as broker:
            yield broker
    finally:
        shutil.rmtree(acl, ignore_errors=True)


async def test_a_publication_the_broker_refuses_is_not_acknowledged_as_delivered(
    tmp_path: Path, acl_broker: servers.Mosquitto
) -> None:
    """MQTT 5 PUBACK with "not authorized": the batch raises, so the sink runner does not commit it."""
    sink = make(tmp_path, acl_broker.port)
    await sink.deliver(Batch("e", [1], [batch().records[0]]))  # plc1: allowed
    with pytest.raises(PublishRefused, match="authori"):
        await sink.deliver(batch())  # plc2 and the event: refused by the ACL
    await sink.close()
