"""Records ⇄ block payloads."""

from __future__ import annotations

import contextlib
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otseam.core.records import Event, Quality, Record, Sample, Severity
from otseam.diode import blocks

values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64), st.floats(), st.text(max_size=30)
)
sample_st = st.builds(
    Sample,
    st.text(min_size=1, max_size=40),
    values,
    st.sampled_from(list(Quality)),
    st.floats(allow_nan=False),
    st.floats(allow_nan=False),
)
event_st = st.builds(
    Event,
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.text(max_size=20),
    st.sampled_from(list(Severity)),
    st.text(max_size=50),
    st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
)


def same(a: Record, b: Record) -> bool:
    if isinstance(a, Sample) and isinstance(b, Sample) and isinstance(a.value, float) and math.isnan(a.value):
        return isinstance(b.value, float) and math.isnan(b.value) and a[2:] == b[2:] and a.point == b.point
    return a == b and type(a.value if isinstance(a, Sample) else 0) is type(b.value if isinstance(b, Sample) else 0)


@settings(max_examples=200)
@given(st.lists(sample_st | event_st, max_size=40), st.text(max_size=20))
def test_round_trip(records: list[Record], source: str) -> None:
    offsets = list(range(100, 100 + len(records)))
    decoded = blocks.decode(blocks.encode(source, offsets, records))
    assert decoded.source == source and decoded.offsets == offsets
    assert all(same(a, b) for a, b in zip(records, decoded.records, strict=True))


def test_split_respects_the_size_limit_and_keeps_order() -> None:
    records: list[Record] = [Sample(f"plc/p{i}", float(i), Quality.GOOD, 1.0, 2.0) for i in range(5000)]
    parts = blocks.encode_split("ot", list(range(5000)), records, 20_000)
    assert len(parts) > 5 and all(len(p) <= 20_000 for p in parts)
    back = [r for p in parts for r in blocks.decode(p).records]
    assert back == records


def test_a_record_too_large_for_any_block_is_replaced_by_an_event_with_its_offset() -> None:
    huge: list[Record] = [
        Sample("p/a", 1.0, Quality.GOOD, 0.0, 0.0),
        Sample("p/x", "x" * 5000, Quality.GOOD, 0.0, 7.0),
        Sample("p/b", 2.0, Quality.GOOD, 0.0, 0.0),
    ]
    parts = blocks.encode_split("ot", [1, 2, 3], huge, 1000)
    decoded = [blocks.decode(p) for p in parts]
    assert [o for b in decoded for o in b.offsets] == [1, 2, 3]
    records = [r for b in decoded for r in b.records]
    assert records[0] == huge[0] and records[2] == huge[2]
    assert isinstance(records[1], Event) and records[1].kind == "diode.record_too_large"
    assert records[1].source == "p/x" and records[1].data["limit"] == 1000


@given(st.binary(max_size=300))
def test_garbage_is_a_block_error(data: bytes) -> None:
    for payload in (data, b"\x01" + data):
        with contextlib.suppress(blocks.BlockError):  # any other exception fails the test
            blocks.decode(payload)


@pytest.mark.parametrize(
    "body",
    [
        b'{"s":"x","o":[1],"r":[[0,"p",1,99,0,0]]}',  # unknown quality
        b'{"s":"x","o":[1],"r":[[0,"p",[1],0,0,0]]}',  # a list as a value
        b'{"s":"x","o":[-1],"r":[[0,"p",1,0,0,0]]}',  # a negative offset
        b'{"s":"x","o":[1,2],"r":[[0,"p",1,0,0,0]]}',  # counts differ
        b'{"s":"x","o":[1],"r":[[1,0,"k","s",9,"m",{}]]}',  # unknown severity
        b'{"s":1,"o":[],"r":[]}',  # a number as source
    ],
)
def test_inconsistent_blocks_are_refused(body: bytes) -> None:
    with pytest.raises(blocks.BlockError):
        blocks.decode(b"\x01" + body)


def test_sample_runs_use_the_columnar_format_and_flag_consecutive_offsets() -> None:
    records: list[Record] = [Sample(f"plc/p{i}", float(i), Quality.GOOD, 1.0, 2.0) for i in range(100)]
    payload = blocks.encode("ot", list(range(10, 110)), records)
    assert payload[0] == blocks.FORMAT_SAMPLES
    decoded = blocks.decode(payload)
    assert decoded.consecutive and decoded.records == records
    gappy = blocks.decode(blocks.encode("ot", [*range(10, 60), *range(70, 120)], records))
    assert not gappy.consecutive and gappy.records == records
    for cut in (1, 5, 9, 50, len(payload) - 1):
        with pytest.raises(blocks.BlockError):
            blocks.decode(payload[:cut])


def test_text_that_was_never_valid_unicode_crosses_instead_of_failing_the_batch() -> None:
    """A lone surrogate has no UTF-8 form; the batch must not fail for ever (the sink would retry it
    without end): the block is written with JSON escapes and decodes to the very same strings."""
    odd = "bad \udc80 byte"
    samples: list[Record] = [
        Sample("plc/p0", odd, Quality.GOOD, 1.0, 2.0),
        Sample("plc/p1", "ok", Quality.GOOD, 1.0, 2.0),
    ]
    decoded = blocks.decode(blocks.encode("ot", [1, 2], samples))
    assert decoded.records == samples
    event = Event(3.0, "modbus.string", "plc/p0", Severity.LOW, odd, {"raw": odd})
    assert blocks.decode(blocks.encode("ot", [3, 4], [samples[0], event])).records == [samples[0], event]
