"""`seam run` with governance on: the supervisor asks change control before every load and reload. A
contract nobody signed is refused and the running one stays; the text of a bundle its quorum signed loads."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from otseam.audit.log import AuditLog, verify_log
from otseam.control.authority import keys
from otseam.control.authority.governance import ChangeControl, turn_on
from otseam.control.authority.store import Signature
from tests.control.node import CONTRACT
from tests.core.seamrun import SeamRun


def _sign_all(control: ChangeControl, proposal: dict[str, Any], workdir: Path) -> None:
    for person in proposal["required"]:
        public_path, fingerprint = keys.generate(str(person), workdir / f"{person}.key")
        control.keyring.enroll(keys.parse_public(public_path.read_text())[0], str(person))
        private = keys.load_private(workdir / f"{person}.key")
        signature = keys.sign(private, keys.PURPOSE_BUNDLE, str(proposal["digest"]))
        control.approve(int(proposal["revision"]), str(person), Signature(str(person), fingerprint, signature))


def test_a_governed_node_loads_only_what_its_quorum_signed(tmp_path: Path) -> None:
    contract = tmp_path / "seam.yaml"
    contract.write_text(CONTRACT)
    authority = tmp_path / "data" / "authority"
    audit = AuditLog(authority, node="default")
    turn_on(authority, CONTRACT, audit)
    node = SeamRun(tmp_path)
    try:
        node.wait_started()
        # A change nobody approved: refused, the running contract stays in force.
        unsigned = CONTRACT.replace("sine:period=3s", "sine:period=4s")
        contract.write_text(unsigned)
        node.signal(signal.SIGHUP)
        node.wait_for(lambda: node.health()["reloads"]["failed"] >= 1, "the refused reload")
        error = node.health()["reloads"]["last_error"]
        assert "governance is on" in error and "the running contract stays in force" in error, error
        assert node.process.poll() is None
        # The same change, proposed and signed by every owner it touches and the seam owner.
        control = ChangeControl(authority, audit, time.time)
        proposal = control.propose(unsigned, CONTRACT, "erik")
        _sign_all(control, proposal, tmp_path)
        assert control._load(int(proposal["revision"]))["status"] == "approved"
        node.signal(signal.SIGHUP)
        node.wait_for(lambda: node.health()["reloads"]["ok"] >= 1, "the reload of the signed bundle")
        assert (authority / "in-force.yaml").read_text() == unsigned
    finally:
        node.stop()
    kinds = [r["kind"] for r in audit.records()]
    assert kinds[-1] == "contract.loaded" and verify_log(audit.path, audit.head_path, None).ok, kinds
    # A first start with a contract that is neither in force nor signed does not start at all.
    contract.write_text(CONTRACT.replace("sine:period=3s", "sine:period=5s"))
    started = subprocess.run(
        [sys.executable, "-m", "otseam.cli", "run", str(contract), "--http", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode != 0 and "not the contract in force" in started.stdout + started.stderr
