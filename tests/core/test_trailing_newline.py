"""A name with a line break at its end is refused, not taken as the name without it.

Python's ``$`` matches before a final newline, so ``re.match(r"^[a-z]+$", "alice\\n")`` succeeds: every
validator that anchored with ``$`` let ``"alice\\n"`` through as if it were ``"alice"``, and the value
with its line break then went on into user names, contract ids, journal cursor files, MQTT topics and
NATS subjects (where a line break can forge a log line or a protocol line). The validators anchor
with ``\\Z`` now; these tests hold each kind of input to it, and the last one keeps ``$`` from coming
back. The sim's YAML writer, which wrote ``"A\\n"`` plain and so read it back as ``"A"``, is held to it
in tests/sim/test_contract.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from otseam.contract import ContractError, parse_text
from otseam.control.roles import Role
from otseam.control.users import UserError, UserStore
from otseam.journal import Journal
from otseam.journal.state import JournalError
from otseam.sinks.nats.options import Options as NatsOptions
from otseam.sinks.sparkplug.options import Options as SparkplugOptions

SRC = Path(__file__).resolve().parents[2] / "src" / "otseam"
EXAMPLE = (SRC / "contract" / "example.yaml").read_text()


def test_a_contract_id_with_a_line_break_is_refused() -> None:
    parse_text(EXAMPLE)  # the example itself is valid
    broken = EXAMPLE.replace("  - id: pump-plc\n", '  - id: "pump-plc\\n"\n', 1)
    assert broken != EXAMPLE
    with pytest.raises(ContractError) as caught:
        parse_text(broken)
    assert "pump-plc" in str(caught.value)


def test_a_user_name_with_a_line_break_is_refused(tmp_path: Path) -> None:
    store = UserStore(tmp_path)
    with pytest.raises(UserError, match="is not a user name"):
        store.add("alice\n", "ot-lead", Role.VIEWER, "a long enough phrase for this")
    assert store.users() == []
    assert store.add("alice", "ot-lead", Role.VIEWER, "a long enough phrase for this").name == "alice"


def test_a_journal_cursor_name_with_a_line_break_is_refused(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal")
    try:
        with pytest.raises(JournalError, match="cursor name"):
            journal.reader("historian\n")
        journal.reader("historian")
    finally:
        journal.close()
    assert not any("\n" in path.name for path in (tmp_path / "journal").rglob("*"))


@pytest.mark.parametrize("field", ["group_id", "edge_node_id", "primary_host_id"])
def test_a_sparkplug_id_with_a_line_break_or_control_character_is_refused(field: str) -> None:
    options = {"brokers": ["127.0.0.1:1883"], "group_id": "plant1", "edge_node_id": "seam"}
    SparkplugOptions.model_validate(options | {field: "plant1"})
    for bad in ("plant1\n", "plant\r1", "\x7fplant1"):
        with pytest.raises(ValidationError, match="or control characters"):
            SparkplugOptions.model_validate(options | {field: bad})


@pytest.mark.parametrize(("field", "value"), [("subject_prefix", "seam.site1\n"), ("stream", "SEAM\n")])
def test_a_nats_subject_or_stream_with_a_line_break_is_refused(field: str, value: str) -> None:
    options = {"servers": ["nats://127.0.0.1:4222"]}
    NatsOptions.model_validate(options | {field: value.rstrip("\n")})
    with pytest.raises(ValidationError):
        NatsOptions.model_validate(options | {field: value})


def test_no_validator_anchors_its_end_with_a_dollar() -> None:
    """A pattern that starts at ``^`` and ends at a bare ``$`` (not ``\\s*$``, which allows trailing
    whitespace on purpose) is one of the validators above, written the old way."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            pattern = re.search(r"re\.compile\(r\"\^(.*)\"", line)
            ends = pattern.group(1) if pattern else ""
            # \s*$ allows trailing whitespace on purpose; a DOTALL pattern's last group takes line breaks.
            if ends.endswith("$") and not ends.endswith(r"\s*$") and "re.DOTALL" not in line:
                offenders.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert offenders == [], "anchor with \\Z, not $:\n" + "\n".join(offenders)
