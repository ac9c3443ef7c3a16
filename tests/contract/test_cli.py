"""`seam check`, `seam init` and `seam doc` as a user runs them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from otseam.contract.init import example_key, example_text
from otseam.contract.loader import load
from otseam.diode.config import write_new_key
from tests.contract.helpers import by_id, cli, example, to_text

runner = CliRunner()
APP = cli()


def write(tmp_path: Path, text: str, name: str = "seam.yaml") -> Path:
    """The contract file, and the diode key the example names beside it (as `seam init` writes both)."""
    path = tmp_path / name
    key = example_key(path)
    if not key.exists():
        write_new_key(key)
    path.write_text(text, encoding="utf-8")
    return path


# --- seam check ------------------------------------------------------------------------------------


def test_check_clean_contract_exits_0(tmp_path: Path) -> None:
    result = runner.invoke(APP, ["check", str(write(tmp_path, example_text()))])
    assert result.exit_code == 0, result.output
    assert "no findings" in result.stdout


def test_check_findings_exit_1_grouped_with_positions(tmp_path: Path) -> None:
    data = example()
    by_id(data["conduits"], "pumping-poll")["to"] = "enterprise"  # ARCH-001, an error
    data["commands"][0].pop("rate")  # OPS-005, a warning
    path = write(tmp_path, to_text(data))
    result = runner.invoke(APP, ["check", str(path)])
    assert result.exit_code == 1
    out = result.stdout
    assert out.index("errors (") < out.index("ARCH-001") < out.index("warnings (") < out.index("OPS-005")
    assert re.search(rf"{re.escape(str(path))}:\d+:\d+  ARCH-001", out)
    assert "fix: route the traffic through a zone at level 3.5" in out


def test_check_json_lists_findings_with_every_field(tmp_path: Path) -> None:
    data = example()
    data["commands"][0]["approvers"].pop()
    path = write(tmp_path, to_text(data))
    result = runner.invoke(APP, ["check", "--format", "json", str(path)])
    assert result.exit_code == 1
    [finding] = json.loads(result.stdout)
    assert set(finding) == {"rule", "severity", "file", "line", "column", "path", "message", "hint"}
    assert finding["rule"] == "OWN-004" and finding["severity"] == "error"
    assert finding["path"] == "commands[0]" and finding["file"] == str(path)
    loaded = load(path)
    pos = loaded.at(("commands", 0))
    assert (finding["line"], finding["column"]) == (pos.line, pos.column)


def test_info_findings_alone_exit_0(tmp_path: Path) -> None:
    data = example()
    for sink in data["sinks"]:
        sink["points"] = ["pump-plc/*"]
    by_id(data["devices"], "filter-server")["points"][1]["consumers"] = []
    result = runner.invoke(APP, ["check", "--format", "json", str(write(tmp_path, to_text(data)))])
    assert result.exit_code == 0
    assert [f["rule"] for f in json.loads(result.stdout)] == ["OWN-007"]


def test_check_unusable_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(APP, ["check", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 2
    assert "file not found" in result.stderr and "seam init" in result.stderr


def test_list_rules() -> None:
    result = runner.invoke(APP, ["check", "--list-rules"])
    assert result.exit_code == 0
    assert len(re.findall(r"^[A-Z]+-\d{3} ", result.stdout, re.MULTILINE)) >= 15


# --- seam init -------------------------------------------------------------------------------------


def test_init_writes_a_commented_example_that_passes_check(tmp_path: Path) -> None:
    path = tmp_path / "seam.yaml"
    result = runner.invoke(APP, ["init", str(path)])
    assert result.exit_code == 0, result.output
    text = path.read_text()
    assert text.count("\n#") >= 5  # the example explains itself
    contract = load(path).contract
    assert {d.driver for d in contract.devices} == {"modbus", "opcua"}
    assert {z.level for z in contract.zones} == {1, 2, 3, 3.5, 4}
    assert any(s.type == "historian" for s in contract.sinks)
    assert len(contract.commands) == 1 and len(contract.commands[0].approvers) == 2
    check = runner.invoke(APP, ["check", str(path)])
    assert check.exit_code == 0, check.output


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = write(tmp_path, "mine: keep\n")
    result = runner.invoke(APP, ["init", str(path)])
    assert result.exit_code == 1
    assert "already exists" in result.stderr
    assert path.read_text() == "mine: keep\n"
    assert runner.invoke(APP, ["init", "--force", str(path)]).exit_code == 0
    assert path.read_text() == example_text()
    assert runner.invoke(APP, ["check", str(path)]).exit_code == 0


ANSWERS = [
    "tri-county",  # company id
    "east-plant",  # site id
    "Operators phone in reservoir levels <twice> a day.",  # problem
    "Polling never trips a PLC.",  # OT success
    "Levels in the planning tool within 10 s.",  # IT success
    "A pump stops because of the interface.",  # OT failure
    "Planners see stale levels as fresh.",  # IT failure
    "Dana Reyes",  # OT lead
    "shift supervisor",
    "Sam Ito",  # IT lead
    "integration architect",
    "Lee Park",  # seam owner
    "OT/IT interface manager",
    "2/s",  # rate, tighter than the example polls
    "none",
    "second Tuesday, 02:00-04:00",
]


def test_init_interactive_writes_the_answers(tmp_path: Path) -> None:
    path = tmp_path / "seam.yaml"
    result = runner.invoke(APP, ["init", "--interactive", str(path)], input="\n".join(ANSWERS) + "\n")
    assert result.exit_code == 0, result.output
    text = path.read_text()
    assert "# Zones by Purdue level" in text  # the example's comments survive
    contract = load(path).contract
    assert contract.site.path == ["tri-county", "east-plant"]
    objective = contract.objectives[0]
    assert objective.problem == ANSWERS[2]
    assert (objective.success.ot, objective.success.it) == (ANSWERS[3], ANSWERS[4])
    assert (objective.failure.ot, objective.failure.it) == (ANSWERS[5], ANSWERS[6])
    lead = contract.person("ot-lead")
    assert lead is not None and (lead.name, lead.role) == ("Dana Reyes", "shift supervisor")
    assert {a.role for a in contract.commands[0].approvers} == {"shift supervisor", "integration architect"}
    plc = contract.device("pump-plc")
    assert plc is not None and plc.constraints.max_request_rate == 2.0
    assert plc.constraints.patch_window == ANSWERS[15]
    assert plc.poll == 2.0  # four points at two requests a second
    assert "slowed" in result.stderr
    check = runner.invoke(APP, ["check", str(path)])
    assert check.exit_code == 0, check.output


def test_init_interactive_asks_again_after_a_bad_answer(tmp_path: Path) -> None:
    answers = [*ANSWERS[:13], "fast", "20 per second", "20/s", *ANSWERS[14:]]
    path = tmp_path / "seam.yaml"
    result = runner.invoke(APP, ["init", "-i", str(path)], input="\n".join(answers) + "\n")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("is not a rate") == 2
    plc = load(path).contract.device("pump-plc")
    assert plc is not None and plc.constraints.max_request_rate == 20.0 and plc.poll == 1.0


def test_init_interactive_keeps_offered_defaults_on_empty_answers(tmp_path: Path) -> None:
    # Only the objectives have no default: they must be the plant's own words.
    answers = ["", "", *ANSWERS[2:7], *[""] * (len(ANSWERS) - 7)]
    path = tmp_path / "seam.yaml"
    result = runner.invoke(APP, ["init", "-i", str(path)], input="\n".join(answers) + "\n")
    assert result.exit_code == 0, result.output
    written = load(path).contract
    reference = load(write(tmp_path, example_text(), "ref.yaml")).contract
    assert written.objectives[0].problem == ANSWERS[2]
    assert written.people == reference.people and written.devices == reference.devices
    assert written.site == reference.site


def test_init_interactive_insists_on_the_objectives(tmp_path: Path) -> None:
    path = tmp_path / "seam.yaml"
    result = runner.invoke(APP, ["init", "-i", str(path)], input="acme\nplant\n\n\n\n")
    assert result.exit_code == 2
    assert not path.exists()


def test_init_interactive_input_ends_early_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "seam.yaml"
    result = runner.invoke(APP, ["init", "-i", str(path)], input="acme\nplant\n")
    assert result.exit_code == 2
    assert "nothing written" in result.stderr
    assert not path.exists()


# --- seam doc --------------------------------------------------------------------------------------


def test_doc_renders_one_self_contained_page(tmp_path: Path) -> None:
    result = runner.invoke(APP, ["doc", str(write(tmp_path, example_text()))])
    assert result.exit_code == 0, result.output
    page = result.stdout
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 1
    contract = load(tmp_path / "seam.yaml").contract
    svg = page[page.index("<svg") : page.index("</svg>")]
    for zone in contract.zones:
        assert f">{zone.name}</text>" in svg
    for conduit in contract.conduits:
        assert conduit.id in svg
    for person in contract.people:
        assert person.name in page
    assert "set-pump1-speed" in page and "operations supervisor (ot)" in page
    assert "Planning and water-quality reporting re-type figures" in page
    assert "max 10 requests/s" in page and "restart: none" in page
    assert "water quality team" in page  # consumers
    assert "5 zones, 5 conduits, 2 nodes, 2 devices, 7 points, 1 source, 5 sinks, 1 command." in page
    assert page.index('id="sign-off"') > page.index('id="open-findings"')
    # Nothing fetched from elsewhere: no scripts, stylesheets or images by URL.
    assert not re.search(r"<script|<link|<img|src=|url\(http|@import", page)


def test_doc_escapes_text_from_the_contract(tmp_path: Path) -> None:
    data = example()
    data["zones"][0]["name"] = "<script>alert('zone')</script>"
    data["objectives"][0]["problem"] = "Levels & flows <b>late</b>"
    data["people"][0]["name"] = 'O"Brien <img src=x>'
    path = write(tmp_path, to_text(data))
    out = tmp_path / "interface.html"
    result = runner.invoke(APP, ["doc", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "<script>" not in page and "<b>late</b>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(&#x27;zone&#x27;)&lt;/script&gt;" in page
    assert "Levels &amp; flows &lt;b&gt;late&lt;/b&gt;" in page
    assert "O&quot;Brien &lt;img src=x&gt;" in page


def test_doc_lists_open_findings(tmp_path: Path) -> None:
    data = example()
    data["commands"][0].pop("rate")
    result = runner.invoke(APP, ["doc", str(write(tmp_path, to_text(data)))])
    assert result.exit_code == 0
    assert "OPS-005" in result.stdout and "unlimited" in result.stdout


def test_doc_never_overwrites_the_contract(tmp_path: Path) -> None:
    path = write(tmp_path, example_text())
    result = runner.invoke(APP, ["doc", str(path), "-o", str(tmp_path / "." / "seam.yaml")])
    assert result.exit_code == 2
    assert path.read_text() == example_text()


def test_doc_of_a_broken_contract_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(APP, ["doc", str(write(tmp_path, "site: [\n"))])
    assert result.exit_code == 2
    assert "YAML syntax" in result.stderr and not result.stdout
