"""Break-glass on the REST API: who may open it, sign it, write through it and close its review, and
that nothing happens when the audit log cannot be written. (The write itself, in a real browser against
the simulated plant: test_browser_breakglass.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from otseam.audit.canonical import digest
from otseam.audit.log import AuditLog, authority_dir, node_public_key, verify_log
from otseam.control.authority import keys
from tests.control.inproc import Node, running
from tests.control.node import CONTRACT, add_users
from tests.support.wait import wait_until_async


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    (tmp_path / "seam.yaml").write_text(CONTRACT)
    add_users(tmp_path)
    ring = keys.Keyring(authority_dir(tmp_path / "data"))
    for person in ("olga", "sam"):
        keys.generate(person, tmp_path / f"{person}.key")
        ring.enroll(keys.parse_public((tmp_path / f"{person}.key.pub").read_text())[0], person)
    async with running(tmp_path) as started:
        yield started


def signed(tmp_path: Path, person: str, purpose: str, document: dict[str, Any]) -> dict[str, str]:
    private = keys.load_private(tmp_path / f"{person}.key")
    return {
        "fingerprint": keys.fingerprint(private.public_key()),
        "signature": keys.sign(private, purpose, digest(document)),
    }


async def test_one_ot_person_opens_signs_and_only_the_seam_owner_closes_the_review(node: Node, tmp_path: Path) -> None:
    olga, sam, erik, ivan = [await node.client(name) for name in ("olga", "sam", "erik", "ivan")]
    try:
        why = {"reason": "DMZ down, clearwell low", "duration_s": 600}
        assert (await ivan.call("POST", "/api/v1/breakglass/prepare", why))[0] == 403  # a viewer
        assert (await sam.call("POST", "/api/v1/breakglass/prepare", why))[0] == 403  # the seam owner reviews only
        assert (await olga.call("POST", "/api/v1/breakglass/prepare", {"duration_s": 600}))[0] == 400
        status, reply = await olga.call("POST", "/api/v1/breakglass/prepare", {**why, "duration_s": 7200})
        assert status == 422 and "at most 60 minutes" in reply["error"]
        status, prepared = await olga.call("POST", "/api/v1/breakglass/prepare", why)
        assert status == 200 and prepared["signing"]["purpose"] == keys.PURPOSE_BREAK_GLASS
        session = prepared["session"]
        assert session["person"] == "olga" and session["expires"] - session["opened"] == 600_000

        # Only its own person opens it, with their own key and the break-glass purpose.
        status, _ = await erik.call(
            "POST",
            "/api/v1/breakglass",
            {"session": session, **signed(tmp_path, "olga", keys.PURPOSE_BREAK_GLASS, session)},
        )
        assert status == 403
        wrong = signed(tmp_path, "olga", keys.PURPOSE_REQUEST, session)
        assert (await olga.call("POST", "/api/v1/breakglass", {"session": session, **wrong}))[0] == 403
        changed = {**session, "expires": session["expires"] + 1}
        status, _ = await olga.call(
            "POST",
            "/api/v1/breakglass",
            {"session": changed, **signed(tmp_path, "olga", keys.PURPOSE_BREAK_GLASS, session)},
        )
        assert status == 403  # any change voids the signature
        opening = {"session": session, **signed(tmp_path, "olga", keys.PURPOSE_BREAK_GLASS, session)}
        status, record = await olga.call("POST", "/api/v1/breakglass", opening)
        assert status == 200 and record["review"] is None
        assert (await olga.call("POST", "/api/v1/breakglass", opening))[0] == 409  # replayed

        # The high-severity alert is an alert of the console.
        async def alerted() -> bool:
            alerts = (await ivan.call("GET", "/api/v1/alerts?severity=high"))[1]["items"]
            return any(a["source"] == f"breakglass/{session['id']}" and "BREAK-GLASS" in a["message"] for a in alerts)

        await wait_until_async(alerted, "the break-glass alert among the console's alerts", 20)
        listed = (await ivan.call("GET", "/api/v1/breakglass"))[1]
        assert listed["available"] and [s["active"] for s in listed["items"]] == [True]

        # Writes go through one's own session only, and only to declared commands.
        write = {"command": "open-valve", "value": 1, "observed": 0}
        path = f"/api/v1/breakglass/{session['id']}/execute"
        assert (await erik.call("POST", path, write))[0] == 403
        status, reply = await olga.call("POST", path, write)
        assert status == 422 and "not a command declared" in reply["error"]

        review = f"/api/v1/breakglass/{session['id']}/review"
        note = {"note": "justified: the DMZ was down"}
        assert (await olga.call("POST", review, {**note, **signed(tmp_path, "olga", keys.PURPOSE_REVIEW, session)}))[
            0
        ] == 403
        status, _ = await sam.call(
            "POST", review, {**note, **signed(tmp_path, "sam", keys.PURPOSE_BREAK_GLASS, session)}
        )
        assert status == 403  # a signature of another purpose
        status, closed = await sam.call(
            "POST", review, {**note, **signed(tmp_path, "sam", keys.PURPOSE_REVIEW, session)}
        )
        assert status == 200 and closed["review"]["person"] == "sam"
        assert (await sam.call("POST", review, {**note, **signed(tmp_path, "sam", keys.PURPOSE_REVIEW, session)}))[
            0
        ] == 409
        status, reply = await olga.call("POST", path, {"command": "x", "value": 1, "observed": 0})
        assert status == 409 and "closed by review" in reply["error"]
    finally:
        for browser in (olga, sam, erik, ivan):
            await browser.close()
    audit = AuditLog(authority_dir(tmp_path / "data"))
    kinds = [r["kind"] for r in audit.records()]
    assert kinds.count("breakglass.open") == 1 and kinds.count("breakglass.review") == 1
    assert verify_log(audit.path, audit.head_path, node_public_key(audit.directory)).ok


async def test_nothing_opens_when_the_audit_log_cannot_be_written(node: Node, tmp_path: Path) -> None:
    olga = await node.client("olga")
    try:
        status, prepared = await olga.call("POST", "/api/v1/breakglass/prepare", {"reason": "pumps", "duration_s": 60})
        assert status == 200
        session = prepared["session"]
        log = authority_dir(tmp_path / "data") / "audit.log"
        log.unlink(missing_ok=True)
        log.symlink_to("/dev/full")  # a full disk
        opening = {"session": session, **signed(tmp_path, "olga", keys.PURPOSE_BREAK_GLASS, session)}
        status, reply = await olga.call("POST", "/api/v1/breakglass", opening)
        assert status == 503 and "audit log cannot be written" in reply["error"]
        assert (await olga.call("GET", "/api/v1/breakglass"))[1]["items"] == []
        alerts = (await olga.call("GET", "/api/v1/alerts"))[1]["items"]
        assert not any(a["source"].startswith("breakglass/") for a in alerts)
    finally:
        await olga.close()
