"""The documentation matches the code: the generated contract reference is current, and the commands the
deployment and runbook pages show run as written."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from otseam.contract import reference
from otseam.demo.contract import DemoPorts, build_demo_contract, free_ports
from tests.demo.seam_cli import seam

ROOT = Path(__file__).resolve().parents[2]


def test_the_contract_reference_is_current() -> None:
    page = (ROOT / "docs" / "contract-reference.md").read_text(encoding="utf-8")
    assert page == reference.render(), (
        "docs/contract-reference.md is out of date: python -m otseam.contract.reference docs/contract-reference.md"
    )


def test_every_contract_key_is_explained() -> None:
    # The contract's own keys all say what they mean (plugin options point to their README).
    contract_part = reference.render().split("# Plugin options")[0]
    unexplained = [line for line in contract_part.splitlines() if line.startswith("| `") and line.endswith("|  |")]
    assert not unexplained, unexplained


def _doc_commands(page: str) -> list[str]:
    """The command lines of a page's code blocks, comments and continuation lines joined."""
    lines: list[str] = []
    inside = False
    for raw in (ROOT / "docs" / page).read_text(encoding="utf-8").splitlines():
        if raw.startswith("```"):
            inside = not inside
            continue
        if inside and raw.startswith("seam "):
            lines.append(raw.split("  #")[0].strip())
    return lines


def _run(line: str, root: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """A documented command as written, with the deployment's /etc/seam under ``root``, run in ``root``."""
    args = shlex.split(line.replace("/etc/seam/", f"{root}/etc/seam/"))
    assert args[0] == "seam"
    return seam(*args[1:], cwd=root, stdin=stdin)


def test_the_runbook_commands_work_as_written(tmp_path: Path) -> None:
    """Key rotation, certificates, passwords and contract changes from docs/runbook.md, on the demo's
    two-node contract installed where docs/deploy.md puts it."""
    etc = tmp_path / "etc" / "seam"
    (etc / "keys").mkdir(parents=True)
    ports = DemoPorts(*free_ports(6))
    (etc / "seam.yaml").write_text(build_demo_contract(ports, capture=False, mqtt=None))
    shown = _doc_commands("runbook.md") + _doc_commands("deploy.md")

    def doc(line: str, stdin: str = "") -> str:
        assert line in shown, f"not in the docs as written: {line}"
        result = _run(line, tmp_path, stdin)
        assert result.returncode == 0, f"{line}\n{result.stdout}{result.stderr}"
        return result.stdout

    doc("seam diode keygen /etc/seam/keys/diode.key.new")
    assert (etc / "keys" / "diode.key.new").stat().st_mode & 0o777 == 0o600
    doc("seam command certs /etc/seam/pki/commands.new --dmz-host 10.30.0.5 --dmz-node it-gateway --ot-node ot-edge")
    assert {p.name for p in (etc / "pki" / "commands.new").iterdir()} >= {"ca.pem", "it-gateway.pem", "ot-edge.key"}

    doc("seam command keygen ot-control --out ot-control.key")
    doc("seam command enroll ot-control.key.pub --contract /etc/seam/seam.yaml --node it-gateway")
    doc("seam command enroll ot-control.key.pub --contract /etc/seam/seam.yaml --node ot-edge")
    listed = doc("seam command keys --contract /etc/seam/seam.yaml --node it-gateway")
    fingerprint = listed.split()[1]
    assert fingerprint.startswith("SHA256:") and "active" in listed
    for node in ("it-gateway", "ot-edge"):
        line = f"seam command revoke 'SHA256:...' --contract /etc/seam/seam.yaml --node {node}"
        assert line in shown
        result = _run(line.replace("SHA256:...", fingerprint), tmp_path)
        assert result.returncode == 0, result.stderr
    assert "revoked" in doc("seam command keys --contract /etc/seam/seam.yaml --node it-gateway")

    # A console user, then the runbook's password change (read from standard input).
    add = _run(
        "seam user add /etc/seam/seam.yaml ot-engineer --person ot-control --node it-gateway", tmp_path, "x" * 16
    )
    assert add.returncode == 0, add.stderr
    doc("seam user passwd /etc/seam/seam.yaml ot-engineer --node it-gateway", "a new long passphrase\n" * 2)

    # A contract change: check, diff, propose, approve, status.
    new = (etc / "seam.yaml").read_text().replace("Chlorine dose setpoint", "Chlorine dose setpoint (mg/L)")
    (tmp_path / "new.yaml").write_text(new)
    doc("seam check new.yaml")
    assert "dosing-setpoint" in doc("seam contract diff /etc/seam/seam.yaml new.yaml")
    proposed = doc("seam contract propose new.yaml --as ot-control --contract /etc/seam/seam.yaml --node it-gateway")
    assert proposed.startswith("r1 ")
    # The revoked key cannot approve; a fresh one, enrolled, can.
    (tmp_path / "ot-control.key").unlink()
    (tmp_path / "ot-control.key.pub").unlink()
    doc("seam command keygen ot-control --out ot-control.key")
    doc("seam command enroll ot-control.key.pub --contract /etc/seam/seam.yaml --node it-gateway")
    doc(
        "seam contract approve r1 --as ot-control --key ot-control.key --contract /etc/seam/seam.yaml --node it-gateway"
    )
    assert "r1" in doc("seam contract status --contract /etc/seam/seam.yaml --node it-gateway")
