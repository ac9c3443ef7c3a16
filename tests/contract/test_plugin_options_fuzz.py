"""Fuzzing the agreement between `seam check` and the plugins, for any options of any plugin:

* what the loader refuses (the options models, at the key's position), the plugin refuses when it is
  created - the models are never stricter than the plugin;
* what the plugin refuses, `seam check` refuses: the loader, or else the run side's plan it also runs;
* a refusal is a ValueError, never another exception.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from otseam.commands.contract import plan_problems
from otseam.contract import ContractError, parse_text
from otseam.contract.models import Contract, Device, SinkSpec, SourceSpec
from otseam.contract.plugin_options import options_model
from otseam.core.plugins import PluginContext, PluginNotFound, create_driver, create_sink, create_source
from otseam.diode.config import write_new_key
from tests.contract.helpers import to_text
from tests.contract.test_plugin_options import BASE, SAMPLES, _localise

PACKAGES = {
    "modbus": "drivers",
    "opcua": "drivers",
    "generator": "drivers",
    "historian": "sinks",
    "postgres": "sinks",
    "sparkplug": "sinks",
    "uns_json": "sinks",
    "diode_send": "sinks",
    "file": "sinks",
    "modbus_replica": "sinks",
    "diode_receive": "sources",
    "sparkplug_host": "sources",
    "opcua_server": "sinks",
    "capture": "sources",
    "command_executor": "sources",
    "command_outbox": "sources",
}
SECTION = {"drivers": "devices", "sinks": "sinks", "sources": "sources"}

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        ["", "5s", "500ms", "soon", "ABCD", "poll", "subscribe", "udp://127.0.0.1:7400", "127.0.0.1:7400",
         "tcp://127.0.0.1:7400", "mqtt://b:1883", "iso", "ms", "exception", "x", "g/h", "key.txt", "missing.file"]
    ),
    st.lists(st.sampled_from(["b:1883", "mqtts://b:8883", "nope://x", ""]), max_size=2),
    st.dictionaries(st.sampled_from(["ca", "cert", "key", "check_hostname", "x"]), st.booleans(), max_size=2),
)  # fmt: skip


def _keys(name: str) -> list[str]:
    model = options_model(PACKAGES[name], name)
    assert model is not None, name
    return sorted({info.alias or key for key, info in model.model_fields.items()} | {"bogus", "retension"})


CHANGES = st.sampled_from(sorted(PACKAGES)).flatmap(
    lambda name: st.tuples(
        st.just(name),
        st.lists(st.tuples(st.sampled_from(_keys(name)), st.one_of(st.just("<drop>"), VALUES)), min_size=1, max_size=3),
    )
)


def _entry(name: str, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, Any]]:
    sample = YAML(typ="safe").load(SAMPLES[name].read_text())
    section = SECTION[PACKAGES[name]]
    chosen = next(e for e in sample[section] if e.get("type", e.get("driver")) == name)
    entry = dict(_localise(chosen, tmp, monkeypatch), owner="olga")
    entry.pop("node", None)
    if entry.get("conduit") != "commands-in":
        entry.pop("conduit", None)
    if section == "devices":
        entry["zone"] = "cell"
    if section == "sinks":
        entry["points"] = []
    return section, entry


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(change=CHANGES)
def test_check_and_the_plugin_agree_on_any_options(
    change: tuple[str, list[tuple[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, edits = change
    monkeypatch.chdir(tmp_path)
    key = tmp_path / "key.txt"
    if not key.exists():
        write_new_key(key)
    section, entry = _entry(name, tmp_path, monkeypatch)
    options = dict(entry.get("options") or {})
    for option, value in edits:
        if value == "<drop>":
            options.pop(option, None)
        else:
            options[option] = copy.deepcopy(value)
    entry["options"] = options
    data = copy.deepcopy(BASE)
    data.setdefault(section, []).append(entry)
    path = tmp_path / "seam.yaml"

    path.write_text(to_text(data), encoding="utf-8")
    try:
        loaded = parse_text(to_text(data), str(path), environment=True)
        loader_ok = True
        plan_ok = not plan_problems(loaded, None)
    except ContractError:
        loader_ok = plan_ok = False

    context = PluginContext(contract=Contract.model_validate(BASE), data_dir=str(tmp_path), contract_path=str(path))
    try:
        if section == "devices":
            create_driver(Device.model_validate(entry), context)
        elif section == "sinks":
            create_sink(SinkSpec.model_validate(entry), context)
        else:
            create_source(SourceSpec.model_validate(entry), context)
        created = True
    except (ValueError, PluginNotFound):
        created = False
    if not loader_ok:
        assert not created, (name, options, "the loader refused what the plugin accepts")
    if not created:
        assert not (loader_ok and plan_ok), (name, options, "seam check accepted what the plugin refuses")
