"""supervise(): restart with backoff, stop, and failures counted."""

from __future__ import annotations

import asyncio

from otseam.runtime.components import Component, supervise
from otseam.runtime.sinkrunner import Backoff
from tests.support.wait import wait_until_async


async def test_a_failing_body_is_restarted_until_it_runs_and_stops_on_request() -> None:
    component = Component("driver", "plc1", "{}")
    attempts = 0
    running = asyncio.Event()
    failures: list[str] = []

    async def body() -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 2:
            raise ConnectionError(f"attempt {attempts} refused")
        running.set()
        await component.stop.wait()

    task = asyncio.create_task(
        supervise(
            component,
            body,
            on_failure=lambda c, exc: failures.append(str(exc)),
            backoff=Backoff(base=0.01, cap=0.02),
        )
    )
    await asyncio.wait_for(running.wait(), 10)
    assert (component.state, component.restarts, component.errors) == ("running", 2, 2)
    assert component.last_error == "ConnectionError: attempt 2 refused"
    assert failures == ["attempt 1 refused", "attempt 2 refused"]
    component.stop.set()
    await asyncio.wait_for(task, 10)
    assert component.state == "stopped"


async def test_a_body_that_returns_by_itself_counts_as_a_failure() -> None:
    component = Component("sink", "archive", "{}")
    calls = 0

    async def body() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            component.stop.set()

    await asyncio.wait_for(supervise(component, body, backoff=Backoff(base=0.01, cap=0.01)), 10)
    assert calls == 3 and component.errors == 2 and "stopped by itself" in component.last_error
    assert component.state == "stopped"


async def test_stop_during_the_backoff_wait_ends_at_once() -> None:
    component = Component("driver", "plc1", "{}")
    failed = asyncio.Event()

    async def body() -> None:
        raise RuntimeError("down")

    task = asyncio.create_task(
        supervise(component, body, on_failure=lambda c, exc: failed.set(), backoff=Backoff(base=30.0, cap=30.0))
    )
    await asyncio.wait_for(failed.wait(), 10)
    await wait_until_async(lambda: component.state == "restarting", "supervise to enter its backoff wait")
    component.stop.set()
    await asyncio.wait_for(task, 2)
    assert component.state == "stopped" and component.restarts == 0
