"""The precompiled DataValue encoder writes exactly the bytes asyncua's own encoder writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asyncua import ua
from asyncua.ua.ua_binary import create_type_serializer

from otseam.sinks.opcua_server.encoding import encode_datavalue

asyncua_encode = create_type_serializer(ua.DataValue)
SOURCE = datetime(2026, 12, 7, 5, 0, 1, 123456, tzinfo=UTC)
SERVER = SOURCE + timedelta(milliseconds=3)
GOOD = ua.StatusCode(ua.StatusCodes.Good)


@pytest.mark.parametrize(
    ("value", "vtype"),
    [
        (True, ua.VariantType.Boolean),
        (False, ua.VariantType.Boolean),
        (-5, ua.VariantType.SByte),
        (250, ua.VariantType.Byte),
        (-32768, ua.VariantType.Int16),
        (65535, ua.VariantType.UInt16),
        (-(2**31), ua.VariantType.Int32),
        (2**32 - 1, ua.VariantType.UInt32),
        (-(2**63), ua.VariantType.Int64),
        (2**64 - 1, ua.VariantType.UInt64),
        (3.25, ua.VariantType.Float),
        (-1e300, ua.VariantType.Double),
        ("AUTO", ua.VariantType.String),
        ("Füllstand °C", ua.VariantType.String),
        ("", ua.VariantType.String),
    ],
)
def test_every_point_type_is_encoded_as_asyncua_does(value: Any, vtype: ua.VariantType) -> None:
    for status in (GOOD, ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)):
        dv = ua.DataValue(ua.Variant(value, vtype), StatusCode=status, SourceTimestamp=SOURCE, ServerTimestamp=SERVER)
        assert encode_datavalue(dv) == asyncua_encode(dv)


def test_a_bad_quality_without_a_value_is_encoded_as_asyncua_does() -> None:
    dv = ua.DataValue(
        ua.Variant(None, ua.VariantType.Null),
        StatusCode=ua.StatusCode(ua.StatusCodes.BadCommunicationError),
        SourceTimestamp=SOURCE,
        ServerTimestamp=SERVER,
    )
    assert encode_datavalue(dv) == asyncua_encode(dv)


@pytest.mark.parametrize(
    "dv",
    [
        ua.DataValue(ua.Variant([1.0, 2.0], ua.VariantType.Double), SourceTimestamp=SOURCE, ServerTimestamp=SERVER),
        ua.DataValue(ua.Variant(1.0, ua.VariantType.Double), SourceTimestamp=SOURCE, SourcePicoseconds=7),
        ua.DataValue(ua.Variant(1.0, ua.VariantType.Double)),
        ua.DataValue(ua.Variant(1.0, ua.VariantType.Double), StatusCode=None, ServerTimestamp=SERVER),
        ua.DataValue(
            ua.Variant(ua.Range(Low=0, High=5), ua.VariantType.ExtensionObject),
            StatusCode=GOOD,
            SourceTimestamp=SOURCE,
            ServerTimestamp=SERVER,
        ),
    ],
)
def test_other_shapes_go_through_asyncua_s_encoder(dv: Any) -> None:
    assert encode_datavalue(dv) == asyncua_encode(dv)


def test_one_server_timestamp_shared_by_a_batch_and_then_another() -> None:
    later = SERVER + timedelta(seconds=1)
    for server in (SERVER, SERVER, later, SERVER):
        dv = ua.DataValue(
            ua.Variant(1.5, ua.VariantType.Double), StatusCode=GOOD, SourceTimestamp=SOURCE, ServerTimestamp=server
        )
        assert encode_datavalue(dv) == asyncua_encode(dv)
