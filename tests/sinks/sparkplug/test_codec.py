"""The hand-written encoder against the generated protobuf module, and the decoder against garbage."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otseam.core.records import Quality
from otseam.protocols.sparkplug import codec


def roundtrip(
    datatype: int, value: object, quality: Quality = Quality.GOOD, quality_codes: str = "sparkplug"
) -> tuple[object, int | None, object]:
    metric = codec.MetricCodec.build("m", datatype, 7, quality_codes=quality_codes)
    data = codec.encode_payload(1000, [metric.encode(metric.birth_head, value, quality, 1234)], 5)  # type: ignore[arg-type]
    payload = codec.decode_payload(data)
    assert payload.seq == 5 and payload.timestamp == 1000
    (decoded,) = payload.metrics
    assert decoded.name == "m" and decoded.alias == 7 and decoded.timestamp == 1234 and decoded.datatype == datatype
    return codec.metric_value(decoded), codec.metric_quality(decoded), decoded


@pytest.mark.parametrize(
    ("datatype", "value"),
    [
        (codec.INT8, -128),
        (codec.INT16, -32768),
        (codec.INT16, 32767),
        (codec.INT32, -1),
        (codec.INT64, -(2**63)),
        (codec.INT64, 2**63 - 1),
        (codec.UINT16, 65535),
        (codec.UINT32, 2**32 - 1),
        (codec.UINT64, 2**64 - 1),
        (codec.BOOLEAN, True),
        (codec.BOOLEAN, False),
        (codec.DOUBLE, -1.5e300),
        (codec.STRING, "Füllstand ü 水"),
    ],
)
def test_values_roundtrip_through_the_generated_decoder(datatype: int, value: object) -> None:
    decoded, quality, _ = roundtrip(datatype, value)
    assert decoded == value and type(decoded) is type(value)
    assert quality == 192


def test_float32_keeps_single_precision() -> None:
    decoded, _, _ = roundtrip(codec.FLOAT, 0.1)
    assert decoded == pytest.approx(0.1, rel=1e-7) and decoded != 0.1


@pytest.mark.parametrize(
    ("quality", "code"),
    [
        (Quality.GOOD, 192),
        (Quality.STALE, 500),
        (Quality.UNCERTAIN, 500),
        (Quality.BAD_COMM, 0),
        (Quality.BAD_DEVICE, 0),
    ],
)
def test_quality_becomes_the_sparkplug_code(quality: Quality, code: int) -> None:
    _, decoded_quality, _ = roundtrip(codec.DOUBLE, 1.0, quality)
    assert decoded_quality == code


@pytest.mark.parametrize(("quality", "code"), [(Quality.GOOD, 192), (Quality.STALE, 64), (Quality.BAD_COMM, 0)])
def test_the_opc_deviation_sends_64_for_stale(quality: Quality, code: int) -> None:
    _, decoded_quality, _ = roundtrip(codec.DOUBLE, 1.0, quality, "opc")
    assert decoded_quality == code


def test_none_is_sent_as_null() -> None:
    value, quality, metric = roundtrip(codec.DOUBLE, None, Quality.BAD_COMM)
    assert value is None and metric.is_null and quality == 0 and metric.WhichOneof("value") is None


@pytest.mark.parametrize(
    ("datatype", "value"), [(codec.INT16, 40000), (codec.UINT16, -1), (codec.BOOLEAN, "yes"), (codec.INT32, 1.5)]
)
def test_values_that_do_not_fit_are_refused(datatype: int, value: object) -> None:
    metric = codec.MetricCodec.build("m", datatype, None)
    with pytest.raises(codec.ValueMismatch):
        metric.encode(metric.birth_head, value, Quality.GOOD, 0)  # type: ignore[arg-type]


def test_data_head_uses_the_alias_only_without_the_datatype() -> None:
    metric = codec.MetricCodec.build("long metric name", codec.DOUBLE, 42)
    payload = codec.decode_payload(codec.encode_payload(1, [metric.encode(metric.data_head, 2.0, Quality.GOOD, 3)], 1))
    assert payload.metrics[0].name == "" and payload.metrics[0].alias == 42
    assert not payload.metrics[0].HasField("datatype")


def test_the_datatype_in_data_deviation_repeats_it() -> None:
    metric = codec.MetricCodec.build("m", codec.DOUBLE, 42, datatype_in_data=True)
    payload = codec.decode_payload(codec.encode_payload(1, [metric.encode(metric.data_head, 2.0, Quality.GOOD, 3)], 1))
    assert payload.metrics[0].datatype == codec.DOUBLE


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_never_crash_the_decoder(data: bytes) -> None:
    try:
        payload = codec.decode_payload(data)
    except codec.PayloadError:
        return
    for metric in payload.metrics:
        codec.metric_value(metric)
        codec.metric_quality(metric)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.tuples(st.just(codec.INT32), st.integers(-(2**31), 2**31 - 1)),
        st.tuples(st.just(codec.INT64), st.integers(-(2**63), 2**63 - 1)),
        st.tuples(st.just(codec.UINT64), st.integers(0, 2**64 - 1)),
        st.tuples(st.just(codec.DOUBLE), st.floats(allow_nan=False)),
        st.tuples(st.just(codec.STRING), st.text()),
    ),
    st.integers(0, 2**63),
)
def test_any_value_roundtrips(pair: tuple[int, object], ts: int) -> None:
    datatype, value = pair
    metric = codec.MetricCodec.build("x", datatype, None)
    payload = codec.decode_payload(
        codec.encode_payload(ts, [metric.encode(metric.birth_head, value, Quality.GOOD, ts)], 255)
    )  # type: ignore[arg-type]
    decoded = codec.metric_value(payload.metrics[0])
    if isinstance(value, float) and math.isinf(value):
        assert decoded == value
    else:
        assert decoded == value
    assert payload.metrics[0].timestamp == ts


def test_encoder_matches_the_generated_encoder_byte_for_byte() -> None:
    pb = codec.pb
    expected = pb.Payload(timestamp=99, seq=4)
    m = expected.metrics.add(name="level", alias=3, timestamp=98, datatype=codec.DOUBLE, double_value=2.5)
    m.properties.keys.append("Quality")
    m.properties.values.add(type=codec.INT32, int_value=192)
    metric = codec.MetricCodec.build("level", codec.DOUBLE, 3)
    ours = codec.encode_payload(99, [metric.encode(metric.birth_head, 2.5, Quality.GOOD, 98)], 4)
    assert codec.decode_payload(ours) == expected
