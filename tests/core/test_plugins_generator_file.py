"""The generator driver and the file sink, the two plugins that ship with the core."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otseam.contract.models import Device
from otseam.core.records import Event, Quality, Record, Sample, Severity
from otseam.drivers.generator import GeneratorConfigError, GeneratorDriver
from otseam.drivers.generator.signals import parse_signal
from otseam.sinks.file.sink import LineEncoder, record_to_json


def device(points: list[dict[str, Any]], **extra: Any) -> Device:
    return Device.model_validate(
        {"id": "gen", "driver": "generator", "endpoint": "generator://gen", "zone": "cell", "points": points, **extra}
    )


# --- generator -------------------------------------------------------------------------------------


def test_periodic_shapes_are_functions_of_time() -> None:
    sine = parse_signal("sine:period=4s,amplitude=10,offset=5", "s")
    assert sine.value(0.0) == pytest.approx(5.0) and sine.value(1.0) == pytest.approx(15.0)
    assert sine.value(3.0) == pytest.approx(-5.0)
    ramp = parse_signal("ramp:period=10s,low=0,high=100", "s")
    assert [ramp.value(t) for t in (0.0, 2.5, 9.0, 10.0)] == pytest.approx([0.0, 25.0, 90.0, 0.0])
    square = parse_signal("square:period=2s,low=3,high=7", "s")
    assert [square.value(t) for t in (0.1, 0.9, 1.1, 1.9)] == [3, 3, 7, 7]
    assert parse_signal("constant:value=42", "s").value(123.0) == 42


def test_walk_is_reproducible_from_its_seed_and_stays_in_range() -> None:
    a = parse_signal("walk:low=0,high=10,step=3,start=5", "seed-1/gen/p")
    b = parse_signal("walk:low=0,high=10,step=3,start=5", "seed-1/gen/p")
    c = parse_signal("walk:low=0,high=10,step=3,start=5", "seed-2/gen/p")
    first = [a.value(0) for _ in range(500)]
    assert first == [b.value(0) for _ in range(500)]
    assert first != [c.value(0) for _ in range(500)]
    assert all(0 <= v <= 10 for v in first)


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("triangle", "unknown generator shape 'triangle'"),
        ("sine:period", "'period' is not a parameter of sine"),
        ("sine:freq=2", "'freq=2' is not a parameter of sine"),
        ("sine:period=2", "is not a duration"),
        ("ramp:low=5,high=1", "low (5) is above high (1)"),
        ("walk:step=-1", "walk step cannot be negative"),
        ("sine:amplitude=nan", "must be a finite number"),
    ],
)
def test_bad_addresses_say_what_is_wrong(address: str, message: str) -> None:
    with pytest.raises(GeneratorConfigError) as error:
        GeneratorDriver(device([{"id": "p", "address": address}]))
    assert "point gen/p" in str(error.value) and message in str(error.value)


def test_unknown_options_are_refused() -> None:
    with pytest.raises(GeneratorConfigError, match=r"unknown option 'rat'.*did you mean 'rate'"):
        GeneratorDriver(device([{"id": "p", "address": "sine"}], options={"rat": 5}))
    with pytest.raises(GeneratorConfigError, match="option rate: Input should be greater than 0"):
        GeneratorDriver(device([{"id": "p", "address": "sine"}], options={"rate": 0}))


async def test_polled_generator_emits_every_point_with_its_type() -> None:
    driver = GeneratorDriver(
        device(
            [
                {"id": "f", "address": "sine"},
                {"id": "i", "address": "constant:value=7.6", "type": "int16"},
                {"id": "b", "address": "constant:value=1", "type": "bool"},
                {"id": "s", "address": "constant:value=2.5", "type": "string"},
            ],
            poll="50ms",
        )
    )
    got: list[Record] = []
    enough = asyncio.Event()

    async def emit(records: Sequence[Record]) -> None:
        got.extend(records)
        if len(got) >= 12:
            enough.set()

    task = asyncio.create_task(driver.run(emit))
    await asyncio.wait_for(enough.wait(), 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    by_point = {r.point: r for r in got if isinstance(r, Sample)}
    assert by_point["gen/i"].value == 8 and by_point["gen/b"].value is True and by_point["gen/s"].value == "2.5"
    assert isinstance(by_point["gen/f"].value, float)
    assert all(r.quality is Quality.GOOD for r in got if isinstance(r, Sample))


async def test_rate_mode_cycles_through_points_at_the_configured_rate() -> None:
    driver = GeneratorDriver(
        device([{"id": f"p{i}", "address": "walk"} for i in range(7)], options={"rate": 2000, "tick": "10ms"})
    )
    got: list[Record] = []

    async def emit(records: Sequence[Record]) -> None:
        got.extend(records)

    task = asyncio.create_task(driver.run(emit))
    await asyncio.sleep(0.5)  # the behaviour: the window over which the rate is counted, not a synchronisation
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    points = [r.point for r in got if isinstance(r, Sample)]
    assert points[:14] == [f"gen/p{i % 7}" for i in range(14)]
    assert 200 <= len(points) <= 1100  # about 1,000 in half a second; the bound only catches a broken rate


async def test_fail_after_rehearses_a_crash() -> None:
    driver = GeneratorDriver(device([{"id": "p", "address": "sine"}], poll="20ms", options={"fail_after": "100ms"}))

    async def emit(records: Sequence[Record]) -> None:
        return None

    with pytest.raises(RuntimeError, match="rehearsed failure"):
        await asyncio.wait_for(driver.run(emit), 5)


# --- file sink encoding ----------------------------------------------------------------------------

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
# Few distinct times, so consecutive samples often share one, as a driver's poll does.
timestamps = st.one_of(st.sampled_from([0.0, 1.5, 1795680000.25, 4e9]), st.floats(0, 4e9, allow_nan=False))


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,8}/[A-Za-z][A-Za-z0-9_]{0,8}", fullmatch=True),
            values,
            st.sampled_from(list(Quality)),
            timestamps,
            timestamps,
        ),
        max_size=30,
    )
)
def test_fast_line_encoder_matches_the_reference_encoding(rows: list[tuple[str, Any, Quality, float, float]]) -> None:
    records: list[Record] = [Sample(*row) for row in rows]
    records.append(Event(1.0, "alarm", "a/b", Severity.HIGH, 'say "hi"\n', {"x": [1, 2]}))
    offsets = list(range(10, 10 + len(records)))
    lines = LineEncoder().lines("edge-1", offsets, records, done=9)
    assert len(lines) == len(records)
    for line, offset, record in zip(lines, offsets, records, strict=True):
        parsed = json.loads(line)
        expected = json.loads(json.dumps(record_to_json("edge-1", offset, record), default=str))
        if isinstance(record, Sample) and isinstance(record.value, float) and not math.isfinite(record.value):
            assert parsed["value"] is None
        assert parsed == expected


def test_line_encoder_skips_offsets_already_written() -> None:
    records: list[Record] = [Sample("a/b", float(i), Quality.GOOD, 1.0, 1.0) for i in range(5)]
    lines = LineEncoder().lines("edge-1", [1, 2, 3, 4, 5], records, done=3)
    assert [json.loads(line)["offset"] for line in lines] == [4, 5]
