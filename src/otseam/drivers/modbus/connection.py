"""One connection per endpoint, shared by every device (unit id) behind it.

A gateway with twenty unit ids gets one TCP connection, not twenty: many gateways accept only one or
two. The connection reconnects by itself with exponential backoff and jitter; while it is down,
requests fail at once (nobody waits on a dead socket), so every device can mark its points stale on
time. Pauses the equipment needs (after connect, between requests) are honoured here because they are
properties of the line, whichever unit a request is for.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from otseam.drivers.modbus.config import Endpoint
from otseam.drivers.modbus.transport import Link, LinkClosed, RequestTimeout, TcpLink, open_link

log = logging.getLogger("otseam.drivers.modbus")

#: After this many timeouts in a row with no answer of any kind, a TCP connection is presumed
#: half-open (a NAT or firewall forgot it) and is replaced.
HALF_OPEN_TIMEOUTS = 3


class Unavailable(ConnectionError):
    """The endpoint is not connected right now (connecting failed, or waiting to retry)."""


def backoff_delay(failures: int, base: float, ceiling: float) -> float:
    """Exponential backoff with full jitter: uniformly random up to ``base * 2**failures`` (capped)."""
    top = min(ceiling, base * (2 ** min(failures, 30)))
    return random.uniform(top / 2, top)


@dataclass(slots=True)
class LineSettings:
    """What the devices on one endpoint ask of the line; the strictest wins."""

    pause_after_connect: float = 0.0
    pause_between_requests: float = 0.0
    connect_timeout: float = 2.0
    max_in_flight: int = 1
    max_backoff: float = 30.0

    def merge(self, other: LineSettings) -> None:
        self.pause_after_connect = max(self.pause_after_connect, other.pause_after_connect)
        self.pause_between_requests = max(self.pause_between_requests, other.pause_between_requests)
        self.connect_timeout = max(self.connect_timeout, other.connect_timeout)
        self.max_in_flight = min(self.max_in_flight, other.max_in_flight)
        self.max_backoff = min(self.max_backoff, other.max_backoff)


@dataclass(slots=True)
class Connection:
    endpoint: Endpoint
    settings: LineSettings
    users: int = 0
    link: Link | None = None
    failures: int = 0
    retry_at: float = 0.0
    last_error: str = ""
    silent_timeouts: int = 0
    next_send_at: float = 0.0
    _connect_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def connected(self) -> bool:
        return self.link is not None and not self.link.closed

    def quiet_for(self) -> float:
        """Seconds since anything arrived on the line (infinite when not connected)."""
        link = self.link
        if link is None or link.closed:
            return float("inf")
        return time.monotonic() - link.last_received

    async def request(self, unit: int, pdu: bytes, answer_within: float) -> bytes:
        link = await self._ensure_link()
        if self.settings.pause_between_requests > 0:
            # Serialise sends so the pause really separates requests on the wire.
            async with self._send_lock:
                delay = self.next_send_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                try:
                    return await self._send(link, unit, pdu, answer_within)
                finally:
                    self.next_send_at = time.monotonic() + self.settings.pause_between_requests
        return await self._send(link, unit, pdu, answer_within)

    async def _send(self, link: Link, unit: int, pdu: bytes, answer_within: float) -> bytes:
        return await self.settle(link, link.request(unit, pdu, answer_within))

    async def submit_all(
        self, unit: int, pdus: list[bytes], answer_within: float
    ) -> tuple[Link, list[asyncio.Future[bytes]]]:
        """Put several requests on the wire at once (Modbus/TCP pipelining); settle each future with
        :meth:`settle`. Only for links that pipeline and lines without a pause between requests."""
        link = await self._ensure_link()
        assert isinstance(link, TcpLink)
        return link, [link.submit(unit, pdu, answer_within) for pdu in pdus]

    async def settle(self, link: Link, answer: Awaitable[bytes]) -> bytes:
        """Await one answer and keep the connection's books: half-open detection, dropping a dead link."""
        try:
            response = await answer
        except RequestTimeout:
            self.silent_timeouts += 1
            if self.endpoint.framing != "rtu" and self.silent_timeouts >= HALF_OPEN_TIMEOUTS:
                log.warning(
                    "%s: %d timeouts in a row without any answer; reconnecting", self.endpoint.key, self.silent_timeouts
                )
                self._drop(link)
            raise
        except LinkClosed as exc:
            self._drop(link, str(exc))
            raise
        self.silent_timeouts = 0
        return response

    @property
    def pipelines(self) -> bool:
        return (
            self.endpoint.framing == "tcp"
            and self.settings.max_in_flight > 1
            and not self.settings.pause_between_requests
        )

    def _drop(self, link: Link, reason: str = "") -> None:
        link.close()
        if self.link is link:
            self.link = None
            self.silent_timeouts = 0
            if reason:
                log.warning("%s", reason)

    async def _ensure_link(self) -> Link:
        link = self.link
        if link is not None and not link.closed:
            return link
        async with self._connect_lock:
            link = self.link
            if link is not None and not link.closed:
                return link
            if time.monotonic() < self.retry_at:
                raise Unavailable(f"{self.endpoint.key}: not connected ({self.last_error}); retrying later")
            try:
                link = await open_link(self.endpoint, self.settings.connect_timeout, self.settings.max_in_flight)
            except (OSError, TimeoutError) as exc:
                delay = backoff_delay(self.failures, 0.5, self.settings.max_backoff)
                self.failures += 1
                self.retry_at = time.monotonic() + delay
                self.last_error = str(exc) or type(exc).__name__
                if self.failures == 1 or self.failures % 10 == 0:
                    log.warning(
                        "%s: cannot connect (%s); attempt %d, next in %.1fs",
                        self.endpoint.key,
                        self.last_error,
                        self.failures,
                        delay,
                    )
                raise Unavailable(f"{self.endpoint.key}: cannot connect ({self.last_error})") from None
            if self.failures:
                log.info("%s: connected after %d failed attempt(s)", self.endpoint.key, self.failures)
            self.failures = 0
            self.silent_timeouts = 0
            if self.settings.pause_after_connect > 0:
                await asyncio.sleep(self.settings.pause_after_connect)
            self.link = link
            return link

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
            self.link = None


class Registry:
    """Connections by endpoint within one event loop; reference counted by the drivers using them."""

    def __init__(self) -> None:
        self._connections: dict[str, Connection] = {}

    @contextmanager
    def use(self, endpoint: Endpoint, settings: LineSettings) -> Iterator[Connection]:
        connection = self._connections.get(endpoint.key)
        if connection is None:
            connection = self._connections[endpoint.key] = Connection(endpoint, settings)
        else:
            connection.settings.merge(settings)
        connection.users += 1
        try:
            yield connection
        finally:
            connection.users -= 1
            if connection.users == 0:
                connection.close()
                del self._connections[endpoint.key]


_registries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Registry] = weakref.WeakKeyDictionary()


def registry() -> Registry:
    """The registry of the running event loop (tests run many loops in one process)."""
    loop = asyncio.get_running_loop()
    found = _registries.get(loop)
    if found is None:
        found = _registries[loop] = Registry()
    return found
