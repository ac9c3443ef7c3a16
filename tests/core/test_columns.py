"""The columnar sample format: round trips, damage, and inspect() agreeing with decode() on any input."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otseam.core import columns
from otseam.core.records import Quality, Record, Sample

HEADER = columns._HEAD.size


def _samples(texts: list[str], points: int) -> list[Sample]:
    return [Sample(f"plc/p{i % points}", t, Quality.GOOD, 1.0, 2.0 + i) for i, t in enumerate(texts)]


@settings(max_examples=100)
@given(st.lists(st.text(max_size=300), min_size=1, max_size=30), st.integers(min_value=1, max_value=5))
def test_text_values_travel_as_one_column_and_come_back_exactly(texts: list[str], points: int) -> None:
    records = _samples(texts, points)
    payload = columns.encode("ot", list(range(len(texts))), records)
    assert payload[HEADER - 1] == columns.VALUES_TEXT
    decoded = columns.decode(payload)
    assert decoded.records == records and [type(r.value) for r in decoded.records] == [str] * len(texts)  # type: ignore[union-attr]
    # One string object per distinct point key, whatever the number of samples.
    assert len({id(r.point) for r in decoded.records}) == len({r.point for r in decoded.records})  # type: ignore[union-attr]


def test_inspect_reports_the_run_without_decoding_it() -> None:
    records = [Sample(f"plc/p{i % 7}", float(i), Quality.STALE, 1.0, 100.0 + i) for i in range(50)]
    summary = columns.inspect(columns.encode("edge-1", list(range(10, 60)), records))
    assert summary == columns.Summary("edge-1", 50, 10, 59, True, 149.0, 100.0)
    gappy = columns.inspect(columns.encode("edge-1", [*range(10, 35), *range(40, 65)], records))
    assert (gappy.first_offset, gappy.last_offset, gappy.consecutive) == (10, 64, False)
    backwards = columns.inspect(columns.encode("edge-1", list(range(59, 9, -1)), records))
    assert not backwards.consecutive


def test_damaged_text_and_point_columns_are_refused() -> None:
    records = [Sample(f"plc/p{i % 3}", "é" * i, Quality.GOOD, 1.0, 2.0) for i in range(6)]
    payload = bytearray(columns.encode("ot", list(range(6)), records))
    for cut in range(1, len(payload)):
        with pytest.raises(columns.ColumnsError):
            columns.decode(bytes(payload[:cut]))
        with pytest.raises(columns.ColumnsError):
            columns.inspect(bytes(payload[:cut]))
    meta_length = columns._HEAD.unpack_from(payload, 0)[2]
    points_at = HEADER + meta_length
    beyond = bytearray(payload)
    beyond[points_at : points_at + 4] = (3).to_bytes(4, "little")  # the table has keys 0, 1, 2
    lengths_at = points_at + 6 * (4 + 8 + 1 + 8 + 8)
    wrong = bytearray(payload)
    wrong[lengths_at : lengths_at + 4] = (7).to_bytes(4, "little")
    invalid = bytearray(payload)
    invalid[-1] = 0xFF
    quality = bytearray(payload)
    quality[points_at + 6 * 12] = len(Quality)
    negative = bytearray(payload)
    negative[points_at + 24 : points_at + 32] = (-1).to_bytes(8, "little", signed=True)
    for damaged, why in (
        (beyond, "beyond its table"),
        (wrong, "do not add up"),
        (invalid, "UTF-8"),
        (quality, "unknown quality"),
        (negative, "non-negative"),
    ):
        with pytest.raises(columns.ColumnsError, match=why):
            columns.decode(bytes(damaged))
        with pytest.raises(columns.ColumnsError, match=why):
            columns.inspect(bytes(damaged))


value_lists = st.one_of(
    st.lists(st.floats(), min_size=1, max_size=12),
    st.lists(st.text(max_size=12), min_size=1, max_size=12),
    st.lists(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=4)), min_size=1, max_size=12),
)


@settings(max_examples=400)
@given(value_lists, st.integers(min_value=0, max_value=2**40), st.data())
def test_inspect_accepts_exactly_what_decode_accepts(values: list[object], first: int, data: st.DataObject) -> None:
    """The receiver stores a payload after inspect() alone: one decode() would refuse must never pass."""
    records: list[Record] = [
        Sample(f"p{i % 3}", v, Quality(i % len(Quality)), float(i), float(i) * 2)  # type: ignore[arg-type]
        for i, v in enumerate(values)
    ]
    payload = bytearray(columns.encode("src", list(range(first, first + len(records))), records))
    for _ in range(data.draw(st.integers(min_value=0, max_value=4))):
        action = data.draw(st.sampled_from(["flip", "cut", "extend"]))
        if action == "flip" and payload:
            at = data.draw(st.integers(min_value=0, max_value=len(payload) - 1))
            payload[at] = data.draw(st.integers(min_value=0, max_value=255))
        elif action == "cut":
            del payload[data.draw(st.integers(min_value=0, max_value=len(payload))) :]
        else:
            payload += data.draw(st.binary(min_size=1, max_size=8))
    try:
        decoded = columns.decode(bytes(payload))
    except columns.ColumnsError:
        with pytest.raises(columns.ColumnsError):
            columns.inspect(bytes(payload))
        return
    summary = columns.inspect(bytes(payload))
    assert summary.count == len(decoded.records)
    assert (summary.first_offset, summary.last_offset) == (decoded.offsets[0], decoded.offsets[-1])
    assert summary.consecutive == (
        decoded.offsets == list(range(decoded.offsets[0], decoded.offsets[0] + summary.count))
    )
    last = decoded.records[-1].gateway_ts  # type: ignore[union-attr]
    assert summary.last_gateway_ts == last or (math.isnan(last) and math.isnan(summary.last_gateway_ts))
