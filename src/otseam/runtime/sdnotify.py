"""systemd's readiness and watchdog notifications, without a dependency on libsystemd.

The protocol is one datagram of ``KEY=VALUE`` lines to the unix socket named in ``$NOTIFY_SOCKET``
(a path, or an abstract socket when it starts with ``@``). With ``Type=notify`` systemd counts the
service as started at ``READY=1``; with ``WatchdogSec=`` it sets ``$WATCHDOG_USEC`` and restarts the
service when no ``WATCHDOG=1`` arrives within that time. Outside systemd the variable is unset and
every call here does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)


def notify(state: str, environ: dict[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to the service manager; False when there is none."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET", "")
    if not address or not (address.startswith("/") or address.startswith("@")):
        return False
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), target)
    except OSError as exc:  # the manager went away: nothing to tell, and nothing to stop for
        log.warning("cannot notify the service manager at %s: %s", address, exc)
        return False
    return True


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of ``$WATCHDOG_USEC``), or None when no watchdog is set
    for this process."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2_000_000


async def watchdog(alive: Callable[[], bool] = lambda: True, environ: dict[str, str] | None = None) -> None:
    """Ping the watchdog at half its interval while ``alive()`` says so; runs until cancelled.

    It runs on the event loop it guards: a loop that hangs stops pinging, and systemd restarts the node.
    """
    interval = watchdog_interval(environ)
    if interval is None:
        return
    while True:
        if alive():
            notify("WATCHDOG=1", environ)
        await asyncio.sleep(interval)


def started(status: str) -> asyncio.Task[None]:
    """READY=1 (with a STATUS line) now, and the watchdog task; cancel the task on the way out, which
    also says STOPPING=1."""
    notify(f"READY=1\nSTATUS={status}")

    async def feed() -> None:
        try:
            await watchdog()
            await asyncio.Event().wait()  # no watchdog configured: wait for the cancel all the same
        finally:
            notify("STOPPING=1")

    return asyncio.create_task(feed())
