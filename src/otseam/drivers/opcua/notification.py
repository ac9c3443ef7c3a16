"""A Publish response read straight from its bytes: the subscription's data changes as plain tuples.

asyncua decodes every MonitoredItemNotification into a DataValue, a Variant and two datetimes: tens of
microseconds per value, the driver's whole CPU budget at 100,000 monitored items. Here the envelope is
read field by field and the notifications, which a server writes one after another with the same
layout (same encoding mask, same scalar type), are unpacked in bulk with ``struct.iter_unpack``.
Anything else (an array, a string, a structure, a status change, an event) is handed to asyncua's own
decoder, item by item, so the meaning of every value stays asyncua's.

Each data change becomes ``(client handle, value, status code, seconds)``: the value as asyncua would
give it (None when there is none), the status code as an integer (0 when absent: Good), and the source
timestamp in seconds since the epoch, else the server timestamp, else 0.0.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import extensionobject_from_binary, nodeid_from_binary, struct_from_binary

from otseam.drivers.opcua._ua import ua

#: One data change: client handle, value, status code, timestamp in seconds (0.0: none).
Change = tuple[int, Any, int, float]

#: 100 ns ticks between 1601-01-01 (OPC UA's DateTime origin) and 1970-01-01.
_EPOCH_TICKS = 11_644_473_600 * 10_000_000
#: A DateTime before 1970-01-02 counts as "not set" (DateTime 0 is 1601-01-01).
_EARLIEST_TICKS = _EPOCH_TICKS + 86400 * 10_000_000
_DATA_CHANGE_TYPE = b"\x01\x00" + struct.pack("<H", ua.ObjectIds.DataChangeNotification_Encoding_DefaultBinary)
#: Scalar Variant types of fixed size whose Python value is what struct gives (DateTime and StatusCode
#: are fixed-size too, but asyncua makes objects of them: they take the per-item path).
_FIXED = {1: "?", 2: "b", 3: "B", 4: "h", 5: "H", 6: "i", 7: "I", 8: "q", 9: "Q", 10: "f", 11: "d"}
#: DataValue encoding mask bits (OPC 10000-6, 5.2.2.17), in the order the fields follow.
_VALUE, _STATUS, _SOURCE_TS, _SERVER_TS, _SOURCE_PICO, _SERVER_PICO = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_INT32 = struct.Struct("<i")
_UINT32 = struct.Struct("<I")
_HEAD = struct.Struct("<IB")
_AFTER_SEQUENCES = struct.Struct("<?Iqi")  # MoreNotifications, SequenceNumber, PublishTime, NotificationData count
_EXTENSION_BODY = struct.Struct("<Bi")


@dataclass(slots=True)
class Publish:
    """What one Publish response says about its subscription."""

    subscription_id: int
    sequence_number: int
    #: The message carried notifications (a keep-alive carries none): it is to be acknowledged.
    has_data: bool
    changes: list[Change] = field(default_factory=list)
    #: Status codes of StatusChangeNotifications (the subscription itself changed state).
    status_changes: list[int] = field(default_factory=list)


class _Layout:
    """The bulk reader for notifications that share one encoding mask and one fixed-size scalar type."""

    __slots__ = ("mask", "reader", "server", "source", "status", "value", "vtype")

    def __init__(self, mask: int, vtype: int) -> None:
        self.mask, self.vtype = mask, vtype
        fmt, position = "<IBB" + _FIXED[vtype], 4
        self.value = 3
        self.status = self.source = self.server = 0
        for bit, code in (
            (_STATUS, "I"),
            (_SOURCE_TS, "q"),
            (_SOURCE_PICO, "H"),
            (_SERVER_TS, "q"),
            (_SERVER_PICO, "H"),
        ):
            if mask & bit:
                fmt += code
                if bit == _STATUS:
                    self.status = position
                elif bit == _SOURCE_TS:
                    self.source = position
                elif bit == _SERVER_TS:
                    self.server = position
                position += 1
        self.reader = struct.Struct(fmt)


_layouts: dict[tuple[int, int], _Layout] = {}


def _layout(mask: int, vtype: int) -> _Layout | None:
    if not mask & _VALUE or mask & ~0x3F or vtype not in _FIXED:
        return None
    key = (mask, vtype)
    layout = _layouts.get(key)
    if layout is None:
        layout = _layouts[key] = _Layout(mask, vtype)
    return layout


def seconds(ticks: int) -> float:
    """An OPC UA DateTime (100 ns ticks since 1601) in seconds since the epoch; 0.0 when not set."""
    return (ticks - _EPOCH_TICKS) / 10_000_000 if ticks > _EARLIEST_TICKS else 0.0


def _datetime_seconds(value: datetime | None) -> float:
    if value is None:
        return 0.0
    try:
        result = value.timestamp()
    except (OverflowError, OSError, ValueError):
        return 0.0
    return result if result > 86400.0 else 0.0


def change_of(handle: int, data: ua.DataValue | None) -> Change:
    """One data change from a DataValue asyncua decoded."""
    if data is None:
        return (handle, None, 0, 0.0)
    variant = data.Value
    status = data.StatusCode
    when = _datetime_seconds(data.SourceTimestamp) or _datetime_seconds(data.ServerTimestamp)
    return (handle, variant.Value if variant is not None else None, status.value if status is not None else 0, when)


def _bulk(data: bytes, pos: int, end: int, remaining: int, changes: list[Change]) -> tuple[int, int]:
    """Read notifications that share the first one's layout; return (new position, how many)."""
    layout = _layout(data[pos + 4], data[pos + 5]) if pos + 6 <= end else None
    if layout is None:
        return pos, 0
    size = layout.reader.size
    count = min(remaining, (end - pos) // size)
    mask, vtype = layout.mask, layout.vtype
    value, status, source, server = layout.value, layout.status, layout.source, layout.server
    earliest, epoch = _EARLIEST_TICKS, _EPOCH_TICKS
    append = changes.append
    done = 0
    for row in layout.reader.iter_unpack(memoryview(data)[pos : pos + count * size]):
        if row[1] != mask or row[2] != vtype:
            break  # a notification of another layout: the per-item reader goes on from here
        ticks = row[source] if source else 0
        if ticks <= earliest:
            ticks = row[server] if server else 0
        append(
            (
                row[0],
                row[value],
                row[status] if status else 0,
                (ticks - epoch) / 10_000_000 if ticks > earliest else 0.0,
            )
        )
        done += 1
    return pos + done * size, done


def _data_changes(data: bytes, pos: int, end: int, changes: list[Change]) -> None:
    """The MonitoredItems of one DataChangeNotification body (its DiagnosticInfos are not needed)."""
    (count,) = _INT32.unpack_from(data, pos)
    pos += 4
    while count > 0:
        pos, done = _bulk(data, pos, end, count, changes)
        if done:
            count -= done
            continue
        (handle,) = _UINT32.unpack_from(data, pos)
        buffer = Buffer(data, pos + 4, end - pos - 4)
        changes.append(change_of(handle, struct_from_binary(ua.DataValue, buffer)))
        pos = buffer.cur_pos
        count -= 1


def read_publish(body: Buffer) -> tuple[ua.ResponseHeader, Publish]:
    """Decode a PublishResponse (the bytes after the secure channel's headers)."""
    data = bytes(body)
    buffer = Buffer(data)
    nodeid_from_binary(buffer)  # the response's type id, checked by the caller's check_answer
    header = struct_from_binary(ua.ResponseHeader, buffer)
    pos = buffer.cur_pos
    subscription_id, sequences = _HEAD.unpack_from(data, pos)[0], _INT32.unpack_from(data, pos + 4)[0]
    pos += 8 + 4 * max(0, sequences)
    _more, sequence_number, _published, notifications = _AFTER_SEQUENCES.unpack_from(data, pos)
    pos += _AFTER_SEQUENCES.size
    publish = Publish(subscription_id, sequence_number, notifications > 0)
    for _ in range(max(0, notifications)):
        start = pos
        if data[pos : pos + 4] == _DATA_CHANGE_TYPE:
            encoding, length = _EXTENSION_BODY.unpack_from(data, pos + 4)
            pos += 4 + _EXTENSION_BODY.size
            if encoding == 1 and length >= 4 and pos + length <= len(data):
                _data_changes(data, pos, pos + length, publish.changes)
                pos += length
                continue
        buffer = Buffer(data, start)
        _add_decoded(publish, extensionobject_from_binary(buffer))
        pos = buffer.cur_pos
    return header, publish


def _add_decoded(publish: Publish, notification: Any) -> None:
    """A notification asyncua decoded (an event list is not for this driver)."""
    if isinstance(notification, ua.DataChangeNotification):
        for item in notification.MonitoredItems or ():
            publish.changes.append(change_of(item.ClientHandle, item.Value))
    elif isinstance(notification, ua.StatusChangeNotification):
        publish.status_changes.append(notification.Status.value if notification.Status is not None else 0)


def from_result(result: ua.PublishResult) -> Publish:
    """The same view of a PublishResult asyncua decoded (a server-side status, a test's message)."""
    message = result.NotificationMessage
    data = (message.NotificationData if message is not None else None) or []
    publish = Publish(result.SubscriptionId, message.SequenceNumber if message is not None else 0, bool(data))
    for notification in data:
        _add_decoded(publish, notification)
    return publish


_CREATE_RESULT = struct.Struct("<IIdI")  # StatusCode, MonitoredItemId, RevisedSamplingInterval, RevisedQueueSize
_NO_FILTER_RESULT = b"\x00\x00\x00"  # a null ExtensionObject: NodeId i=0 (two-byte form), no body


def read_create_results(body: Buffer) -> tuple[ua.ResponseHeader, list[int]]:
    """The status code of each result of a CreateMonitoredItems response.

    asyncua decodes each result with its FilterResult ExtensionObject (about 7 us an item here, most
    of the driver's CPU in subscribing to 100,000 nodes); the status is all the driver needs. A result
    with a FilterResult goes through asyncua's decoder to be stepped over.
    """
    data = bytes(body)
    buffer = Buffer(data)
    nodeid_from_binary(buffer)
    header = struct_from_binary(ua.ResponseHeader, buffer)
    pos = buffer.cur_pos
    if header.ServiceResult.value & 0x80000000:
        return header, []
    (count,) = _INT32.unpack_from(data, pos)
    pos += 4
    codes: list[int] = []
    append, unpack, size = codes.append, _CREATE_RESULT.unpack_from, _CREATE_RESULT.size
    for _ in range(max(0, count)):
        append(unpack(data, pos)[0])
        pos += size
        if data[pos : pos + 3] == _NO_FILTER_RESULT:
            pos += 3
        else:
            buffer = Buffer(data, pos)
            extensionobject_from_binary(buffer)
            pos = buffer.cur_pos
    return header, codes
