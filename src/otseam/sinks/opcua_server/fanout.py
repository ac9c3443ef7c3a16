"""Data changes to subscribed clients, each value encoded once and shared as bytes.

asyncua's monitored items take a deep copy of every DataValue (about 75 µs), build a
MonitoredItemNotification object per item and change, and encode each of them field by field in
Python when the subscription publishes. Here a change is encoded once (``encoding.py``), and every
monitored item on that variable that asks nothing special (no deadband) queues those same bytes; a
subscription then sends its queued items as one pre-encoded DataChangeNotification.

It plugs into asyncua at two points, without changing asyncua:
  * the variable's ``datachange_callbacks`` (where asyncua registers each monitored item): the sink
    walks them itself, wrapping each callback once in a :class:`SharedItem` that knows its item;
  * a client's subscription object becomes a :class:`SharedEncodingSubscription` (asyncua's own class
    with two publish-time methods extended) the first time one of its items takes the shared path.
An item this path does not cover (a deadband or other filter, a subscription without a publish loop,
one of asyncua's internal subscriptions) is served by asyncua's own callback, as before; both kinds
end in the same NotificationMessage.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import Any

from asyncua.server.internal_subscription import InternalSubscription
from asyncua.server.monitored_item_service import MonitoredItemService
from asyncua.ua.ua_binary import create_type_serializer

from otseam.sinks.opcua_server._ua import ua
from otseam.sinks.opcua_server.encoding import encode_datavalue

log = logging.getLogger(__name__)

_UINT32 = struct.Struct("<I")
_INT32 = struct.Struct("<i")
#: An empty DiagnosticInfos array closes the DataChangeNotification.
_NO_DIAGNOSTICS = _INT32.pack(0)
_DATA_CHANGE = ua.NodeId(ua.ObjectIds.DataChangeNotification_Encoding_DefaultBinary)
_DISABLED = ua.MonitoringMode.Disabled
_STATUS_VALUE = ua.DataChangeTrigger.StatusValue
_encode_notification: Callable[[Any], bytes] = create_type_serializer(ua.MonitoredItemNotification)


def _differs(old: Any, new: Any, trigger: Any) -> bool:
    """Whether a monitored item reports the change, by its trigger (OPC 10000-4, 7.22.2), as
    asyncua's own monitored items decide."""
    if old is None:
        return True
    if old.StatusCode != new.StatusCode:
        return True
    if trigger == ua.DataChangeTrigger.Status:
        return False
    if old.Value != new.Value:
        return True
    return bool(
        trigger == ua.DataChangeTrigger.StatusValueTimestamp
        and (old.SourceTimestamp != new.SourceTimestamp or old.SourcePicoseconds != new.SourcePicoseconds)
    )


class SharedEncodingSubscription(InternalSubscription):
    """asyncua's subscription, also sending the shared, pre-encoded notifications of its items.

    Never constructed: :func:`adopt` gives an existing client subscription this class, so the
    session, the publish loop and the acknowledgements stay asyncua's."""

    _shared: dict[int, SharedItem]

    def has_published_results(self) -> bool:
        if self._publishing_enabled and self._shared:
            return True
        return super().has_published_results()

    def _pop_triggered_datachanges(self, result: ua.PublishResult) -> None:
        shared = self._shared
        if not shared:
            super()._pop_triggered_datachanges(result)
            return
        self._shared = {}
        parts: list[bytes] = [b""]
        count = 0
        for item in shared.values():
            count += item.take(parts)
        # Then asyncua's own queue (items with a filter; the current value asyncua sends an item that
        # is created or enabled again): what it holds for a shared item came after that item's last
        # shared change, since each shared change takes the item's older entries into its own queue.
        for notifications in self._triggered_datachanges.values():
            for notification in notifications:
                parts.append(_encode_notification(notification))
                count += 1
        self._triggered_datachanges = {}
        parts[0] = _INT32.pack(count)
        parts.append(_NO_DIAGNOSTICS)
        result.NotificationMessage.NotificationData.append(
            ua.ExtensionObject(TypeId=_DATA_CHANGE, Body=b"".join(parts))
        )


def adopt(subscription: InternalSubscription) -> SharedEncodingSubscription:
    if not isinstance(subscription, SharedEncodingSubscription):
        subscription.__class__ = SharedEncodingSubscription
        shared: dict[int, SharedItem] = {}
        subscription._shared = shared  # type: ignore[attr-defined]
    return subscription  # type: ignore[return-value]


class SharedItem:
    """One monitored item on a variable's Value, in place of asyncua's callback for it."""

    __slots__ = ("callback", "filter", "header", "latest", "mdata", "mid", "queue", "subscription", "trigger")

    def __init__(self, handle: int, callback: Callable[..., Any]) -> None:
        self.callback = callback
        self.mdata: Any = None
        self.subscription: SharedEncodingSubscription | None = None
        self.mid = 0
        self.header = b""
        self.filter: Any = None
        self.trigger: Any = _STATUS_VALUE
        self.latest: bytes | None = None
        self.queue: list[bytes] | None = None
        service = getattr(callback, "__self__", None)
        if not isinstance(service, MonitoredItemService) or getattr(callback, "__func__", None) is not (
            MonitoredItemService.datachange_callback
        ):
            return
        subscription = service.isub
        # A client's subscription with its own publish loop; asyncua's internal subscriptions (no
        # publish requests) and those publishing at once (interval 0) keep asyncua's path.
        if subscription.pub_request_callback is None or subscription._task is None:
            return
        mid = service._monitored_datachange.get(handle)
        mdata = service._monitored_items.get(mid) if mid is not None else None
        if mid is None or mdata is None:
            return
        self.mid = mid
        self.mdata = mdata
        self.subscription = adopt(subscription)
        self._refresh()

    def __call__(self, handle: int, value: Any, error: Any = None) -> Any:
        """asyncua's own calls (its write service, node deletion) reach the item as before."""
        return self.callback(handle, value, error)

    def _refresh(self) -> None:
        """Read the item's filter: only one without a deadband stays on the shared path."""
        mdata = self.mdata
        flt = self.filter = mdata.filter
        self.header = _UINT32.pack(mdata.client_handle)
        if not flt:  # no filter: None, or an empty ExtensionObject as decoded from the wire
            self.trigger = _STATUS_VALUE
        elif isinstance(flt, ua.DataChangeFilter) and flt.DeadbandType == ua.DeadbandType.None_:
            self.trigger = flt.Trigger
        else:
            self.subscription = None

    def shared(self) -> bool:
        if self.subscription is None:
            return False
        if self.mdata.filter is not self.filter:  # ModifyMonitoredItems replaced it
            self._refresh()
            return self.subscription is not None
        return True

    def push(self, encoded: bytes) -> None:
        subscription = self.subscription
        assert subscription is not None
        mid = self.mid
        size = self.mdata.queue_size
        older = subscription._triggered_datachanges.pop(mid, None) if subscription._triggered_datachanges else None
        if size == 1 and older is None and self.queue is None:
            self.latest = encoded
        else:
            queue = self.queue
            if queue is None:
                queue = self.queue = []
                if self.latest is not None:
                    queue.append(self.latest)
                    self.latest = None
            if older:
                # asyncua queued a value of this item since its last shared change (its initial value,
                # or the current one when it was enabled again): one queue, in order, one bound.
                queue.extend(_encode_notification(n)[4:] for n in older)
            queue.append(encoded)
            if size and len(queue) > size:
                del queue[: len(queue) - size]
        subscription._shared[mid] = self

    def take(self, parts: list[bytes]) -> int:
        queue = self.queue
        if queue is None:
            latest = self.latest
            if latest is None:
                return 0
            parts.append(self.header)
            parts.append(latest)
            self.latest = None
            return 1
        self.queue = None
        for encoded in queue:
            parts.append(self.header)
            parts.append(encoded)
        return len(queue)


async def notify(callbacks: dict[int, Any], previous: Any, dv: Any) -> None:
    """Tell every monitored item on a Value attribute that it changed from ``previous`` to ``dv``.

    ``dv`` is never changed after this: the items keep a reference to it, not a copy."""
    encoded: bytes | None = None
    changed: bool | None = None
    for handle, item in list(callbacks.items()):
        if type(item) is not SharedItem:
            item = callbacks[handle] = SharedItem(handle, item)
        if not item.shared():
            try:
                await item.callback(handle, dv)
            except Exception as exc:  # one broken subscription must not stop the others
                log.warning("opcua_server: a subscription callback failed: %s", exc)
            continue
        mdata = item.mdata
        if mdata.mode == _DISABLED:
            continue
        # asyncua's own path sets old_dvalue itself before it reads it: only the current value is kept
        # (a reference, not asyncua's deep copy), and one value per item stays alive, not two.
        values = mdata.mvalue
        old = values.current_dvalue
        values.current_dvalue = dv
        if old is previous and item.trigger == _STATUS_VALUE:
            if changed is None:
                changed = _differs(previous, dv, _STATUS_VALUE)
            if not changed:
                continue
        elif not _differs(old, dv, item.trigger):
            continue
        if encoded is None:
            encoded = encode_datavalue(dv)
        item.push(encoded)
