"""The nats sink against a real nats-server with JetStream (tests/support/servers.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nacl.signing
import nats
import nkeys
import pytest
from hypothesis import given
from hypothesis import strategies as st

from otseam.contract.models import Contract, SinkSpec, Site
from otseam.core.plugins import PluginContext, Sink, create_sink
from otseam.core.records import Batch, Event, Quality, Record, Sample, Severity
from otseam.sinks.nats import payload
from otseam.sinks.nats.connection import NatsConnectError
from otseam.sinks.nats.sink import NatsConfigError, NatsSink, NatsSinkError
from otseam.sinks.nats.subjects import Subjects, escape, unescape
from tests.sinks.sparkplug.support import make_pki
from tests.support.servers import NatsServer, nats_jetstream
from tests.support.wait import wait_until_async

T0 = 1_800_000_000.0
SITE = Site(enterprise="acme", site="plant1", area="water", line="filters")


def make(options: dict[str, object]) -> NatsSink:
    context = PluginContext(contract=Contract(site=SITE), data_dir="/nonexistent")
    sink = create_sink(SinkSpec(id="fleet", type="nats", options=options), context)
    assert isinstance(sink, NatsSink) and isinstance(sink, Sink)
    return sink


def sample(i: int, point: str = "plc1/level") -> Sample:
    return Sample(point, float(i), Quality.GOOD, T0 + i, T0 + i + 0.25)


@pytest.fixture
def server() -> Iterator[NatsServer]:
    with nats_jetstream() as running:
        yield running


@pytest.fixture
async def stream(server: NatsServer) -> AsyncIterator[nats.js.JetStreamContext]:
    client = await nats.connect(server.url)
    js = client.jetstream()
    await js.add_stream(name="SITE", subjects=["seam.acme.plant1.>"])
    yield js
    await client.close()


async def stored(js: nats.js.JetStreamContext, count: int) -> list[payload.Decoded]:
    info = await js.stream_info("SITE")
    out = []
    for sequence in range(1, info.state.last_seq + 1):
        message = await js.get_msg("SITE", sequence)
        assert message.data is not None
        out.append(payload.decode(message.headers, message.data))
    assert len(out) == count
    return out


# --- subjects ----------------------------------------------------------------------------------------


def test_subjects_follow_the_isa95_path() -> None:
    subjects = Subjects("seam", SITE.path)
    assert subjects.point("plc1/level") == "seam.acme.plant1.water.filters.plc1.level"
    assert subjects.device("plc1/level") == "seam.acme.plant1.water.filters.plc1"
    assert subjects.event("device.state") == "seam.acme.plant1.water.filters._events.device.state"
    assert subjects.point("gw/a b.c*>") == "seam.acme.plant1.water.filters.gw.a%20b%2Ec%2A%3E"
    assert subjects.point("d//ü") == "seam.acme.plant1.water.filters.d.%.%C3%BC"
    assert Subjects("fleet.v1", ["acme", "p"]).wildcard() == "fleet.v1.acme.p.>"


@given(st.text())
def test_escaping_is_a_valid_token_and_reversible(text: str) -> None:
    token = escape(text)
    assert token and not set(token) & set(".*> \t\r\n\x00") and not token.startswith("$")
    assert all(0x21 <= ord(c) < 0x7F for c in token)
    assert unescape(token) == text


def test_options_are_refused_with_one_message(tmp_path: Path) -> None:
    with pytest.raises(NatsConfigError, match="nats://host:port"):
        make({"servers": ["127.0.0.1:4222"]})
    with pytest.raises(NatsConfigError, match="no file at"):
        make({"servers": "nats://127.0.0.1:4222", "credentials_file": str(tmp_path / "missing.creds")})
    with pytest.raises(NatsConfigError, match="password"):
        make({"servers": "nats://127.0.0.1:4222", "password": "secret"})
    with pytest.raises(NatsConfigError, match="wildcards"):
        make({"servers": "nats://127.0.0.1:4222", "subject_prefix": "seam.>"})


# --- delivery ----------------------------------------------------------------------------------------


async def test_runs_of_samples_and_events_are_stored_once(server: NatsServer, stream: nats.js.JetStreamContext) -> None:
    sink = make({"servers": server.url, "stream": "SITE"})
    await sink.start()
    alarm = Event(T0, "alarm", "plc1/level", Severity.HIGH, "level high", {"limit": 9.5})
    records: list[Record] = [sample(1), sample(2, "plc2/flow"), alarm, sample(3), sample(4, "plc2/flow")]
    batch = Batch("edge-a", [10, 11, 12, 13, 14], records)
    await sink.deliver(batch)
    await sink.deliver(batch)  # a retry after a lost acknowledgement: the server drops it
    assert sink.counters.duplicates == 3
    decoded = await stored(stream, 3)
    by_offsets = {tuple(d.offsets): d for d in decoded}
    assert by_offsets[(10, 13)].records == [sample(1), sample(3)]
    assert by_offsets[(11, 14)].records == [sample(2, "plc2/flow"), sample(4, "plc2/flow")]
    assert by_offsets[(12,)].records == [alarm]
    assert {d.site for d in decoded} == {"acme/plant1/water/filters"}
    info = await stream.stream_info("SITE")
    assert info.state.messages == 3
    await sink.close()


async def test_one_message_per_sample_on_the_point_subject(
    server: NatsServer, stream: nats.js.JetStreamContext
) -> None:
    sink = make({"servers": [server.url], "message": "sample"})
    odd = Sample("plc1/level", float("nan"), Quality.BAD_COMM, T0, T0)
    await sink.deliver(Batch("edge-a", [1, 2, 3], [sample(1), sample(2, "plc2/on"), odd]))
    await sink.deliver(Batch("edge-a", [2, 3, 4], [sample(2, "plc2/on"), odd, sample(4)]))
    decoded = await stored(stream, 4)
    assert [d.offsets for d in decoded] == [[1], [2], [3], [4]]
    assert decoded[2].records == [Sample("plc1/level", None, Quality.BAD_COMM, T0, T0)]
    message = await stream.get_last_msg("SITE", "seam.acme.plant1.water.filters.plc2.on")
    assert message.headers is not None and message.headers[payload.MSG_ID] == "edge-a:2"
    await sink.close()


async def test_no_stream_means_not_delivered(server: NatsServer) -> None:
    """Without a stream to store it nobody acknowledges: the batch is not delivered (the cursor stays)."""
    sink = make({"servers": server.url, "timeout": 2})
    with pytest.raises(NatsSinkError):
        await sink.deliver(Batch("edge-a", [1], [sample(1)]))
    assert sink.counters.records == 0
    await sink.close()


async def test_a_server_outage_is_a_failed_delivery_then_a_retry(
    server: NatsServer, stream: nats.js.JetStreamContext
) -> None:
    sink = make({"servers": server.url, "timeout": 2})
    await sink.deliver(Batch("edge-a", [1], [sample(1)]))
    server.stop()
    with pytest.raises(NatsSinkError):
        await sink.deliver(Batch("edge-a", [2], [sample(2)]))
    server.start()

    async def delivered() -> bool:
        try:
            await sink.deliver(Batch("edge-a", [2], [sample(2)]))
        except NatsSinkError:
            return False
        return True

    await wait_until_async(delivered, "delivery after the server restarted")
    client = await nats.connect(server.url)
    info = await client.jetstream().stream_info("SITE")
    assert info.state.messages == 2
    await client.close()
    await sink.close()


# --- identity: NKey and TLS from files -----------------------------------------------------------------


def nkey_seed(path: Path) -> str:
    """A fresh user NKey (the seed to a file, as `nk -gen user` writes it); returns the public key."""
    raw = bytes(nacl.signing.SigningKey.generate())
    seed = nkeys.encode_seed(raw, nkeys.PREFIX_BYTE_USER)
    path.write_bytes(seed + b"\n")
    path.chmod(0o600)
    return nkeys.from_seed(bytearray(seed)).public_key.decode()


async def test_nkey_from_a_file(tmp_path: Path) -> None:
    public = nkey_seed(tmp_path / "edge.nk")
    nkey_seed(tmp_path / "stranger.nk")
    with nats_jetstream(f'authorization {{ users: [ {{ nkey: "{public}" }} ] }}') as server:
        good = make({"servers": server.url, "nkey_seed_file": str(tmp_path / "edge.nk"), "timeout": 3})
        js = await good._jetstream()
        await js.add_stream(name="SITE", subjects=["seam.acme.plant1.>"])
        await good.deliver(Batch("edge-a", [1], [sample(1)]))
        assert good.counters.records == 1
        await good.close()
        stranger = make({"servers": server.url, "nkey_seed_file": str(tmp_path / "stranger.nk"), "timeout": 3})
        # The server refuses the login (the client sees "Authorization Violation" or the reset that follows).
        with pytest.raises(NatsConnectError, match="no connection"):
            await stranger.deliver(Batch("edge-a", [2], [sample(2)]))
        await stranger.close()


async def test_mutual_tls_from_files(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    tls = f'tls {{ cert_file: "{pki.server_cert}", key_file: "{pki.server_key}", ca_file: "{pki.ca}", verify: true }}'
    with nats_jetstream(tls) as server:
        url = f"tls://127.0.0.1:{server.port}"
        sink = make({"servers": url, "timeout": 3,
                     "tls": {"ca": str(pki.ca), "cert": str(pki.client_cert), "key": str(pki.client_key)}})  # fmt: skip
        js = await sink._jetstream()
        await js.add_stream(name="SITE", subjects=["seam.acme.plant1.>"])
        await sink.deliver(Batch("edge-a", [1], [sample(1)]))
        assert sink.counters.records == 1
        await sink.close()
        anonymous = make({"servers": url, "timeout": 3, "tls": {"ca": str(pki.ca)}})
        with pytest.raises(Exception):  # noqa: B017 - the server refuses the handshake; the error type is the client's
            await anonymous.deliver(Batch("edge-a", [2], [sample(2)]))
        await anonymous.close()


def test_a_missing_client_names_the_extra() -> None:
    """Without nats-py the sink and the ingest stop with one line naming `otseam[nats]`."""
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['nats'] = None\n"
        "from otseam.contract.models import Contract, Site, SinkSpec, SourceSpec\n"
        "from otseam.core.plugins import PluginContext, PluginNotFound, create_sink, create_source\n"
        "from otseam.core.extras import MissingExtra\n"
        "c = PluginContext(contract=Contract(site=Site(enterprise='a', site='b')), data_dir='/nonexistent')\n"
        "try:\n    create_sink(SinkSpec(id='f', type='nats', options={'servers': 'nats://127.0.0.1:1'}), c)\n"
        "except PluginNotFound as exc:\n    print(exc)\n"
        "try:\n    create_source(SourceSpec(id='i', type='fleet_ingest', options={}), c)\n"
        "except MissingExtra as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr
    assert len(lines) == 2 and all("pip install 'otseam[nats]'" in line for line in lines), done.stdout
