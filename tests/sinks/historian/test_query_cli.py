"""`seam query` as a user runs it: real database, real contract file, every error a clean message."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from otseam.commands.query import register
from otseam.contract.models import Contract, SinkSpec, Site
from otseam.core.plugins import PluginContext
from otseam.core.records import Batch, Quality, Sample
from otseam.sinks.historian import create
from otseam.sinks.historian.query import QueryError, parse_time

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z

CONTRACT = """\
version: 1
site: {enterprise: acme, site: plant1}
journal: {path: ./data/journal}
devices:
  - id: plc1
    driver: modbus
    endpoint: tcp://127.0.0.1:5020
    zone: cell
    points:
      - {id: level, address: "hr:100"}
      - {id: flow, address: "hr:102"}
sinks:
  - id: hist
    type: historian
"""


def app() -> typer.Typer:
    application = typer.Typer(pretty_exceptions_enable=False)

    @application.callback()
    def _root() -> None:
        """seam"""

    register(application)
    return application


def fill(database_dir: Path, sink_id: str = "hist") -> None:
    historian = create(
        SinkSpec(id=sink_id, type="historian"),
        PluginContext(contract=Contract(site=Site(enterprise="acme", site="p")), data_dir=str(database_dir)),
    )
    samples = [Sample("plc1/level", 10.0 + i, Quality.GOOD, T0 + i * 30, T0 + i * 30) for i in range(6)]
    samples.append(Sample("plc1/level", 99.0, Quality.BAD_COMM, T0 + 200, T0 + 200))

    async def deliver() -> None:
        await historian.deliver(Batch("edge", list(range(1, len(samples) + 1)), list(samples)))
        await historian.close()

    asyncio.run(deliver())


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app(), ["query", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_raw_rows_as_a_table(tmp_path: Path) -> None:
    fill(tmp_path)
    code, out, _ = run(
        "plc1/level",
        "--db",
        str(tmp_path / "hist.db"),
        "--from",
        "2027-01-15T08:00:00Z",
        "--to",
        "2027-01-15T08:05:00Z",
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["time", "(UTC)", "value", "quality"]
    assert lines[1].split() == ["2027-01-15T08:00:00.000Z", "10.0", "good"]
    assert lines[-1].split() == ["2027-01-15T08:03:20.000Z", "99.0", "bad-comm"]
    assert len(lines) == 8


def test_buckets_as_json(tmp_path: Path) -> None:
    fill(tmp_path)
    code, out, _ = run(
        "plc1/level",
        "--db",
        str(tmp_path / "hist.db"),
        "--from",
        str(T0),
        "--to",
        str(T0 + 300),
        "--bucket",
        "1min",
        "--format",
        "json",
    )
    assert code == 0
    document = json.loads(out)
    assert document["bucket_seconds"] == 60.0
    assert [(b["time"], b["min"], b["max"], b["avg"], b["count"], b["bad"]) for b in document["buckets"]] == [
        ("2027-01-15T08:00:00.000Z", 10.0, 11.0, 10.5, 2, 0),
        ("2027-01-15T08:01:00.000Z", 12.0, 13.0, 12.5, 2, 0),
        ("2027-01-15T08:02:00.000Z", 14.0, 15.0, 14.5, 2, 0),
        ("2027-01-15T08:03:00.000Z", None, None, None, 0, 1),
    ]


def test_database_found_through_the_contract(tmp_path: Path) -> None:
    (tmp_path / "seam.yaml").write_text(CONTRACT)
    fill(tmp_path / "data")
    contract = str(tmp_path / "seam.yaml")
    code, out, _ = run(
        "plc1/level", "--contract", contract, "--from", str(T0), "--to", str(T0 + 31), "--format", "json"
    )
    assert code == 0
    assert [r["value"] for r in json.loads(out)["rows"]] == [10.0, 11.0]
    code, _, err = run("plc1/flow", "--contract", contract, "--from", str(T0), "--to", str(T0 + 31))
    assert code == 2 and "is in the contract, but the historian holds no samples of it yet" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plc1/levle", "--from", "-10y"], "is not a relative time"),
        (["plc1/levle", "--from", "yesterday"], "is not a time"),
        (["plc1/levle", "--from", "2027-01-15T08:00:00Z", "--to", "2027-01-15T08:00:00Z"], "the range is empty"),
        (["plc1/levle", "--from", str(T0), "--to", str(T0 + 1)], "did you mean plc1/level"),
        (["plc1/level", "--from", "2001-01-01", "--to", "2001-01-02"], "no samples of plc1/level between"),
        (["plc1/level", "--bucket", "fast"], "--bucket"),
    ],
)
def test_user_errors_are_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    fill(tmp_path)
    code, out, err = run(*args, "--db", str(tmp_path / "hist.db"))
    assert code == 2
    assert message in err
    assert "Traceback" not in out + err


def test_where_is_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run("plc1/level")
    assert code == 2 and "--db FILE, or --contract seam.yaml" in err
    code, _, err = run("plc1/level", "--db", "nowhere.db")
    assert code == 2 and "no historian database at nowhere.db" in err
    (tmp_path / "bad.yaml").write_text("site: [\n")
    code, _, err = run("plc1/level", "--contract", "bad.yaml")
    assert code == 2 and "the contract cannot be used" in err
    (tmp_path / "seam.yaml").write_text(
        CONTRACT.replace("type: historian", "type: file\n    options: {path: out.jsonl}")
    )
    code, _, err = run("plc1/level")
    assert code == 2 and "declares no historian sink" in err


def test_time_forms() -> None:
    now = 1_800_000_000.0
    assert parse_time("now", now) == now
    assert parse_time("-1h", now) == now - 3600
    assert parse_time("-15min", now) == now - 900
    assert parse_time("+2d", now) == now + 2 * 86400
    assert parse_time("2027-01-15T08:00:00Z") == T0
    assert parse_time("2027-01-15T08:00:00") == T0, "no offset means UTC"
    assert parse_time("2027-01-15T09:00:00+01:00") == T0
    assert parse_time("1800000000.5") == T0 + 0.5
    assert abs(parse_time("now") - time.time()) < 60


@given(st.text(max_size=40))
def test_any_time_text_is_a_value_or_a_clear_error(text: str) -> None:
    try:
        value = parse_time(text, 1_800_000_000.0)
    except QueryError as exc:
        assert str(exc)
    else:
        assert isinstance(value, float)
