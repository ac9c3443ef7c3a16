"""`seam demo`: the whole seam on one machine, with nothing to configure.

It starts the simulated water plant (Modbus/TCP and OPC UA on loopback) in this process, and the two
nodes of the demo contract as two `seam run --node` processes, exactly as two machines would run them:

* ``ot-edge`` (site operations): polls the plant, keeps its journal and local historian, captures its
  own Modbus traffic when this process may capture, sends through the one-way link, and executes
  approved setpoint changes it fetches from the DMZ over mutual TLS;
* ``it-gateway`` (the DMZ): receives the link, keeps its own history, serves the Modbus and OPC UA
  replicas, holds the command requests and their approvals, and (with ``--mqtt``) publishes Sparkplug B.

Each node serves its console. The first run writes the contract, the link's key, the command
conduit's certificates and the demo people's signing keys into the working directory; later runs keep
them, so an edited contract survives a restart. Each run gives the three demo users new random
passwords, printed once and stored only as argon2 hashes. Ctrl-C (or SIGTERM) stops both nodes, then
the plant.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import re
import secrets
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from otseam.demo.contract import (
    DEMO_COMMAND,
    DEMO_USERS,
    DIODE_KEY,
    TLS_DIR,
    DemoPorts,
    build_demo_contract,
    can_capture,
    free_ports,
    ports_of,
)

NODES = ("ot-edge", "it-gateway")
#: How long a node may take to stop before it is killed (its own drain timeout is shorter).
STOP_TIMEOUT = 30.0
_CONSOLE = re.compile(r"console on (https?://\S+?)/?$")
_HEALTH = re.compile(r"health on (https?://[^/\s]+)/health")


class DemoError(Exception):
    """Something the demo cannot work around; the message says what and what to do."""


@dataclass
class NodeProcess:
    node: str
    process: asyncio.subprocess.Process
    log: IO[str]
    console: str | None = None
    base: str | None = None
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None


def _die_with_parent() -> None:
    """In the child, before exec: if the demo dies without stopping us (SIGKILL), we stop too."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# --- preparing the working directory ---------------------------------------------------------------------


def _read_contract(path: Path) -> dict[str, Any]:
    from ruamel.yaml import YAML

    from otseam.contract.loader import ContractError, load

    try:
        load(path)
    except ContractError as exc:
        raise DemoError(f"{path} cannot be used:\n{exc}\nFix it, or start afresh with --fresh.") from None
    data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise DemoError(f"{path} is not a mapping")
    return data


def prepare_contract(directory: Path, mqtt: str | None, fresh: bool) -> tuple[Path, DemoPorts, list[str]]:
    """The contract (written on the first run or with ``fresh``), its ports, and notes for the reader."""
    path = directory / "seam.yaml"
    notes: list[str] = []
    if path.exists() and not fresh:
        data = _read_contract(path)
        try:
            ports = ports_of(data)
        except ValueError as exc:
            raise DemoError(f"{path}: {exc}; start afresh with --fresh") from None
        if mqtt is not None and not any(s.get("type") == "sparkplug" for s in data.get("sinks") or []):
            raise DemoError(
                f"{path} has no sparkplug sink and the demo never rewrites an existing contract: add one "
                "(see 'seam sim --contract --mqtt URL'), or run 'seam demo --fresh --mqtt URL'"
            )
        capture = any(s.get("type") == "capture" for s in data.get("sources") or [])
        why = can_capture()
        if capture and why is not None:
            notes.append(f"capture: {why}; the capture source will show as down (remove it from the contract)")
        notes.insert(0, f"kept {path} from the last run (--fresh writes a new one)")
        return path, ports, notes
    ports = DemoPorts(*free_ports(6))
    why = can_capture()
    if why is not None:
        notes.append(f"capture: {why}, so the OT node does not watch its own Modbus traffic")
    text = build_demo_contract(ports, capture=why is None, mqtt=mqtt)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    notes.insert(0, f"wrote {path}")
    return path, ports, notes


def prepare_secrets(directory: Path) -> None:
    """The link's key, the command conduit's CA and certificates, and the demo people's signing keys."""
    from otseam.control.authority import keys, pki
    from otseam.diode.config import write_new_key

    key = directory / DIODE_KEY
    if not key.exists():
        write_new_key(key)
    tls = directory / TLS_DIR
    if not (tls / "ca.pem").exists():
        tls.mkdir(parents=True, exist_ok=True)
        pki.make_ca(tls)
        pki.issue(tls, "it-gateway", ["127.0.0.1"], tls, server=True)
        pki.issue(tls, "ot-edge", [], tls, server=False)
    people = directory / "keys"
    people.mkdir(mode=0o700, exist_ok=True)
    for person, _user, _what in DEMO_USERS:
        if not (people / f"{person}.key").exists():
            keys.generate(person, people / f"{person}.key")


def _node_dir(contract_path: Path, node: str) -> Path:
    from otseam.contract.loader import load

    contract = load(contract_path).contract
    data = Path(contract.data_dir(node))
    return data if data.is_absolute() else contract_path.parent / data


def enroll_people(contract_path: Path) -> None:
    """Enroll the demo people's public keys on both nodes (each node checks signatures on its own)."""
    from otseam.control.authority import keys
    from otseam.control.authority.service import AuthorityService

    directory = contract_path.parent / "keys"
    for node in NODES:
        service = AuthorityService(contract_path, _node_dir(contract_path, node), node=node)
        known = {entry.fingerprint for entry in service.keyring.entries() if not entry.revoked_at}
        for person, _user, _what in DEMO_USERS:
            public, named = keys.parse_public((directory / f"{person}.key.pub").read_text(encoding="utf-8"))
            if keys.fingerprint(public) in known or service.contract.person(named) is None:
                continue
            entry = service.keyring.enroll(public, named)
            service.audit.append("key.enroll", named, entry.fingerprint, {"fingerprint": entry.fingerprint})


def create_users(contract_path: Path) -> dict[str, str]:
    """The demo users on both nodes, each with a new random password; returns user name → password."""
    from otseam.contract.loader import load
    from otseam.control.roles import Role, default_role
    from otseam.control.users import UserStore

    contract = load(contract_path).contract
    passwords = {user: secrets.token_urlsafe(12) for _person, user, _what in DEMO_USERS}
    for node in NODES:
        store = UserStore(_node_dir(contract_path, node))
        for person_id, user, _what in DEMO_USERS:
            person = contract.person(person_id)
            if person is None:
                continue  # an edited contract without this person: no such user
            # The analyst requests setpoint changes in the IT console: a console role that may request (the
            # contract's approvers still decide who approves).
            role = Role.ENGINEER if user == "it-analyst" else default_role(person, contract)
            if store.get(user) is None:
                store.add(user, person_id, role, passwords[user])
            else:
                store.set_password(user, passwords[user])
    return passwords


# --- the two nodes ---------------------------------------------------------------------------------------


async def _read_output(node: NodeProcess, echo: Callable[[str], None]) -> None:
    assert node.process.stdout is not None
    async for raw in node.process.stdout:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        node.lines.append(line)
        del node.lines[:-200]
        node.log.write(line + "\n")
        node.log.flush()
        if node.console is None and (match := _CONSOLE.search(line)):
            node.console = match.group(1) + "/"
        if node.base is None and (match := _HEALTH.search(line)):
            node.base = match.group(1)
        if " WARNING " in line or " ERROR " in line or " CRITICAL " in line:
            echo(f"[{node.node}] {line}")


async def start_node(
    contract: Path, node: str, http: str, logs: Path, echo: Callable[[str], None], verbose: bool
) -> NodeProcess:
    log = (logs / f"{node}.log").open("a", encoding="utf-8")
    args = [sys.executable, "-m", "otseam.cli", "run", str(contract), "--node", node, "--http", http]
    args += ["--status-interval", "60s", "--drain-timeout", "10s"] + (["--verbose"] if verbose else [])
    process = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        # Its own session: a Ctrl-C at the terminal reaches the demo only, which stops the nodes in order.
        start_new_session=True,
        preexec_fn=_die_with_parent,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    handle = NodeProcess(node, process, log)
    handle.reader = asyncio.create_task(_read_output(handle, echo))
    return handle


def _ready(base: str, sources: bool) -> bool:
    """The node's /health answers (ok or degraded) and, with ``sources``, each of its sources runs."""
    import json

    try:
        with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        # 503 (degraded) is an answer too.
        if exc.code != 503:
            return False
        body = json.load(exc)
    except (OSError, ValueError):
        return False
    if not sources:
        return True
    components = body.get("components") or {}
    return all(c.get("state") == "running" for name, c in components.items() if name.startswith("source:"))


#: How long one node may take to start (a busy two-core machine with a cold disk cache takes ~20 s).
START_TIMEOUT = 120.0


async def wait_ready(node: NodeProcess, stop: asyncio.Event, sources: bool) -> None:
    """Until the node's console answers (and its sources run); DemoError when it exits first or time runs out."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if node.process.returncode is not None:
            tail = "\n".join(node.lines[-15:])
            raise DemoError(f"the {node.node} node stopped ({node.process.returncode}) while starting:\n{tail}")
        if node.base is not None and node.console and await asyncio.to_thread(_ready, node.base, sources):
            return
        if stop.is_set():
            raise DemoError("stopped while starting")
        if time.monotonic() > deadline:
            raise DemoError(f"the {node.node} node did not start within {START_TIMEOUT:.0f} s; see its log")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


async def stop_nodes(nodes: list[NodeProcess]) -> list[str]:
    """SIGTERM to each node in turn, waiting for it (kill after STOP_TIMEOUT); what did not stop cleanly.

    In reverse order of starting: the OT node stops first, so the IT node receives all it sent."""
    problems: list[str] = []
    for node in reversed(nodes):
        if node.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                node.process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(node.process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            node.process.kill()
            await node.process.wait()
            problems.append(f"{node.node} did not stop within {STOP_TIMEOUT:.0f} s and was killed")
        else:
            if code not in (0, -signal.SIGTERM, 130):
                problems.append(f"{node.node} exited with status {code}")
        if node.reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(node.reader, 5)
        node.log.close()
    return problems


# --- what the newcomer reads -------------------------------------------------------------------------------


def guide(
    contract: Path, ports: DemoPorts, nodes: list[NodeProcess], passwords: dict[str, str], notes: list[str]
) -> str:
    consoles = {n.node: n.console for n in nodes}
    rel = os.path.relpath(contract)
    keys = os.path.relpath(contract.parent / "keys")
    lines = [
        "",
        "Seam demo: a simulated water plant, an OT node and an IT node joined by a one-way link.",
        "",
        f"  IT console   {consoles['it-gateway']}    (the DMZ node: what IT sees; requests and approvals)",
        f"  OT console   {consoles['ot-edge']}    (the plant's node: polling, capture, command execution)",
        f"  first steps  {consoles['it-gateway']}static/try.html",
        "",
        "  Demo users (the same on both consoles; new passwords every run, stored only as hashes):",
    ]
    for person, user, what in DEMO_USERS:
        if user in passwords:
            signs = f" (signs as person {person})" if person != user else ""
            lines.append(f"    {user:<12} {passwords[user]:<18} {what}{signs}")
    lines += [
        "",
        f"  contract     {rel}   (yours to edit: the nodes reload it; a restart keeps it)",
        f"  replicas     Modbus/TCP 127.0.0.1:{ports.replica}   OPC UA opc.tcp://127.0.0.1:{ports.opcua_replica}/seam",
        f"  logs         {os.path.relpath(contract.parent / 'logs')}/ot-edge.log, it-gateway.log",
        "",
        "  A setpoint change by two people (signing keys in " + keys + "/):",
        f"    seam query treated-water/dosing-setpoint --contract {rel} --node it-gateway --from -1min",
        f"    seam command request {DEMO_COMMAND} 1.4 --observed 1.2 --reason 'raise the dose' \\",
        f"      --as it-analyst --key {keys}/it-analyst.key -c {rel} --node it-gateway",
        f"    seam command approve ID --as ot-control --key {keys}/ot-control.key -c {rel} --node it-gateway",
        f"    seam command approve ID --as seam-owner --key {keys}/seam-owner.key -c {rel} --node it-gateway",
        f"    seam command show ID --as seam-owner -c {rel} --node it-gateway",
        f"    or in the IT console's Requests page: approvers sign there by picking their key file in {keys}/",
        f"    seam audit verify -c {rel} --node ot-edge",
        "",
        "  stop         Ctrl-C (the journals keep everything; run again to continue)",
    ]
    lines += [f"  note         {note}" for note in notes]
    lines.append("")
    return "\n".join(lines)


# --- the command -----------------------------------------------------------------------------------------


async def _demo(directory: Path, http: tuple[str, str], seed: int, mqtt: str | None, fresh: bool, verbose: bool) -> int:
    from otseam.sim.plant import SimListenError, SimPlant

    def echo(line: str) -> None:
        typer.echo(line, err=True)

    # The sim's OPC UA server runs in this process; asyncua's notes about its open demo endpoint are
    # not for the newcomer (the nodes' own logs are in their files).
    logging.getLogger("asyncua").setLevel(logging.ERROR)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        contract, ports, notes = await asyncio.to_thread(prepare_contract, directory, mqtt, fresh)
        await asyncio.to_thread(prepare_secrets, directory)
        await asyncio.to_thread(enroll_people, contract)
        passwords = await asyncio.to_thread(create_users, contract)
    except DemoError as exc:
        echo(f"seam demo: {exc}")
        return 2
    plant = SimPlant(modbus_port=ports.modbus, opcua_port=ports.opcua, seed=seed)
    try:
        await plant.start()
    except SimListenError as exc:
        echo(f"seam demo: {exc} (another demo running? stop it, or start afresh with --fresh)")
        return 2
    nodes: list[NodeProcess] = []
    code = 0
    try:
        logs = directory / "logs"
        logs.mkdir(exist_ok=True)
        try:
            # The IT node first, until it listens for the link and the command conduit: the OT node
            # sends and connects as soon as it starts.
            nodes.append(await start_node(contract, "it-gateway", http[1], logs, echo, verbose))
            await wait_ready(nodes[-1], stop, sources=True)
            nodes.append(await start_node(contract, "ot-edge", http[0], logs, echo, verbose))
            await wait_ready(nodes[-1], stop, sources=False)
        except DemoError as exc:
            if stop.is_set():  # Ctrl-C while starting: a normal stop, not a failure
                return 0
            echo(f"seam demo: {exc}")
            return 1
        typer.echo(guide(contract.resolve(), ports, nodes, passwords, notes))
        exited = asyncio.gather(*(n.process.wait() for n in nodes))
        waiter = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({waiter, asyncio.ensure_future(_first_exit(nodes))}, return_when="FIRST_COMPLETED")
        exited.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await exited
        if waiter not in done:
            waiter.cancel()
            gone = [n for n in nodes if n.process.returncode is not None]
            for node in gone:
                echo(f"seam demo: the {node.node} node stopped ({node.process.returncode}); see {logs / node.node}.log")
            code = 1
    finally:
        echo("seam demo: stopping the nodes, then the plant")
        problems = await stop_nodes(nodes)
        await plant.stop()
        for problem in problems:
            echo(f"seam demo: {problem}")
        if problems:
            code = code or 1
    return code


async def _first_exit(nodes: list[NodeProcess]) -> None:
    await asyncio.wait([asyncio.ensure_future(n.process.wait()) for n in nodes], return_when="FIRST_COMPLETED")


def busy_address(addresses: tuple[str, str]) -> str | None:
    """The first of the consoles' addresses another process already listens on (port 0 is never busy)."""
    from otseam.runtime.http import parse_address

    for text in addresses:
        host, port = parse_address(text)
        if port == 0:
            continue
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                return text
    return None


def _http_pair(it_http: str, ot_http: str | None) -> tuple[str, str]:
    """(OT, IT) addresses: the OT console defaults to the IT console's port + 1 (or any free port)."""
    from otseam.runtime.http import HttpAddressError, check_exposure, parse_address

    try:
        host, port = parse_address(it_http)
        check_exposure(host, None)
        if ot_http is None:
            ot = f"[{host}]:{port + 1 if port else 0}" if ":" in host else f"{host}:{port + 1 if port else 0}"
        else:
            ot_host, _ = parse_address(ot_http)
            check_exposure(ot_host, None)
            ot = ot_http
    except HttpAddressError as exc:
        typer.echo(f"seam demo: {exc}", err=True)
        raise typer.Exit(2) from None
    return ot, it_http


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        directory: Annotated[
            Path, typer.Option("--dir", help="Working directory: contract, keys, certificates, each node's data.")
        ] = Path("seam-demo"),
        http: Annotated[str, typer.Option("--http", help="Address of the IT node's console.")] = "127.0.0.1:9780",
        ot_http: Annotated[
            str | None, typer.Option("--ot-http", help="Address of the OT node's console (default: the next port).")
        ] = None,
        mqtt: Annotated[
            str | None,
            typer.Option("--mqtt", help="Also publish Sparkplug B to this broker, e.g. mqtt://127.0.0.1:1883."),
        ] = None,
        fresh: Annotated[
            bool, typer.Option("--fresh", help="Write a new contract even if the directory has one.")
        ] = False,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the simulated process.")] = 1,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging in the nodes' logs.")] = False,
    ) -> None:
        """A simulated water plant, its OT and IT nodes and their consoles: no configuration needed."""
        addresses = _http_pair(http, ot_http)
        busy = busy_address(addresses)
        if busy is not None:
            typer.echo(
                f"seam demo: {busy} is in use (another seam demo or seam run?): stop it, or choose other "
                "addresses with --http and --ot-http (--http 127.0.0.1:0 takes any free ports)",
                err=True,
            )
            raise typer.Exit(2)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            typer.echo(f"seam demo: cannot use {directory}: {exc.strerror}", err=True)
            raise typer.Exit(2) from None
        code = asyncio.run(_demo(directory, addresses, seed, mqtt, fresh, verbose))
        raise typer.Exit(code)
