"""Signing in: throttling and lockout, tokens (scoped, revocable), TOTP, expiry, removal."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pyotp
import pytest

from otseam.control.users import UserStore
from tests.control.inproc import Browser, Node, running
from tests.control.node import CONTRACT, PASSWORD, add_users, seam_inline
from tests.support.wait import wait_until_async


async def wait_until(condition: Callable[[], object], what: str, within: float = 20.0) -> None:
    """The suite's wait helper, with this file's argument order."""
    await wait_until_async(condition, what, within)


def with_control(extra: str) -> str:
    return CONTRACT.replace('control:\n  banner: "Authorised use only. Activity is recorded."\n', extra)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    (tmp_path / "seam.yaml").write_text(CONTRACT)
    add_users(tmp_path)
    async with running(tmp_path) as started:
        yield started


async def test_the_session_cookie_is_httponly_and_strict(node: Node) -> None:
    browser = await node.client()
    try:
        async with browser.session.post(
            node.base + "/api/v1/login", json={"user": "ivan", "password": PASSWORD}
        ) as response:
            cookie = response.headers["Set-Cookie"]
            csrf = (await response.json())["csrf"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        status, _ = await browser.call("GET", "/api/v1/contract")
        assert status == 200
        status, _ = await browser.call("POST", "/api/v1/logout", {})
        assert status == 403  # signing out is a change too: without the CSRF token it is refused
        browser.csrf = csrf
        status, _ = await browser.call("POST", "/api/v1/logout", {})
        assert status == 200
        status, _ = await browser.call("GET", "/api/v1/contract")
        assert status == 401
    finally:
        await browser.close()


async def test_five_wrong_passwords_lock_the_user_and_are_audited(node: Node) -> None:
    browser = await node.client()
    try:
        for _ in range(5):
            status, reply = await browser.login("olga", "not the password")
            assert status == 401 and reply["error"] == "wrong user name or password"
        status, reply = await browser.login("olga")  # the right password no longer helps
        assert status == 429 and "locked" in reply["error"]
        status, _ = await browser.login("erik")  # other users are not affected
        assert status == 200
        admin = await node.client("ada")
        status, users = await admin.call("GET", "/api/v1/users")
        assert {u["name"]: u["locked"] for u in users["items"]}["olga"] is True
        # Through the hash-chained audit log, which copies every record into the journal.
        status, audit = await admin.call("GET", "/api/v1/events?kind=audit.login")
        refused = [e for e in audit["items"] if e["kind"] == "audit.login.failed"]
        assert len(refused) >= 6 and all(PASSWORD not in str(e) for e in audit["items"])
        status, chain = await admin.call("GET", "/api/v1/audit?kind=login.failed")
        assert status == 200 and chain["verification"]["ok"] is True, chain["verification"]
        assert len(chain["items"]) >= 6 and all(r["actor"] == "olga" for r in chain["items"])
        await admin.close()
    finally:
        await browser.close()


async def test_unknown_users_get_the_same_answer_as_wrong_passwords(node: Node) -> None:
    browser = await node.client()
    try:
        status, reply = await browser.login("nobody", PASSWORD)
        assert status == 401 and reply["error"] == "wrong user name or password"
        status, reply = await browser.call("POST", "/api/v1/login", {"user": 1, "password": []})
        assert status == 400
        status, reply = await browser.call("POST", "/api/v1/login", None, headers={"Content-Type": "application/json"})
        assert status == 400
    finally:
        await browser.close()


async def test_tokens_are_scoped_and_revocable(node: Node) -> None:
    owner = await node.client("erik")
    machine = await node.client()
    try:
        status, created = await owner.call("POST", "/api/v1/tokens", {"name": "grafana", "scopes": ["read"]})
        assert status == 200
        machine.headers["Authorization"] = f"Bearer {created['secret']}"
        assert (await machine.call("GET", "/api/v1/points"))[0] == 200
        assert (await machine.call("POST", "/api/v1/alerts/1/ack", {"comment": "x"}))[0] == 403  # not in its scope
        assert (await machine.call("POST", "/api/v1/tokens", {"name": "child"}))[0] == 403  # tokens mint nothing
        stored = (node.supervisor.data_dir / "control" / "users.json").read_text()
        # The secret part is url-safe base64 and may itself hold "_", so split only twice.
        secret_part = created["secret"].split("_", 2)[2]
        assert len(secret_part) == 43
        assert created["secret"] not in stored and secret_part not in stored
        status, _ = await owner.call("DELETE", f"/api/v1/tokens/{created['id']}")
        assert status == 200
        assert (await machine.call("GET", "/api/v1/points"))[0] == 401
        # An operator may not grant what a viewer's role lacks, and a viewer cannot grant acknowledging.
        viewer = await node.client("ivan")
        status, _ = await viewer.call("POST", "/api/v1/tokens", {"name": "x", "scopes": ["alerts.ack"]})
        assert status == 403
        await viewer.close()
    finally:
        await owner.close()
        await machine.close()


async def test_a_removed_user_is_signed_out_at_the_next_request(node: Node) -> None:
    browser = await node.client("ivan")
    try:
        assert (await browser.call("GET", "/api/v1/session"))[0] == 200
        code, _, err = seam_inline("user", "remove", str(node.supervisor.contract_path), "ivan")
        assert code == 0, err
        assert (await browser.call("GET", "/api/v1/session"))[0] == 401
    finally:
        await browser.close()


async def test_a_password_change_ends_existing_sessions(node: Node) -> None:
    browser = await node.client("sam")
    try:
        UserStore(node.supervisor.data_dir).set_password("sam", "a different long passphrase")
        assert (await browser.call("GET", "/api/v1/session"))[0] == 401
        assert (await browser.login("sam", "a different long passphrase"))[0] == 200
    finally:
        await browser.close()


async def test_idle_sessions_expire(tmp_path: Path) -> None:
    (tmp_path / "seam.yaml").write_text(with_control("control:\n  session_idle: 5s\n"))
    add_users(tmp_path)
    async with running(tmp_path) as node:
        browser = await node.client("ivan")
        try:
            assert (await browser.call("GET", "/api/v1/session"))[0] == 200

            async def expired() -> bool:
                return (await browser.call("GET", "/api/v1/session"))[0] == 401 if await _idle(5.5) else False

            await wait_until(expired, "the idle session to end")
        finally:
            await browser.close()


async def _idle(seconds: float) -> bool:
    import asyncio

    await asyncio.sleep(seconds)  # being idle is the condition under test: no request for this long
    return True


async def test_totp_is_required_of_approvers_when_the_contract_says_so(tmp_path: Path) -> None:
    commands = """\
commands:
  - id: setpoint
    point: gen1/level
    conduit: commands
    approvers: [{side: ot, role: shift operator}, {side: it, role: data analyst}]
"""
    text = with_control("control:\n  totp: approvers\n") + commands
    # Commands enter OT from the DMZ at site operations (level 3), which reaches the cell (ARCH-010).
    text = (
        text.replace('unit: "%"\n', 'unit: "%"\n        writable: true\n')
        .replace(
            "conduits:\n",
            "conduits:\n  - {id: commands, from: dmz, to: ops, direction: two-way, transport: tls, "
            "protocols: [seam-commands], ports: [8443], owner: erik, justification: approved setpoints only}\n"
            "  - {id: ops-cell, from: ops, to: cell, direction: two-way, transport: tcp, protocols: [modbus], "
            "ports: [502], owner: erik, justification: polling}\n",
        )
        .replace("zones:\n", "zones:\n  - {id: ops, name: Site operations, level: 3, sl: 2, owner: erik}\n")
    )
    (tmp_path / "seam.yaml").write_text(text)
    add_users(tmp_path)
    async with running(tmp_path) as node:
        browser = await node.client()
        try:
            status, reply = await browser.login("olga")
            assert status == 403 and "seam user totp" in reply["error"]  # an approver without a second factor
            assert (await browser.login("erik"))[0] == 200  # not an approver
            secret = pyotp.random_base32()
            UserStore(node.supervisor.data_dir).set_totp("olga", secret)
            status, reply = await browser.login("olga")
            assert status == 401 and reply["totp"] is True
            assert (await browser.login("olga", totp="000000" if pyotp.TOTP(secret).now() != "000000" else "111111"))[
                0
            ] == 401
            code = pyotp.TOTP(secret).now()
            assert (await browser.login("olga", totp=code))[0] == 200
            assert (await browser.login("olga", totp=code))[0] == 401  # a code is good once
        finally:
            await browser.close()


async def raise_alert(node: Node, browser: Browser) -> int:
    """An alert in the node's journal, once the console lists it: its offset."""
    from otseam.core.records import Event, Severity

    assert node.supervisor.journal is not None
    node.supervisor.journal.append([Event(1.0, "alert", "plc1", Severity.HIGH, "look", {"test": True})])

    async def listed() -> int | None:
        items = (await browser.call("GET", "/api/v1/alerts"))[1]["items"]
        return next((a["offset"] for a in items if a["data"].get("test")), None)

    await wait_until(listed, "the alert to be listed")
    offset = await listed()
    assert offset is not None
    return offset


def audit_kinds(node: Node) -> list[str]:
    from otseam.audit.log import AuditLog, authority_dir

    return [r["kind"] for r in AuditLog(authority_dir(node.supervisor.data_dir)).records()]


async def test_token_changes_and_acknowledgements_are_audit_records(node: Node) -> None:

    owner = await node.client("erik")
    try:
        status, created = await owner.call("POST", "/api/v1/tokens", {"name": "grafana", "scopes": ["read"]})
        assert status == 200
        assert (await owner.call("DELETE", f"/api/v1/tokens/{created['id']}"))[0] == 200
        offset = await raise_alert(node, owner)
        assert (await owner.call("POST", f"/api/v1/alerts/{offset}/ack", {"comment": "seen"}))[0] == 200
        assert audit_kinds(node)[-3:] == ["token.create", "token.revoke", "alert.ack"]
        # The journal carries them (and so does the diode): the audit log's own copies.
        status, events = await owner.call("GET", "/api/v1/events?kind=audit.token")
        assert [e["kind"] for e in events["items"]] == ["audit.token.revoke", "audit.token.create"]
    finally:
        await owner.close()


async def test_what_cannot_be_recorded_is_refused(node: Node) -> None:
    from otseam.audit.log import authority_dir

    owner = await node.client("erik")
    try:
        offset = await raise_alert(node, owner)
        status, earlier = await owner.call("POST", "/api/v1/tokens", {"name": "earlier", "scopes": ["read"]})
        assert status == 200
        log = authority_dir(node.supervisor.data_dir) / "audit.log"
        log.unlink()
        log.symlink_to("/dev/full")  # a full disk
        status, reply = await owner.call("POST", "/api/v1/tokens", {"name": "grafana", "scopes": ["read"]})
        assert status == 503 and "not created" in reply["error"]
        # Revoking only takes access away: it stands, says it is not on record, and the journal says so too.
        status, reply = await owner.call("DELETE", f"/api/v1/tokens/{earlier['id']}")
        assert status == 200 and "not on record" in reply["warning"]
        assert all(t.revoked is not None for t in UserStore(node.supervisor.data_dir).tokens())

        async def unrecorded() -> bool:
            items = (await owner.call("GET", "/api/v1/events?kind=audit.unrecorded"))[1]["items"]
            return any(e["data"]["token"] == earlier["id"] and e["severity"] == "high" for e in items)

        await wait_until(unrecorded, "the unrecorded revocation in the journal")
        status, reply = await owner.call("POST", f"/api/v1/alerts/{offset}/ack", {"comment": "seen"})
        assert status == 503 and "audit log cannot be written" in reply["error"]
        unacknowledged = (await owner.call("GET", "/api/v1/alerts"))[1]["items"]
        assert any(a["offset"] == offset and a["acknowledged"] is None for a in unacknowledged)
        # Signing in is refused too: a session that is not on record does not start.
        assert (await (await node.client()).login("ivan"))[0] == 503
    finally:
        await owner.close()
