"""Two `seam run` processes from one contract: the DMZ node serves approved commands, the OT node
fetches them over the connection it opens and writes to a Modbus server not built on pymodbus; mbpoll
reads the value back, and the OT node's audit records reach its journal (and a file sink) as events."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from otseam.control.authority import pki
from otseam.control.authority.document import CommandRequest
from otseam.control.authority.service import AuthorityService
from tests.control.authority.helpers import contract_text, enroll_all, identity
from tests.control.authority.servers import mbpoll, mbpoll_write, node_server
from tests.core.seamrun import SeamRun
from tests.support.servers import free_port


def two_nodes(modbus_port: int, command_port: int) -> str:
    text = contract_text(modbus_port, command_port=command_port, window="", rate="60/h")
    text = text.replace(
        "devices:\n", "nodes:\n  - {id: ot-edge, zone: supervisory}\n  - {id: dmz, zone: dmz}\ndevices:\n", 1
    )
    text = text.replace(
        "    unit: 1\n    zone: pumping\n", "    unit: 1\n    zone: pumping\n    node: ot-edge\n    poll: 500ms\n"
    )
    # The OPC UA device of the shared test contract is not part of this test.
    start = text.index("  - id: filter-server")
    end = text.index("commands:")
    text = text[:start] + text[end:]
    start = text.index("  - id: set-backwash")
    text = text[:start]
    return (
        text
        + f"""\
sources:
  - id: command-outbox
    type: command_outbox
    node: dmz
    conduit: commands-in
    owner: seam-lead
    options: {{listen: 127.0.0.1:{command_port}, cert: tls/dmz.pem, key: tls/dmz.key, ca: tls/ca.pem, allowed_peers: [ot-edge]}}
  - id: command-executor
    type: command_executor
    node: ot-edge
    conduit: commands-in
    owner: ot-lead
    options: {{connect: 127.0.0.1:{command_port}, cert: tls/ot-edge.pem, key: tls/ot-edge.key, ca: tls/ca.pem, interval: 0.2}}
sinks:
  - id: archive
    type: file
    node: ot-edge
    owner: ot-lead
    options: {{path: archive.jsonl}}
"""
    )


def test_an_approved_command_crosses_from_the_dmz_node_to_the_plc(tmp_path: Path) -> None:
    command_port = free_port()
    with node_server("modbus_server.js") as modbus_port:
        mbpoll_write(modbus_port, 1, 2000, 0)
        mbpoll_write(modbus_port, 1, 2001, 0)
        (tmp_path / "seam.yaml").write_text(two_nodes(modbus_port, command_port))
        pki.make_ca(tmp_path / "tls")
        pki.issue(tmp_path / "tls", "dmz", ["127.0.0.1"], tmp_path / "tls", server=True)
        pki.issue(tmp_path / "tls", "ot-edge", [], tmp_path / "tls", server=False)
        dmz_data, ot_data = tmp_path / "seam-data" / "dmz", tmp_path / "seam-data" / "ot-edge"
        service = AuthorityService(tmp_path / "seam.yaml", dmz_data, node="dmz")
        people = enroll_all(service.directory, tmp_path)
        enroll_all(ot_data / "authority", tmp_path)
        ot = SeamRun(tmp_path, "--node", "ot-edge")
        dmz = SeamRun(tmp_path, "--node", "dmz")
        try:
            ot.wait_started()
            dmz.wait_started()
            view = service.request(identity("it-analyst"), "set-speed", "66.5", "tariff shift", "0")
            doc = CommandRequest.from_body(view["document"])
            for person in ("it-lead", "ot-lead"):
                service.approve(identity(person), doc.id, *people.approval(person, doc.digest))
            ot.wait_for(lambda: service.store.get(doc.id).outcome is not None, "the OT node's report")
            outcome = service.store.get(doc.id).outcome
            assert outcome is not None and outcome["status"] == "executed", outcome
            assert outcome["node"] == "ot-edge"
            assert mbpoll(modbus_port, 1, 2000, 1, "4:float", big_endian=False) == ["66.5"]
            archive = ot_data / "archive.jsonl"

            def audited() -> bool:
                if not archive.exists():
                    return False
                return any('"audit.command.outcome"' in line for line in archive.read_text().splitlines())

            ot.wait_for(audited, "the audit record in the OT node's journal")
            events = [json.loads(line) for line in archive.read_text().splitlines() if '"audit.' in line]
            assert {e.get("kind") for e in events} >= {"audit.command.execute", "audit.command.outcome"}, events[:3]
            # The IT side can verify the OT node's records from the events alone, with its public key.
            from tests.control.authority.test_cli import seam

            code, out = seam(
                "audit",
                "verify",
                "-c",
                tmp_path / "seam.yaml",
                "--node",
                "ot-edge",
                "--events",
                archive,
                "--public-key",
                ot_data / "authority" / "node.key.pub",
            )
            assert code == 0 and out.startswith("ok: ") and "records of ot-edge" in out, out
            health = ot.health()
            assert "source:command-executor" in json.dumps(health)
            # The OT node never listens for the IT side: its only listening socket is its own /health.
            listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
            ports = {
                int(m.group(1))
                for line in listening.splitlines()
                if f"pid={ot.process.pid}," in line
                for m in [re.search(r":(\d+)\s", line)]
                if m
            }
            assert ports == {ot.port}, listening
        finally:
            ot.stop()
            dmz.stop()
