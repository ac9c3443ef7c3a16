"""Running `seam run` as a real subprocess for the tests, and reading what it produced."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.wait import DEFAULT_WITHIN, wait_until

PEOPLE_AND_ZONES = """\
version: 1
site: {enterprise: acme, site: plant1}
people:
  - {id: olga, name: Olga Ops, side: ot, role: control engineer}
  - {id: ivan, name: Ivan IT, side: it, role: data engineer}
  - {id: sam, name: Sam Seam, side: seam, role: interface owner}
seam_owner: sam
zones:
  - {id: cell, level: 1, sl: 2, owner: olga}
journal: {path: ./data/journal}
"""

_PORT = re.compile(r"health on http://127\.0\.0\.1:(\d+)/health")


def contract(devices: str, sinks: str) -> str:
    return PEOPLE_AND_ZONES + "devices:\n" + devices + "sinks:\n" + sinks


def file_sink(sink_id: str = "archive", extra: str = "") -> str:
    return f"""\
  - id: {sink_id}
    type: file
    owner: olga
    options: {{path: out/{sink_id}.jsonl}}
{extra}"""


def generator(device_id: str, points: list[str], options: str = "", poll: str = "100ms") -> str:
    text = f"""\
  - id: {device_id}
    driver: generator
    endpoint: generator://{device_id}
    zone: cell
    owner: olga
    poll: {poll}
"""
    if options:
        text += f"    options: {options}\n"
    text += "    points:\n" + "".join(f"      - {p}\n" for p in points)
    return text


class SeamRun:
    def __init__(self, workdir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "otseam.cli",
                "run",
                str(workdir / "seam.yaml"),
                "--http",
                "127.0.0.1:0",
                "--status-interval",
                "1s",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = 0

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def wait_for(self, condition: Callable[[], bool], what: str, within: float = DEFAULT_WITHIN) -> None:
        def exited() -> str | None:
            return None if self.process.poll() is None else f"seam run exited ({self.process.returncode})"

        wait_until(condition, what, within, detail=lambda: self.output, abort=exited)

    def wait_started(self) -> None:
        def has_port() -> bool:
            match = _PORT.search(self.output)
            if match:
                self.port = int(match.group(1))
            return bool(match) and "running " in self.output

        self.wait_for(has_port, "startup")

    def get(self, path: str, token: str | None = None) -> tuple[int, str]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def health(self) -> dict[str, Any]:
        status, body = self.get("/health")
        assert status == 200
        result: dict[str, Any] = json.loads(body)
        return result

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def stop(self, within: float = 40.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(within)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"seam run did not stop on SIGTERM:\n{self.output}") from None
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def records(workdir: Path, sink_id: str = "archive") -> list[dict[str, Any]]:
    path = workdir / "data" / "out" / f"{sink_id}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def metric(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in Prometheus text, e.g. metric(body, "seam_points_total", 'device="gen1"')."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{wanted} not in metrics:\n{text}")


__all__ = ["SeamRun", "contract", "file_sink", "generator", "metric", "records"]
