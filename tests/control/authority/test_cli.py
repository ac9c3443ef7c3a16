"""`seam command`, `seam contract` and `seam audit` from a terminal, on one node's store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from otseam.commands import authority as commands
from tests.control.authority.helpers import PEOPLE, contract_text
from tests.control.authority.servers import mbpoll, mbpoll_write, node_server

runner = CliRunner()


def app() -> typer.Typer:
    root = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @root.callback()
    def _root() -> None:
        """seam"""

    commands.register(root)
    return root


def seam(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app(), [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture
def site(tmp_path: Path) -> Path:
    contract = tmp_path / "seam.yaml"
    contract.write_text(contract_text(window="", rate="60/h"))
    for person in PEOPLE:
        code, out = seam("command", "keygen", person, "-o", tmp_path / f"{person}.key")
        assert code == 0, out
        assert (tmp_path / f"{person}.key").stat().st_mode & 0o777 == 0o600
        code, out = seam("command", "enroll", tmp_path / f"{person}.key.pub", "-c", contract)
        assert code == 0 and out.startswith(f"enrolled {person} SHA256:"), out
    return tmp_path


def as_(site: Path, person: str) -> list[str | Path]:
    return ["--as", person, "--key", site / f"{person}.key", "-c", site / "seam.yaml"]


def test_request_approve_list_show(site: Path) -> None:
    code, out = seam(
        "command",
        "request",
        "set-speed",
        "55",
        "--observed",
        "50",
        "--reason",
        "tariff",
        *as_(site, "it-analyst"),
        "--json",
    )
    assert code == 0, out
    view = json.loads(out)
    request_id = view["document"]["id"]
    assert view["requester_signature"]["person"] == "it-analyst"
    code, out = seam("command", "approve", request_id, *as_(site, "it-analyst"))
    assert code == 1 and "cannot approve" in out
    code, out = seam("command", "approve", request_id, *as_(site, "it-lead"))
    assert code == 0 and "still needed" in out, out
    code, out = seam("command", "approve", request_id, *as_(site, "ot-lead"))
    assert code == 0 and "approved" in out, out
    code, out = seam("command", "list", "--as", "seam-lead", "-c", site / "seam.yaml", "--state", "approved", "--json")
    assert [v["document"]["id"] for v in json.loads(out)] == [request_id]
    code, out = seam("command", "show", request_id, "--as", "ot-engineer", "-c", site / "seam.yaml")
    assert code == 0 and "approved by ot-lead" in out
    code, out = seam("command", "keys", "-c", site / "seam.yaml")
    assert out.count("active") == len(PEOPLE)
    # A revoked key signs nothing any more.
    fingerprint = next(line.split()[1] for line in out.splitlines() if line.startswith("it-analyst"))
    code, out = seam("command", "revoke", fingerprint, "-c", site / "seam.yaml")
    assert code == 0 and out.startswith("revoked it-analyst"), out
    code, out = seam(
        "command", "request", "set-speed", "56", "--observed", "50", "--reason", "t", *as_(site, "it-analyst")
    )
    assert code == 1 and "no active key" in out, out


def test_refusals_exit_with_one_clear_line(site: Path) -> None:
    code, out = seam(
        "command", "request", "set-speed", "95", "--observed", "50", "--reason", "x", *as_(site, "it-lead")
    )
    assert code == 1 and out.strip() == "error: 95 is outside the command's range 40 to 90 of 'set-speed'"
    os.chmod(site / "it-lead.key", 0o644)
    code, out = seam(
        "command", "request", "set-speed", "60", "--observed", "50", "--reason", "x", *as_(site, "it-lead")
    )
    assert code == 2 and "can be read by others" in out and "chmod 600" in out
    code, out = seam("command", "keygen", "it-lead", "-o", site / "it-lead.key")
    assert code == 2 and "never overwritten" in out
    code, out = seam("command", "show", "0123456789abcdef", "--as", "it-lead", "-c", site / "seam.yaml")
    assert code == 1 and "no request 0123456789abcdef" in out
    code, out = seam("command", "list", "--as", "it-lead", "-c", site / "missing.yaml")
    assert code == 2 and "missing.yaml" in out


def test_reject_then_audit_verify_and_export(site: Path) -> None:
    code, out = seam(
        "command", "request", "set-speed", "60", "--observed", "50", "--reason", "x", *as_(site, "it-analyst"), "--json"
    )
    request_id = json.loads(out)["document"]["id"]
    code, out = seam("command", "reject", request_id, "--reason", "pump 2 is down", *as_(site, "ot-lead"))
    assert code == 0 and "rejected by ot-lead: pump 2 is down" in out
    code, out = seam("audit", "verify", "-c", site / "seam.yaml")
    assert code == 0 and out.startswith("ok: "), out
    # A copy elsewhere, checked with the node's public key only.
    authority = site / "seam-data" / "authority"
    copy = site / "copy"
    copy.mkdir()
    for name in ("audit.log", "audit.head", "node.key.pub"):
        (copy / name).write_bytes((authority / name).read_bytes())
    args = ["--log", copy / "audit.log", "--head", copy / "audit.head", "--public-key", copy / "node.key.pub"]
    code, out = seam("audit", "verify", "-c", site / "seam.yaml", *args)
    assert code == 0 and out.startswith("ok: "), out
    code, out = seam("audit", "export", "-c", site / "seam.yaml", "--hostname", "dmz1")
    lines = out.splitlines()
    assert code == 0 and len(lines) >= 7 and all(line.startswith("<") and " dmz1 seam - " in line for line in lines)
    log = site / "seam-data" / "authority" / "audit.log"
    text = log.read_text().splitlines()
    text[-1] = text[-1].replace("pump 2 is down", "pump 2 is fine")
    log.write_text("\n".join(text) + "\n")
    code, out = seam("audit", "verify", "-c", site / "seam.yaml")
    assert code == 1 and out.startswith(f"TAMPERED: record {len(text)} (line {len(text)}) was edited"), out


def test_contract_change_control(site: Path) -> None:
    from otseam.control.authority.governance import GovernanceError, verify_bundle

    contract = site / "seam.yaml"
    changed = site / "changed.yaml"
    changed.write_text(contract.read_text().replace("range: {low: 40, high: 90}", "range: {low: 30, high: 95}"))
    code, out = seam("contract", "diff", contract, changed)
    assert code == 0 and "! command set-speed widened: range 40..90 -> 30..95" in out, out
    assert "zones touched: dmz, pumping, supervisory" in out
    code, out = seam("contract", "propose", changed, "--as", "it-lead", "-c", contract)
    assert code == 0 and out.startswith("r1  open"), out
    # Owners of every touched zone and the seam owner.
    for person in ("ot-engineer", "ot-lead", "seam-lead"):
        assert f"needs    {person}" in out
    code, out = seam("contract", "approve", "r1", *as_(site, "it-analyst"))
    assert code == 1 and "not among the approvers" in out
    seam("contract", "approve", "r1", *as_(site, "ot-engineer"))
    # A new revision voids the approvals of r1.
    changed.write_text(contract.read_text().replace("range: {low: 40, high: 90}", "range: {low: 35, high: 95}"))
    code, out = seam("contract", "propose", changed, "--as", "it-lead", "-c", contract)
    assert out.startswith("r2  open")
    code, out = seam("contract", "approve", "r1", *as_(site, "ot-lead"))
    assert code == 1 and "superseded by r2" in out
    for person in ("ot-engineer", "ot-lead"):
        assert seam("contract", "approve", "r2", *as_(site, person))[0] == 0
    authority = site / "seam-data" / "authority"
    bundle = authority / "bundles" / "r2.bundle.json"
    assert not bundle.exists()
    code, out = seam("contract", "approve", "r2", *as_(site, "seam-lead"))
    assert code == 0 and "signed bundle:" in out and bundle.exists()
    # With governance on, the hook seam run calls before loading accepts the contract in force and the
    # text of a signed bundle made against it, and nothing else.
    from otseam.control.authority.governance import check_contract_file

    running = contract.read_text()
    assert seam("contract", "governance", "on", "-c", contract)[0] == 0
    data = site / "seam-data"
    check_contract_file(contract, data)
    contract.write_text(changed.read_text())
    check_contract_file(contract, data)
    assert (authority / "in-force.yaml").read_text() == changed.read_text()
    contract.write_text(changed.read_text().replace("high: 95", "high: 99"))
    with pytest.raises(
        GovernanceError, match=r"\(no signed bundle holds this text\); the running contract stays in force"
    ):
        check_contract_file(contract, data)
    contract.write_text(running)
    with pytest.raises(GovernanceError, match="not the contract in force"):
        check_contract_file(contract, data)  # going back is a change too
    assert verify_bundle(bundle, authority, running) == changed.read_text()
    with pytest.raises(GovernanceError, match="approved against another contract"):
        verify_bundle(bundle, authority, running + "\n# edited\n")
    raw = json.loads(bundle.read_text())
    raw["approvals"] = raw["approvals"][:2]
    bundle.write_text(json.dumps(raw))
    with pytest.raises(GovernanceError, match="lacks the approval of seam-lead"):
        verify_bundle(bundle, authority, running)
    raw = json.loads((authority / "bundles" / "r2.bundle.json").read_text())
    raw["text"] = raw["text"].replace("high: 95", "high: 100")
    bundle.write_text(json.dumps(raw))
    with pytest.raises(GovernanceError, match="does not match its hash"):
        verify_bundle(bundle, authority, running)
    code, out = seam("contract", "status", "-c", contract)
    assert "governance: on" in out and "r2  approved" in out and "superseded by r2" in out


def test_break_glass_on_the_ot_node(site: Path) -> None:
    with node_server("modbus_server.js") as port:
        contract = site / "seam.yaml"
        contract.write_text(contract_text(port, window="", rate="60/h"))
        mbpoll_write(port, 1, 2000, 0)
        mbpoll_write(port, 1, 2001, 0)
        code, out = seam("command", "break-glass", "set-speed", "45", "--reason", "", *as_(site, "ot-lead"))
        assert code == 1 and "needs a reason" in out
        code, out = seam(
            "command", "break-glass", "set-speed", "45", "--reason", "DMZ down, pumps cavitating", *as_(site, "it-lead")
        )
        assert code == 1 and "not an OT-side person" in out
        code, out = seam(
            "command", "break-glass", "set-speed", "45", "--reason", "DMZ down, pumps cavitating", *as_(site, "ot-lead")
        )
        assert code == 0 and "executed" in out, out
        assert mbpoll(port, 1, 2000, 1, "4:float", big_endian=False) == ["45"]
        session = out.split()[2]
        code, out = seam("command", "reviews", "-c", contract)
        assert session in out and "1 write(s)" in out
        code, out = seam("command", "review", session, "--note", "justified", *as_(site, "ot-lead"))
        assert code == 1 and "only the seam owner" in out
        code, out = seam("command", "review", session, "--note", "justified; DMZ fixed", *as_(site, "seam-lead"))
        assert code == 0, out
        assert seam("command", "reviews", "-c", contract)[1] == ""
        code, out = seam(
            "command",
            "break-glass",
            "set-speed",
            "50",
            "--reason",
            "again",
            "--session",
            session,
            *as_(site, "ot-lead"),
        )
        assert code == 1 and "closed by review" in out
        records = [
            json.loads(line) for line in (site / "seam-data" / "authority" / "audit.log").read_text().splitlines()
        ]
        opened = [r for r in records if r["kind"] == "breakglass.open"]
        assert len(opened) == 1 and opened[0]["severity"] == "critical"


def test_certs_for_the_command_conduit(tmp_path: Path) -> None:
    import ssl

    from otseam.control.authority import pki

    code, out = seam("command", "certs", tmp_path / "tls", "--dmz-host", "127.0.0.1")
    assert code == 0 and "keep ca.key offline" in out, out
    assert (tmp_path / "tls" / "ot-edge.key").stat().st_mode & 0o777 == 0o600
    server = pki.server_context(tmp_path / "tls" / "dmz.pem", tmp_path / "tls" / "dmz.key", tmp_path / "tls" / "ca.pem")
    assert server.verify_mode is ssl.CERT_REQUIRED and server.minimum_version is ssl.TLSVersion.TLSv1_3
    code, out = seam("command", "certs", tmp_path / "tls", "--dmz-host", "127.0.0.1")
    assert code == 2 and "already holds a CA" in out
