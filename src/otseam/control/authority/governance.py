"""Interface change control: a changed contract is a proposal until its quorum signs it.

``propose`` records the new contract text with the changes in words (changes.py) and the findings of
the rules; the quorum is the owners of every zone the change touches, as either contract names them,
plus the seam owner. Each approves by signing the bundle hash, which covers the revision number, the
contract in force it was made against and the new text: a later proposal is a new revision, so it
voids every approval given to an earlier one. When the quorum is in, the signed bundle is written.

With governance on (``seam contract governance on``), ``seam run`` loads only a bundle that
:func:`verify_bundle` accepts against the contract in force; a refused bundle leaves that contract
running.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from otseam.audit.canonical import digest
from otseam.audit.files import atomic_write, locked
from otseam.audit.log import AuditLog, AuditUnavailable
from otseam.contract.loader import ContractError, parse_text
from otseam.contract.models import Contract
from otseam.contract.rules import Severity as RuleSeverity
from otseam.contract.rules import run as run_rules
from otseam.control.authority.changes import approvers_needed, describe
from otseam.control.authority.keys import PURPOSE_BUNDLE, Keyring
from otseam.control.authority.store import Signature
from otseam.core.records import Severity

MARKER = "governance.on"
#: The contract text this node last accepted with governance on.
IN_FORCE = "in-force.yaml"
_REVISION = re.compile(r"^r?(\d{1,9})\Z")


class GovernanceError(Exception):
    """A proposal, approval or bundle that change control refuses; the message says why."""


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def bundle_digest(revision: int, base: str, contract_sha: str) -> str:
    return digest({"kind": "seam contract bundle", "revision": revision, "base": base, "contract": contract_sha})


def _parse(text: str, name: str) -> Contract:
    try:
        return parse_text(text, name).contract
    except ContractError as exc:
        raise GovernanceError(f"{name} cannot be loaded:\n{exc}") from None


def enabled(authority_directory: str | Path) -> bool:
    return (Path(authority_directory) / MARKER).exists()


class ChangeControl:
    def __init__(self, authority_directory: str | Path, audit: AuditLog, clock: Any) -> None:
        self.directory = Path(authority_directory)
        self.proposals = self.directory / "proposals"
        self.bundles = self.directory / "bundles"
        self.keyring = Keyring(self.directory)
        self.audit = audit
        self.clock = clock
        self._lock = self.directory / "proposals.lock"

    def _load(self, revision: int) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.proposals / f"r{revision}.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise GovernanceError(f"no proposal r{revision} on this node") from None
        return data

    def _save(self, proposal: dict[str, Any]) -> None:
        atomic_write(self.proposals / f"r{proposal['revision']}.json", json.dumps(proposal, indent=1).encode())

    def all(self) -> list[dict[str, Any]]:
        if not self.proposals.is_dir():
            return []
        found = [json.loads(p.read_text(encoding="utf-8")) for p in self.proposals.glob("r*.json")]
        return sorted(found, key=lambda p: p["revision"])

    @staticmethod
    def parse_revision(text: str) -> int:
        match = _REVISION.match(text.strip())
        if not match:
            raise GovernanceError(f"'{text}' is not a revision (r1, r2, ...)")
        return int(match.group(1))

    def propose(self, new_text: str, current_text: str | None, proposer: str) -> dict[str, Any]:
        new = _parse(new_text, "the proposed contract")
        old = _parse(current_text, "the contract in force") if current_text is not None else None
        if new.person(proposer) is None and (old is None or old.person(proposer) is None):
            raise GovernanceError(f"'{proposer}' is not a person in either contract")
        findings = run_rules(parse_text(new_text, "proposed"))
        errors = [f for f in findings if f.severity == RuleSeverity.ERROR]
        if errors:
            raise GovernanceError(
                "the rules refuse the proposed contract:\n"
                + "\n".join(f"  {f.line}:{f.column} {f.rule} {f.message}" for f in errors)
            )
        changes = describe(old, new)
        if old is not None and not changes.lines:
            raise GovernanceError("the proposed contract changes nothing in force")
        needed = approvers_needed(old, new, changes)
        with locked(self._lock):
            proposals = self.all()
            revision = (proposals[-1]["revision"] + 1) if proposals else 1
            base = sha256_text(current_text) if current_text is not None else ""
            proposal: dict[str, Any] = {
                "revision": revision,
                "base": base,
                "contract_sha256": sha256_text(new_text),
                "digest": bundle_digest(revision, base, sha256_text(new_text)),
                "text": new_text,
                "proposer": proposer,
                "created": round(self.clock() * 1000),
                "changes": changes.lines,
                "widening": changes.widening,
                "zones": sorted(changes.zones),
                "findings": [f"{f.severity} {f.rule} {f.line}:{f.column} {f.message}" for f in findings],
                "required": needed,
                "approvals": [],
                "status": "open",
            }
            try:
                self.audit.append(
                    "contract.propose",
                    proposer,
                    f"r{revision}",
                    {"digest": proposal["digest"], "changes": changes.lines, "required": needed},
                    Severity.MEDIUM,
                    f"{proposer} proposes contract revision r{revision}: {len(changes.lines)} change(s)",
                )
            except AuditUnavailable as exc:
                raise GovernanceError(str(exc)) from None
            for earlier in proposals:
                if earlier["status"] == "open":
                    earlier["status"] = f"superseded by r{revision}"
                    self._save(earlier)
            self._save(proposal)
        return proposal

    def approve(self, revision: int, person: str, signature: Signature) -> dict[str, Any]:
        with locked(self._lock):
            proposal = self._load(revision)
            if proposal["status"] != "open":
                raise GovernanceError(f"proposal r{revision} is {proposal['status']}; it can no longer be approved")
            if person not in proposal["required"]:
                names = ", ".join(f"{p} ({why})" for p, why in proposal["required"].items())
                raise GovernanceError(f"{person} is not among the approvers this change needs: {names}")
            if any(a["person"] == person for a in proposal["approvals"]):
                raise GovernanceError(f"{person} has already approved r{revision}")
            problem = self.keyring.check(
                person, signature.fingerprint, PURPOSE_BUNDLE, proposal["digest"], signature.signature
            )
            if problem:
                raise GovernanceError(problem)
            signature.at = round(self.clock() * 1000)
            proposal["approvals"].append(signature.as_dict())
            missing = [p for p in proposal["required"] if p not in {a["person"] for a in proposal["approvals"]}]
            try:
                self.audit.append(
                    "contract.approve",
                    person,
                    f"r{revision}",
                    {"digest": proposal["digest"], "missing": missing},
                    Severity.MEDIUM,
                    f"{person} approves contract revision r{revision}",
                )
            except AuditUnavailable as exc:
                raise GovernanceError(str(exc)) from None
            if not missing:
                proposal["status"] = "approved"
                self.write_bundle(proposal)
            self._save(proposal)
        return proposal

    def bundle_path(self, revision: int) -> Path:
        return self.bundles / f"r{revision}.bundle.json"

    def write_bundle(self, proposal: dict[str, Any]) -> Path:
        bundle = {k: proposal[k] for k in ("revision", "base", "contract_sha256", "text", "approvals")}
        path = self.bundle_path(proposal["revision"])
        atomic_write(path, json.dumps(bundle, indent=1).encode(), 0o644)
        return path


def verify_bundle(bundle_path: str | Path, authority_directory: str | Path, running_text: str | None = None) -> str:
    """The contract text of a signed bundle, or :class:`GovernanceError` saying why it is refused.

    The hook ``seam run`` calls with governance on, before it loads a contract: the bundle must have
    been made against ``running_text`` (the contract in force; None at first start), and the owners of
    every zone its changes touch plus the seam owner must have signed it with keys enrolled on this node.
    """
    try:
        bundle = json.loads(Path(bundle_path).read_text(encoding="utf-8"))
        revision, base, text = int(bundle["revision"]), str(bundle["base"]), str(bundle["text"])
        approvals = [Signature.from_dict(a) for a in bundle["approvals"]]
    except FileNotFoundError:
        raise GovernanceError(f"no contract bundle at {bundle_path}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise GovernanceError(f"{bundle_path} is not a contract bundle ({exc})") from None
    if sha256_text(text) != bundle.get("contract_sha256"):
        raise GovernanceError("the bundle's contract text does not match its hash")
    expected_base = sha256_text(running_text) if running_text is not None else ""
    if base != expected_base:
        raise GovernanceError(
            f"bundle r{revision} was approved against another contract than the one in force; it must be proposed again"
        )
    new = _parse(text, f"bundle r{revision}")
    old = _parse(running_text, "the contract in force") if running_text is not None else None
    needed = approvers_needed(old, new, describe(old, new))
    keyring = Keyring(authority_directory)
    signed: set[str] = set()
    hash_ = bundle_digest(revision, base, sha256_text(text))
    for approval in approvals:
        problem = keyring.check(approval.person, approval.fingerprint, PURPOSE_BUNDLE, hash_, approval.signature)
        if problem:
            raise GovernanceError(f"bundle r{revision}: {problem}")
        signed.add(approval.person)
    missing = [f"{p} ({why})" for p, why in needed.items() if p not in signed]
    if missing:
        raise GovernanceError(f"bundle r{revision} lacks the approval of {', '.join(missing)}")
    return text


def turn_on(authority_directory: str | Path, contract_text: str, audit: AuditLog) -> None:
    """Governance on: the contract running now is the one in force; every later one needs a bundle."""
    directory = Path(authority_directory)
    directory.mkdir(parents=True, exist_ok=True)
    audit.append("contract.governance", "node", "on", {"in_force": sha256_text(contract_text)}, Severity.MEDIUM)
    atomic_write(directory / IN_FORCE, contract_text.encode("utf-8"), 0o644)
    atomic_write(directory / MARKER, b"on\n", 0o644)


def check_contract_file(contract_path: str | Path, data_dir: str | Path, audit: AuditLog | None = None) -> None:
    """The hook ``seam run`` calls before it loads (or reloads) a contract. Returns when the file may be
    loaded; raises :class:`GovernanceError` when it may not, and the running contract stays in force.

    Governance off: always returns. Governance on: the file must be the contract in force, or the text of
    a signed bundle in ``<authority>/bundles/`` made against the contract in force, which
    :func:`verify_bundle` accepts; that bundle's text then becomes the contract in force.
    """
    directory = Path(data_dir) / "authority"
    if not enabled(directory):
        return
    try:
        text = Path(contract_path).read_text(encoding="utf-8")
        in_force = (directory / IN_FORCE).read_text(encoding="utf-8")
    except OSError as exc:
        raise GovernanceError(f"governance is on, but {exc.filename} cannot be read: {exc.strerror}") from None
    if text == in_force:
        return
    problems = []
    for bundle in sorted((directory / "bundles").glob("r*.bundle.json"), reverse=True):
        try:
            if json.loads(bundle.read_text(encoding="utf-8")).get("contract_sha256") != sha256_text(text):
                continue
            verify_bundle(bundle, directory, in_force)
        except (GovernanceError, ValueError) as exc:
            problems.append(f"{bundle.name}: {exc}")
            continue
        atomic_write(directory / IN_FORCE, text.encode("utf-8"), 0o644)
        if audit is not None:
            audit.append("contract.loaded", "node", bundle.name, {"contract": sha256_text(text)}, Severity.MEDIUM)
        return
    detail = "; ".join(problems) if problems else "no signed bundle holds this text"
    raise GovernanceError(
        f"governance is on and {contract_path} is not the contract in force nor an approved bundle ({detail}); "
        "the running contract stays in force"
    )


def admit(contract_path: Path, data_dir: Path, node: str) -> str | None:
    """:func:`check_contract_file` as ``seam run`` asks it before every load and reload (the runtime's
    ``Settings.admit``): None when the file may load, else why not. Contracts it admits from a signed
    bundle are recorded in the node's audit log."""
    try:
        check_contract_file(contract_path, data_dir, AuditLog(Path(data_dir) / "authority", node=node))
    except GovernanceError as exc:
        return str(exc)
    return None
