"""Helpers for the MQTT tests: a contract, certificates, an independent capture, Tahu's decoder."""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from otseam.contract.models import Contract
from tests.support import servers, wait
from tests.support.wait import wait_until_async as wait_until  # the async helper, under the name the tests use

REPO = Path(__file__).resolve().parents[3]
INTEROP = REPO / "tests" / "interop"

CONTRACT: dict[str, Any] = {
    "site": {"enterprise": "acme", "site": "plant1", "area": "water", "line": "filters"},
    "zones": [{"id": "cell", "level": 1, "sl": 2}],
    "devices": [
        {
            "id": "plc1",
            "driver": "modbus",
            "endpoint": "tcp://127.0.0.1:502",
            "zone": "cell",
            "points": [
                {"id": "level", "address": "hr:0", "type": "float32", "unit": "m"},
                {"id": "flow", "address": "hr:2", "type": "float64", "unit": "m3/h"},
                {"id": "count", "address": "hr:6", "type": "int16"},
                {"id": "total", "address": "hr:8", "type": "int64"},
                {"id": "ucount", "address": "hr:12", "type": "uint16"},
                {"id": "running", "address": "co:0", "type": "bool"},
                {"id": "mode", "address": "hr:20", "type": "string", "length": 4},
                {"id": "scaled", "address": "hr:30", "type": "int16", "scale": {"factor": 0.1}},
            ],
        },
        {
            "id": "plc2",
            "driver": "modbus",
            "endpoint": "tcp://127.0.0.1:503",
            "zone": "cell",
            "points": [{"id": "pressure", "address": "hr:0", "type": "float32", "unit": "bar"}],
        },
    ],
}


def contract() -> Contract:
    return Contract.model_validate(CONTRACT)


@dataclass
class Captured:
    topic: str
    payload: bytes
    retain: bool
    qos: int


@dataclass
class Capture:
    """An independent subscriber (paho in its own thread), recording everything on ``topics``."""

    port: int
    topics: tuple[str, ...] = ("spBv1.0/#",)
    messages: list[Captured] = field(default_factory=list)
    client: paho.Client | None = None

    def start(self) -> Capture:
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        subscribed = []

        def on_connect(c: paho.Client, *_: Any) -> None:
            for t in self.topics:
                c.subscribe(t, qos=1)

        def on_subscribe(*_: Any) -> None:
            subscribed.append(1)

        def on_message(_c: paho.Client, _u: Any, m: paho.MQTTMessage) -> None:
            self.messages.append(Captured(m.topic, bytes(m.payload), bool(m.retain), m.qos))

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        self.client = client
        wait.wait_until(lambda: len(subscribed) >= len(self.topics), f"the capture's subscription to {self.topics}")
        return self

    def stop(self) -> None:
        if self.client is not None:
            self.client.loop_stop()
            self.client.disconnect()

    def of(self, kind: str) -> list[Captured]:
        return [m for m in self.messages if f"/{kind}/" in m.topic]

    async def wait_for(self, predicate: Any, within: float = 30.0, what: str = "the captured messages") -> None:
        await wait_until(predicate, what, within, detail=lambda: f"captured {len(self.messages)} messages")


@contextlib.asynccontextmanager
async def capture(port: int, *topics: str) -> AsyncIterator[Capture]:
    cap = Capture(port, topics or ("spBv1.0/#",)).start()
    try:
        yield cap
    finally:
        cap.stop()


def tahu_decode(payloads: Iterable[bytes]) -> list[dict[str, Any]]:
    """Decode with Eclipse Tahu's JavaScript codec (a separate node process)."""
    data = "".join(base64.b64encode(p).decode() + "\n" for p in payloads)
    result = subprocess.run(
        ["node", str(INTEROP / "sparkplug_decode.js")],
        input=data,
        capture_output=True,
        text=True,
        cwd=INTEROP,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def publish_raw(port: int, topic: str, payload: bytes, retain: bool = False) -> None:
    """Publish one message with a separate paho client (a stand-in for a host or an operator)."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


# --- certificates -------------------------------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.chmod(path, 0o600)


def make_pki(directory: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all fresh."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Seam test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(name: str, server: bool) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            import ipaddress

            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return builder.sign(ca_key, hashes.SHA256()), key

    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server.key",
        directory / "client.pem",
        directory / "client.key",
    )
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server, server_key = leaf("localhost", True)
    pki.server_cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    _write_key(pki.server_key, server_key)
    client, client_key = leaf("seam-edge", False)
    pki.client_cert.write_bytes(client.public_bytes(serialization.Encoding.PEM))
    _write_key(pki.client_key, client_key)
    # Mosquitto may run as another user when started as root: let it read the server key.
    os.chmod(pki.server_key, 0o644)
    return pki


@contextlib.contextmanager
def tls_mosquitto() -> Iterator[tuple[servers.Mosquitto, int, int, Pki]]:
    """A broker with a plain listener, a TLS listener and a mutual-TLS listener (client cert required)."""
    # Not under pytest's tmp_path: Mosquitto started as root drops to its own user, which must read these.
    directory = Path(tempfile.mkdtemp(prefix="seam-pki-"))
    directory.chmod(0o755)
    pki = make_pki(directory)
    tls_port, mtls_port = servers.free_port(), servers.free_port()
    files = f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
    extra = f"listener {tls_port} 127.0.0.1\n{files}listener {mtls_port} 127.0.0.1\n{files}require_certificate true\n"
    try:
        with servers.mosquitto(extra_config=extra) as broker:
            servers.wait_for_port(tls_port)
            servers.wait_for_port(mtls_port)
            yield broker, tls_port, mtls_port, pki
    finally:
        shutil.rmtree(directory, ignore_errors=True)
