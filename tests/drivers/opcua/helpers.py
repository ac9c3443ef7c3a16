"""Real servers and a few small tools for the OPC UA driver's tests: node-opcua in a subprocess, a
TCP relay whose connections the test can cut, and a collector standing in for the pipeline."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from otseam.contract import parse_text
from otseam.contract.models import Device
from otseam.core.records import Event, Quality, Record, Sample
from tests.support.servers import free_port
from tests.support.wait import wait_until_async

INTEROP = Path(__file__).resolve().parents[2] / "interop"

HEAD = """\
version: 1
site: {enterprise: acme, site: plant1}
people:
  - {id: olga, name: Olga Ops, side: ot, role: control engineer}
zones:
  - {id: cell, level: 1, sl: 2, owner: olga}
devices:
"""

#: The variables of tests/interop/opcua_server.js, as contract points.
NODE_POINTS = """\
      - {id: counter, address: "ns=2;s=Counter", type: int32}
      - {id: level, address: "ns=2;s=Level", type: float64}
      - {id: running, address: "ns=2;s=Running", type: bool}
      - {id: starts, address: "ns=2;s=Starts", type: uint16}
      - {id: name, address: "ns=2;s=Name", type: string}
      - {id: weird, address: "ns=2;s=Weird", type: float64}
      - {id: broken, address: "ns=2;s=Broken", type: float64}
      - {id: doubtful, address: "ns=2;s=Doubtful", type: float64}
      - {id: missing, address: "ns=2;s=NoSuchNode", type: float64}
"""


def device(endpoint: str, points: str = NODE_POINTS, poll: str = "200ms", options: str = "{}") -> Device:
    text = (
        HEAD
        + f"""\
  - id: ua
    driver: opcua
    endpoint: {endpoint}
    zone: cell
    owner: olga
    poll: {poll}
    constraints: {{timeout: 2s}}
    options: {options}
    points:
"""
        + points
    )
    return parse_text(text).contract.devices[0]


class Collector:
    """Takes what the driver emits, as the pipeline would."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    async def emit(self, records: Sequence[Record]) -> None:
        self.records.extend(records)

    def samples(self, point: str | None = None) -> list[Sample]:
        return [r for r in self.records if isinstance(r, Sample) and (point is None or r.point == point)]

    def events(self, state: str) -> list[Event]:
        return [r for r in self.records if isinstance(r, Event) and r.data.get("state") == state]

    def latest(self, point: str) -> Sample | None:
        found = self.samples(point)
        return found[-1] if found else None

    def quality(self, point: str) -> Quality | None:
        last = self.latest(point)
        return last.quality if last else None

    async def wait(self, condition: Callable[[], bool], what: str, within: float = 20.0) -> None:
        tail = lambda: "last records:\n" + "\n".join(map(str, self.records[-15:]))  # noqa: E731
        await wait_until_async(condition, what, within, detail=tail)


class NodeServer:
    """tests/interop/opcua_server.js (node-opcua) on a loopback port."""

    def __init__(self, port: int | None = None, nodes: int = 0, interval_ms: int = 100) -> None:
        self.port = port or free_port()
        self.nodes = nodes
        self.interval_ms = interval_ms
        self.process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str] = queue.Queue()

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/seam/test"

    def start(self, within: float = 60.0) -> None:
        env = {**os.environ, "NODE_PATH": str(INTEROP / "node_modules")}
        self.process = subprocess.Popen(
            ["node", str(INTEROP / "opcua_server.js"), str(self.port), str(self.nodes), str(self.interval_ms)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self._lines = queue.Queue()
        threading.Thread(target=self._read, args=(self.process, self._lines), daemon=True).start()
        self._expect(lambda line: line.strip() == "ready", within, "node-opcua server start")

    @staticmethod
    def _read(process: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    def _expect(self, match: Callable[[str], bool], within: float, what: str) -> str:
        deadline = time.monotonic() + within
        seen: list[str] = []
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.2)
            except queue.Empty:
                if self.process is not None and self.process.poll() is not None:
                    break
                continue
            seen.append(line)
            if match(line):
                return line
        raise AssertionError(f"{what} failed:\n{''.join(seen[-30:])}")

    def counts(self) -> tuple[int, int]:
        """The server's own count of open sessions and of subscriptions."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write("sessions\n")
        self.process.stdin.flush()
        line = self._expect(lambda text: text.startswith("SESSIONS "), 10, "session count")
        return int(line.split()[1]), int(line.split()[2])

    def sessions(self) -> int:
        return self.counts()[0]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


class Relay:
    """A TCP relay on loopback. ``cut()`` drops every connection through it, as a failing link would;
    ``frozen = True`` silently swallows everything while keeping the connections open (a half-open link,
    a hung server)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.connections = 0
        self.frozen = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await source.read(65536):
                    if self.frozen:
                        continue
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    @property
    def open_connections(self) -> int:
        return sum(1 for writer in self._writers if not writer.is_closing()) // 2

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def run_driver(dev: Device, collector: Collector) -> asyncio.Task[None]:
    from otseam.drivers.opcua import create

    driver = create(dev, None)  # type: ignore[arg-type]
    return asyncio.get_running_loop().create_task(driver.run(collector.emit))


async def stop_driver(task: asyncio.Task[None]) -> None:
    """Cancel the driver as the supervisor does: again if a cancellation was swallowed on the way (asyncua's
    own wait_for can lose one that lands just as an answer does), and fail rather than hang."""
    for _ in range(30):
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=1.0)
        if done:
            break
    assert task.done(), "the driver did not stop when cancelled, 30 times over"
    with contextlib.suppress(asyncio.CancelledError):
        await task
