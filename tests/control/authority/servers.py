"""The independent servers the executor writes to: modbus-serial (not pymodbus) and node-opcua."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.servers import free_port, wait_for_port

INTEROP = Path(__file__).resolve().parents[2] / "interop"


@contextmanager
def node_server(script: str) -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        ["node", str(INTEROP / script), str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=INTEROP,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip() == b"ready", line
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def mbpoll(port: int, unit: int, first: int, count: int, kind: str, big_endian: bool = True) -> list[str]:
    """Values read by mbpoll, a Modbus client we did not write (-0: zero-based addresses, -1: once)."""
    args = ["mbpoll", "-m", "tcp", "-p", str(port), "-a", str(unit), "-0", "-t", kind, "-r", str(first)]
    args += ["-c", str(count), "-1", *(["-B"] if big_endian else []), "127.0.0.1"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=10, check=True).stdout
    return re.findall(r"^\[\d+\]:\s+(\S+)", out, re.MULTILINE)


def mbpoll_write(port: int, unit: int, address: int, value: int) -> None:
    """Change a holding register behind the executor's back, as another master would."""
    args = ["mbpoll", "-m", "tcp", "-p", str(port), "-a", str(unit), "-0", "-t", "4", "-r", str(address)]
    subprocess.run([*args, "-1", "127.0.0.1", str(value)], capture_output=True, timeout=10, check=True)
