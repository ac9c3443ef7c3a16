"""`seam discover opcua`: against the simulator's server, node-opcua's, and Seam's own secured server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from otseam.sim.layout import opcua_points
from otseam.sim.plant import SimPlant
from tests.drivers.opcua.helpers import INTEROP
from tests.sinks.opcua_server.support import PASSWORD, make_pki, running, secure_options
from tests.support.servers import free_port

SEAM = [sys.executable, "-m", "otseam.cli"]


async def seam(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *SEAM, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def draft_points(text: str) -> list[dict[str, object]]:
    data = YAML(typ="safe").load(text)
    (device,) = data["devices"]
    assert device["driver"] == "opcua" and device["zone"] == "TODO" and device["owner"] == "TODO"
    return list(device["points"])


@pytest.fixture
async def sim() -> AsyncIterator[SimPlant]:
    async with SimPlant(modbus_port=0, opcua_port=0, tick=None, seed=4) as plant:
        yield plant


async def test_the_simulators_server_becomes_a_draft_with_every_variable(sim: SimPlant, tmp_path: Path) -> None:
    assert sim.opcua_endpoint is not None
    out = tmp_path / "draft.yaml"
    code, _, err = await seam("discover", "opcua", sim.opcua_endpoint, "-o", str(out))
    assert code == 0, err
    assert "using None/None" in err and "variable(s)" in err
    points = draft_points(out.read_text())
    addresses = {str(p["address"]).split(";", 1)[1] for p in points}
    assert addresses == {f"s={p.name}" for p in opcua_points()}, "every variable of the plant, nothing else"
    assert all(
        p["type"] in ("bool", "int16", "uint16", "int32", "uint32", "float32", "float64", "string") for p in points
    )
    assert "TODO" in out.read_text()


def start_node_opcua(port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["node", str(INTEROP / "opcua_server.js"), str(port)],
        cwd=INTEROP,
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
    )


async def test_node_opcuas_server_types_and_unsupported_ones(tmp_path: Path) -> None:
    port = free_port()
    server = start_node_opcua(port)
    try:
        assert server.stdout is not None
        for line in server.stdout:
            if line.strip() == "ready":
                break
        code, out, err = await seam("discover", "opcua", f"opc.tcp://127.0.0.1:{port}/seam/test")
        assert code == 0, err
        points = {str(p["address"]): p for p in draft_points(out)}
        assert points["ns=2;s=Counter"]["type"] == "int32"
        assert points["ns=2;s=Level"]["type"] == "float64"
        assert points["ns=2;s=Running"]["type"] == "bool"
        assert points["ns=2;s=Starts"]["type"] == "uint16"
        assert points["ns=2;s=Name"]["type"] == "string"
    finally:
        server.kill()
        server.wait()


async def test_a_secured_server_needs_a_certificate_then_gives_units_and_ranges(tmp_path: Path) -> None:
    pki = await make_pki(tmp_path)
    port = free_port()
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    async with running(tmp_path, secure_options(pki, port, historian="hist")):
        url = f"opc.tcp://127.0.0.1:{port}/seam"
        code, _, err = await seam("discover", "opcua", url)
        assert code == 2 and "requires security" in err and "Basic256Sha256/SignAndEncrypt" in err
        assert "Traceback" not in err
        code, out, err = await seam(
            "discover", "opcua", url,
            "--certificate", str(pki.client_cert), "--private-key", str(pki.client_key),
            "--username", "mes", "--password-file", str(password),
        )  # fmt: skip
        assert code == 0, err
        assert "security_policy: " in out and "certificate: TODO" in out
        points = {str(p["address"]).split(";", 1)[1]: p for p in draft_points(out)}
        level = points["s=plc1/level"]
        assert level["type"] == "float32" and level["unit"] == "m" and level["range"] == {"low": 0, "high": 5}
        assert level["description"] == "basin level"
        assert points["s=plc1/running"]["type"] == "bool"
        assert PASSWORD not in out and PASSWORD not in err
        # A wrong password: one clear line, exit 2.
        password.write_text("wrong\n")
        code, _, err = await seam(
            "discover", "opcua", url,
            "--certificate", str(pki.client_cert), "--private-key", str(pki.client_key),
            "--username", "mes", "--password-file", str(password),
        )  # fmt: skip
        assert code == 2 and "refused the session" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["http://x"], "not an OPC UA endpoint"),
        (["opc.tcp://u:p@127.0.0.1:4840"], "no credentials in the URL"),
        (["opc.tcp://127.0.0.1:4840", "--username", "mes"], "--username needs --password-file"),
        (["opc.tcp://127.0.0.1:4840", "--certificate", "c.der"], "go together"),
        (["opc.tcp://127.0.0.1:4840", "--security-policy", "Basic128"], "--security-policy"),
    ],
)
async def test_bad_arguments_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    code, _, err = await seam("discover", "opcua", *args)
    assert code == 2 and message in err and "Traceback" not in err


async def test_nothing_listening_is_one_line() -> None:
    code, _, err = await seam("discover", "opcua", f"opc.tcp://127.0.0.1:{free_port()}", "--timeout", "2")
    assert code == 2 and "cannot reach" in err and "Traceback" not in err
