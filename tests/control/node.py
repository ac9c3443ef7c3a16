"""A real `seam run` node with users of every role, and a small HTTP client that signs in like a browser."""

from __future__ import annotations

import http.cookiejar
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.core.seamrun import SeamRun

PASSWORD = "correct horse battery"

CONTRACT = """\
version: 1
site: {enterprise: acme, site: plant1}
people:
  - {id: olga, name: Olga Ops, side: ot, role: shift operator}
  - {id: erik, name: Erik Eng, side: ot, role: control engineer}
  - {id: ivan, name: Ivan IT, side: it, role: data analyst}
  - {id: sam, name: Sam Seam, side: seam, role: interface owner}
  - {id: ada, name: Ada Admin, side: seam, role: node administrator}
seam_owner: sam
zones:
  - {id: cell, name: Cell 1, level: 1, sl: 2, owner: erik}
  - {id: dmz, name: DMZ, level: 3.5, sl: 2, owner: sam}
  - {id: ent, name: Enterprise, level: 4, sl: 1, owner: ivan}
conduits:
  - {id: cell-dmz, from: cell, to: dmz, direction: one-way, transport: udp, protocols: [seam-diode], owner: sam}
  - {id: dmz-ent, from: dmz, to: ent, direction: two-way, transport: tcp, protocols: [mqtt], ports: [8883], owner: ivan,
     justification: the enterprise reads the plant's data}
control:
  banner: "Authorised use only. Activity is recorded."
journal: {path: ./data/journal}
devices:
  - id: gen1
    driver: generator
    endpoint: generator://gen1
    zone: cell
    owner: erik
    poll: 100ms
    points:
      - id: level
        address: "sine:period=3s"
        unit: "%"
        alarms: [{id: high, kind: high, limit: 90, hysteresis: 5, severity: medium, message: level high}]
      - {id: flow, address: "walk:step=2", unit: "m3/h"}
sinks:
  - id: hist
    type: historian
    owner: erik
  - id: archive
    type: file
    owner: ivan
    conduit: cell-dmz
    options: {path: out/archive.jsonl}
"""

#: user name -> (person, role)
USERS = {
    "olga": ("olga", "operator"),
    "erik": ("erik", "engineer"),
    "ivan": ("ivan", "viewer"),
    "sam": ("sam", "seam-owner"),
    "ada": ("ada", "admin"),
}


def seam_inline(*args: str, stdin: str = "") -> tuple[int, str, str]:
    """`seam ARGS` run in this process (the same code as the command; much faster than a new interpreter)."""
    from typer.testing import CliRunner

    from otseam import cli

    if not cli.app.registered_groups:
        cli._register_all()
    result = CliRunner().invoke(cli.app, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def seam(*args: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otseam.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=os.environ.copy(),
        timeout=60,
    )


def add_users(workdir: Path, users: dict[str, tuple[str, str]] = USERS) -> None:
    """The users, written by the store `seam user add` uses (test_users.py covers the command itself)."""
    from otseam.control.roles import Role
    from otseam.control.users import UserStore

    target = workdir / "data" / "control" / "users.json"
    key = tuple(sorted(users.items()))
    if key not in _MADE:  # argon2id is slow on purpose: hash once per test run, copy for each node
        store = UserStore(workdir / "data")
        for name, (person, role) in users.items():
            store.add(name, person, Role(role), PASSWORD)
        _MADE[key] = target.read_bytes()
        return
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    target.write_bytes(_MADE[key])
    target.chmod(0o600)


_MADE: dict[tuple[tuple[str, tuple[str, str]], ...], bytes] = {}


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """Cookies kept like a browser's; the CSRF token sent on changes once signed in."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.csrf: str | None = None

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.csrf and method not in ("GET", "HEAD"):
            request.add_header("X-CSRF-Token", self.csrf)
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with self.opener.open(request, timeout=10) as response:
                return Reply(response.status, response.read(), dict(response.headers))
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, exc.read(), dict(exc.headers))

    def get(self, path: str, **headers: str) -> Reply:
        return self.request("GET", path, headers=headers)

    def login(self, user: str, password: str = PASSWORD, totp: str | None = None) -> Reply:
        body: dict[str, Any] = {"user": user, "password": password}
        if totp is not None:
            body["totp"] = totp
        reply = self.request("POST", "/api/v1/login", body)
        if reply.status == 200:
            self.csrf = reply.json()["csrf"]
        return reply


def start_node(workdir: Path, contract: str = CONTRACT, users: dict[str, tuple[str, str]] = USERS) -> SeamRun:
    (workdir / "seam.yaml").write_text(contract)
    add_users(workdir, users)
    node = SeamRun(workdir)
    node.wait_started()
    client = Client(f"http://127.0.0.1:{node.port}")
    node.wait_for(lambda: client.get("/api/v1/banner").status == 200, "the control plane")
    return node
