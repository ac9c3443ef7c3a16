"""The driver's own reading of Publish responses gives what asyncua's decoder gives, value for value."""

from __future__ import annotations

import datetime

import pytest
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_to_binary

from otseam.drivers.opcua._ua import ua
from otseam.drivers.opcua.notification import from_result, read_create_results, read_publish

NOW = datetime.datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=datetime.UTC)


def data_value(k: int) -> ua.DataValue:
    """Runs of one layout (read in bulk) broken by every other kind (read one by one)."""
    if k < 50 or 100 <= k < 150:
        return ua.DataValue(ua.Variant(k + 0.5, ua.VariantType.Double), SourceTimestamp=NOW, ServerTimestamp=NOW)
    variants = [
        ua.Variant(k, ua.VariantType.Int32),
        ua.Variant(f"text {k}", ua.VariantType.String),
        ua.Variant(k % 2 == 0, ua.VariantType.Boolean),
        ua.Variant([1, 2, 3], ua.VariantType.Int16),
        ua.Variant(NOW, ua.VariantType.DateTime),
        ua.Variant(None),
        ua.Variant(k * 1.5, ua.VariantType.Float),
        ua.Variant(2**40 + k, ua.VariantType.UInt64),
    ]
    variant = variants[k % len(variants)]
    if k % 5 == 0:
        status = ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)
        return ua.DataValue(variant, StatusCode=status, ServerTimestamp=NOW)  # no source timestamp
    if k % 7 == 0:
        return ua.DataValue(variant, StatusCode=ua.StatusCode(ua.StatusCodes.BadSensorFailure))  # no timestamp
    return ua.DataValue(variant, SourceTimestamp=NOW, ServerTimestamp=NOW)


def response(notifications: list[object]) -> ua.PublishResponse:
    message = ua.NotificationMessage(SequenceNumber=7, PublishTime=NOW, NotificationData=notifications)
    result = ua.PublishResult(
        SubscriptionId=42, AvailableSequenceNumbers=[5, 6, 7], MoreNotifications=True, NotificationMessage=message
    )
    return ua.PublishResponse(Parameters=result)


def test_every_layout_reads_as_asyncua_reads_it() -> None:
    items = [ua.MonitoredItemNotification(ClientHandle=k, Value=data_value(k)) for k in range(200)]
    status = ua.StatusChangeNotification(Status=ua.StatusCode(ua.StatusCodes.BadTimeout))
    sent = response(
        [
            ua.DataChangeNotification(MonitoredItems=items[:120]),
            status,
            ua.DataChangeNotification(MonitoredItems=items[120:]),
        ]
    )
    header, ours = read_publish(Buffer(struct_to_binary(sent)))
    theirs = from_result(sent.Parameters)
    assert header.ServiceResult.value == 0
    assert (ours.subscription_id, ours.sequence_number, ours.has_data) == (42, 7, True)
    assert ours.status_changes == theirs.status_changes == [ua.StatusCodes.BadTimeout]
    assert len(ours.changes) == len(theirs.changes) == 200
    for mine, asyncua_s in zip(ours.changes, theirs.changes, strict=True):
        assert mine[:3] == asyncua_s[:3]
        assert type(mine[1]) is type(asyncua_s[1])
        assert abs(mine[3] - asyncua_s[3]) < 1e-6
    assert ours.changes[0][3] == NOW.timestamp()
    assert ours.changes[55][2] == ua.StatusCodes.UncertainLastUsableValue and ours.changes[55][3] == NOW.timestamp()
    assert ours.changes[63][3] == 0.0  # no timestamp at all: the driver uses the time it received it


def test_a_keep_alive_has_nothing_to_acknowledge() -> None:
    _, publish = read_publish(Buffer(struct_to_binary(response([]))))
    assert not publish.has_data and not publish.changes and not publish.status_changes


def test_create_results_read_with_and_without_a_filter_result() -> None:
    results = [
        ua.MonitoredItemCreateResult(
            StatusCode=ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown if k % 3 == 0 else ua.StatusCodes.Good),
            MonitoredItemId=k,
            RevisedSamplingInterval=500.0,
            RevisedQueueSize=4,
            FilterResult=ua.EventFilterResult() if k % 4 == 0 else None,
        )
        for k in range(50)
    ]
    response = ua.CreateMonitoredItemsResponse(Results=results)
    header, codes = read_create_results(Buffer(struct_to_binary(response)))
    assert header.ServiceResult.value == 0
    assert codes == [result.StatusCode.value for result in results]


def test_a_truncated_response_raises_rather_than_inventing_values() -> None:
    items = [ua.MonitoredItemNotification(ClientHandle=k, Value=data_value(k)) for k in range(60)]
    whole = struct_to_binary(response([ua.DataChangeNotification(MonitoredItems=items)]))
    for cut in (len(whole) // 3, len(whole) // 2, len(whole) - 40):
        with pytest.raises(Exception):  # noqa: B017 - struct.error or asyncua's NotEnoughData, by where it ends
            read_publish(Buffer(whole[:cut]))
