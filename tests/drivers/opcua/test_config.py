"""Contract checks of the OPC UA driver (clear errors, no traceback) and value conversion, fuzzed."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asyncua import ua
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from otseam.contract import ContractError, parse_text
from otseam.contract.models import Device
from otseam.core.records import Quality
from otseam.drivers.opcua import OpcUaConfigError, create, parse_address, requests_per_second
from otseam.drivers.opcua.convert import converter, decode, status_quality
from tests.drivers.opcua.helpers import HEAD, device

POINTS = """\
      - {id: a, address: "ns=2;s=A", type: float64}
      - {id: b, address: "ns=2;i=7", type: int32, poll: 2s}
      - {id: c, address: "i=2258", type: string, poll: 2s}
"""


def make(options: str = "{}", endpoint: str = "opc.tcp://127.0.0.1:4840/x", points: str = POINTS) -> Device:
    return device(endpoint, points=points, poll="1s", options=options)


def contract_text(options: str, endpoint: str) -> str:
    return (
        HEAD
        + f"""\
  - id: ua
    driver: opcua
    endpoint: {endpoint}
    zone: cell
    owner: olga
    poll: 1s
    options: {options}
    points:
{POINTS}"""
    )


def unchecked(options: str, endpoint: str) -> Device:
    """The device as the models read it, before any plugin check: what the driver itself is given."""
    return Device.model_validate(YAML(typ="safe").load(contract_text(options, endpoint))["devices"][0])


@pytest.mark.parametrize(
    ("options", "endpoint", "message"),
    [
        ("{mode: stream}", "opc.tcp://h:4840", "option mode: Input should be 'subscribe' or 'poll'"),
        ("{max_items_per_call: 0}", "opc.tcp://h:4840", "option max_items_per_call: Input should be greater"),
        ("{max_nodes_per_read: true}", "opc.tcp://h:4840", "option max_nodes_per_read"),
        ("{bogus: 1}", "opc.tcp://h:4840", "unknown option 'bogus'"),
        ("{session_timeout: 500ms}", "opc.tcp://h:4840", "option session_timeout: Input should be greater"),
        ("{max_backoff: soon}", "opc.tcp://h:4840", "option max_backoff: 'soon' is not a duration"),
        ("{security_policy: Basic128}", "opc.tcp://h:4840", "option security_policy: Input should be 'None'"),
        ("{security_policy: Basic256Sha256}", "opc.tcp://h:4840", "needs certificate and private_key"),
        ("{security_policy: None, security_mode: Sign}", "opc.tcp://h:4840", "do not go together"),
        ("{password_env: PW}", "opc.tcp://h:4840", "a password needs username"),
        ("{username: op, password_file: /nonexistent/pw}", "opc.tcp://h:4840", "no file at"),
        ("{}", "tcp://h:502", "is not an OPC UA endpoint"),
        ("{}", "opc.tcp://op:secret@h:4840", "carries credentials"),
        ("{}", "opc.tcp://h:99999", "invalid port"),
    ],
)
def test_bad_settings_get_a_clear_message_from_check_and_from_the_driver(
    options: str, endpoint: str, message: str
) -> None:
    with pytest.raises(ContractError) as checked:
        parse_text(contract_text(options, endpoint), environment=True)  # as `seam check` reads a file
    with pytest.raises(OpcUaConfigError) as caught:
        create(unchecked(options, endpoint), None)  # type: ignore[arg-type]
    for text in (str(checked.value), str(caught.value)):
        assert message in text
        assert "device ua" in text
        assert "secret" not in text  # a password in a URL is never repeated
    # check names the line and column; the driver's words are the same.
    assert re.match(r"seam\.yaml:\d+:\d+: ", str(checked.value))


def test_requests_per_second_and_addresses() -> None:
    # Subscribe: one Publish per publishing interval, however many points.
    assert requests_per_second(make()) == 1.0
    # Poll: one Read per interval group and chunk (1 at 1s, 2 at 2s -> one read each).
    assert requests_per_second(make("{mode: poll}")) == pytest.approx(1.5)
    assert requests_per_second(make("{mode: poll, max_nodes_per_read: 1}")) == pytest.approx(2.0)
    assert str(parse_address("ns=2;s=Tank1.Level")) == "ns=2;s=Tank1.Level"
    with pytest.raises(ValueError, match="not an OPC UA node id"):
        parse_address("hr:100")


def test_statuses_map_to_qualities() -> None:
    assert status_quality(0) is Quality.GOOD
    assert status_quality(ua.StatusCodes.UncertainLastUsableValue) is Quality.UNCERTAIN
    assert status_quality(ua.StatusCodes.BadNodeIdUnknown) is Quality.BAD_CONFIG
    assert status_quality(ua.StatusCodes.BadNoCommunication) is Quality.BAD_COMM
    assert status_quality(ua.StatusCodes.BadSensorFailure) is Quality.BAD_DEVICE
    # Info bits in the low word do not change the meaning.
    assert status_quality(ua.StatusCodes.BadNodeIdUnknown | 0x0400) is Quality.BAD_CONFIG


def test_timestamps_source_then_server_then_receipt() -> None:
    source = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    server = datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC)
    convert = converter("float64")
    both = ua.DataValue(ua.Variant(1.5), SourceTimestamp=source, ServerTimestamp=server)
    assert decode(both, convert, 99.0) == (1.5, Quality.GOOD, source.timestamp())
    only_server = ua.DataValue(ua.Variant(1.5), ServerTimestamp=server)
    assert decode(only_server, convert, 99.0)[2] == server.timestamp()
    unset = ua.DataValue(ua.Variant(1.5), SourceTimestamp=datetime(1601, 1, 1, tzinfo=UTC))
    assert decode(unset, convert, 99.0)[2] == 99.0


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        ("bool", True, True),
        ("bool", 0, False),
        ("bool", 1.0, None),
        ("int16", 32767, 32767),
        ("int16", 32768, None),
        ("uint16", -1, None),
        ("uint32", 7.0, 7),
        ("int32", 7.5, None),
        ("int64", True, None),
        ("float32", 3, 3.0),
        ("float64", "3.0", None),
        ("float64", [1.0, 2.0], None),
        ("string", "abc", "abc"),
        ("string", 12, None),
    ],
)
def test_conversion_to_the_contract_type(kind: str, raw: object, expected: object) -> None:
    value, quality, _ = decode(ua.DataValue(ua.Variant(raw)), converter(kind), 1.0)
    assert value == expected and type(value) is type(expected)
    assert quality is (Quality.GOOD if expected is not None else Quality.BAD_CONFIG)


_ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(),
    st.binary(),
    st.lists(st.integers(), min_size=1, max_size=3),
    st.datetimes(),
)


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(
        ["bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"]
    ),
    raw=_ANY,
    status=st.integers(min_value=0, max_value=2**32 - 1),
    ts=st.one_of(st.none(), st.datetimes(timezones=st.just(UTC))),
)
def test_any_value_and_status_becomes_a_quality_never_an_exception(
    kind: str, raw: object, status: int, ts: datetime | None
) -> None:
    data = ua.DataValue(
        ua.Variant(raw) if raw is not None else None, StatusCode=ua.StatusCode(status), SourceTimestamp=ts
    )
    value, quality, source_ts = decode(data, converter(kind, 4), 5.0)
    assert isinstance(quality, Quality)
    assert isinstance(source_ts, float)
    if quality > Quality.UNCERTAIN:
        assert value is None
    elif kind == "string":
        assert isinstance(value, str) and len(value) <= 4
    elif kind == "bool":
        assert isinstance(value, bool)
    elif kind.startswith(("int", "uint")):
        assert type(value) is int
    else:
        assert type(value) is float


def test_the_sample_configuration_is_understood() -> None:
    """Every key of sample.yaml is known: the only complaint is that its certificate files are not here."""
    sample = Path(__file__).resolve().parents[3] / "src" / "otseam" / "drivers" / "opcua" / "sample.yaml"
    text = sample.read_text().replace("devices:\n", "", 1)
    contract = parse_text(HEAD.replace("devices:\n", "devices:\n" + text)).contract
    with pytest.raises(
        OpcUaConfigError, match=re.escape("option certificate: no file at '/etc/seam/pki/seam-client.der'")
    ):
        create(contract.devices[0], None)  # type: ignore[arg-type]
    contract.devices[0].options = {
        k: v
        for k, v in contract.devices[0].options.items()
        if k not in ("security_policy", "security_mode", "certificate", "private_key", "server_certificate")
    }
    driver = create(contract.devices[0], None)  # type: ignore[arg-type]
    assert [spec.interval for spec in driver.specs] == [1.0, 1.0, 10.0, 1.0, 0.25]  # type: ignore[attr-defined]
    assert driver.specs[0].deadband == ("absolute", 0.01)  # type: ignore[attr-defined]
