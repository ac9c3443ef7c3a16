"""A contract, certificates, users and a running opcua_server sink for the tests."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID

from otseam.contract import parse_text
from otseam.contract.models import Contract, SinkSpec
from otseam.core.plugins import PluginContext
from otseam.sinks import opcua_server
from otseam.sinks.historian.sink import HistorianSink
from tests.support.servers import free_port

PASSWORD = "Pump-House-7-reads"

CONTRACT = """\
version: 1
site: {enterprise: acme, site: plant1, area: water, line: filters}
zones:
  - {id: cell, level: 1, sl: 2}
devices:
  - id: plc1
    driver: modbus
    endpoint: tcp://127.0.0.1:502
    zone: cell
    description: filter PLC
    points:
      - {id: level, address: "hr:0", type: float32, unit: m, range: {low: 0, high: 5}, description: basin level}
      - {id: flow, address: "hr:2", type: float64, unit: m3/h}
      - {id: temp, address: "hr:4", type: float32, unit: degC, range: {low: -20, high: 80}}
      - {id: count, address: "hr:6", type: int16}
      - {id: running, address: "co:0", type: bool}
      - {id: mode, address: "hr:20", type: string, length: 4}
  - id: plc2
    driver: modbus
    endpoint: tcp://127.0.0.1:503
    zone: cell
    points:
      - {id: pressure, address: "hr:0", type: float32, unit: bar}
sinks:
  - {id: hist, type: historian}
"""


def contract() -> Contract:
    return parse_text(CONTRACT).contract


@dataclass
class Pki:
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    trusted: Path
    users: Path


async def make_pki(directory: Path, trust_client: bool = True) -> Pki:
    host = socket.gethostname()
    pki = Pki(
        directory / "server.der",
        directory / "server.key.pem",
        directory / "client.der",
        directory / "client.key.pem",
        directory / "trusted",
        directory / "users",
    )
    await setup_self_signed_certificate(
        pki.server_key, pki.server_cert, "urn:otseam:opcua-server", host, [ExtendedKeyUsageOID.SERVER_AUTH], {}
    )
    await setup_self_signed_certificate(
        pki.client_key, pki.client_cert, "urn:seam:test:client", host, [ExtendedKeyUsageOID.CLIENT_AUTH], {}
    )
    pki.trusted.mkdir()
    # Without the client's certificate the list holds another one (an empty list is refused outright).
    trusted = pki.client_cert if trust_client else pki.server_cert
    (pki.trusted / "trusted.der").write_bytes(trusted.read_bytes())
    pki.users.write_text(f"# readers\nmes:{PasswordHasher().hash(PASSWORD)}\n", encoding="utf-8")
    return pki


def secure_options(pki: Pki, port: int, **more: Any) -> dict[str, Any]:
    return {
        "endpoint": f"opc.tcp://127.0.0.1:{port}/seam",
        "certificate": str(pki.server_cert),
        "private_key": str(pki.server_key),
        "trusted_clients": str(pki.trusted),
        "users_file": str(pki.users),
        **more,
    }


@asynccontextmanager
async def running(
    tmp: Path, options: dict[str, Any], journal: Any = None, the_contract: Contract | None = None
) -> AsyncIterator[opcua_server.OpcUaServerSink]:
    spec = SinkSpec(id="ua", type="opcua_server", options=options)
    context = PluginContext(the_contract or contract(), str(tmp), journal=journal)
    sink = opcua_server.create(spec, context)
    await sink.start()
    try:
        yield sink
    finally:
        await sink.close()


async def historian(tmp: Path) -> HistorianSink:
    sink = HistorianSink(SinkSpec(id="hist", type="historian"), str(tmp))
    await sink.start()
    return sink


def port() -> int:
    return free_port()
