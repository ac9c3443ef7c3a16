"""The request planner, contract validation of Modbus entries, and the sample configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ruamel.yaml import YAML

from otseam.contract.models import Device
from otseam.drivers.modbus import ModbusConfigError, create, requests_per_second
from otseam.drivers.modbus.config import parse_endpoint
from otseam.drivers.modbus.planner import plan
from tests.drivers.modbus.helpers import device

SAMPLE = Path(__file__).resolve().parents[3] / "src/otseam/drivers/modbus/sample.yaml"


def blocks_of(dev: Device) -> list[tuple[str, int, int, float]]:
    return [(b.table, b.start, b.count, b.interval) for b in plan(dev)]


def test_neighbours_merge_gaps_fill_up_to_max_gap() -> None:
    dev = device(
        "tcp://h:502",
        [
            {"id": "a", "address": "hr:0", "type": "uint16"},
            {"id": "b", "address": "hr:1", "type": "float32"},
            {"id": "c", "address": "hr:19", "type": "uint16"},  # gap of 16 after b: merged
            {"id": "d", "address": "hr:37", "type": "uint16"},  # gap of 17: a new read
            {"id": "e", "address": "ir:0", "type": "uint16"},
            {"id": "f", "address": "co:3", "type": "bool"},
            {"id": "g", "address": "co:1999", "type": "bool"},
            {"id": "h", "address": "hr:37.2", "type": "bool"},
        ],
    )
    assert blocks_of(dev) == [
        ("co", 3, 1, 1.0),
        ("co", 1999, 1, 1.0),
        ("hr", 0, 20, 1.0),
        ("hr", 37, 1, 1.0),
        ("ir", 0, 1, 1.0),
    ]
    wide = device(
        "tcp://h:502",
        [{"id": "f", "address": "co:3", "type": "bool"}, {"id": "g", "address": "co:1999", "type": "bool"}],
        options={"max_gap": 2000},
    )
    assert blocks_of(wide) == [("co", 3, 1997, 1.0)]


def test_reads_never_exceed_the_protocol_or_the_device_limit() -> None:
    points = [{"id": f"p{i}", "address": f"hr:{2 * i}"} for i in range(2000)]
    blocks = plan(device("tcp://h:502", points))
    assert len(blocks) == 33 and all(b.count <= 125 for b in blocks)
    # No value is cut in two between reads.
    assert all(b.count % 2 == 0 for b in blocks)
    small = plan(device("tcp://h:502", points[:100], options={"max_registers_per_read": 20}))
    assert len(small) == 10 and {b.count for b in small} == {20}
    bits = plan(device("tcp://h:502", [{"id": f"c{i}", "address": f"di:{i}", "type": "bool"} for i in range(4500)]))
    assert [b.count for b in bits] == [2000, 2000, 500]


def test_per_point_poll_and_requests_per_second() -> None:
    dev = device(
        "tcp://h:502",
        [
            {"id": "fast", "address": "hr:0", "type": "uint16", "poll": "100ms"},
            {"id": "a", "address": "hr:1", "type": "uint16"},
            {"id": "b", "address": "ir:1", "type": "uint16"},
            {"id": "slow", "address": "hr:2", "type": "uint16", "poll": "10s"},
        ],
        poll="2s",
    )
    assert sorted((b.table, b.start, b.interval) for b in plan(dev)) == [
        ("hr", 0, 0.1),
        ("hr", 1, 2.0),
        ("hr", 2, 10.0),
        ("ir", 1, 2.0),
    ]
    assert requests_per_second(dev) == pytest.approx(10 + 0.5 + 0.1 + 0.5)


def test_split_separates_filled_gaps_then_halves() -> None:
    dev = device(
        "tcp://h:502",
        [
            {"id": "a", "address": "hr:0", "type": "float32"},
            {"id": "b", "address": "hr:10", "type": "uint16"},
            {"id": "c", "address": "hr:11", "type": "uint16"},
        ],
    )
    (block,) = plan(dev)
    parts = block.split()
    assert [(p.start, p.count, p.decoder.keys) for p in parts] == [(0, 2, ["plc1/a"]), (10, 2, ["plc1/b", "plc1/c"])]
    halves = parts[1].split()
    assert [(p.start, p.count) for p in halves] == [(10, 1), (11, 1)]
    assert halves[0].split() == [halves[0]]


@pytest.mark.parametrize(
    ("point", "message"),
    [
        ({"address": "co:1", "type": "uint16"}, "must be bool"),
        ({"address": "hr:1.3", "type": "float32"}, "names one bit"),
        ({"address": "hr:1", "type": "string"}, "needs 'length'"),
        ({"address": "hr:65535", "type": "float32"}, "runs past address 65535"),
        ({"address": "x:1", "type": "uint16"}, "is not a Modbus address"),
    ],
)
def test_contract_mistakes_are_named(point: dict[str, str], message: str) -> None:
    with pytest.raises(ModbusConfigError, match=message) as caught:
        plan(device("tcp://h:502", [{"id": "p", **point}]))
    assert "plc1" in str(caught.value)


@pytest.mark.parametrize(
    ("endpoint", "options", "message"),
    [
        ("udp://h:502", {}, "not a Modbus endpoint"),
        ("tcp://:502", {}, "no host"),
        ("tcp://h:99999", {}, "invalid port"),
        ("rtu:///dev/ttyS0?baud=9600", {}, "unknown setting"),
        ("rtu:///dev/ttyS0?parity=X", {}, "parity is N, E or O"),
        ("tcp://h:502", {"max_gap": -1}, "max_gap"),
        ("tcp://h:502", {"max_registers_per_read": 126}, "max_registers_per_read"),
        ("tcp://h:502", {"maxgap": 3}, "unknown option 'maxgap'.*did you mean 'max_gap'"),
        ("tcp://h:502", {"byte_order": "ABDC"}, "byte_order"),
    ],
)
def test_bad_endpoints_and_options_get_clear_errors(endpoint: str, options: dict[str, object], message: str) -> None:
    from otseam.core.plugins import PluginContext

    with pytest.raises(ModbusConfigError, match=message):
        create(device(endpoint, [], unit=1, options=options), PluginContext(contract=None, data_dir="."))  # type: ignore[arg-type]


def test_rtu_needs_a_unit_and_endpoints_parse() -> None:
    from otseam.core.plugins import PluginContext

    with pytest.raises(ModbusConfigError, match="need a unit id"):
        create(device("rtu:///dev/ttyS0", []), PluginContext(contract=None, data_dir="."))  # type: ignore[arg-type]
    serial = parse_endpoint("rtu:///dev/ttyUSB0?baudrate=9600&parity=e&stopbits=2")
    assert (serial.serial_port, serial.baudrate, serial.parity, serial.stopbits) == ("/dev/ttyUSB0", 9600, "E", 2)
    assert parse_endpoint("tcp://10.0.0.5").port == 502
    assert parse_endpoint("rtu+tcp://gw:4001").key == "rtu+tcp://gw:4001"


def test_device_byte_order_default_applies_unless_the_point_says_otherwise() -> None:
    dev = device(
        "tcp://h:502",
        [{"id": "a", "address": "hr:0"}, {"id": "b", "address": "hr:2", "byte_order": "ABCD"}],
        options={"byte_order": "CDAB"},
    )
    (block,) = plan(dev)
    assert [s.order for s in block.slots] == ["CDAB", "ABCD"]


def test_the_sample_configuration_is_valid() -> None:
    from otseam.core.plugins import PluginContext

    devices = [Device.model_validate(d) for d in YAML(typ="safe").load(SAMPLE.read_text())["devices"]]
    assert len(devices) == 3
    for dev in devices:
        create(dev, PluginContext(contract=None, data_dir="."))  # type: ignore[arg-type]
        assert requests_per_second(dev) > 0


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["hr", "ir"]), st.integers(0, 3000), st.sampled_from(["uint16", "float32", "float64"])
        ),
        min_size=1,
        max_size=60,
    ),
    st.integers(0, 40),
)
def test_every_point_is_in_exactly_one_block_that_covers_it(specs: list[tuple[str, int, str]], gap: int) -> None:
    points = [{"id": f"p{i}", "address": f"{t}:{a}", "type": ty} for i, (t, a, ty) in enumerate(specs)]
    blocks = plan(device("tcp://h:502", points, options={"max_gap": gap}))
    width = {"uint16": 1, "float32": 2, "float64": 4}
    seen: list[str] = []
    for block in blocks:
        assert 1 <= block.count <= 125
        for slot in block.slots:
            assert slot.offset >= 0 and slot.offset + slot.length <= block.count
            index = int(slot.key.split("/p")[1])
            table, address, type_ = specs[index]
            assert (block.table, block.start + slot.offset, slot.length) == (table, address, width[type_])
            seen.append(slot.key)
    assert sorted(seen) == sorted(f"plc1/p{i}" for i in range(len(specs)))
