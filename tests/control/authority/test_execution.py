"""Approved commands end to end: requested and approved on the DMZ node, fetched by the OT node over
mutual TLS on a connection it opens, verified there against its own contract and keyring, written to
a Modbus server not built on pymodbus (and to node-opcua), read back by mbpoll."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from otseam.control.authority import keys, pki
from otseam.control.authority.document import CommandRequest
from otseam.control.authority.executor import Executor
from otseam.control.authority.link import Fetcher, Outbox
from otseam.control.authority.policy import PolicyError
from otseam.control.authority.service import AuthorityService
from tests.control.authority.helpers import Clock, People, contract_text, enroll_all, identity, service
from tests.control.authority.servers import mbpoll, mbpoll_write, node_server


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    pki.make_ca(directory)
    pki.issue(directory, "dmz", ["127.0.0.1"], directory, server=True)
    pki.issue(directory, "ot-edge", [], directory, server=False)
    pki.issue(directory, "intruder", [], directory, server=False)
    return directory


@pytest.fixture(scope="module")
def modbus_port() -> Iterator[int]:
    with node_server("modbus_server.js") as port:
        yield port


@dataclass
class Site:
    svc: AuthorityService
    people: People
    executor: Executor
    outbox: Outbox
    fetcher: Fetcher
    clock: Clock
    contract: Path

    def approved(self, command: str, value: object, observed: object) -> CommandRequest:
        view = self.svc.request(identity("it-analyst"), command, value, "tariff shift", observed)
        doc = CommandRequest.from_body(view["document"])
        for person in ("it-lead", "ot-lead") if command == "set-speed" else ("it-lead", "ot-engineer"):
            self.svc.approve(identity(person), doc.id, *self.people.approval(person, doc.digest))
        return doc


async def site(tmp_path: Path, certs: Path, text: str, peer: str = "ot-edge") -> Site:
    clock = Clock()
    svc, people, contract = service(tmp_path, clock, text, node="dmz")
    outbox = Outbox(
        svc, pki.server_context(certs / "dmz.pem", certs / "dmz.key", certs / "ca.pem"), "127.0.0.1", 0, {"ot-edge"}
    )
    await outbox.start()
    # The OT node: its own data directory, its own keyring (the same people's public keys).
    executor = Executor(contract, tmp_path / "ot-edge", node="ot-edge", clock=clock, tz=UTC, poll_interval=0.05)
    enroll_all(executor.directory, tmp_path)
    context = pki.client_context(certs / f"{peer}.pem", certs / f"{peer}.key", certs / "ca.pem")
    fetcher = Fetcher(executor, "commands-in", "127.0.0.1", outbox.port, context)
    return Site(svc, people, executor, outbox, fetcher, clock, contract)


def kinds(executor: Executor) -> list[str]:
    return [r["kind"] for r in executor.audit.records()]


async def test_an_approved_setpoint_lands_and_mbpoll_reads_it(tmp_path: Path, certs: Path, modbus_port: int) -> None:
    # The command port is chosen by the outbox, so the contract lists none for the conduit's check.
    s = await site(tmp_path, certs, contract_text(modbus_port, command_port=1).replace("ports: [1]", "ports: []"))
    try:
        current = mbpoll(modbus_port, 1, 2000, 1, "4:float", big_endian=False)[0]
        doc = s.approved("set-speed", "55.5", current)
        outcomes = await s.fetcher.run_once()
        assert [(o["id"], o["status"]) for o in outcomes] == [(doc.id, "executed")], outcomes
        assert mbpoll(modbus_port, 1, 2000, 1, "4:float", big_endian=False) == ["55.5"]
        # The DMZ node has the outcome; nothing is left to fetch.
        assert s.svc.show(identity("it-lead"), doc.id)["state"] == "executed"
        assert await s.fetcher.run_once() == []
        # A replay of the same approved request is answered with its first outcome; nothing is written again.
        item = s.svc.store.get(doc.id).as_dict()
        mbpoll_write(modbus_port, 1, 2001, 0)
        again = await s.executor.execute(item)
        assert again["status"] == "executed" and kinds(s.executor).count("command.execute") == 1
        assert mbpoll(modbus_port, 1, 2000, 1, "4:float", big_endian=False) == ["0"]
    finally:
        await s.outbox.close()


async def test_drift_stops_the_write(tmp_path: Path, certs: Path, modbus_port: int) -> None:
    s = await site(tmp_path, certs, contract_text(modbus_port, command_port=1).replace("ports: [1]", "ports: []"))
    try:
        mbpoll_write(modbus_port, 1, 2000, 0)
        mbpoll_write(modbus_port, 1, 2001, 0)
        doc = s.approved("set-speed", 70, 0)
        # Another master changes the setpoint between the approvals and the execution (low word first: 12.0).
        mbpoll_write(modbus_port, 1, 2001, 0x4140)
        [outcome] = await s.fetcher.run_once()
        assert outcome["status"] == "drift" and "the approvers saw 0" in outcome["detail"], outcome
        assert mbpoll(modbus_port, 1, 2000, 1, "4:float", big_endian=False) == ["12"]
        assert s.svc.show(identity("it-lead"), doc.id)["state"] == "drift"
    finally:
        await s.outbox.close()


async def test_device_failure_and_readback_mismatch(tmp_path: Path, certs: Path, modbus_port: int) -> None:
    # hr:2110 answers every write with exception 04; hr:2100 accepts writes and keeps its old value.
    text = contract_text(modbus_port, command_port=1, address="hr:2110", point_type="uint16", readback="300ms")
    s = await site(tmp_path, certs, text.replace("ports: [1]", "ports: []"))
    try:
        s.approved("set-speed", 50, 0)
        [outcome] = await s.fetcher.run_once()
        assert outcome["status"] == "failed" and "exception 04" in outcome["detail"], outcome
    finally:
        await s.outbox.close()
    text = contract_text(modbus_port, command_port=1, address="hr:2100", point_type="uint16", readback="300ms")
    s = await site(tmp_path / "b", certs, text.replace("ports: [1]", "ports: []"))
    try:
        s.approved("set-speed", 50, 0)
        [outcome] = await s.fetcher.run_once()
        assert outcome["status"] == "readback-mismatch" and "reads 0" in outcome["detail"], outcome
    finally:
        await s.outbox.close()


def _edit(svc: AuthorityService, request_id: str, change: Any) -> None:
    path = svc.store.directory / f"{request_id}.json"
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


async def test_forged_replayed_or_changed_approvals_are_refused_on_the_ot_node(
    tmp_path: Path, certs: Path, modbus_port: int
) -> None:
    s = await site(tmp_path, certs, contract_text(modbus_port, command_port=1).replace("ports: [1]", "ports: []"))
    try:
        mbpoll_write(modbus_port, 1, 2000, 0)
        mbpoll_write(modbus_port, 1, 2001, 0)
        # A value changed on the DMZ node after approval: every signature is void.
        first = s.approved("set-speed", 60, 0)
        _edit(s.svc, first.id, lambda raw: raw["document"].update(value="90"))
        # An approval forged with a key that is not the approver's.
        second = s.approved("set-speed", 61, 0)
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        forged = keys.sign(Ed25519PrivateKey.generate(), keys.PURPOSE_APPROVAL, second.digest)
        _edit(s.svc, second.id, lambda raw: raw["approvals"][1].update(signature=forged))
        # An approval replayed from another request.
        third = s.approved("set-speed", 62, 0)
        stolen = s.svc.store.get(first.id).approvals[1].signature
        _edit(s.svc, third.id, lambda raw: raw["approvals"][1].update(signature=stolen))
        # Genuine signatures, but both approvers on the IT side: the OT node counts no OT approver.
        fourth = s.approved("set-speed", 63, 0)
        it_only = [
            {
                "person": p,
                "fingerprint": s.people.fingerprints[p],
                "at": 0,
                "signature": keys.sign(s.people.private[p], keys.PURPOSE_APPROVAL, fourth.digest),
            }
            for p in ("it-lead", "seam-lead")
        ]
        _edit(s.svc, fourth.id, lambda raw: raw.update(approvals=it_only))
        outcomes = {o["id"]: o for o in await s.fetcher.run_once()}
        assert {o["status"] for o in outcomes.values()} == {"refused"}, outcomes
        assert "not enough approvals" in outcomes[fourth.id]["detail"]
        assert "ot operations supervisor" in outcomes[fourth.id]["detail"]
        assert "does not match" in outcomes[first.id]["detail"]
        assert "ot-lead" in outcomes[second.id]["detail"] and "does not match" in outcomes[second.id]["detail"]
        assert "does not match" in outcomes[third.id]["detail"]
        assert mbpoll(modbus_port, 1, 2000, 1, "4:float", big_endian=False) == ["0"]
        assert kinds(s.executor).count("command.write.refused") == 4
    finally:
        await s.outbox.close()


async def test_the_ot_node_checks_its_own_contract_and_clock(tmp_path: Path, certs: Path, modbus_port: int) -> None:
    s = await site(tmp_path, certs, contract_text(modbus_port, command_port=1).replace("ports: [1]", "ports: []"))
    try:
        doc = s.approved("set-speed", 60, 0)
        # Past the execute window nothing runs, even if the DMZ node still offers it.
        item = s.svc.store.get(doc.id).as_dict()
        s.clock.now = doc.execute_by / 1000
        assert (await s.executor.execute(item))["status"] == "refused"
        # A request made under another contract is refused by an OT node with its own copy.
        s.clock.now = doc.created / 1000
        (tmp_path / "other.yaml").write_text(s.contract.read_text() + "\n# changed\n")
        other = Executor(tmp_path / "other.yaml", tmp_path / "ot2", node="ot-edge", clock=s.clock, tz=UTC)
        enroll_all(other.directory, tmp_path)
        outcome = await other.execute(item)
        assert outcome["status"] == "refused" and "made under contract" in outcome["detail"]
        # Approved on Friday at 17:59, inside the window; at 18:00 the OT node no longer executes it.
        s.clock.now = 1764957600.0 - 86400 - 60  # Friday 2025-12-05 17:59 UTC
        late = s.approved("set-speed", 61, 0)
        s.clock.now += 60
        outcome = await s.executor.execute(s.svc.store.get(late.id).as_dict())
        assert outcome["status"] == "refused" and "may run only Mon-Fri 06:00-18:00" in outcome["detail"], outcome
    finally:
        await s.outbox.close()


async def test_only_a_declared_two_way_conduit_and_an_allowed_peer(
    tmp_path: Path, certs: Path, modbus_port: int
) -> None:
    text = contract_text(modbus_port, command_port=1, direction="one-way")
    clock = Clock()
    executor = Executor(_write(tmp_path, text), tmp_path / "ot", node="ot-edge", clock=clock, tz=UTC)
    context = pki.client_context(certs / "ot-edge.pem", certs / "ot-edge.key", certs / "ca.pem")
    with pytest.raises(PolicyError, match="one-way; a command never crosses it"):
        Fetcher(executor, "commands-in", "127.0.0.1", 1, context)
    with pytest.raises(PolicyError, match="not declared"):
        Fetcher(executor, "diode-out", "127.0.0.1", 1, context)
    executor = Executor(_write(tmp_path, contract_text(modbus_port, command_port=8443)), tmp_path / "ot", clock=clock)
    with pytest.raises(PolicyError, match="port 9443 is not among the ports"):
        Fetcher(executor, "commands-in", "127.0.0.1", 9443, context)
    # A certificate from the right CA but another name is not an OT node the DMZ serves.
    s = await site(
        tmp_path / "p",
        certs,
        contract_text(modbus_port, command_port=1).replace("ports: [1]", "ports: []"),
        peer="intruder",
    )
    try:
        s.approved("set-speed", 60, 0)
        with pytest.raises(ConnectionError, match="'intruder' is not an OT node allowed here"):
            await s.fetcher.run_once()
        # And a client without a certificate does not get through TLS at all.
        bare = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        s.fetcher.context = bare
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await s.fetcher.run_once()
    finally:
        await s.outbox.close()


def _write(tmp_path: Path, text: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "seam.yaml"
    path.write_text(text)
    return path


async def test_no_audit_no_write(tmp_path: Path, certs: Path, modbus_port: int) -> None:
    s = await site(tmp_path, certs, contract_text(modbus_port, command_port=1).replace("ports: [1]", "ports: []"))
    try:
        mbpoll_write(modbus_port, 1, 2000, 0)
        mbpoll_write(modbus_port, 1, 2001, 0)
        s.approved("set-speed", 60, 0)
        s.executor.audit.path.unlink(missing_ok=True)
        s.executor.audit.path.symlink_to("/dev/full")
        [outcome] = await s.fetcher.run_once()
        assert outcome["status"] == "refused" and "audit log cannot be written" in outcome["detail"]
        assert mbpoll(modbus_port, 1, 2000, 1, "4:float", big_endian=False) == ["0"]
    finally:
        await s.outbox.close()


async def test_an_approved_opcua_setpoint_lands_on_node_opcua(tmp_path: Path, certs: Path) -> None:
    from tests.drivers.opcua.helpers import NodeServer

    server = NodeServer()
    server.start()
    try:
        s = await site(
            tmp_path, certs, contract_text(1502, server.port, command_port=1).replace("ports: [1]", "ports: []")
        )
        try:
            doc = s.approved("set-backwash", "12.5", "10")
            [outcome] = await s.fetcher.run_once()
            assert outcome["id"] == doc.id and outcome["status"] == "executed", outcome
            assert outcome["after"] == 12.5 and outcome["before"] == 10.0
        finally:
            await s.outbox.close()
    finally:
        server.stop()


async def test_an_ot_node_executes_only_for_its_own_devices(tmp_path: Path) -> None:
    nodes = (
        "nodes:\n  - {id: ot-edge, zone: supervisory}\n  - {id: ot-b, zone: supervisory}\n  - {id: dmz, zone: dmz}\n"
    )
    text = contract_text().replace("devices:\n", nodes + "devices:\n", 1)
    text = text.replace("    zone: pumping\n", "    zone: pumping\n    node: ot-edge\n")
    text = text.replace("    zone: filtration\n", "    zone: filtration\n    node: ot-edge\n")
    clock = Clock()
    svc, people, contract = service(tmp_path, clock, text)
    view = svc.request(identity("it-analyst"), "set-speed", 60, "tariff", 50)
    doc = CommandRequest.from_body(view["document"])
    for person in ("it-lead", "ot-lead"):
        svc.approve(identity(person), doc.id, *people.approval(person, doc.digest))
    other = Executor(contract, tmp_path / "ot-b", node="ot-b", clock=clock, tz=UTC)
    enroll_all(other.directory, tmp_path)
    item = svc.ready()[0]
    assert not other.concerns(item)
    outcome = await other.execute(item)
    assert outcome["status"] == "refused" and "polled by node 'ot-edge', not this one" in outcome["detail"]
    mine = Executor(contract, tmp_path / "ot-edge", node="ot-edge", clock=clock, tz=UTC)
    assert mine.concerns(item) and mine.concerns({"document": "garbage"})


async def test_a_write_interrupted_by_a_stop_is_reported_not_repeated(tmp_path: Path) -> None:
    clock = Clock()
    svc, people, contract = service(tmp_path, clock)
    doc = CommandRequest.from_body(svc.request(identity("it-analyst"), "set-speed", 60, "tariff", 50)["document"])
    for person in ("it-lead", "ot-lead"):
        svc.approve(identity(person), doc.id, *people.approval(person, doc.digest))
    executor = Executor(contract, tmp_path / "ot-edge", node="ot-edge", clock=clock, tz=UTC)
    # What a node that stopped between claiming the request and settling it leaves behind.
    executor.ledger.claim(doc.id, {"id": doc.id, "command": doc.command, "status": "executing", "at": 0})
    outcome = await executor.execute(svc.ready()[0])
    assert outcome["status"] == "failed" and "interrupted during execution" in outcome["detail"]
    assert kinds(executor).count("command.execute") == 0
