"""The small value languages of the contract parse strictly: no guessing on a plant floor."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otseam.contract.addresses import check_address, parser_for
from otseam.contract.units import (
    ModbusAddress,
    NodeId,
    format_duration,
    parse_duration,
    parse_modbus_address,
    parse_node_id,
    parse_rate,
    parse_size,
    parse_window,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("2s", 2.0), ("5min", 300.0), ("1h", 3600.0), ("7d", 604800.0), (" 1.5 s ", 1.5), (0, 0.0)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["500", 500, "1 sec", "-1s", "1e3ms", "", True, None, "s", "2 hours"])
def test_durations_refused(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@given(st.integers(min_value=1, max_value=10**7))
def test_durations_round_trip(milliseconds: int) -> None:
    seconds = milliseconds / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, rel=1e-5)


@pytest.mark.parametrize(("text", "per_second"), [("20/s", 20.0), ("6/min", 0.1), ("36/h", 0.01), ("1 / d", 1 / 86400)])
def test_rates(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["20", 20, "20/sec", "20 per second", "/s", "-1/s", "1/ms"])
def test_rates_refused(text: object) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


@pytest.mark.parametrize(
    ("text", "size"), [("2GiB", 2 * 1024**3), ("500MB", 500 * 10**6), ("64KiB", 65536), ("10B", 10)]
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["2G", "2gib", "2", 2048, "GiB", "1.5.2MB"])
def test_sizes_refused(text: object) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hr:100", ModbusAddress("hr", 100)),
        ("co:5", ModbusAddress("co", 5)),
        ("ir:0", ModbusAddress("ir", 0)),
        ("di:65535", ModbusAddress("di", 65535)),
        ("hr:7.3", ModbusAddress("hr", 7, 3)),
    ],
)
def test_modbus_addresses(text: str, expected: ModbusAddress) -> None:
    assert parse_modbus_address(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize("text", ["40001", "hr100", "hr:-1", "hr:65536", "co:1.1", "hr:1.16", "xx:1", "HR:1", 100])
def test_modbus_addresses_refused(text: object) -> None:
    with pytest.raises(ValueError):
        parse_modbus_address(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ns=2;s=Tank.Level", NodeId(2, "s", "Tank.Level")),
        ("ns=3;i=1001", NodeId(3, "i", "1001")),
        ("i=2258", NodeId(0, "i", "2258")),
        ("ns=1;g=09087e75-8e5e-499b-954f-f2a9603db28a", NodeId(1, "g", "09087e75-8e5e-499b-954f-f2a9603db28a")),
    ],
)
def test_node_ids(text: str, expected: NodeId) -> None:
    assert parse_node_id(text) == expected


@pytest.mark.parametrize(
    "text", ["Tank.Level", "ns=2;x=1", "ns=70000;i=1", "ns=2;i=abc", "ns=2;g=not-a-guid", "ns=2;s="]
)
def test_node_ids_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_node_id(text)


def test_address_checks_by_driver() -> None:
    assert parser_for("modbus") is parse_modbus_address
    assert check_address("modbus", "hr:1") is None
    assert check_address("opcua", "hr:1") is not None
    # Names that cannot be driver packages are never imported.
    for name in ("os.path", "../modbus", "Modbus", "no_such_driver"):
        assert parser_for(name) is None
        assert check_address(name, "anything") is None


MONDAY, TUESDAY, WEDNESDAY, FRIDAY, SATURDAY = 0, 1, 2, 4, 5


def _at(hours: int, minutes: int = 0) -> int:
    return hours * 60 + minutes


def test_command_windows() -> None:
    office = parse_window("Mon-Fri 06:00-18:00")
    assert office.allows(MONDAY, _at(6)) and office.allows(FRIDAY, _at(17, 59))
    assert not office.allows(MONDAY, _at(18)) and not office.allows(SATURDAY, _at(10))
    nights = parse_window("Fri-Mon 22:00-06:00")  # wraps over the week end and past midnight
    assert nights.allows(FRIDAY, _at(23)) and nights.allows(SATURDAY, _at(3)) and nights.allows(TUESDAY, _at(5))
    assert not nights.allows(WEDNESDAY, _at(3)) and not nights.allows(TUESDAY, _at(23))
    split = parse_window("Sat,Sun; Mon 08:00-09:00")
    assert split.allows(SATURDAY, _at(0)) and split.allows(MONDAY, _at(8, 30)) and not split.allows(MONDAY, _at(9))
    anytime = parse_window("")
    assert all(anytime.allows(day, minute) for day in range(7) for minute in (0, 719, 1439))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Mon-Fri 6-18", "HH:MM-HH:MM"),
        ("Moon 06:00-07:00", "not a list of days"),
        ("Mon 24:30-25:00", "not a time of day"),
        ("Mon 06:00-06:00", "is empty"),
        ("Mon;;Tue", "empty part"),
        ("Mon-Fry", "not a day"),
        (5, "expected a window"),
    ],
)
def test_command_windows_refused(text: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_window(text)


@given(st.text(max_size=40))
def test_command_window_parser_only_raises_value_error(text: str) -> None:
    try:
        window = parse_window(text)
    except ValueError:
        return
    window.allows(0, 0)
