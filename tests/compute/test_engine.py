"""Computed points running in the pipeline: quality, timestamps, windows, counters, rates, conditions,
reload and the checkpoint of their state."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otseam.core.records import Event, Quality, Sample
from otseam.pipeline import Pipeline, PipelineConfigError, compile_table
from tests.compute.helpers import computed, contract, pipeline, s

G, ST, U = Quality.GOOD, Quality.STALE, Quality.UNCERTAIN

PCT = {"id": "pct", "expression": "$plc1/level / 4 * 100", "unit": "%"}
SUM = {"id": "both", "expression": "level + $plc1/level2", "inputs": {"level": "plc1/level"}, "unit": "m"}


# --- expressions, quality, timestamps ---------------------------------------------------------------


def test_an_expression_is_published_as_a_point() -> None:
    out = pipeline(PCT).process([s("level", 2.0, 10.0)])
    assert out[0] == s("level", 2.0, 10.0)
    assert out[1] == Sample("computed/pct", 50.0, G, 10.0, 10.0)


def test_nothing_is_computed_before_every_input_is_known() -> None:
    pipe = pipeline(SUM)
    assert computed(pipe.process([s("level", 1.0, 1.0)]), "both") == []
    assert computed(pipe.process([s("level2", 2.0, 2.0)]), "both") == [(3.0, G, 2.0)]


def test_source_timestamp_is_the_latest_of_the_inputs() -> None:
    pipe = pipeline(SUM)
    out = pipe.process([s("level2", 2.0, 5.0), s("level", 1.0, 3.0)])
    assert computed(out, "both") == [(3.0, G, 5.0)]


def test_one_result_per_batch_not_per_input() -> None:
    out = pipeline(SUM).process([s("level", 1.0, 1.0), s("level2", 2.0, 1.0), s("level", 5.0, 1.0)])
    assert computed(out, "both") == [(7.0, G, 1.0)]


def test_quality_is_never_better_than_the_worst_input() -> None:
    pipe = pipeline(SUM)
    pipe.process([s("level", 1.0, 1.0), s("level2", 2.0, 1.0)])
    assert computed(pipe.process([s("level", 1.0, 2.0, U)]), "both") == [(3.0, U, 2.0)]
    bad = pipe.process([s("level", None, 3.0, Quality.BAD_COMM)])
    assert computed(bad, "both") == [(None, Quality.BAD_COMM, 3.0)]
    assert computed(pipe.process([s("level", 1.0, 4.0)]), "both") == [(3.0, G, 4.0)]


def test_stale_inputs_give_an_uncertain_result() -> None:
    pipe = pipeline(SUM)
    pipe.process([s("level", 1.0, 1.0), s("level2", 2.0, 1.0)])
    out = pipe.mark_stale("plc1", now=9.0)
    assert computed(out, "both") == [(3.0, U, 1.0)]


def test_a_clamped_input_makes_the_result_uncertain() -> None:
    c = contract(PCT)
    c.devices[0].points[0].clamp = (
        type(c.devices[0].points[0]).model_validate({"id": "x", "address": "a", "clamp": {"low": 0, "high": 3}}).clamp
    )
    out = Pipeline.from_contract(c).process([s("level", 4.0, 1.0)])
    assert computed(out, "pct") == [(75.0, U, 1.0)]


def test_arithmetic_faults_give_a_bad_result_not_an_exception() -> None:
    pipe = pipeline({"id": "ratio", "expression": "$plc1/level / $plc1/level2"})
    out = pipe.process([s("level", 1.0, 1.0), s("level2", 0.0, 1.0)])
    assert computed(out, "ratio") == [(None, Quality.BAD_CONFIG, 1.0)]
    assert pipe.compute.errors == 1
    assert computed(pipe.process([s("level2", 2.0, 2.0)]), "ratio") == [(0.5, G, 2.0)]


def test_integer_results_outside_their_type_are_bad() -> None:
    pipe = pipeline({"id": "big", "type": "int16", "expression": "$plc1/mode * 1000"})
    assert computed(pipe.process([s("mode", 3, 1.0)]), "big") == [(3000, G, 1.0)]
    assert computed(pipe.process([s("mode", 300, 2.0)]), "big") == [(None, Quality.BAD_CONFIG, 2.0)]


def test_computed_points_chain_in_dependency_order() -> None:
    pipe = pipeline(
        {"id": "c", "expression": "b + 1"},  # declared before what it reads
        {"id": "b", "expression": "a * 2"},
        {"id": "a", "expression": "$plc1/level + 1"},
    )
    out = pipe.process([s("level", 1.0, 1.0)])
    assert [(r.point, r.value) for r in out if isinstance(r, Sample)][1:] == [
        ("computed/a", 2.0),
        ("computed/b", 4.0),
        ("computed/c", 5.0),
    ]


def test_computed_points_get_deadband_and_limit_alarms_like_any_point() -> None:
    pipe = pipeline({**PCT, "deadband": 5, "alarms": [{"id": "hi", "kind": "high", "limit": 90, "hysteresis": 5}]})
    values = [pipe.process([s("level", v, t)]) for t, v in enumerate([2.0, 2.1, 3.9, 3.8], start=1)]
    assert [computed(o, "pct") for o in values] == [[(50.0, G, 1.0)], [], [(97.5, G, 3.0)], []]
    alarm = [r for r in values[2] if isinstance(r, Event)]
    assert alarm[0].data["point"] == "computed/pct" and alarm[0].data["state"] == "raised"


def test_unit_conversion_in_a_contract() -> None:
    pipe = pipeline({"id": "temp_c", "expression": 'convert($plc1/temp, "degF", "degC")', "unit": "degC"})
    ((value, quality, _),) = computed(pipe.process([s("temp", 212.0, 1.0)]), "temp_c")
    assert value == pytest.approx(100.0) and quality is G


# --- multi-point alarms ------------------------------------------------------------------------------

CONDITION = {
    "id": "dry_run",
    "type": "bool",
    "condition": {
        "when": "$plc1/level < 0.5 and ($plc1/pump or $plc1/pump2)",
        "clear": "$plc1/level > 1.0 or not ($plc1/pump or $plc1/pump2)",
        "delay": "10s",
        "severity": "critical",
    },
}


def alarms(records: list[object]) -> list[tuple[str, float]]:
    return [(r.data["state"], r.ts) for r in records if isinstance(r, Event) and r.kind == "alarm"]


def test_condition_alarm_with_delay_and_hysteresis() -> None:
    pipe = pipeline(CONDITION)
    feed = [
        (0, 2.0, True),
        (5, 0.4, True),  # condition true from here
        (10, 0.3, True),
        (16, 0.45, True),  # 11 s: raised
        (20, 0.8, True),  # back above 0.5, but not above 1.0: stays raised (hysteresis)
        (30, 1.2, True),  # clear condition: cleared
        (35, 0.4, True),
        (40, 0.9, True),  # not for 10 s: not raised
    ]
    events = []
    states = []
    for t, level, pump in feed:
        out = pipe.process([s("level", level, t), s("pump", pump, t), s("pump2", False, t)])
        events += alarms(out)
        states += computed(out, "dry_run")
    assert events == [("raised", 16), ("cleared", 30)]
    assert pipe.compute.stats()["alarms_raised"] == 1
    assert [v for v, _, _ in states] == [False, False, False, True, True, False, False, False]


def test_condition_event_names_its_inputs_and_severity() -> None:
    pipe = pipeline({**CONDITION, "condition": {**CONDITION["condition"], "delay": 0}})
    out = pipe.process([s("level", 0.2, 1.0), s("pump", True, 1.0), s("pump2", False, 1.0)])
    (event,) = [r for r in out if isinstance(r, Event)]
    assert event.severity.label == "critical" and event.source == "computed/dry_run"
    assert event.data["inputs"] == {"plc1/level": 0.2, "plc1/pump": True, "plc1/pump2": False}


def test_bad_inputs_interrupt_a_pending_condition_and_never_clear_it() -> None:
    pipe = pipeline(CONDITION)
    pipe.process([s("level", 0.2, 0.0), s("pump", True, 0.0), s("pump2", False, 0.0)])
    pipe.process([s("level", None, 5.0, Quality.BAD_COMM)])
    assert alarms(pipe.process([s("level", 0.2, 12.0)])) == []  # the delay started over at 12
    assert alarms(pipe.process([s("level", 0.2, 22.0)])) == [("raised", 22.0)]
    out = pipe.process([s("level", None, 30.0, Quality.BAD_COMM)])
    assert alarms(out) == [] and computed(out, "dry_run") == [(None, Quality.BAD_COMM, 30.0)]


# --- windows -----------------------------------------------------------------------------------------


def window(function: str, step: str | None = None, of: str = "plc1/flow") -> dict[str, object]:
    spec: dict[str, object] = {"of": of, "function": function, "length": "10s"}
    if step:
        spec["step"] = step
    return {"id": f"w_{function}", "window": spec, "type": "int32" if function == "count" else "float64"}


def test_tumbling_windows_every_function() -> None:
    functions = ["avg", "min", "max", "count", "stddev", "first", "last", "sum"]
    pipe = pipeline(*(window(f) for f in functions))
    for t, v in [(100, 1.0), (103, 3.0), (107, 2.0), (109.9, 6.0)]:
        assert not [r for r in pipe.process([s("flow", v, t)]) if r.point.startswith("computed/")]  # type: ignore[union-attr]
    out = pipe.process([s("flow", 100.0, 110.0)])  # closes [100, 110)
    got = {r.point.split("/")[1][2:]: (r.value, r.quality, r.source_ts) for r in out if isinstance(r, Sample)}
    assert got.pop("flow", None) is None
    expected = {"avg": 3.0, "min": 1.0, "max": 6.0, "count": 4, "first": 1.0, "last": 6.0, "sum": 12.0}
    for function, value in expected.items():
        assert got[function] == (pytest.approx(value), G, 110.0), function
    assert got["stddev"][0] == pytest.approx((((1 - 3) ** 2 + 0 + 1 + 9) / 4) ** 0.5)


def test_window_quality_and_bad_samples() -> None:
    pipe = pipeline(window("avg"))
    pipe.process([s("flow", 2.0, 100.0), s("flow", None, 101.0, Quality.BAD_COMM), s("flow", 4.0, 102.0)])
    assert computed(pipe.process([s("flow", 1.0, 111.0)]), "w_avg") == [(3.0, U, 110.0)]
    # The next window [110, 120) only saw bad samples after 111: no value.
    pipe.process([s("flow", None, 115.0, Quality.BAD_COMM)])


def test_windows_close_on_the_clock_when_the_input_stops() -> None:
    pipe = pipeline(window("count"))
    pipe.process([s("flow", 2.0, 100.0), s("flow", 2.0, 101.0)])
    assert computed(pipe.tick(now=111.0), "w_count") == []  # within the grace period
    assert computed(pipe.tick(now=112.5), "w_count") == [(2, G, 110.0)]
    # The next window saw nothing at all: bad, no value.
    assert computed(pipe.tick(now=123.0), "w_count") == [(None, Quality.BAD_COMM, 120.0)]


def test_late_samples_are_counted_not_aggregated() -> None:
    pipe = pipeline(window("sum"))
    pipe.process([s("flow", 1.0, 100.0), s("flow", 1.0, 111.0), s("flow", 50.0, 105.0)])
    assert pipe.compute.stats()["late_samples"] == 1
    assert computed(pipe.process([s("flow", 1.0, 121.0)]), "w_sum") == [(1.0, G, 120.0)]


def test_sliding_window_publishes_every_step_over_its_length() -> None:
    pipe = pipeline(window("avg", step="5s"))
    published = []
    for t in range(100, 131):
        published += computed(pipe.process([s("flow", float(t), float(t))]), "w_avg")
    # At 105: [95, 105) holds 100..104; at 110: [100, 110) holds 100..109; then 10 s of samples each time.
    assert published[:3] == [(102.0, G, 105.0), (104.5, G, 110.0), (109.5, G, 115.0)]
    assert [ts for _, _, ts in published] == [105.0, 110.0, 115.0, 120.0, 125.0, 130.0]


def test_a_window_over_a_computed_point() -> None:
    pipe = pipeline(PCT, window("max", of="computed/pct"))
    pipe.process([s("level", 1.0, 100.0), s("level", 2.0, 101.0)])
    pipe.process([s("level", 3.0, 105.0)])
    assert computed(pipe.process([s("level", 0.0, 110.0)]), "w_max") == [(75.0, G, 110.0)]


# --- counters and rates ------------------------------------------------------------------------------

TOTAL = {"id": "volume", "unit": "m3", "counter": {"kind": "total", "of": "plc1/flow", "per": "1h", "max_gap": "1min"}}
HOURS = {"id": "pump_hours", "unit": "h", "counter": {"kind": "duration", "of": "plc1/pump", "per": "1h"}}
STARTS = {"id": "pump_starts", "type": "uint32", "counter": {"kind": "count", "of": "plc1/pump"}}


def test_totaliser_integrates_flow_into_volume() -> None:
    pipe = pipeline(TOTAL)
    results = []
    for t in range(0, 3601, 30):  # 360 m3/h for an hour, sampled every 30 s
        results += computed(pipe.process([s("flow", 360.0, float(t))]), "volume")
    assert results[-1][0] == pytest.approx(360.0) and results[-1][1] is G


def test_totaliser_does_not_integrate_across_gaps_and_counts_them() -> None:
    pipe = pipeline(TOTAL)
    pipe.process([s("flow", 3600.0, 0.0), s("flow", 3600.0, 10.0)])  # 10 s at 1 m3/s: 10 m3
    out = pipe.process([s("flow", 3600.0, 200.0)])  # 190 s without a sample: not guessed
    assert computed(out, "volume") == [(pytest.approx(10.0), G, 200.0)]
    out = pipe.process([s("flow", None, 205.0, Quality.BAD_COMM)])
    assert computed(out, "volume") == [(pytest.approx(10.0), U, 205.0)]
    pipe.process([s("flow", 3600.0, 210.0), s("flow", 3600.0, 215.0)])
    runner = pipe.compute.runners["computed/volume"]
    assert runner.stream is not None and runner.stream.state()["gaps"] == 2  # type: ignore[index]
    assert computed(pipe.process([s("flow", 3600.0, 216.0)]), "volume")[0][0] == pytest.approx(16.0)


def test_run_hours_and_starts() -> None:
    pipe = pipeline(HOURS, STARTS)
    hours, starts = [], []
    for t, on in [(0, False), (60, True), (120, True), (180, False), (240, True), (300, True), (360, False)]:
        out = pipe.process([s("pump", on, float(t))])
        hours += computed(out, "pump_hours")
        starts += computed(out, "pump_starts")
    assert hours[-1][0] == pytest.approx(240 / 3600)
    assert starts[-1][0] == 2


def test_rate_of_change() -> None:
    pipe = pipeline(
        {"id": "rise", "unit": "m", "rate": {"of": "plc1/level", "per": "1min"}},
        {"id": "slope", "rate": {"of": "plc1/level", "per": "1min", "over": "30s"}},
    )
    out = []
    for t, v in [(0, 1.0), (10, 1.5), (20, 1.6), (30, 2.0), (40, 2.5)]:
        out += pipe.process([s("level", v, float(t))])
    assert [v for v, _, _ in computed(out, "rise")] == pytest.approx([3.0, 0.6, 2.4, 3.0])
    assert computed(out, "slope")[-1][0] == pytest.approx((2.5 - 1.5) / 30 * 60)


# --- reload and checkpoints --------------------------------------------------------------------------


def test_reload_keeps_the_state_of_unchanged_computations() -> None:
    pipe = pipeline(TOTAL, PCT)
    pipe.process([s("flow", 3600.0, 0.0), s("flow", 3600.0, 10.0), s("level", 1.0, 10.0)])
    changed = {**PCT, "expression": "$plc1/level / 2 * 100", "description": "now of 2 m"}
    pipe.reconfigure(compile_table(contract({**TOTAL, "description": "renamed"}, changed)))
    out = pipe.process([s("flow", 3600.0, 20.0), s("level", 1.0, 20.0)])
    assert computed(out, "volume") == [(pytest.approx(20.0), G, 20.0)]
    assert computed(out, "pct") == [(50.0, G, 20.0)]
    pipe.reconfigure(compile_table(contract({**TOTAL, "counter": {**TOTAL["counter"], "per": "1s"}})))  # type: ignore[dict-item]
    out = pipe.process([s("flow", 1.0, 30.0), s("flow", 1.0, 40.0), s("level", 1.0, 40.0)])
    assert computed(out, "volume")[-1][0] == pytest.approx(10.0)  # a changed counter starts afresh
    assert computed(out, "pct") == []


def test_checkpoint_and_restore() -> None:
    pipe = pipeline(TOTAL, window("sum"), {**CONDITION, "condition": {**CONDITION["condition"], "delay": 0}})
    pipe.process([s("flow", 3600.0, 100.0), s("flow", 3600.0, 105.0)])
    pipe.process([s("level", 0.1, 105.0), s("pump", True, 105.0), s("pump2", False, 105.0)])
    (event,) = pipe.checkpoint(now=106.0)
    assert isinstance(event, Event) and event.kind == "compute.state"
    again = pipeline(TOTAL, window("sum"), {**CONDITION, "condition": {**CONDITION["condition"], "delay": 0}})
    assert sorted(again.compute.restore(event.data)) == ["computed/dry_run", "computed/volume", "computed/w_sum"]
    out = again.process([s("flow", 3600.0, 110.0)])
    assert computed(out, "volume") == [(pytest.approx(10.0), G, 110.0)]
    assert computed(out, "w_sum") == [(7200.0, G, 110.0)]
    out = again.process([s("level", 2.0, 112.0), s("pump", False, 112.0), s("pump2", False, 112.0)])
    assert alarms(out) == [("cleared", 112.0)]  # it knew the alarm was raised


def test_a_periodic_checkpoint_comes_out_of_tick() -> None:
    pipe = pipeline(TOTAL)
    pipe.compute.checkpoint_every = 60.0
    assert pipe.tick(now=1000.0) == []
    assert pipe.tick(now=1030.0) == []
    (event,) = pipe.tick(now=1061.0)
    assert isinstance(event, Event) and event.kind == "compute.state" and "computed/volume" in event.data["points"]


# --- fuzzing the whole path: any formula either is refused with a reason or runs -------------------

_PARTS = ["$plc1/level", "$plc1/temp", "$plc1/mode", "$plc1/pump", "$plc1/name", "level", "0", "2.5", "1e308"]
_PARTS += ['"degF"', '"degC"', "+", "-", "*", "/", "%", "<", "==", "and", "or", "not", "?", ":", "(", ")", ","]
_PARTS += ["min(", "max(", "abs(", "clamp(", "if(", "round(", "sqrt(", "convert(", "true"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_PARTS), min_size=1, max_size=25), st.sampled_from(["float64", "int32", "bool"]))
def test_any_formula_is_refused_with_a_reason_or_runs(parts: list[str], data_type: str) -> None:
    point = {"id": "f", "expression": " ".join(parts), "inputs": {"level": "plc1/level"}, "type": data_type}
    try:
        pipe = pipeline(point)
    except PipelineConfigError as exc:
        assert "computed point computed/f" in str(exc)
        return
    batch = [
        s("level", 1.5, 1.0),
        s("temp", 70.0, 1.0),
        s("mode", 0, 1.0),
        s("pump", True, 1.0),
        s("name", "x", 1.0),
    ]
    ((value, quality, ts),) = computed(pipe.process(batch), "f")
    assert ts == 1.0
    if quality is Quality.GOOD:
        assert value is not None
        kind = {"float64": float, "int32": int, "bool": bool}[data_type]
        assert type(value) is kind
    else:
        assert value is None and quality is Quality.BAD_CONFIG


def test_sliding_window_counts_samples_too_old_for_any_publication() -> None:
    pipe = pipeline(window("count", step="5s"))
    for t in (100.0, 101.0, 106.0):
        pipe.process([s("flow", 1.0, t)])
    pipe.process([s("flow", 1.0, 99.0)])  # [100, 110) is the next publication: 99 can be in none
    assert pipe.compute.stats()["late_samples"] == 1
    assert computed(pipe.process([s("flow", 1.0, 111.0)]), "w_count") == [(3, G, 110.0)]
