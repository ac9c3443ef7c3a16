"""The authority on the REST API, as an API client uses it: prepare, submit, approve with a signature made
on the client's side, reject, list with filters and pages, the audit log with its verification, the rules
of each role, and the service rebuilt when the node reloads its contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from otseam.control.authority import keys
from otseam.control.authority.keys import Keyring
from otseam.control.roles import Role
from otseam.control.users import UserStore
from tests.control.authority.helpers import contract_text
from tests.control.inproc import Node, running
from tests.control.node import PASSWORD

#: user -> (person, console role)
USERS = {
    "analyst": ("it-analyst", Role.ENGINEER),
    "ot": ("ot-lead", Role.ENGINEER),
    "it": ("it-lead", Role.SEAM_OWNER),
    "viewer": ("ot-engineer", Role.VIEWER),
    "admin": ("seam-lead", Role.ADMIN),
}


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    # Any time of day, a generous rate; the Modbus device is absent (nothing executes here).
    (tmp_path / "seam.yaml").write_text(contract_text(1, window="", rate="60/h"))
    data = tmp_path / "seam-data"
    users = UserStore(data)
    for name, (person, role) in USERS.items():
        users.add(name, person, role, PASSWORD)
    (tmp_path / "keys").mkdir(mode=0o700)
    for person in ("ot-lead", "it-lead"):
        public_path, _ = keys.generate(person, tmp_path / "keys" / f"{person}.key")
        Keyring(data / "authority").enroll(keys.parse_public(public_path.read_text())[0], person)
    async with running(tmp_path) as started:
        yield started


def signed(workdir: Path, person: str, message: str) -> dict[str, str]:
    """What an approver's own tool posts: the fingerprint and the signature of the text the node gave."""
    private = keys.load_private(workdir / "keys" / f"{person}.key")
    purpose, _, digest = message.partition("\n")
    return {"fingerprint": keys.fingerprint(private.public_key()), "signature": keys.sign(private, purpose, digest)}


async def test_request_approve_reject_list_and_audit(node: Node, tmp_path: Path) -> None:
    analyst, ot, it = await node.client("analyst"), await node.client("ot"), await node.client("it")
    viewer, admin = await node.client("viewer"), await node.client("admin")
    try:
        status, commands = await viewer.call("GET", "/api/v1/commands")
        assert status == 200 and [c["id"] for c in commands["items"]] == ["set-speed", "set-backwash"]
        ask = {"command": "set-speed", "value": 66.5, "observed": "50", "reason": "tariff shift"}
        assert (await viewer.call("POST", "/api/v1/commands/prepare", ask))[0] == 403  # viewers read
        status, prepared = await analyst.call("POST", "/api/v1/commands/prepare", ask)
        assert status == 200, prepared
        assert prepared["signing"]["message"] == f"otseam command request v1\n{prepared['sha256']}"
        # Nothing is stored by prepare; the document is submitted unchanged.
        assert (await viewer.call("GET", "/api/v1/commands/requests"))[1]["items"] == []
        status, view = await analyst.call("POST", "/api/v1/commands/requests", {"document": prepared["document"]})
        assert status == 200 and view["state"] == "pending" and view["sha256"] == prepared["sha256"], view
        request_id = view["document"]["id"]
        # A changed document is another request: its hash differs, so nobody's signature carries over.
        changed = {**prepared["document"], "value": "89"}
        assert (await analyst.call("POST", "/api/v1/commands/requests", {"document": changed}))[0] == 409
        message = view["signing"]["message"]
        assert message == f"otseam command approval v1\n{view['sha256']}"
        # The administrator takes no part; the requester never approves their own request.
        assert (await admin.call("POST", f"/api/v1/commands/requests/{request_id}/approve", {}))[0] == 403
        status, refused = await analyst.call(
            "POST", f"/api/v1/commands/requests/{request_id}/approve", signed(tmp_path, "ot-lead", message)
        )
        assert status == 403, refused
        # A signature by someone else's key is refused.
        status, refused = await it.call(
            "POST", f"/api/v1/commands/requests/{request_id}/approve", signed(tmp_path, "ot-lead", message)
        )
        assert status == 403, refused
        for client, person in ((ot, "ot-lead"), (it, "it-lead")):
            status, view = await client.call(
                "POST", f"/api/v1/commands/requests/{request_id}/approve", signed(tmp_path, person, message)
            )
            assert status == 200, view
        assert view["state"] == "approved" and [a["person"] for a in view["approvals"]] == ["ot-lead", "it-lead"]
        # A second request, rejected with a reason.
        status, second = await analyst.call("POST", "/api/v1/commands/prepare", {**ask, "value": "70"})
        status, second = await analyst.call("POST", "/api/v1/commands/requests", {"document": second["document"]})
        second_id = second["document"]["id"]
        status, body = await ot.call("POST", f"/api/v1/commands/requests/{second_id}/reject", {"reason": " "})
        assert status == 400, body
        status, body = await ot.call(
            "POST", f"/api/v1/commands/requests/{second_id}/reject", {"reason": "pump 2 is down"}
        )
        assert status == 200 and body["state"] == "rejected"
        # Lists: newest first, by state, in pages.
        status, page = await viewer.call("GET", "/api/v1/commands/requests?limit=1")
        assert [r["document"]["id"] for r in page["items"]] == [second_id] and page["next"] == 1
        status, page = await viewer.call("GET", "/api/v1/commands/requests?limit=1&offset=1")
        assert [r["document"]["id"] for r in page["items"]] == [request_id] and page["next"] is None
        status, page = await viewer.call("GET", "/api/v1/commands/requests?state=rejected")
        assert [r["document"]["id"] for r in page["items"]] == [second_id]
        assert (await viewer.call("GET", "/api/v1/commands/requests?state=nonsense"))[0] == 400
        assert (await viewer.call("GET", "/api/v1/commands/requests/0000000000000000"))[0] == 404
        # The audit log, newest first and in pages, verified.
        status, audit = await viewer.call("GET", "/api/v1/audit?limit=3")
        assert status == 200 and audit["verification"]["ok"] is True, audit
        assert [r["seq"] for r in audit["items"]] == sorted((r["seq"] for r in audit["items"]), reverse=True)
        status, older = await viewer.call("GET", f"/api/v1/audit?limit=100&before={audit['next']}")
        kinds = [r["kind"] for r in audit["items"] + older["items"]]
        assert kinds.count("command.approve") == 2 and "command.reject" in kinds and kinds.count("login") == 5
        assert "command.approve.refused" in kinds
        status, keys_list = await viewer.call("GET", "/api/v1/keys")
        assert {k["person"] for k in keys_list["items"]} == {"ot-lead", "it-lead"}
        # An edited record is named at once.
        log = node.supervisor.data_dir / "authority" / "audit.log"
        lines = log.read_text().splitlines()
        edited = next(i for i, line in enumerate(lines) if '"command.request"' in line)
        lines[edited] = lines[edited].replace("tariff shift", "tariff shift!")
        log.write_text("\n".join(lines) + "\n")
        status, audit = await viewer.call("GET", "/api/v1/audit?limit=1")
        verdict = audit["verification"]
        assert verdict["ok"] is False and verdict["first_bad_seq"] == edited + 1, verdict
        assert f"record {edited + 1} " in verdict["problem"] and "edited" in verdict["problem"], verdict
    finally:
        for client in (analyst, ot, it, viewer, admin):
            await client.close()


async def test_the_service_follows_a_reloaded_contract(node: Node, tmp_path: Path) -> None:
    analyst = await node.client("analyst")
    try:
        ask = {"command": "set-speed", "value": "95", "observed": "50", "reason": "more"}
        contract = tmp_path / "seam.yaml"
        running = contract.read_text()
        # A change the node refuses: nothing is decided on the file while it is not the contract in force.
        contract.write_text(running.replace("range: {low: 40, high: 90}", "range: {low: 40, high: 98}, bogus: 1"))
        assert not await node.supervisor.reload()
        status, body = await analyst.call("POST", "/api/v1/commands/prepare", ask)
        assert status == 503 and "is not the contract this node runs" in body["error"], body
        contract.write_text(running)
        status, body = await analyst.call("POST", "/api/v1/commands/prepare", ask)
        assert status == 422 and "range" in body["error"], body
        contract.write_text(contract.read_text().replace("range: {low: 40, high: 90}", "range: {low: 40, high: 98}"))
        assert await node.supervisor.reload()
        status, body = await analyst.call("POST", "/api/v1/commands/prepare", ask)
        assert status == 200 and body["document"]["value"] == "95", body
    finally:
        await analyst.close()


async def test_a_contract_proposal_over_the_api(node: Node, tmp_path: Path) -> None:
    ot, it, viewer = await node.client("ot"), await node.client("it"), await node.client("viewer")
    try:
        text = (tmp_path / "seam.yaml").read_text()
        widened = text.replace("range: {low: 40, high: 90}", "range: {low: 30, high: 95}")
        assert (await viewer.call("POST", "/api/v1/contract/proposals", {"text": widened}))[0] == 403
        status, body = await it.call("POST", "/api/v1/contract/proposals", {"text": "version: [1"})
        assert status == 409 and "cannot be loaded" in body["error"], body
        status, proposal = await it.call("POST", "/api/v1/contract/proposals", {"text": widened})
        assert status == 200 and proposal["revision"] == 1, proposal
        assert "command set-speed widened: range 40..90 -> 30..95" in proposal["changes"]
        assert set(proposal["required"]) == {"ot-engineer", "ot-lead", "seam-lead"}
        status, shown = await viewer.call("GET", "/api/v1/contract/proposals/r1")
        assert status == 200 and shown["text"] == widened
        assert shown["signing"]["message"] == f"otseam contract bundle v1\n{shown['digest']}"
        assert (await viewer.call("GET", "/api/v1/contract/proposals/r999"))[0] == 404
        status, body = await it.call(
            "POST", "/api/v1/contract/proposals/r1/approve", signed(tmp_path, "it-lead", shown["signing"]["message"])
        )
        assert status == 409 and "not among the approvers" in body["error"], body
        status, body = await ot.call(
            "POST", "/api/v1/contract/proposals/r1/approve", signed(tmp_path, "ot-lead", shown["signing"]["message"])
        )
        assert status == 200 and [a["person"] for a in body["approvals"]] == ["ot-lead"] and body["status"] == "open"
        status, listed = await viewer.call("GET", "/api/v1/contract/proposals")
        assert listed["governance"] is False and [p["revision"] for p in listed["items"]] == [1]
        assert "text" not in listed["items"][0]
    finally:
        for client in (ot, it, viewer):
            await client.close()
