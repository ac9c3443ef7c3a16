"""The suite's one way to wait: poll a condition until it holds, with a bound that turns a hang into a failure.

Tests never sleep a fixed time to let something happen (a busy machine makes any fixed time too short);
they wait for the thing itself. ``what`` names the awaited condition in the failure message, and
``detail`` (called only on failure) adds what was seen instead, e.g. the last log lines of a process.
``abort`` is checked on every poll: when it returns a text, the wait fails at once with it (a process
that exited will never print the line awaited).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: Generous on purpose: the bound only decides how long a broken test takes to fail, never whether a
#: working one passes, so it must hold on a loaded two-core machine.
DEFAULT_WITHIN = 60.0
DEFAULT_INTERVAL = 0.02


class WaitTimeout(AssertionError):
    """The awaited condition did not hold in time (an AssertionError, so pytest shows it as a failure)."""


def _failure(what: str, within: float, detail: Callable[[], object] | None, last_error: BaseException | None) -> str:
    message = f"timed out after {within:g} s waiting for {what}"
    if last_error is not None:
        message += f"; the last check raised {last_error!r}"
    if detail is not None:
        message += f"\n{detail()}"
    return message


def _check(predicate: Callable[[], Any], ignore: tuple[type[BaseException], ...]) -> tuple[Any, BaseException | None]:
    try:
        return predicate(), None
    except ignore as exc:
        return None, exc


def wait_until(
    predicate: Callable[[], T],
    what: str = "the condition",
    within: float = DEFAULT_WITHIN,
    *,
    interval: float = DEFAULT_INTERVAL,
    detail: Callable[[], object] | None = None,
    abort: Callable[[], str | None] | None = None,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``predicate`` until it returns something true, and return that; fail after ``within`` seconds.

    Exceptions of the ``ignore`` types count as "not yet" (a server that does not accept connections yet).
    """
    deadline = time.monotonic() + within
    last_error: BaseException | None = None
    while True:
        value, last_error = _check(predicate, ignore)
        if value:
            return value
        if abort is not None and (reason := abort()):
            raise WaitTimeout(f"gave up waiting for {what}: {reason}" + (f"\n{detail()}" if detail else ""))
        if time.monotonic() >= deadline:
            raise WaitTimeout(_failure(what, within, detail, last_error))
        time.sleep(interval)  # the polling interval, not a synchronisation


async def wait_until_async(
    predicate: Callable[[], T] | Callable[[], Awaitable[T]],
    what: str = "the condition",
    within: float = DEFAULT_WITHIN,
    *,
    interval: float = DEFAULT_INTERVAL,
    detail: Callable[[], object] | None = None,
    abort: Callable[[], str | None] | None = None,
    ignore: tuple[type[BaseException], ...] = (),
) -> Any:
    """:func:`wait_until` for coroutines: the event loop keeps running while the condition is polled.

    ``predicate`` may also return an awaitable (a read over the network): its result is what counts.
    """
    deadline = time.monotonic() + within
    last_error: BaseException | None = None
    while True:
        value, last_error = _check(predicate, ignore)
        if inspect.isawaitable(value):
            try:
                value = await value
            except ignore as exc:
                value, last_error = None, exc
        if value:
            return value
        if abort is not None and (reason := abort()):
            raise WaitTimeout(f"gave up waiting for {what}: {reason}" + (f"\n{detail()}" if detail else ""))
        if time.monotonic() >= deadline:
            raise WaitTimeout(_failure(what, within, detail, last_error))
        await asyncio.sleep(interval)  # the polling interval, not a synchronisation
