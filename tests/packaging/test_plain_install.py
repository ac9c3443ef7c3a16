"""A plain `pip install otseam` (no extras) runs an edge: Modbus from the simulator into the local
historian. The wheel is built from this tree and installed into a fresh virtual environment; its
dependencies come from pip's configured index and cache, so nothing of the test environment (where
every extra is installed) leaks in."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from otseam.sim.contract import render
from otseam.sim.plant import SimPlant
from tests.support.wait import wait_until_async

REPO = Path(__file__).resolve().parents[2]


#: The environment of every command here, without PYTHONPATH: the source tree must not stand in for the
#: installed package (pip would even count it as installed already).
CLEAN_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def run(*args: object, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=CLEAN_ENV)
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result


#: Where the environment is kept between runs of the suite. Installing the runtime dependencies costs
#: about 25 s of CPU (two minutes of one worker on a busy machine); they are installed again whenever the
#: declared dependencies or the interpreter change, and otseam itself is reinstalled from this tree on
#: every run.
PLAIN_ENVS = REPO / "build" / "plain-install"


def dependencies_key() -> str:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return hashlib.sha256(json.dumps([sys.version, dependencies]).encode()).hexdigest()[:16]


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A virtual environment with otseam installed from its wheel, without extras; its bin directory."""
    wheels = tmp_path_factory.mktemp("wheels")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, REPO)
    (wheel,) = wheels.glob("otseam-*.whl")
    venv = PLAIN_ENVS / dependencies_key()
    bin_dir = venv / "bin"
    installed = venv / "dependencies-installed"
    if installed.exists():
        run(bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", wheel)
    else:
        for stale in PLAIN_ENVS.glob("*"):
            shutil.rmtree(stale)
        run(sys.executable, "-m", "venv", venv)
        run(bin_dir / "python", "-m", "pip", "install", "-q", wheel)  # its dependencies from its metadata
        installed.touch()
    yield bin_dir


def seam(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed package, not this tree
    return subprocess.run([str(bin_dir / "seam"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_no_extra_is_installed(plain_venv: Path) -> None:
    probe = "import importlib.util as u; print(*[m for m in %r if u.find_spec(m)])"
    modules = ("asyncua", "psycopg", "aiomqtt", "paho", "google", "nats", "pymodbus", "pytest")
    found = run(plain_venv / "python", "-c", probe % (modules,)).stdout.split()
    assert found == [], f"installed without being asked for: {found}"


def edge_only(plant: SimPlant, opcua_device: bool = False) -> str:
    """The simulator's contract cut down to what a plain install runs: its OT node with the Modbus
    devices and the local historian (the diode, the IT node and the commands are extras' parts)."""
    contract = plant.contract(opcua_device)
    contract["nodes"] = [n for n in contract["nodes"] if n["id"] == "ot-edge"]
    contract["sinks"] = [s for s in contract["sinks"] if s["type"] == "historian" and s.get("node") == "ot-edge"]
    contract["sources"], contract["commands"], contract["objectives"] = [], [], []
    return render(contract)


async def test_a_plain_install_polls_modbus_into_the_historian(plain_venv: Path, tmp_path: Path) -> None:
    version = seam(plain_venv, "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("seam "), version.stderr
    async with SimPlant(modbus_port=0, opcua=False, tick=0.2, seed=2) as plant:
        (tmp_path / "seam.yaml").write_text(edge_only(plant))
        check = seam(plain_venv, "check", "seam.yaml", cwd=tmp_path)
        assert check.returncode in (0, 1) and "Traceback" not in check.stderr, check.stdout + check.stderr
        process = await asyncio.create_subprocess_exec(
            str(plain_venv / "seam"), "run", "seam.yaml", "--http", "off", "--no-watch",
            cwd=tmp_path, env=CLEAN_ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            polled = lambda: plant.modbus.stats.requests >= 30 or process.returncode is not None  # noqa: E731
            await wait_until_async(polled, "30 Modbus requests from the plain install's seam run", interval=0.1)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()
    query = seam(
        plain_venv, "query", "raw-water/plant-name", "--contract", "seam.yaml", "--format", "json", cwd=tmp_path
    )
    assert query.returncode == 0, query.stderr
    rows = json.loads(query.stdout)["rows"]
    assert {r["value"] for r in rows if r["quality"] == "good"} == {"SEAM-SIM-WTP"}


async def test_an_opcua_device_without_the_extra_is_one_clear_message(plain_venv: Path, tmp_path: Path) -> None:
    async with SimPlant(modbus_port=0, opcua_port=0, tick=0.2, seed=2) as plant:
        (tmp_path / "seam.yaml").write_text(edge_only(plant, opcua_device=True))
        # seam check says it already, at the device's line: it builds what seam run would.
        check = seam(plain_venv, "check", "seam.yaml", cwd=tmp_path)
        found = check.stdout + check.stderr
        assert check.returncode == 2 and "Traceback" not in found, found
        assert "the opcua driver needs the extra: pip install 'otseam[opcua]'" in found
        result = await asyncio.to_thread(
            seam, plain_venv, "run", "seam.yaml", "--node", "ot-edge", "--http", "off", "--no-watch", cwd=tmp_path
        )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "the opcua driver needs the extra: pip install 'otseam[opcua]'" in output
    assert "Traceback" not in output


def test_the_diode_needs_no_extra(plain_venv: Path, tmp_path: Path) -> None:
    result = seam(plain_venv, "diode", "receive", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr


def test_a_command_without_its_extra_names_it(plain_venv: Path, tmp_path: Path) -> None:
    result = seam(plain_venv, "host", "--broker", "127.0.0.1:1", "--host-id", "h", "--db", "h.db", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "seam host needs the extra: pip install 'otseam[sparkplug]'" in result.stderr, result.stderr
