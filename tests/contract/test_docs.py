"""The reference documents stay in step with the code: every rule and every key is documented."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from otseam.contract import models
from otseam.contract.rules import RULES

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_rule_is_documented_with_its_severity() -> None:
    text = (DOCS / "rules.md").read_text(encoding="utf-8")
    for rule in RULES.values():
        assert re.search(rf"^### {rule.id} \({rule.severity}\): ", text, re.MULTILINE), rule.id


def test_every_key_of_the_contract_is_documented() -> None:
    text = (DOCS / "contract.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([a-z_]+)`", text))
    for obj in vars(models).values():
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == models.__name__:
            for name, field in obj.model_fields.items():
                assert (field.alias or name) in documented, f"{obj.__name__}.{field.alias or name}"
