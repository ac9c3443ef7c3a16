"""Basic256Sha256 SignAndEncrypt with certificate files, and a user name whose password comes from an
environment variable, against an asyncua server that offers nothing else."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.server import Server
from cryptography.x509.oid import ExtendedKeyUsageOID

from otseam.core.records import Quality
from tests.drivers.opcua.helpers import Collector, device, run_driver, stop_driver
from tests.support.servers import free_port

PASSWORD = "s3cret-Pump-House"


class OnePassword:
    """Accepts one user name and password; anything else (anonymous included) is refused."""

    def __init__(self) -> None:
        self.refused = 0

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username == "seam-reader" and password == PASSWORD:
            return User(role=UserRole.User, name=username)
        self.refused += 1
        return None


async def test_sign_and_encrypt_with_a_password_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    host = socket.gethostname()
    server_key, server_cert = tmp_path / "server.key.pem", tmp_path / "server.der"
    client_key, client_cert = tmp_path / "client.key.pem", tmp_path / "client.der"
    await setup_self_signed_certificate(
        server_key, server_cert, "urn:seam:test:server", host, [ExtendedKeyUsageOID.SERVER_AUTH], {}
    )
    await setup_self_signed_certificate(
        client_key, client_cert, "urn:seam:test:client", host, [ExtendedKeyUsageOID.CLIENT_AUTH], {}
    )
    users = OnePassword()
    server = Server(user_manager=users)  # type: ignore[arg-type]
    await server.init()
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/secure"
    server.set_endpoint(endpoint)
    await server.set_application_uri("urn:seam:test:server")
    server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
    await server.load_certificate(str(server_cert))
    await server.load_private_key(str(server_key))
    ns = await server.register_namespace("urn:seam:secure")
    variable = await server.nodes.objects.add_variable(f"ns={ns};s=Secret.Level", "Level", 3.25)
    await server.start()
    monkeypatch.setenv("SEAM_TEST_UA_PASSWORD", PASSWORD)
    options = (
        f"{{security_policy: Basic256Sha256, security_mode: SignAndEncrypt, certificate: '{client_cert}', "
        f"private_key: '{client_key}', server_certificate: '{server_cert}', username: seam-reader, "
        "password_env: SEAM_TEST_UA_PASSWORD}"
    )
    points = f'      - {{id: level, address: "ns={ns};s=Secret.Level", type: float64}}\n'
    collector = Collector()
    caplog.set_level(logging.DEBUG)
    task = await run_driver(device(endpoint, points=points, options=options), collector)
    try:
        await collector.wait(lambda: collector.quality("ua/level") is Quality.GOOD, "a value over the secure channel")
        await variable.write_value(4.5)
        await collector.wait(lambda: collector.latest("ua/level").value == 4.5, "a change")  # type: ignore[union-attr]
    finally:
        await stop_driver(task)
        await server.stop()
    assert users.refused == 0
    assert PASSWORD not in caplog.text  # never logged, at any level


async def test_a_wrong_password_is_a_device_problem_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = OnePassword()
    server = Server(user_manager=users)  # type: ignore[arg-type]
    await server.init()
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/plain"
    server.set_endpoint(endpoint)
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    await server.start()
    monkeypatch.setenv("SEAM_TEST_UA_PASSWORD", "wrong")
    points = '      - {id: state, address: "i=2259", type: int32}\n'
    collector = Collector()
    task = await run_driver(
        device(
            endpoint,
            points=points,
            options="{username: seam-reader, password_env: SEAM_TEST_UA_PASSWORD, max_backoff: 1s}",
        ),
        collector,
    )
    try:
        await collector.wait(lambda: users.refused >= 2, "two refused attempts")
        assert not task.done()
        assert collector.quality("ua/state") is Quality.BAD_COMM
        # Put right, the next attempt gets in.
        monkeypatch.setenv("SEAM_TEST_UA_PASSWORD", PASSWORD)
        await collector.wait(lambda: collector.quality("ua/state") is Quality.GOOD, "in with the right password")
    finally:
        await stop_driver(task)
        await server.stop()


async def test_a_missing_password_is_said_plainly(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("SEAM_TEST_UA_ABSENT", raising=False)
    caplog.set_level(logging.WARNING, logger="otseam.drivers.opcua")
    points = '      - {id: state, address: "i=2259", type: int32}\n'
    options = "{username: seam-reader, password_env: SEAM_TEST_UA_ABSENT, max_backoff: 200ms}"
    collector = Collector()
    task = await run_driver(device(f"opc.tcp://127.0.0.1:{free_port()}/x", points=points, options=options), collector)
    try:
        await collector.wait(lambda: "is not available" in caplog.text, "the reason in the log")
    finally:
        await stop_driver(task)
    assert (
        "the password for user 'seam-reader' is not available (environment variable SEAM_TEST_UA_ABSENT)" in caplog.text
    )
    assert collector.quality("ua/state") is Quality.BAD_COMM
