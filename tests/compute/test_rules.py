"""`seam check` on computed points: findings at the character of the formula, cycles, ownership."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otseam.contract.loader import ContractError, parse_text
from otseam.contract.rules import run
from otseam.contract.rules.registry import RULE_FAILED
from tests.contract.helpers import example, to_text

ZONE = "water"


def with_computed(*computed: dict[str, Any]) -> tuple[str, list[Any]]:
    data = example()
    data["computed"] = list(computed)
    text = to_text(data)
    return text, run(parse_text(text, "seam.yaml"))


def keys(data: dict[str, Any]) -> list[str]:
    return [f"{d['id']}/{p['id']}" for d in data["devices"] for p in d["points"]]


def owner() -> str:
    return str(example()["people"][0]["id"])


def first_numeric_key() -> str:
    data = example()
    for device in data["devices"]:
        for point in device["points"]:
            if point.get("type", "float32") not in ("bool", "string"):
                return f"{device['id']}/{point['id']}"
    raise AssertionError("the example has no numeric point")


def test_a_sound_computed_point_passes() -> None:
    key = first_numeric_key()
    _, found = with_computed({"id": "double", "expression": f"${key} * 2", "owner": owner()})
    assert [f for f in found if f.rule.startswith("COMPUTE") or "computed" in f.message] == []


def test_a_type_error_is_reported_at_its_character() -> None:
    key = first_numeric_key()
    expression = f"${key} * 2 and true"
    text, found = with_computed({"id": "broken", "expression": expression, "owner": owner()})
    (finding,) = [f for f in found if f.rule == "COMPUTE-001"]
    line = text.splitlines()[finding.line - 1]
    assert line[finding.column - 1 :].startswith(f"${key} * 2 and true")
    assert "'and' combines true/false values" in finding.message and finding.severity == "error"


def test_an_unknown_point_is_reported_at_its_reference() -> None:
    key = first_numeric_key()
    text, found = with_computed({"id": "x", "expression": f"${key} + $nowhere/point", "owner": owner()})
    (finding,) = [f for f in found if f.rule == "COMPUTE-001"]
    assert text.splitlines()[finding.line - 1][finding.column - 1 :].startswith("$nowhere/point")
    assert "declares no point 'nowhere/point'" in finding.message


def test_a_block_expression_is_located_on_its_own_line() -> None:
    key = first_numeric_key()
    data = example()
    data["computed"] = [{"id": "x", "expression": "PLACEHOLDER", "owner": owner()}]
    text = to_text(data).replace("expression: PLACEHOLDER", f"expression: |\n    ${key} * 2\n      + ok\n")
    found = [f for f in run(parse_text(text, "seam.yaml")) if f.rule == "COMPUTE-001"]
    (finding,) = found
    assert text.splitlines()[finding.line - 1][finding.column - 1 :] == "ok"


def test_cycles_are_refused_naming_the_loop() -> None:
    _, found = with_computed(
        {"id": "a", "expression": "b + 1", "owner": owner()},
        {"id": "b", "expression": "a * 2", "owner": owner()},
    )
    (finding,) = [f for f in found if f.rule == "COMPUTE-002"]
    assert (
        "computed/a -> computed/b -> computed/a" in finding.message
        or "computed/b -> computed/a -> computed/b" in finding.message
    )


def test_a_computed_point_needs_an_owner() -> None:
    key = first_numeric_key()
    _, found = with_computed({"id": "double", "expression": f"${key} * 2"})
    assert any(f.rule == "OWN-001" and "computed point 'computed/double' has no owner" in f.message for f in found)


def test_a_sink_may_list_computed_points() -> None:
    key = first_numeric_key()
    data = example()
    data["computed"] = [{"id": "double", "expression": f"${key} * 2", "owner": owner()}]
    data["sinks"][0]["points"] = ["computed/*"]
    found = run(parse_text(to_text(data), "seam.yaml"))
    assert not [f for f in found if f.rule == "REF-003"]


def test_seam_doc_shows_the_lineage() -> None:
    from otseam.contract.doc import render_html
    from otseam.contract.formulas.lineage import lineage

    key = first_numeric_key()
    data = example()
    data["computed"] = [
        {"id": "double", "expression": f"${key} * 2", "owner": owner(), "consumers": ["mes"]},
        {"id": "avg_double", "window": {"of": "computed/double", "function": "avg", "length": "1min"}},
    ]
    loaded = parse_text(to_text(data), "seam.yaml")
    page = render_html(loaded, run(loaded))
    assert "Computed points" in page and f"<code>${key} * 2</code>" in page
    assert "avg of computed/double over 1min (tumbling)" in page
    found = lineage(loaded.contract)
    assert found["computed/avg_double"].inputs == ("computed/double",)
    assert found["computed/avg_double"].sources == (key,)
    assert found["computed/double"].owner == owner() and found["computed/double"].consumers == ("mes",)
    assert found["computed/double"].to_dict()["formula"] == f"${key} * 2"


def test_inputs_polled_on_two_nodes_are_refused_and_each_node_computes_its_own() -> None:
    from otseam.pipeline import compile_table

    data = example()
    edge = next(n for n in data["nodes"] if n["id"] == "ot-edge")
    data["nodes"].append({**edge, "id": "ot-edge2"})
    filter_server = next(d for d in data["devices"] if d["id"] == "filter-server")
    filter_server["node"] = "ot-edge2"
    a = f"pump-plc/{next(p['id'] for p in data['devices'][0]['points'] if p.get('type', 'float32') != 'bool')}"
    b = f"filter-server/{filter_server['points'][0]['id']}"
    data["computed"] = [
        {"id": "both", "expression": f"${a} * ${b}", "owner": owner()},
        {"id": "one", "expression": f"${a} * 2", "owner": owner()},
        {"id": "two", "expression": "one + 1", "owner": owner()},
    ]
    loaded = parse_text(to_text(data), "seam.yaml")
    (finding,) = [f for f in run(loaded) if f.rule == "COMPUTE-003"]
    assert "computed/both reads points polled on different nodes (ot-edge, ot-edge2)" in finding.message
    table = compile_table(loaded.contract, {"pump-plc"})
    assert {k for k in table if k.startswith("computed/")} == {"computed/one", "computed/two"}
    table = compile_table(loaded.contract, {"filter-server"})
    assert {k for k in table if k.startswith("computed/")} == set()


def test_the_example_in_the_documentation_passes_seam_check() -> None:
    import re
    from pathlib import Path

    from ruamel.yaml import YAML

    text = (Path(__file__).resolve().parents[2] / "docs" / "compute.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(computed:.*?)```", text, re.S)
    assert block is not None
    data = example()
    data["computed"] = YAML(typ="safe").load(block.group(1))["computed"]
    found = run(parse_text(to_text(data), "seam.yaml"))
    assert [f for f in found if f.severity in ("error", "warning")] == []
    from otseam.pipeline import Pipeline, compile_table

    pipeline = Pipeline(compile_table(parse_text(to_text(data), "seam.yaml").contract))
    assert len(pipeline.compute.runners) == len(data["computed"])


def test_seam_check_prints_the_position_inside_the_formula(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from tests.contract.helpers import cli

    data = example()
    data["computed"] = [
        {"id": "x", "expression": "$pump-plc/clearwell_level + $pump-plc/outlet_flow", "owner": owner()}
    ]
    text = to_text(data)
    path = tmp_path / "seam.yaml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli(), ["check", str(path)])
    assert result.exit_code == 1
    line_no = next(i for i, line in enumerate(text.splitlines(), 1) if "clearwell_level + $pump-plc" in line)
    column = text.splitlines()[line_no - 1].index("+ $pump-plc") + 1
    assert f"seam.yaml:{line_no}:{column}" in result.output
    assert "cannot add 'm' and 'L/s'" in result.output and "Traceback" not in result.output


def test_a_sink_of_computed_points_carries_the_zones_of_their_sources() -> None:
    from otseam.contract.rules.topology import sink_data_zones

    key = first_numeric_key()
    data = example()
    data["computed"] = [{"id": "double", "expression": f"${key} * 2", "owner": owner()}]
    loaded = parse_text(to_text(data), "seam.yaml")
    contract = loaded.contract
    sink = contract.sinks[0].model_copy(update={"points": ["computed/*"]})
    device = contract.find_point(key)
    assert device is not None and sink_data_zones(contract, sink) == {device[0].zone}


_FUZZ_BASE = example()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_any_formula_text_gives_findings_never_a_rule_failure(text: str) -> None:
    import copy

    data = copy.deepcopy(_FUZZ_BASE)
    data["computed"] = [{"id": "x", "expression": text, "owner": owner()}]
    yaml_text = to_text(data)
    try:
        loaded = parse_text(yaml_text, "seam.yaml")
    except ContractError:  # text a YAML file cannot carry as it is: the loader's business, not the formula's
        return
    lines = yaml_text.splitlines()
    for finding in run(loaded):
        assert RULE_FAILED not in finding.message, finding.message
        assert 1 <= finding.line <= max(len(lines), 1) and finding.column >= 1
