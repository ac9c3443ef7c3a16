"""Bad contract input: one clear error (file:line:column), exit 2, never a traceback or a hang.

Sizes, files that are not regular files, NUL bytes, NaN and infinity where a number must mean
something, and lone surrogates that YAML escapes can smuggle into text."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from otseam.contract import ContractError, parse_text
from otseam.contract.init import example_text
from otseam.contract.loader import MAX_BYTES, load
from tests.contract.helpers import cli

EXAMPLE = example_text()
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
runner = CliRunner()
APP = cli()


def only_problem(exc: pytest.ExceptionInfo[ContractError]) -> tuple[int, int, str]:
    problems = exc.value.problems
    assert len(problems) >= 1
    return problems[0].line, problems[0].column, problems[0].message


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "seam.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ContractError) as exc:
        load(fifo)  # reading it would block for ever: no process ever writes to it
    assert "not a regular file" in only_problem(exc)[2]
    result = runner.invoke(APP, ["check", str(fifo)])
    assert result.exit_code == 2 and "not a regular file" in result.output


@pytest.mark.parametrize("device", ["/dev/null", "/dev/zero", "/dev/urandom"])
def test_devices_are_refused(device: str) -> None:
    with pytest.raises(ContractError) as exc:
        load(device)
    assert "not a regular file" in only_problem(exc)[2]


def test_a_huge_file_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "seam.yaml"
    with big.open("wb") as handle:
        handle.truncate(MAX_BYTES + 1)  # sparse: nothing is written, nothing must be read
    with pytest.raises(ContractError) as exc:
        load(big)
    assert "larger than" in only_problem(exc)[2]


@FAST
@given(position=st.integers(0, len(EXAMPLE) - 1), char=st.sampled_from(["\x00", "\x01", "\x1b", "\x7f", "\ufffe"]))
def test_a_control_character_is_reported_where_it_is(position: int, char: str) -> None:
    text = EXAMPLE[:position] + char + EXAMPLE[position:]
    with pytest.raises(ContractError) as exc:
        parse_text(text)
    line, column, message = only_problem(exc)
    assert (line, column) == (
        EXAMPLE.count("\n", 0, position) + 1,
        position - (EXAMPLE.rfind("\n", 0, position) + 1) + 1,
    )
    assert "not allowed" in message


def test_nul_bytes_in_a_file_are_reported_at_their_position(tmp_path: Path) -> None:
    path = tmp_path / "seam.yaml"
    path.write_bytes(b"site:\n  enterprise: a\x00b\n  site: x\n")
    result = runner.invoke(APP, ["check", str(path)])
    assert result.exit_code == 2
    assert f"{path}:2:16" in result.output and "NUL" in result.output


def test_invalid_utf8_is_reported_at_its_position(tmp_path: Path) -> None:
    path = tmp_path / "seam.yaml"
    path.write_bytes(b"site:\n  enterprise: caf\xe9\n")
    result = runner.invoke(APP, ["check", str(path)])
    assert result.exit_code == 2 and f"{path}:2:18" in result.output and "UTF-8" in result.output


#: Where a number must mean something: (text to find in the example, replacement with {v}).
NUMBERS = [
    ("limit: 1.2", "limit: {v}"),
    ("range: {low: 0, high: 6}", "range: {{low: {v}, high: 6}}"),
    ("range: {low: 0, high: 6}", "range: {{low: 0, high: {v}}}"),
    ("hysteresis: 0.1", "hysteresis: {v}"),
    ("range: {low: 40, high: 90}", "range: {{low: 40, high: {v}}}"),  # a command's range
]
NON_FINITE = [".nan", ".NaN", ".inf", "-.inf", "+.inf", '"nan"', '"inf"', '"-Infinity"', "1e999"]


@FAST
@given(where=st.sampled_from(NUMBERS), value=st.sampled_from(NON_FINITE))
def test_nan_and_infinity_are_refused_in_ranges_and_limits(where: tuple[str, str], value: str) -> None:
    find, replace = where
    assert find in EXAMPLE, find
    text = EXAMPLE.replace(find, replace.format(v=value), 1)
    with pytest.raises(ContractError) as exc:
        parse_text(text)
    assert any("finite" in p.message for p in exc.value.problems), exc.value


_ESCAPES = st.sampled_from(["\\ud800", "\\udfff", "\\udc80x", "\\0", "\\x00", "a\\ud83dz"])


@FAST
@given(escape=_ESCAPES, field=st.sampled_from(["description", "name"]))
def test_lone_surrogates_and_nul_escapes_in_text_are_refused_with_their_position(escape: str, field: str) -> None:
    text = EXAMPLE.replace(
        "  - id: filtration\n    name: Filtration cell\n",
        f'  - id: filtration\n    {field}: "{escape}"\n'
        if field == "name"
        else f'  - id: filtration\n    name: Filtration cell\n    {field}: "{escape}"\n',
        1,
    )
    assert text != EXAMPLE
    with pytest.raises(ContractError) as exc:
        parse_text(text)
    problem = exc.value.problems[0]
    line = text.splitlines()[problem.line - 1]
    assert line.strip().startswith(f"{field}:"), (problem, line)
    assert re.search(r"surrogate|NUL", problem.message)
    str(exc.value).encode("utf-8")  # the message itself can be printed


def test_seam_doc_refuses_a_lone_surrogate_instead_of_crashing(tmp_path: Path) -> None:
    path = tmp_path / "seam.yaml"
    path.write_text(
        EXAMPLE.replace("description: Drinking water", 'description: "\\ud800 Drinking water', 1).replace(
            "40 ML/day; filtration and treated-water pumping.", '40 ML/day"', 1
        )
    )
    result = runner.invoke(APP, ["doc", str(path)])
    assert result.exit_code == 2, result.output
    assert "surrogate" in result.output and "Traceback" not in result.output
