"""OPC UA on the wire: tcpdump records asyncua's client talking to asyncua's server, then we analyse it.

Two sessions on one server: SecurityPolicy None (services must be decoded) and Basic256Sha256 with
SignAndEncrypt, certificates generated here (the channel must be reported as opaque, never misread).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

from asyncua import Client, Server, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography.x509.oid import ExtendedKeyUsageOID

from otseam.monitor.allowlist import Policy
from otseam.monitor.capture import read_capture
from otseam.monitor.engine import Monitor
from tests.support.servers import free_port
from tests.support.wait import wait_until_async


def fins_in(path: Path) -> int:
    """TCP segments with FIN in a capture still being written (each closed connection has two)."""
    binary = shutil.which("tcpdump") or "/usr/bin/tcpdump"
    read = subprocess.run([binary, "-r", str(path), "-n", "tcp[tcpflags] & tcp-fin != 0"], capture_output=True)
    return len(read.stdout.splitlines())


def spawn_tcpdump(port: int, path: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("tcpdump") or "/usr/bin/tcpdump"
    return subprocess.Popen(
        [binary, "-i", "lo", "-U", "-s", "0", "-w", str(path), "tcp", "port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def start_tcpdump(port: int, path: Path) -> subprocess.Popen[bytes]:
    process = spawn_tcpdump(port, path)
    assert process.stderr is not None
    line = await asyncio.get_running_loop().run_in_executor(None, process.stderr.readline)
    assert b"listening on" in line, line
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def certificate(directory: Path, name: str, use: list[object]) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.pem", directory / f"{name}.der"
    await setup_self_signed_certificate(
        key,
        cert,
        f"urn:seam:test:{name}",
        "localhost",
        use,
        {"commonName": f"seam test {name}"},  # type: ignore[arg-type]
    )
    return key, cert


async def test_plain_and_encrypted_sessions(tmp_path: Path) -> None:
    port = free_port()
    server_key, server_cert = await certificate(tmp_path, "server", [ExtendedKeyUsageOID.SERVER_AUTH])
    client_key, client_cert = await certificate(tmp_path, "client", [ExtendedKeyUsageOID.CLIENT_AUTH])
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/seam/")
    await server.set_application_uri("urn:seam:test:server")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity, ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
    await server.load_certificate(str(server_cert))
    await server.load_private_key(str(server_key))
    namespace = await server.register_namespace("urn:seam:test")
    tank = await server.nodes.objects.add_object(namespace, "Tank")
    level = await tank.add_variable(namespace, "Level", 1.5)
    await level.set_writable()
    capture = tmp_path / "opcua.pcap"
    tcpdump = await start_tcpdump(port, capture)
    try:
        async with server:
            async with Client(f"opc.tcp://127.0.0.1:{port}/seam/", timeout=10) as plain:
                node = plain.get_node(level.nodeid)
                assert await node.read_value() == 1.5
                await node.write_value(2.5)
                await plain.nodes.objects.get_children()
                subscription = await plain.create_subscription(100, None)
                await subscription.delete()
            secure = Client(f"opc.tcp://127.0.0.1:{port}/seam/", timeout=10)
            secure.application_uri = "urn:seam:test:client"
            await secure.set_security(
                SecurityPolicyBasic256Sha256,
                certificate=str(client_cert),
                private_key=str(client_key),
                server_certificate=str(server_cert),
                mode=ua.MessageSecurityMode.SignAndEncrypt,
            )
            async with secure:
                node = secure.get_node(level.nodeid)
                assert await node.read_value() == 2.5
                await node.write_value(3.5)
            await wait_until_async(lambda: fins_in(capture) >= 4, "both sessions' closing segments in the capture")
    finally:
        stop(tcpdump)

    policy = Policy()
    policy.add_masters(["127.0.0.2"])  # an allow-list that does not include the client: writes are findings
    monitor = Monitor(policy, opcua_ports=frozenset({port}))
    for frame in read_capture(capture):
        monitor.process(frame)
    monitor.finish()
    assert monitor.stats.internal_errors == 0, monitor.stats.errors
    by_connection: dict[int, list[object]] = {}
    for ends, msg in monitor.ua_messages:
        by_connection.setdefault(ends.cport, []).append(msg)
    securities = {cport: {m.security for m in msgs if m.message_type == "MSG"} for cport, msgs in by_connection.items()}  # type: ignore[attr-defined]
    plain_ports = [c for c, s in securities.items() if s == {"none"}]
    secured_ports = [c for c, s in securities.items() if s == {"secured"}]
    assert plain_ports and secured_ports, securities

    plain_services = Counter(m.service for c in plain_ports for m in by_connection[c] if m.service)  # type: ignore[attr-defined]
    for service in (
        "CreateSessionRequest",
        "ActivateSessionRequest",
        "ReadRequest",
        "WriteRequest",
        "BrowseRequest",
        "CreateSubscriptionRequest",
        "ReadResponse",
        "WriteResponse",
    ):
        assert plain_services[service] >= 1, (service, plain_services)
    types = {m.message_type for c in plain_ports for m in by_connection[c]}  # type: ignore[attr-defined]
    assert {"HEL", "ACK", "OPN", "MSG", "CLO"} <= types

    secured = [m for c in secured_ports for m in by_connection[c]]
    opn = [m for m in secured if m.message_type == "OPN"]  # type: ignore[attr-defined]
    assert opn and all(m.policy.endswith("#Basic256Sha256") for m in opn)  # type: ignore[attr-defined]
    assert all(m.service is None and m.type_id is None for m in secured)  # type: ignore[attr-defined]

    ua001 = [a for a in monitor.detector.alerts if a.rule.id == "UA-001"]
    assert ua001 and all(a.sport in plain_ports for a in ua001)
    assert "WriteRequest" in ua001[0].message
