"""Proposing a contract change from the console: a file picked in the browser, the changes in words, the
rules' findings and who must approve, and a refusal said as the node says it. Only those who may change
the contract see the form."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page, expect

from tests.control.inproc import Node
from tests.control.test_browser import node, page, shot, shots  # noqa: F401 (fixtures)
from tests.control.test_browser_commands import sign_in


async def contract_page(tab: Page, base: str, user: str) -> None:
    await sign_in(tab, base, user)
    await tab.click("nav >> text=Contract")
    await expect(tab.locator("h3", has_text="People")).to_be_visible()


async def test_a_changed_contract_is_proposed_from_the_console(
    node: Node,  # noqa: F811
    page: Page,  # noqa: F811
    tmp_path: Path,
) -> None:
    current = (tmp_path / "seam.yaml").read_text()
    changed = tmp_path / "changed.yaml"
    changed.write_text(current.replace('unit: "m3/h"', 'unit: "l/s"', 1))
    assert changed.read_text() != current

    await contract_page(page, node.base, "sam")
    await page.locator("#propose-file").set_input_files(str(changed))
    await expect(page.locator("#propose-text")).to_have_value(changed.read_text())
    await page.click("#propose-form button[type=submit]")
    await expect(page.locator("#propose-done")).to_contain_text("Proposed r1 (open)")
    result = page.locator("#propose-result")
    await expect(result).to_contain_text("gen1/flow")
    await expect(result).to_contain_text("Rule findings")
    await expect(result).to_contain_text("Needs approval from")
    await shot(page, "contract-propose")
    # The approvers find it on the Requests page.
    await page.click("nav >> text=Requests")
    await expect(page.locator("#proposals tbody tr").first).to_contain_text("r1")

    # A text the node refuses: the reason, as the node gives it, and nothing recorded.
    await page.click("nav >> text=Contract")
    await page.fill("#propose-text", current.replace("zone: cell", "zone: nowhere", 1))
    await page.click("#propose-form button[type=submit]")
    await expect(page.locator("#propose-error")).to_contain_text("nowhere")
    await expect(page.locator("#propose-done")).to_have_count(0)

    # A viewer may read the contract but not propose.
    await page.click("#logout")
    await contract_page(page, node.base, "ivan")
    await expect(page.locator("#propose-form")).to_have_count(0)
