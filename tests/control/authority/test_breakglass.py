"""Break-glass: one OT person, a signed reason, a time limit, an alert that crosses with the journal,
and a review only the seam owner closes."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest

from otseam.audit.canonical import digest
from otseam.control.authority import keys
from otseam.control.authority.breakglass import BreakGlass, BreakGlassError
from otseam.control.authority.executor import Executor
from otseam.control.authority.store import Signature
from otseam.core.records import Event, Severity
from tests.control.authority.helpers import Clock, People, contract_text, enroll_all
from tests.control.authority.servers import mbpoll, mbpoll_write, node_server
from tests.control.authority.test_audit import Journal


def glass(tmp_path: Path, text: str, node: str = "ot-edge") -> tuple[BreakGlass, Clock, Journal, People]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "seam.yaml").write_text(text)
    clock, journal = Clock(), Journal()
    executor = Executor(tmp_path / "seam.yaml", tmp_path / node, node=node, clock=clock, tz=UTC, journal=journal)
    people = enroll_all(executor.directory, tmp_path)
    return BreakGlass(executor), clock, journal, people


def signed(people: People, person: str, purpose: str, body: dict[str, object]) -> Signature:
    return people.signature(person, purpose, digest(body))


async def test_a_session_is_signed_alerted_limited_and_reviewed(tmp_path: Path) -> None:
    with node_server("modbus_server.js") as port:
        mbpoll_write(port, 1, 2000, 0)
        mbpoll_write(port, 1, 2001, 0)
        g, clock, journal, people = glass(tmp_path, contract_text(port))
        with pytest.raises(BreakGlassError, match="at most 60 minutes"):
            g.prepare("ot-lead", "pumps", 2 * 3600)
        body = g.prepare("ot-lead", "DMZ down, clearwell low", 600)
        # Signed by someone else's key: not ot-lead's session.
        with pytest.raises(BreakGlassError, match="ot-lead has no active key with fingerprint"):
            g.open(body, signed(people, "ot-engineer", keys.PURPOSE_BREAK_GLASS, body))
        # The same key, another purpose: a request signature is not a break-glass signature.
        with pytest.raises(BreakGlassError, match="does not match"):
            g.open(body, signed(people, "ot-lead", keys.PURPOSE_REQUEST, body))
        g.open(body, signed(people, "ot-lead", keys.PURPOSE_BREAK_GLASS, body))
        alerts = [r for r in journal.records if isinstance(r, Event) and r.kind == "alert"]
        assert len(alerts) == 1 and alerts[0].severity is Severity.HIGH and "clearwell low" in alerts[0].message
        # Saturday night: the command's window is waived, its range is not.
        clock.now += 3 * 86400 + 12 * 3600
        with pytest.raises(BreakGlassError, match="has expired"):
            await g.execute(str(body["id"]), "set-speed", 50, "0")
        clock.now = Clock().now + 60
        with pytest.raises(BreakGlassError, match="outside the command's range"):
            await g.execute(str(body["id"]), "set-speed", 95, "0")
        outcome = await g.execute(str(body["id"]), "set-speed", 48, await g.current("set-speed"))
        assert outcome["status"] == "executed", outcome
        assert mbpoll(port, 1, 2000, 1, "4:float", big_endian=False) == ["48"]
        assert [s["session"]["id"] for s in g.open_reviews()] == [body["id"]]
        with pytest.raises(BreakGlassError, match="only the seam owner"):
            g.review(str(body["id"]), "ot-lead", "fine", signed(people, "ot-lead", keys.PURPOSE_REVIEW, body))
        g.review(str(body["id"]), "seam-lead", "justified", signed(people, "seam-lead", keys.PURPOSE_REVIEW, body))
        assert g.open_reviews() == []
        kinds = [r.kind for r in journal.records if isinstance(r, Event)]
        assert "audit.breakglass.open" in kinds and "audit.breakglass.review" in kinds


def test_not_on_a_node_outside_ot(tmp_path: Path) -> None:
    text = contract_text().replace(
        "devices:\n", "nodes:\n  - {id: ot-edge, zone: supervisory}\n  - {id: dmz, zone: dmz}\ndevices:\n", 1
    )
    text = text.replace("    zone: pumping\n", "    zone: pumping\n    node: ot-edge\n").replace(
        "    zone: filtration\n", "    zone: filtration\n    node: ot-edge\n"
    )
    g, _, _, _ = glass(tmp_path, text, node="dmz")
    with pytest.raises(BreakGlassError, match="not in an OT zone; break-glass runs on the OT node only"):
        g.prepare("ot-lead", "why not", 60)
