"""Loading a contract: every problem reported with file:line:column, what is wrong and how to fix it."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from otseam.contract import ContractError, load, parse_text
from otseam.contract.init import example_text

EXAMPLE = example_text()


def problems_of(text: str) -> list[tuple[int, int, str, str]]:
    with pytest.raises(ContractError) as caught:
        parse_text(text, "plant.yaml")
    return [(p.line, p.column, p.message, p.hint) for p in caught.value.problems]


def replace_once(old: str, new: str) -> str:
    assert EXAMPLE.count(old) == 1, old
    return EXAMPLE.replace(old, new)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_example_loads() -> None:
    loaded = parse_text(EXAMPLE)
    assert loaded.contract.device("pump-plc") is not None
    assert loaded.contract.devices[0].constraints.max_request_rate == 10.0
    assert loaded.contract.devices[0].constraints.pause_between_requests == pytest.approx(0.05)


def test_bad_indentation_points_at_the_line() -> None:
    text = "site:\n  enterprise: acme\n   site: plant\nzones: []\n"
    [(line, column, message, hint)] = problems_of(text)
    assert line == 3 and column > 1
    assert message.startswith("YAML syntax")
    assert "indentation" in hint


def test_duplicate_key() -> None:
    text = replace_once("    protocols: [opcua]\n", "    protocols: [opcua]\n    protocols: [modbus]\n")
    [(line, _, message, hint)] = problems_of(text)
    assert line == line_of(text, "protocols: [modbus]")
    assert "duplicate key" in message
    assert "once" in hint


def test_an_anchor_defined_twice_is_refused_where_it_is_defined_again() -> None:
    """Valid YAML (an alias takes the latest anchor of its name), but in a contract a mistake; ruamel
    only printed a warning with its own file paths on stderr, which must not reach the operator."""
    text = replace_once("    protocols: [opcua]\n", "    protocols: &p [opcua]\n") + "x-notes: &p [modbus]\n"
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        [(line, column, message, hint)] = problems_of(text)
    assert leaked == []
    first = line_of(text, "protocols: &p")
    assert (line, column) == (line_of(text, "x-notes: &p"), 10)
    assert message == f"YAML: the anchor &p is defined a second time (first at line {first}, column 16)"
    assert "its own name" in hint


def test_unknown_key_suggests_the_right_one() -> None:
    text = replace_once("    transport: diode\n", "    transprot: diode\n")
    [(line, column, message, hint)] = problems_of(text)
    assert (line, column) == (line_of(text, "transprot"), 5)
    assert "unknown key 'transprot'" in message and "conduits[2]" in message
    assert "did you mean 'transport'" in hint


def test_unknown_key_without_near_match_lists_allowed_keys() -> None:
    text = replace_once("      patch_window: annual shutdown, September\n", "      colour: red\n")
    [(_, _, _, hint)] = problems_of(text)
    assert "max_request_rate" in hint and "restart_tolerance" in hint


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        ("    poll: 1s\n", "    poll: 1000\n", "duration"),
        ("    poll: 1s\n", "    poll: 1 sec\n", "not a duration"),
        ("      max_request_rate: 10/s\n", "      max_request_rate: 10 per second\n", "not a rate"),
        ("      max_request_rate: 10/s\n", "      max_request_rate: 10\n", "rate"),
        ("version: 1\n", "version: 1\njournal:\n  max_size: 2 gigs\n", "not a size"),
        ("        address: ir:2\n", "        address: 30003\n", "Modbus address"),
        ("        address: ir:2\n", "        address: hr:70000\n", "0 to 65535"),
        ("        address: ir:2\n", "        address: co:1.2\n", "bit index"),
        ("        address: ns=2;s=Filter1.Headloss\n", "        address: Filter1.Headloss\n", "OPC UA node id"),
        ("        address: ns=2;s=Filter1.Headloss\n", "        address: ns=2;i=abc\n", "numeric identifier"),
        ("    window: Mon-Fri 06:00-18:00   # while the control room is staffed\n", "    window: weekdays\n", "days"),
    ],
)
def test_bad_values_are_reported_where_they_are(old: str, new: str, expect: str) -> None:
    text = replace_once(old, new)
    [(line, _, message, hint)] = problems_of(text)
    assert line == line_of(text, new.strip().splitlines()[-1])
    assert expect in message
    assert hint


def test_every_problem_is_reported_not_just_the_first() -> None:
    text = replace_once("    poll: 2s\n", "    poll: 2\n")
    text = text.replace("        address: ir:2\n", "        address: 40001\n")
    text = text.replace("    level: 3.5\n", "    level: 3.7\n")
    found = problems_of(text)
    assert len(found) == 3
    lines = [line for line, *_ in found]
    assert lines == sorted(lines)
    assert any("Purdue level" in message for _, _, message, _ in found)


def test_missing_key_is_named() -> None:
    text = replace_once("    endpoint: opc.tcp://10.20.1.20:4840\n", "")
    [(_, _, message, hint)] = problems_of(text)
    assert "'endpoint' is missing" in message
    assert hint == "add the key 'endpoint'"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "just words",
        "- a\n- list\n",
        "a: [1, 2\n",
        "\t- tab",
        "? [a, b]\n: c\n",
        "x: &a [*a]\n",
        "x: !!python/object:os.system ls\n",
    ],
)
def test_text_that_is_not_a_contract(text: str) -> None:
    with pytest.raises(ContractError) as caught:
        parse_text(text)
    assert caught.value.problems and all(p.line >= 1 and p.column >= 1 for p in caught.value.problems)


def test_alias_bomb_is_refused_not_expanded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    with pytest.raises(ContractError) as caught:
        parse_text("\n".join(lines) + "\n")
    assert "too many" in caught.value.problems[0].message


def test_deep_nesting_is_refused_before_parsing_with_its_position() -> None:
    with pytest.raises(ContractError) as caught:
        parse_text("site: " + "[" * 5000 + "]" * 5000 + "\n")
    [problem] = caught.value.problems
    assert (problem.line, problem.column) == (1, 6 + 65)
    assert "nested too deeply" in problem.message


def test_brackets_in_text_and_comments_do_not_count_as_nesting() -> None:
    brackets = "[" * 100
    text = replace_once("  description: Drinking water", f'  description: "{brackets} Drinking water')
    text = text.replace("treated-water pumping.\n", 'treated-water pumping."\n', 1)
    text = text.replace("version: 1\n", f"version: 1  # {brackets}\n")
    text = text.replace("message: Clearwell low, check treated-water pumps", f"message: 'it''s {brackets}'")
    text = text.replace(
        "    role: control engineer\n", f"    role: control engineer\n    contact: operator's desk {'{' * 3}\n"
    )
    loaded = parse_text(text)
    assert loaded.contract.site.description.startswith(brackets)
    # After the apostrophe in "operator's", real nesting is still counted.
    with pytest.raises(ContractError, match="nested too deeply"):
        parse_text(text + "x: " + "[" * 70 + "]" * 70 + "\n")


def test_anchors_and_aliases_are_welcome() -> None:
    text = replace_once(
        "    constraints:\n      max_request_rate: 5/s\n      restart_tolerance: planned\n",
        "    constraints: *pump-limits\n",
    )
    text = text.replace(
        "    constraints:\n      max_request_rate: 10/s\n",
        "    constraints: &pump-limits\n      max_request_rate: 10/s\n",
    )
    loaded = parse_text(text)
    first, second = loaded.contract.devices
    assert second.constraints == first.constraints
    # Elements under an alias are located at the alias, where the user would look.
    assert loaded.at(("devices", 1, "constraints", "timeout")).line == line_of(text, "constraints: *pump-limits")


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="file not found"):
        load(tmp_path / "absent.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ContractError, match="UTF-8"):
        load(binary)


def test_the_real_seam_command_reports_problems_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "seam.yaml"
    bad.write_text(
        replace_once("    transport: diode\n", "    transprot: diode\n").replace("    poll: 2s\n", "    poll: 2\n")
    )
    seam = Path(sys.executable).with_name("seam")
    result = subprocess.run([str(seam), "check", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{bad}:{line_of(bad.read_text(), 'transprot')}:5" in result.stderr
    assert "fix: did you mean 'transport'" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout

    as_json = subprocess.run(
        [str(seam), "check", "--format", "json", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert as_json.returncode == 2
    records = json.loads(as_json.stdout)
    assert {r["rule"] for r in records} == {"LOAD"}
    assert len(records) == 2 and all(r["hint"] for r in records)
