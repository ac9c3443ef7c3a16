"""Two workarounds for aiomqtt 2.5 after a connection breaks.

When paho closes a broken socket, aiomqtt removes the socket's reader from the event loop but not a
writer it registered for pending output. The loop then still holds a writer for that file descriptor
number; the next connection, which often gets the same number, has its events routed to the dead
client and stalls. After every session we remove such a writer, but only if it belongs to our own
(dead) client, so another client in the same event loop that reuses the number is never touched.

aiomqtt also keeps an unexpected disconnection as the exception of a private future that its
``__aexit__`` returns early on without reading. When the client is collected, asyncio logs "Future
exception was never retrieved" with the future's repr, in the middle of the node's log and long after
the outage it belongs to. :func:`disconnect_reason` reads it, which is all asyncio asks.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiomqtt


def socket_fd(client: aiomqtt.Client) -> int | None:
    sock = client._client.socket()
    return sock.fileno() if sock is not None else None


def release_stale_writer(client: aiomqtt.Client, fd: int | None) -> None:
    if fd is None or fd < 0:
        return
    loop = asyncio.get_running_loop()
    selector: Any = getattr(loop, "_selector", None)
    if selector is None:
        return
    try:
        key = selector.get_key(fd)
    except (KeyError, ValueError):
        return
    for index, handle in enumerate(key.data or ()):
        callback = getattr(handle, "_callback", None)
        cells = getattr(callback, "__closure__", None) or ()
        if any(_cell(c) is client._client for c in cells):
            with contextlib.suppress(OSError, ValueError):
                (loop.remove_reader if index == 0 else loop.remove_writer)(fd)


def _cell(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:
        return None


def disconnect_reason(client: aiomqtt.Client) -> BaseException | None:
    """Why the broker or the network ended ``client``'s connection (None if it ended cleanly or not yet);
    reading it marks it retrieved."""
    future = getattr(client, "_disconnected", None)
    if isinstance(future, asyncio.Future) and future.done() and not future.cancelled():
        return future.exception()
    return None
