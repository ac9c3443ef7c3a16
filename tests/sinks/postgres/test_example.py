"""The sample configurations shipped in the sink folders are valid: they parse and create a sink."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from otseam.contract.models import Contract, SinkSpec, Site
from otseam.core.plugins import PluginContext, create_sink

SINKS = Path(__file__).resolve().parents[3] / "src" / "otseam" / "sinks"


@pytest.mark.parametrize("folder", ["historian", "postgres"])
def test_example_snippet_creates_its_sink(folder: str, tmp_path: Path) -> None:
    document = YAML(typ="safe").load((SINKS / folder / "example.yaml").read_text())
    (raw,) = document["sinks"]
    spec = SinkSpec.model_validate(raw)
    assert spec.type == folder
    context = PluginContext(contract=Contract(site=Site(enterprise="acme", site="p")), data_dir=str(tmp_path))
    sink = create_sink(spec, context)
    assert type(sink).__module__.startswith(f"otseam.sinks.{folder}.")
    assert (SINKS / folder / "README.md").read_text().count("example.yaml") >= 1
