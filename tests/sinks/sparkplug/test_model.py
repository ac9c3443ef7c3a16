"""Sparkplug rules that need no broker: births, seq, report by exception, device life, replays."""

from __future__ import annotations

from otseam.core.records import Batch, Event, Quality, Sample, Severity
from otseam.protocols.sparkplug import codec
from otseam.sinks.sparkplug.model import EdgeModel

from .support import contract


def model(**kw: object) -> EdgeModel:
    return EdgeModel(contract(), "g", "n1", **kw)  # type: ignore[arg-type]


def sample(point: str, value: object, t: float = 1000.0, q: Quality = Quality.GOOD) -> Sample:
    return Sample(point, value, q, t, t)  # type: ignore[arg-type]


def batch(*records: object) -> Batch:
    return Batch("j", list(range(1, len(records) + 1)), list(records))  # type: ignore[arg-type]


def metrics(payload: bytes) -> dict[str, object]:
    decoded = codec.decode_payload(payload)
    return {m.name or f"#{m.alias}": codec.metric_value(m) for m in decoded.metrics}


def test_nbirth_has_seq_0_bdseq_and_rebirth_false_then_one_dbirth_per_device() -> None:
    edge = model()
    messages = edge.births(bdseq=7, now_ms=5)
    assert [m.topic for m in messages] == [
        "spBv1.0/g/NBIRTH/n1",
        "spBv1.0/g/DBIRTH/n1/plc1",
        "spBv1.0/g/DBIRTH/n1/plc2",
    ]
    nbirth = codec.decode_payload(messages[0].payload)
    assert nbirth.seq == 0
    assert metrics(messages[0].payload) == {"bdSeq": 7, "Node Control/Rebirth": False}
    bdseq = next(m for m in nbirth.metrics if m.name == "bdSeq")
    assert bdseq.datatype == codec.INT64
    dbirth = codec.decode_payload(messages[1].payload)
    assert dbirth.seq == 1
    names = {m.name: (m.alias, m.datatype, m.is_null) for m in dbirth.metrics}
    assert (
        names["level"][1] == codec.FLOAT and names["total"][1] == codec.INT64 and names["running"][1] == codec.BOOLEAN
    )
    # A scaled integer is a real number on the IT side.
    assert names["scaled"][1] == codec.DOUBLE
    assert all(is_null for _, _, is_null in names.values()), "never-read points are born as null"
    assert len({alias for alias, _, _ in names.values()}) == len(names)


def test_data_uses_aliases_and_keeps_seq_running_and_wrapping() -> None:
    edge = model(max_metrics_per_message=1)
    edge.births(0, 1)
    seqs = []
    for i in range(300):
        plan = edge.plan(batch(sample("plc2/pressure", float(i), 1000 + i)), 2)
        edge.commit(plan)
        (message,) = plan.messages
        assert message.topic == "spBv1.0/g/DDATA/n1/plc2"
        decoded = codec.decode_payload(message.payload)
        assert decoded.metrics[0].name == "" and decoded.metrics[0].alias > 0
        seqs.append(decoded.seq)
    # births used 0, 1, 2; data continues at 3 and wraps after 255 to 0.
    assert seqs[:3] == [3, 4, 5]
    assert seqs[252] == 255 and seqs[253] == 0 and seqs[254] == 1


def test_report_by_exception_drops_unchanged_values_only() -> None:
    edge = model()
    edge.births(0, 1)
    plan = edge.plan(
        batch(
            sample("plc1/level", 1.0, 1),
            sample("plc1/level", 1.0, 2),  # unchanged
            sample("plc1/level", 1.0, 3, Quality.STALE),  # quality changed
            sample("plc1/level", 2.0, 4),
            sample("plc1/running", True, 5),
            sample("plc1/running", 1, 6),  # same as True numerically, but another type: sent
        ),
        10,
    )
    assert plan.unchanged == 1
    (message,) = plan.messages
    assert len(codec.decode_payload(message.payload).metrics) == 5
    no_rbe = model(report_by_exception=False)
    no_rbe.births(0, 1)
    plan = no_rbe.plan(batch(sample("plc1/level", 1.0, 1), sample("plc1/level", 1.0, 2)), 10)
    assert plan.unchanged == 0 and plan.messages[0].metrics == 2


def test_a_failed_delivery_changes_nothing_so_the_replay_is_complete() -> None:
    edge = model()
    edge.births(0, 1)
    records = batch(sample("plc1/level", 5.0, 1), sample("plc1/count", -3, 2))
    first = edge.plan(records, 10)  # not committed: the broker never acknowledged
    replay = edge.plan(records, 11)
    assert replay.unchanged == 0
    assert replay.messages[0].metrics == first.messages[0].metrics == 2
    edge.commit(replay)
    assert edge.plan(records, 12).unchanged == 2


def test_device_death_and_rebirth_follow_the_driver_state_events() -> None:
    edge = model()
    edge.births(0, 1)
    offline = Event(2.0, "device.state", "plc1", Severity.HIGH, "plc1 lost", {"state": "offline"})
    online = Event(3.0, "device.state", "plc1", Severity.INFO, "plc1 back", {"state": "online"})
    plan = edge.plan(
        batch(
            sample("plc1/level", 1.0, 1),
            offline,
            sample("plc1/level", 0.0, 2.5, Quality.BAD_COMM),  # while dead: folded into the next birth
            online,
            sample("plc1/level", 3.0, 4),
        ),
        10,
    )
    kinds = [(m.kind, m.device) for m in plan.messages]
    assert kinds == [("DDATA", "plc1"), ("DDEATH", "plc1"), ("DBIRTH", "plc1"), ("DDATA", "plc1")]
    birth = metrics(plan.messages[2].payload)
    assert birth["level"] == 0.0
    edge.commit(plan)
    assert edge.online["plc1"] is True


def test_a_good_value_from_a_dead_device_births_it_first() -> None:
    edge = model()
    edge.births(0, 1)
    dead = edge.plan(batch(Event(2.0, "device.state", "plc2", Severity.HIGH, "", {"state": "offline"})), 3)
    edge.commit(dead)
    assert edge.births(0, 4)[-1].topic.endswith("/plc1"), "a dead device is not born in a new session"
    plan = edge.plan(batch(sample("plc2/pressure", 4.5, 5)), 6)
    assert [m.kind for m in plan.messages] == ["DBIRTH"]
    assert metrics(plan.messages[0].payload)["pressure"] == 4.5


def test_points_outside_the_contract_and_mismatched_values_are_counted_not_fatal() -> None:
    edge = model()
    edge.births(0, 1)
    plan = edge.plan(batch(sample("plc9/ghost", 1.0), sample("plc1/count", 99999)), 2)
    assert plan.unknown == 1
    decoded = codec.decode_payload(plan.messages[0].payload)
    assert decoded.metrics[0].is_null and codec.metric_quality(decoded.metrics[0]) == 0
