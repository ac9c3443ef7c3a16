"""Break-glass end to end, in a real browser, on a real `seam run` OT node and the simulated plant.

`seam sim` serves the plant over Modbus; the OT edge node polls it. On the edge node's console (Debian's
chromium, driven by Playwright) the OT control engineer opens a break-glass session with a reason,
signing it with their key file in the browser (the file is never uploaded); the alert shows among the
console's alerts; they write a new chlorine dose through the session from a second tab, outside the
command's window and without a second person, and the first tab shows the write too; mbpoll reads the
new value from the PLC. Then the seam owner closes the review
with a note and their own signature, and the audit page shows the chain verified with both records.
Screenshots: SEAM_CONSOLE_SHOTS.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from playwright.async_api import Page, expect

from otseam.audit.log import AuditLog, authority_dir, node_public_key, verify_log
from otseam.control.roles import Role
from otseam.control.users import UserStore
from tests.control.authority.servers import mbpoll
from tests.control.node import PASSWORD
from tests.control.test_browser import page, shot, shots  # noqa: F401 (fixtures)
from tests.control.test_browser_commands import prepare_site, sim  # noqa: F401 (a fixture)
from tests.core.seamrun import SeamRun
from tests.support.wait import wait_until

USERS = {"engineer": ("ot-control", Role.ENGINEER), "owner": ("seam-owner", Role.SEAM_OWNER)}


async def sign_in(tab: Page, base: str, user: str) -> None:
    await tab.goto(base + "/#/breakglass")
    await tab.fill("#login-user", user)
    await tab.fill("#login-password", PASSWORD)
    await tab.click("#login-form button[type=submit]")
    await expect(tab.locator("#who")).to_contain_text("side,")
    await expect(tab.locator("#bg-sessions")).to_be_visible()


async def test_one_ot_person_writes_through_break_glass_and_the_seam_owner_reviews(
    tmp_path: Path,
    sim: int,  # noqa: F811
    page: Page,  # noqa: F811
) -> None:
    prepare_site(tmp_path, sim)
    data = tmp_path / "seam-data" / "ot-edge"
    users = UserStore(data)
    for name, (person, role) in USERS.items():
        users.add(name, person, role, PASSWORD)
    edge = SeamRun(tmp_path, "--node", "ot-edge")
    try:
        await asyncio.to_thread(edge.wait_started)
        base = f"http://127.0.0.1:{edge.port}"
        assert mbpoll(sim, 3, 4, 1, "4") == ["120"]  # 1.20 mg/L, the plant's initial dose

        await sign_in(page, base, "engineer")
        await page.click("#bg-form button[type=submit]")  # no reason: the browser refuses the form
        await expect(page.locator(".breakglass")).to_have_count(0)
        await page.fill("#bg-reason", "DMZ unreachable, chlorine residual low after the storm")
        await page.click("#bg-form button[type=submit]")  # no key file: the page says so
        await expect(page.locator("#bg-error")).to_contain_text("choose your key file")
        await page.locator("#bg-key").set_input_files(str(tmp_path / "keys" / "ot-control.key"))
        await page.click("#bg-form button[type=submit]")
        card = page.locator(".breakglass[data-active=true]")
        await expect(card).to_be_visible(timeout=15_000)
        await expect(card).to_contain_text("chlorine residual low")
        await expect(card.locator(".bg-observed")).to_have_value("1.200", timeout=30_000)  # the live value
        # The write is made from a second tab of the same person; the first, its value seen now filled in
        # from the live values, shows the write too (a live event redraws it: that value is not typing).
        other = await page.context.new_page()
        await other.goto(base + "/#/breakglass")
        other_card = other.locator(".breakglass[data-active=true]")
        await expect(other_card.locator(".bg-observed")).to_have_value("1.200", timeout=30_000)
        await other_card.locator(".bg-value").fill("1.4")
        await other_card.locator(".bg-write button[type=submit]").click()
        await expect(other_card.locator(".bg-writes")).to_contain_text("executed", timeout=30_000)
        await other.close()
        await expect(card.locator(".bg-writes")).to_contain_text("executed", timeout=30_000)
        await asyncio.to_thread(wait_until, lambda: mbpoll(sim, 3, 4, 1, "4") == ["140"], "the new dose in the PLC", 10)
        await expect(card).to_contain_text("Review open")
        await shot(page, "breakglass-active")

        # The high-severity alert is among the console's alerts.
        await page.click("text=Alerts & inventory")
        await expect(page.locator("#alerts")).to_contain_text("BREAK-GLASS opened by ot-control", timeout=15_000)
        await page.click("#logout")
        await expect(page.locator("#login")).to_be_visible()

        # The seam owner closes the review, signing the session document with their own key.
        await sign_in(page, base, "owner")
        await expect(page.locator("#bg-form")).to_have_count(0)  # the seam owner does not open break-glass
        review = page.locator(".breakglass .bg-review")
        await review.locator(".bg-note").fill("justified: the DMZ was down; dose confirmed with the lab")
        await review.locator("input.key-file").set_input_files(str(tmp_path / "keys" / "seam-owner.key"))
        await review.locator("button[type=submit]").click()
        await expect(page.locator(".breakglass[data-reviewed=true]")).to_contain_text("Reviewed by seam-owner")
        await shot(page, "breakglass-reviewed")

        await page.click("text=Audit")
        await expect(page.locator("#audit-ok")).to_be_visible()
        table = page.locator("#audit-table")
        for kind in ("breakglass.open", "breakglass.review", "command.outcome"):
            await expect(table.locator("td", has_text=re.compile(rf"^{re.escape(kind)}$")).first).to_be_visible()
    finally:
        await page.goto("about:blank")  # the console stops asking before its node stops
        await asyncio.to_thread(edge.stop)
    audit = AuditLog(authority_dir(data))
    assert verify_log(audit.path, audit.head_path, node_public_key(audit.directory)).ok
