"""The driver against a Modbus/TCP server we did not write (modbus-serial's ServerTCP, JavaScript),
with values cross-checked by mbpoll, a Modbus client we did not write either."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from otseam.core.records import Quality
from tests.drivers.modbus.helpers import Collector, device, running
from tests.support.servers import free_port, wait_for_port

INTEROP = Path(__file__).resolve().parents[2] / "interop"


@pytest.fixture
def node_server() -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        ["node", str(INTEROP / "modbus_server.js"), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=INTEROP,
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(5)


def holding(unit: int, address: int) -> int:
    return (address * 7 + 3 + unit) & 0xFFFF


async def test_values_from_an_independent_server(node_server: int) -> None:
    endpoint = f"tcp://127.0.0.1:{node_server}"
    points = [{"id": f"h{a}", "address": f"hr:{a}", "type": "uint16"} for a in (0, 1, 2, 50, 51, 200)]
    points += [{"id": f"i{a}", "address": f"ir:{a}", "type": "uint16"} for a in (0, 9)]
    points += [{"id": f"c{a}", "address": f"co:{a}", "type": "bool"} for a in (0, 1, 2, 3, 999)]
    points += [{"id": f"d{a}", "address": f"di:{a}", "type": "bool"} for a in (0, 1, 998)]
    points += [
        {"id": "abcd", "address": "hr:1000", "type": "float32", "byte_order": "ABCD"},
        {"id": "cdab", "address": "hr:1002", "type": "float32", "byte_order": "CDAB"},
        # Block 990..1003 plus 1004..1005, which does not exist: the driver must split it away.
        {"id": "beyond", "address": "hr:1004", "type": "uint16"},
    ]
    collector = Collector()
    units = [device(endpoint, points, id=f"unit{u}", unit=u, poll="200ms") for u in (1, 3)]
    async with running(units[0], collector), running(units[1], collector):
        await collector.wait_for(
            lambda: all(collector.quality(f"unit{u}/{p['id']}") is not None for u in (1, 3) for p in points),
            what="every point of both units",
        )
        # Every point the server has is read good at last (on a loaded machine a block not read yet when
        # the watchdog looks is BAD_COMM for a while, rightly), and the one it lacks is refused.
        await collector.wait_for(
            lambda: all(
                collector.quality(f"unit{u}/{p['id']}") is (Quality.BAD_CONFIG if p["id"] == "beyond" else Quality.GOOD)
                for u in (1, 3)
                for p in points
            ),
            what="every point good, and the missing register refused",
        )
    for u in (1, 3):
        for a in (0, 1, 2, 50, 51, 200):
            assert collector.latest(f"unit{u}/h{a}").value == holding(u, a)  # type: ignore[union-attr]
        for a in (0, 9):
            assert collector.latest(f"unit{u}/i{a}").value == (a * 11 + 5 + u) & 0xFFFF  # type: ignore[union-attr]
        for a in (0, 1, 2, 3, 999):
            assert collector.latest(f"unit{u}/c{a}").value is (a % 3 == 0)  # type: ignore[union-attr]
        for a in (0, 1, 998):
            assert collector.latest(f"unit{u}/d{a}").value is (a % 2 == 1)  # type: ignore[union-attr]
        assert collector.latest(f"unit{u}/abcd").value == 21.5  # type: ignore[union-attr]
        assert collector.latest(f"unit{u}/cdab").value == -7.25  # type: ignore[union-attr]
        assert collector.quality(f"unit{u}/beyond") is Quality.BAD_CONFIG


def mbpoll(port: int, unit: int, first: int, count: int, kind: str = "4") -> list[float]:
    """Values read by mbpoll (-0: zero-based addresses, -B: big-endian word order, -1: once)."""
    out = subprocess.run(
        [
            "mbpoll",
            "-m",
            "tcp",
            "-p",
            str(port),
            "-a",
            str(unit),
            "-0",
            "-B",
            "-t",
            kind,
            "-r",
            str(first),
            "-c",
            str(count),
            "-1",
            "127.0.0.1",
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    return [float(v) for v in re.findall(r"^\[\d+\]:\s+(\S+)", out, re.MULTILINE)]


async def test_driver_and_mbpoll_agree(node_server: int) -> None:
    endpoint = f"tcp://127.0.0.1:{node_server}"
    points = [{"id": f"r{a}", "address": f"hr:{a}", "type": "int16"} for a in range(10, 30)]
    points.append({"id": "f", "address": "hr:1000", "type": "float32"})
    collector = Collector()
    async with running(device(endpoint, points, unit=2, poll="1s"), collector):
        await collector.wait_for(lambda: collector.quality("plc1/f") is Quality.GOOD)
    ours = [collector.latest(f"plc1/r{a}").value for a in range(10, 30)]  # type: ignore[union-attr]
    theirs = mbpoll(node_server, 2, 10, 20, "4")
    assert ours == theirs and len(ours) == 20
    assert mbpoll(node_server, 2, 1000, 1, "4:float") == [collector.latest("plc1/f").value]  # type: ignore[union-attr]
