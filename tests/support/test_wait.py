"""The wait helper's own contract: it returns what the condition returned, and its failure says what was
awaited, what was seen, and why it gave up."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.support.wait import WaitTimeout, wait_until, wait_until_async


def test_returns_the_first_true_value() -> None:
    counter = itertools.count()
    assert wait_until(lambda: next(counter) >= 3 and "done", "the counter") == "done"


def test_failure_names_what_was_awaited_and_shows_the_detail() -> None:
    with pytest.raises(WaitTimeout, match=r"timed out after 0.05 s waiting for the moon\nlast seen: nothing"):
        wait_until(lambda: False, "the moon", 0.05, detail=lambda: "last seen: nothing")


def test_ignored_errors_are_not_yet_and_the_last_one_is_reported() -> None:
    def refuse() -> bool:
        raise ConnectionRefusedError("nobody listens")

    with pytest.raises(WaitTimeout, match="the last check raised ConnectionRefusedError"):
        wait_until(refuse, "a listener", 0.05, ignore=(OSError,))
    with pytest.raises(ConnectionRefusedError):  # an error not ignored is a failure at once
        wait_until(refuse, "a listener", 5)


def test_abort_gives_up_at_once_with_its_reason() -> None:
    with pytest.raises(WaitTimeout, match="gave up waiting for a line: the process exited"):
        wait_until(lambda: False, "a line", 60, abort=lambda: "the process exited")


async def test_async_polls_while_the_loop_runs_and_awaits_awaitables() -> None:
    flag: list[int] = []
    asyncio.get_running_loop().call_later(0.05, flag.append, 1)
    assert await wait_until_async(lambda: flag, "the flag") == [1]

    async def probe() -> int:
        await asyncio.sleep(0)
        return len(flag)

    assert await wait_until_async(probe, "an awaited probe") == 1
    with pytest.raises(WaitTimeout, match="waiting for never"):
        await wait_until_async(lambda: False, "never", 0.05)
