"""The console in a real browser: Debian's chromium, driven by Playwright, never a downloaded browser.

Signs in, sees the map (with a flow the capture source saw that no conduit declares), watches a live
value change, opens a trend, sees the stream drop and come back, acknowledges an alarm, sees the
capture's alerts with their ATT&CK ids and its unknown assets first, and sees a diode gap appear on the link page: the node receives the one-way
conduit with a diode_receive source, fed by a real diode sender through the lossy relay of the diode
tests. A screenshot of each page is saved (SHOTS_ENV).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright, expect

from otseam.control.live import MAX_AGE
from otseam.core.records import Quality, Record, Sample
from otseam.diode.sender import DiodeSender
from tests.control.inproc import Node, running
from tests.control.node import CONTRACT, PASSWORD, add_users
from tests.diode.harness import KEY, settings
from tests.diode.relay import Impairments, LossyRelay
from tests.monitor.pcapgen import Conversation, mbap, write_pcap
from tests.support.wait import DEFAULT_WITHIN, wait_until_async

# Playwright's assertions wait for their condition; their own bound (5 s) was too short with four
# workers beside Chromium, so they take the suite's (it only decides how long a broken test takes).
expect.set_options(timeout=DEFAULT_WITHIN * 1000)

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Where the screenshots go: the pytest temporary directory, or (to refresh the README's pictures)
#: SEAM_CONSOLE_SHOTS=docs/console.
SHOTS_ENV = "SEAM_CONSOLE_SHOTS"


HISTORY = 100_000


def preload_history(workdir: Path) -> None:
    """Most of an hour of gen1/level at 34 ms in the node's historian, through the historian's own writer: the
    trend must stay usable at 100,000 points."""
    import math
    import time

    from otseam.core.records import Batch
    from otseam.sinks.historian import store

    start = time.time() - 3500
    batch = Batch("preload")
    for i in range(HISTORY):
        ts = start + i * 0.034
        batch.offsets.append(i + 1)
        batch.records.append(Sample("gen1/level", 50 + 40 * math.sin(i / 500), Quality.GOOD, ts, ts))
    (workdir / "data").mkdir(exist_ok=True)
    db = store.connect(workdir / "data" / "hist.db", create=True)
    store.Writer(db).write(batch)
    db.close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def with_diode_source(port: int) -> str:
    """This node also receives the one-way conduit, as a DMZ node does: a diode_receive source."""
    return (
        CONTRACT
        + f"""\
sources:
  - id: from-ot
    type: diode_receive
    conduit: cell-dmz
    owner: sam
    options: {{listen: "127.0.0.1:{port}", key_file: diode.key, beacon_interval: 200ms, block_timeout: 200ms}}
  - id: span
    type: capture
    owner: erik
    options: {{file: plant.pcap, modbus_ports: [502]}}
"""
    )


def plant_capture(path: Path) -> None:
    """A capture of the plant network, built byte by byte: a host the contract does not know writes a
    register of a PLC (the capture source reports it as alerts and new assets)."""
    conversation = Conversation(client="10.0.0.99", server="10.0.0.20").handshake()
    conversation.c(mbap(1, 1, struct.pack("!BHH", 6, 40, 1234)))
    conversation.s(mbap(1, 1, struct.pack("!BHH", 6, 40, 1234)))
    conversation.c(mbap(2, 1, struct.pack("!BHH", 8, 1, 0)))
    conversation.s(mbap(2, 1, struct.pack("!BHH", 8, 1, 0)))
    write_pcap(path, conversation.frames, start=time.time() - 60)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    (tmp_path / "diode.key").write_bytes(KEY + b"\n")
    (tmp_path / "seam.yaml").write_text(with_diode_source(free_udp_port()))
    plant_capture(tmp_path / "plant.pcap")
    add_users(tmp_path)
    preload_history(tmp_path)
    async with running(tmp_path) as started:
        yield started


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    assert shutil.which(CHROMIUM), "Debian's chromium is needed (make system-deps installs it)"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = await browser.new_context(viewport={"width": 1280, "height": 860})
        opened = await context.new_page()
        errors: list[str] = []
        opened.on("pageerror", lambda exc: errors.append(str(exc)))
        yield opened
        await browser.close()
        assert not errors, errors


_shots: list[Path] = []


@pytest.fixture(autouse=True)
def shots(tmp_path: Path) -> None:
    _shots[:] = [Path(os.environ.get(SHOTS_ENV) or tmp_path / "shots")]


async def shot(page: Page, name: str, *, full: bool = False) -> None:
    directory = _shots[0]
    directory.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(directory / f"{name}.png"), full_page=full)


async def make_a_gap(node: Node) -> None:
    """A real diode sender sends six blocks through the lossy relay to the node's diode_receive source;
    the relay drops two of them entirely, so the source reports a gap into the node's journal."""
    contract = node.supervisor.plan.contract if node.supervisor.plan else None
    assert contract is not None
    listen = contract.sources[0].options["listen"]
    host, port = listen.rsplit(":", 1)

    def receiver() -> dict[str, Any]:
        detail: dict[str, Any] = node.supervisor.health()["components"]["source:from-ot"].get("detail", {})
        return detail.get("receiver", detail)

    def gaps() -> int:
        return int(receiver().get("gaps", 0))

    async def until(condition: Callable[[], bool], what: str) -> None:
        await wait_until_async(condition, what, 15.0, interval=0.05)

    now = 1_800_000_000.0
    received: list[int] = []

    async def send(sender: DiodeSender, batch: int) -> None:
        offsets = list(range(1 + batch * 300, 1 + (batch + 1) * 300))
        records: list[Record] = [Sample(f"plc9/p{o % 20}", float(o), Quality.GOOD, now + o, now + o) for o in offsets]
        await sender.send_records("ot-edge", offsets, records)

    def records_in() -> int:
        received.append(int(receiver().get("records", 0)))
        return received[-1]

    with LossyRelay((host, int(port)), Impairments(seed=3)) as relay:
        sender = DiodeSender(relay.address, KEY, settings())
        await sender.start()
        await sender.send_beacon()
        for batch in (0, 1):
            await send(sender, batch)
        await until(lambda: records_in() >= 600, "the first blocks to arrive")
        # The relay forwards on its own thread: switch the loss on and off only once it has seen what was
        # sent before, so that exactly blocks 2 and 3 are lost.
        relay.set(drop=1.0)
        for batch in (2, 3):
            await send(sender, batch)
        await until(lambda: len(relay.truth.lost_blocks(sender.session)) >= 2, "the relay to drop two blocks")
        relay.set(drop=0.0)
        for batch in (4, 5):
            await send(sender, batch)
        await sender.send_beacon()
        await until(lambda: gaps() > 0, "the source to report the gap")
        await sender.close()


async def test_the_console_end_to_end(node: Node, page: Page) -> None:
    await page.goto(node.base + "/")
    await expect(page.locator("#banner")).to_have_text("Authorised use only. Activity is recorded.")
    await shot(page, "login")
    await page.fill("#login-user", "olga")
    await page.fill("#login-password", "not the password")
    await page.click("button[type=submit]")
    await expect(page.locator("#login-error")).to_have_text("wrong user name or password")
    await page.fill("#login-password", PASSWORD)
    await page.click("button[type=submit]")

    # The map: zones by level, the node in its zone, the conduit carrying this node's traffic.
    await expect(page.locator("svg.map [data-zone=cell]")).to_be_visible()
    await expect(page.locator("#flows")).to_contain_text("declared-and-seen")
    # The capture saw a flow no conduit declares.
    await expect(page.locator("#flows")).to_contain_text("seen-but-not-declared")
    await expect(page.locator("#live")).to_have_text("live")
    await shot(page, "map")

    # A live value changes on the page by itself.
    await page.click("text=Devices & points")
    flow = page.locator('[data-v="gen1/flow"]')
    await expect(flow).not_to_be_empty()
    first = await flow.text_content()
    await expect(flow).not_to_have_text(first or "")
    await expect(page.locator('[data-q="gen1/flow"]')).to_have_text("good")

    # A trend of two points from the historian.
    await page.check('input[data-key="gen1/flow"]')
    await page.click("#trend")
    await expect(page.locator("#plot canvas")).to_be_visible()
    await expect(page.locator("#trend-info")).to_contain_text("samples drawn")
    await expect(page.locator("#plot")).to_contain_text("gen1/level")
    await expect(page.locator("#plot")).to_contain_text("gen1/flow")
    drawn = int(await page.locator("#chart").get_attribute("data-samples") or 0)
    assert drawn >= HISTORY
    # Zoom by dragging across the chart, then back with a double-click.
    box = await page.locator("#plot .u-over").bounding_box()
    assert box is not None
    full = await page.evaluate("state.plot.scales.x.max - state.plot.scales.x.min")
    await page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + 50)
    await page.mouse.down()
    await page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + 50, steps=5)
    await page.mouse.up()
    zoomed = await page.evaluate("state.plot.scales.x.max - state.plot.scales.x.min")
    assert zoomed < full / 3
    await page.keyboard.press("ArrowRight")
    await page.mouse.dblclick(box["x"] + box["width"] * 0.5, box["y"] + 50)
    await shot(page, "points")

    # The stream drops: the page says so at once, then comes back by itself.
    await node.http.stop()
    await expect(page.locator("#stream-lost")).to_be_visible()
    await expect(page.locator("#stream-lost")).to_contain_text("Live updates lost")
    await expect(page.locator("#live")).to_have_text("live: lost")
    await shot(page, "stream-lost")
    await node.restart_http()
    await expect(page.locator("#live")).to_have_text("live", timeout=15_000)
    await expect(page.locator("#stream-lost")).to_be_hidden()

    # The stream falls behind (what it had waiting grew older than the bound): the node skips it, sends
    # every value afresh, and the page says so.
    for subscriber in node.control.hub.subscribers:
        subscriber.offer(b": waiting\n\n", time.monotonic())
        subscriber.offer(b": waiting\n\n", subscriber.since + MAX_AGE + 1)
    await expect(page.locator("#stream-resync")).to_contain_text("Live updates fell behind")
    await expect(page.locator("#stream-resync")).to_contain_text(re.compile(r"\d+ messages were skipped"))
    await expect(page.locator("#live")).to_have_text("live")
    await shot(page, "stream-resync")
    await page.click("#resync-close")
    await expect(page.locator("#stream-resync")).to_be_hidden()

    # An alarm, acknowledged with a comment.
    await page.click("text=Alerts & inventory")
    first = page.locator("button[data-ack]").first
    await expect(first).to_be_visible(timeout=30_000)
    offset = await first.get_attribute("data-ack")
    # That alert's own button: new alerts may have pushed it down the list since (`first` would move).
    await page.fill(f'[data-ack-comment="{offset}"]', "level checked on site")
    await page.locator(f'button[data-ack="{offset}"]').click()
    await expect(page.locator("#alerts")).to_contain_text("olga: level checked on site")
    # The capture source's alerts carry their ATT&CK for ICS technique; unknown assets come first.
    await expect(page.locator("#alerts")).to_contain_text("T0855")
    await expect(page.locator("#inventory tbody tr").first).to_contain_text("unknown")
    await shot(page, "alerts", full=True)

    # A gap on the link, with the OT-side command that closes it.
    await page.click("text=Link")
    await expect(page.locator("#no-gaps")).to_be_visible()
    await make_a_gap(node)
    await expect(page.locator("#gaps")).to_contain_text("diode block(s) missing", timeout=15_000)
    await expect(page.locator("#gaps code.cmd").first).to_have_text(
        "seam diode replay --contract seam.yaml --from-offset 601 --to-offset 1200"
    )
    await expect(page.locator("#link")).to_contain_text("from-ot")
    await shot(page, "link")

    await page.click("text=Requests")
    # This contract declares no commands (test_browser_commands.py runs one end to end).
    await expect(page.locator("main")).to_contain_text("The contract declares no commands: nothing can be requested")
    await shot(page, "requests")
    await page.click("text=Audit")
    await expect(page.locator("#audit-ok")).to_be_visible()
    await expect(page.locator("#audit")).to_contain_text("olga logged in")
    await shot(page, "audit")
    await page.click("text=Contract")
    await expect(page.frame_locator("iframe.doc").locator("h1")).to_contain_text("Seam interface")
    await shot(page, "contract")

    await page.click("#logout")
    await expect(page.locator("#login")).to_be_visible()


async def test_a_viewer_cannot_acknowledge(node: Node, page: Page) -> None:
    await page.goto(node.base + "/")
    await page.fill("#login-user", "ivan")
    await page.fill("#login-password", PASSWORD)
    await page.click("button[type=submit]")
    await page.click("text=Alerts & inventory")
    await expect(page.locator("#alerts tbody tr").first).to_be_visible(timeout=30_000)
    await expect(page.locator("button[data-ack]")).to_have_count(0)
