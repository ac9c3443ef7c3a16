"""Every pipeline rule, one behaviour per test."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otseam.core.records import Event, Quality, Sample
from otseam.pipeline import Pipeline, PipelineConfigError
from tests.pipeline.helpers import contract_with, pipeline_with, sample


def values(records: list[object]) -> list[object]:
    return [r.value for r in records if isinstance(r, Sample)]


# --- scaling and clamping ----------------------------------------------------------------------------


def test_scale_and_offset_are_applied() -> None:
    pipe = pipeline_with({"id": "t", "scale": {"factor": 0.1, "offset": -40}})
    out = pipe.process([sample("t", 650, 1.0)])
    assert out == [Sample("plc1/t", pytest.approx(25.0), Quality.GOOD, 1.0, 1.0)]


def test_points_without_scale_keep_integers() -> None:
    pipe = pipeline_with({"id": "n", "type": "uint16"})
    (out,) = pipe.process([sample("n", 7, 1.0)])
    assert isinstance(out, Sample) and out.value == 7 and type(out.value) is int


def test_clamped_value_is_uncertain() -> None:
    pipe = pipeline_with({"id": "t", "clamp": {"low": 0, "high": 100}})
    out = pipe.process([sample("t", 150.0, 1.0), sample("t", -5.0, 2.0), sample("t", 50.0, 3.0)])
    assert [(s.value, s.quality) for s in out if isinstance(s, Sample)] == [
        (100, Quality.UNCERTAIN),
        (0, Quality.UNCERTAIN),
        (50.0, Quality.GOOD),
    ]


def test_clamp_applies_after_scaling() -> None:
    pipe = pipeline_with({"id": "t", "scale": {"factor": 10}, "clamp": {"low": 0, "high": 100}})
    (out,) = pipe.process([sample("t", 11, 1.0)])
    assert isinstance(out, Sample) and (out.value, out.quality) == (100, Quality.UNCERTAIN)


def test_bad_quality_values_are_not_scaled() -> None:
    pipe = pipeline_with({"id": "t", "scale": {"factor": 10}})
    (out,) = pipe.process([sample("t", None, 1.0, Quality.BAD_COMM)])
    assert isinstance(out, Sample) and out.value is None and out.quality is Quality.BAD_COMM


def test_non_finite_numbers_become_bad_device() -> None:
    pipe = pipeline_with({"id": "t"})
    out = pipe.process([sample("t", math.nan, 1.0), sample("t", math.inf, 2.0)])
    assert [(s.value, s.quality) for s in out if isinstance(s, Sample)] == [(None, Quality.BAD_DEVICE)] * 2


def test_a_string_for_a_numeric_point_is_bad_config() -> None:
    pipe = pipeline_with({"id": "t"})
    (out,) = pipe.process([sample("t", "12.5", 1.0)])
    assert isinstance(out, Sample) and (out.value, out.quality) == (None, Quality.BAD_CONFIG)


def test_unknown_points_are_dropped_and_counted() -> None:
    pipe = pipeline_with({"id": "t"})
    out = pipe.process([Sample("plc9/x", 1.0, Quality.GOOD, 1.0, 1.0), sample("t", 2.0, 1.0)])
    assert values(out) == [2.0]
    assert pipe.unknown_points == 1


def test_driver_events_pass_through_in_order() -> None:
    pipe = pipeline_with({"id": "t"})
    event = Event(1.5, "device.state", "plc1", 1, "connected", {})  # type: ignore[arg-type]
    out = pipe.process([sample("t", 1.0, 1.0), event, sample("t", 2.0, 2.0)])
    assert out[1] is event and values(out) == [1.0, 2.0]


# --- report by exception, deadband, heartbeat -------------------------------------------------------


def test_without_deadband_or_heartbeat_every_reading_is_reported() -> None:
    pipe = pipeline_with({"id": "t"})
    assert values(pipe.process([sample("t", 1.0, t) for t in range(5)])) == [1.0] * 5


def test_absolute_deadband_suppresses_small_changes_and_measures_from_last_report() -> None:
    pipe = pipeline_with({"id": "t", "deadband": 0.5})
    readings = [10.0, 10.2, 10.4, 10.6, 10.9, 11.0, 11.2]
    out = pipe.process([sample("t", v, i) for i, v in enumerate(readings)])
    # 10.6 is 0.6 from 10.0; 11.2 is 0.6 from 10.6; the drift is never lost.
    assert values(out) == [10.0, 10.6, 11.2]


def test_percent_deadband_uses_the_range() -> None:
    pipe = pipeline_with({"id": "t", "deadband": "1%", "range": {"low": 0, "high": 200}})
    out = pipe.process([sample("t", v, i) for i, v in enumerate([50.0, 51.5, 52.1, 52.5])])
    assert values(out) == [50.0, 52.1]  # 1 % of 200 is 2.0


def test_percent_deadband_without_range_is_a_clear_error() -> None:
    with pytest.raises(PipelineConfigError, match=r"plc1/t: a percent deadband needs the point's range"):
        Pipeline.from_contract(contract_with({"id": "t", "deadband": "2%"}))


def test_zero_deadband_reports_every_change_only() -> None:
    pipe = pipeline_with({"id": "t", "deadband": 0})
    out = pipe.process([sample("t", v, i) for i, v in enumerate([1.0, 1.0, 2.0, 2.0, 1.0])])
    assert values(out) == [1.0, 2.0, 1.0]


def test_quality_change_is_reported_inside_the_deadband() -> None:
    pipe = pipeline_with({"id": "t", "deadband": 5})
    out = pipe.process(
        [
            sample("t", 10.0, 1),
            sample("t", 10.1, 2, Quality.UNCERTAIN),
            sample("t", 10.2, 3, Quality.UNCERTAIN),
            sample("t", 10.3, 4),
        ]
    )
    assert [(s.value, s.quality) for s in out if isinstance(s, Sample)] == [
        (10.0, Quality.GOOD),
        (10.1, Quality.UNCERTAIN),
        (10.3, Quality.GOOD),
    ]


def test_bad_quality_is_reported_once_then_recovery_is_reported() -> None:
    pipe = pipeline_with({"id": "t", "deadband": 1})
    out = pipe.process(
        [
            sample("t", 5.0, 1),
            sample("t", None, 2, Quality.BAD_COMM),
            sample("t", None, 3, Quality.BAD_COMM),
            sample("t", 5.0, 4),
        ]
    )
    assert [(s.quality, s.source_ts) for s in out if isinstance(s, Sample)] == [
        (Quality.GOOD, 1),
        (Quality.BAD_COMM, 2),
        (Quality.GOOD, 4),
    ]


def test_boolean_and_string_points_report_on_change() -> None:
    pipe = pipeline_with(
        {"id": "run", "type": "bool", "heartbeat": "1min"}, {"id": "mode", "type": "string", "heartbeat": "1min"}
    )
    out = pipe.process(
        [
            sample("run", True, 1),
            sample("run", True, 2),
            sample("run", False, 3),
            sample("mode", "auto", 1),
            sample("mode", "auto", 2),
        ]
    )
    assert values(out) == [True, False, "auto"]


def test_heartbeat_reports_an_unchanged_reading_once_the_interval_passed() -> None:
    pipe = pipeline_with({"id": "t", "deadband": 1, "heartbeat": "10s"})
    out = pipe.process([sample("t", 5.0, t) for t in (0, 3, 6, 9, 10, 13, 20)])
    # The re-reported readings carry their own (new) timestamps: the device did answer then.
    assert [s.source_ts for s in out if isinstance(s, Sample)] == [0, 10, 20]


def test_silent_point_heartbeat_keeps_the_original_source_timestamp() -> None:
    pipe = pipeline_with({"id": "t", "deadband": 1, "heartbeat": "10s"})
    pipe.process([sample("t", 5.0, 100.0)])
    assert pipe.tick(now=105.0) == []
    (beat,) = pipe.tick(now=110.0)
    assert beat == Sample("plc1/t", 5.0, Quality.GOOD, 100.0, 110.0)
    assert pipe.tick(now=115.0) == []
    (again,) = pipe.tick(now=120.0)
    assert again.source_ts == 100.0  # never a fresh timestamp for a value nobody read again


def test_tick_sends_nothing_for_points_that_keep_arriving() -> None:
    pipe = pipeline_with({"id": "t", "deadband": 1, "heartbeat": "10s"})
    pipe.process([sample("t", 5.0, 100.0)])
    pipe.process([sample("t", 5.0, 108.0)])
    assert pipe.tick(now=110.0) == []


def test_mark_stale_resends_last_values_as_stale_once() -> None:
    pipe = pipeline_with({"id": "a"}, {"id": "b"})
    pipe.process([sample("a", 1.0, 10.0), sample("b", None, 10.0, Quality.BAD_COMM)])
    out = pipe.mark_stale("plc1", now=20.0)
    assert out == [Sample("plc1/a", 1.0, Quality.STALE, 10.0, 20.0)]
    assert pipe.mark_stale("plc1", now=21.0) == []
    # When the device is back, the good value is reported again as a quality change.
    pipe2 = pipeline_with({"id": "a", "deadband": 5})
    pipe2.process([sample("a", 1.0, 10.0)])
    pipe2.mark_stale("plc1", now=20.0)
    assert values(pipe2.process([sample("a", 1.0, 30.0)])) == [1.0]


# --- alarms ------------------------------------------------------------------------------------------


def alarm_events(records: list[object]) -> list[tuple[str, float]]:
    return [(r.data["state"], r.data["value"]) for r in records if isinstance(r, Event) and r.kind == "alarm"]


def test_high_alarm_with_hysteresis() -> None:
    pipe = pipeline_with({"id": "t", "alarms": [{"id": "hi", "kind": "high", "limit": 80, "hysteresis": 5}]})
    readings = [70, 81, 85, 79, 76, 74.9, 80, 81]
    out = pipe.process([sample("t", float(v), i) for i, v in enumerate(readings)])
    assert alarm_events(out) == [("raised", 81.0), ("cleared", 74.9), ("raised", 81.0)]


def test_low_alarm_with_hysteresis() -> None:
    pipe = pipeline_with({"id": "t", "alarms": [{"id": "lo", "kind": "low", "limit": 10, "hysteresis": 2}]})
    out = pipe.process([sample("t", float(v), i) for i, v in enumerate([15, 9, 11, 12, 12.5, 8])])
    assert alarm_events(out) == [("raised", 9.0), ("cleared", 12.5), ("raised", 8.0)]


def test_alarm_event_carries_point_limit_value_and_follows_its_sample() -> None:
    pipe = pipeline_with(
        {"id": "t", "deadband": 100, "alarms": [{"id": "hi", "kind": "high", "limit": 50, "severity": "critical"}]}
    )
    out = pipe.process([sample("t", 10.0, 1), sample("t", 60.0, 2)])
    assert isinstance(out[1], Sample) and out[1].value == 60.0  # reported although inside the deadband
    event = out[2]
    assert isinstance(event, Event)
    assert (event.kind, event.source, event.severity.label, event.ts) == ("alarm", "plc1/t", "critical", 2)
    assert event.data["limit"] == 50 and event.data["value"] == 60.0 and event.data["point"] == "plc1/t"


def test_alarm_delay_requires_the_condition_to_persist() -> None:
    pipe = pipeline_with({"id": "t", "alarms": [{"id": "hi", "kind": "high", "limit": 80, "delay": "5s"}]})
    # A 3-second spike raises nothing; a condition held from t=10 raises at t=15.
    readings = [(0, 90), (3, 90), (4, 70), (10, 90), (12, 91), (14, 92), (15, 93), (16, 94)]
    out = pipe.process([sample("t", float(v), t) for t, v in readings])
    events = [r for r in out if isinstance(r, Event)]
    assert [(e.ts, e.data["state"]) for e in events] == [(15, "raised")]


def test_bad_reading_interrupts_delay_but_never_clears_an_alarm() -> None:
    pipe = pipeline_with({"id": "t", "alarms": [{"id": "hi", "kind": "high", "limit": 80, "delay": "5s"}]})
    out = pipe.process(
        [
            sample("t", 90.0, 0),
            sample("t", None, 3, Quality.BAD_COMM),
            sample("t", 90.0, 6),  # the delay restarts here
            sample("t", 90.0, 10),
            sample("t", 90.0, 11),
            sample("t", None, 12, Quality.BAD_COMM),
            sample("t", None, 13, Quality.BAD_COMM),
        ]
    )
    assert [(e.ts, e.data["state"]) for e in out if isinstance(e, Event)] == [(11, "raised")]


def test_alarm_state_survives_a_reload_with_the_same_configuration() -> None:
    spec = {"id": "t", "alarms": [{"id": "hi", "kind": "high", "limit": 80}]}
    pipe = pipeline_with(spec)
    assert alarm_events(pipe.process([sample("t", 90.0, 1)])) == [("raised", 90.0)]
    pipe.reconfigure(Pipeline.from_contract(contract_with(spec, {"id": "new"})).table)
    assert alarm_events(pipe.process([sample("t", 91.0, 2)])) == []
    assert alarm_events(pipe.process([sample("t", 70.0, 3)])) == [("cleared", 70.0)]


def test_changed_configuration_starts_the_point_afresh() -> None:
    pipe = pipeline_with({"id": "t", "deadband": 10})
    pipe.process([sample("t", 1.0, 1)])
    pipe.reconfigure(Pipeline.from_contract(contract_with({"id": "t", "deadband": 10, "scale": {"factor": 2}})).table)
    assert values(pipe.process([sample("t", 1.0, 2)])) == [2.0]


# --- properties --------------------------------------------------------------------------------------


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=200), st.floats(0, 100))
def test_reported_values_never_jump_more_than_deadband_unreported(readings: list[float], deadband: float) -> None:
    """Every reading is within the deadband of the last reported value, or is itself reported."""
    pipe = pipeline_with({"id": "t", "deadband": deadband})
    last: float | None = None
    for i, value in enumerate(readings):
        out = values(pipe.process([sample("t", value, float(i))]))
        if out:
            last = out[0]  # type: ignore[assignment]
            assert last == value
        else:
            assert last is not None and abs(value - last) <= deadband


@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.floats(allow_nan=True), st.integers(), st.text(max_size=3), st.booleans()),
            st.sampled_from(list(Quality)),
        ),
        max_size=100,
    )
)
def test_arbitrary_driver_input_never_crashes(readings: list[tuple[object, Quality]]) -> None:
    pipe = pipeline_with(
        {
            "id": "t",
            "scale": {"factor": 2},
            "clamp": {"low": -10, "high": 10},
            "deadband": 1,
            "heartbeat": "5s",
            "alarms": [{"id": "hi", "kind": "high", "limit": 5, "hysteresis": 1, "delay": "2s"}],
        }
    )
    for i, (value, quality) in enumerate(readings):
        for record in pipe.process([sample("t", value, float(i), quality)]):
            if isinstance(record, Sample) and record.quality <= Quality.UNCERTAIN and record.value is not None:
                assert -10 <= record.value <= 10  # type: ignore[operator]
        pipe.tick(float(i) + 0.5)


def test_device_stats_count_samples_the_driver_could_not_vouch_for() -> None:
    pipe = pipeline_with({"id": "t"})
    pipe.process(
        [
            sample("t", 1.0, 1),
            sample("t", 1.0, 2, Quality.UNCERTAIN),
            sample("t", 1.0, 3, Quality.STALE),
            sample("t", None, 4, Quality.BAD_COMM),
        ]
    )
    stats = pipe.devices["plc1"]
    assert (stats.samples, stats.bad_samples, stats.reported) == (4, 2, 4)
