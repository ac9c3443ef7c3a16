"""A hang watchdog for the OPC UA tests.

A test that awaits something forever is otherwise killed by pytest-timeout with a traceback of the
event loop sitting idle in ``select``, which says nothing about what was awaited. Past
``SEAM_HANG_DUMP_AFTER`` seconds (60 by default) this dumps every thread's stack and the stack of
every task of every running event loop, to stderr (shown in the test's report when it then fails) and
to a file in the temporary directory, so a hang explains itself.
"""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import io
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest


def _dump_tasks(out: io.StringIO) -> None:
    loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and o.is_running()]
    for loop in loops:
        # Read from the watchdog's thread: the loop may be blocked, so nothing can be scheduled on it.
        # The task set can change under us; a second try is enough for a diagnostic.
        for _ in range(3):
            try:
                tasks = list(asyncio.all_tasks(loop))
                break
            except RuntimeError:
                continue
        else:
            tasks = []
        out.write(f"--- event loop {loop!r}: {len(tasks)} task(s)\n")
        for task in tasks:
            out.write(f"\n{task!r}\n")
            try:
                _await_chain(task.get_coro(), out)
            except Exception as exc:  # a diagnostic must not raise in its own thread
                out.write(f"(stack unavailable: {exc!r})\n")


def _await_chain(awaitable: object, out: io.StringIO) -> None:
    """The whole chain of what a task awaits, outermost first (``print_stack`` shows only the top)."""
    depth = 0
    while awaitable is not None and depth < 100:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
        if frame is not None:
            code = frame.f_code
            out.write(f'  File "{code.co_filename}", line {frame.f_lineno}, in {code.co_name}\n')
        else:
            out.write(f"  awaiting {awaitable!r}\n")
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
        depth += 1


def _dump(test: str, after: float) -> None:
    out = io.StringIO()
    out.write(f"\n===== {test} still running after {after:g}s: threads and asyncio tasks =====\n")
    _dump_tasks(out)
    text = out.getvalue()
    path = os.path.join(tempfile.gettempdir(), f"seam-opcua-hang-{os.getpid()}-{int(time.time())}.txt")
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        faulthandler.dump_traceback(file=file, all_threads=True)
    sys.stderr.write(text + f"(thread stacks in {path})\n")
    sys.stderr.flush()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Watch setup, call and teardown alike: a module fixture's teardown (the plant's server) too."""
    after = float(os.environ.get("SEAM_HANG_DUMP_AFTER", "60"))
    done = threading.Event()

    def watch() -> None:
        if not done.wait(after):
            _dump(item.nodeid, after)

    thread = threading.Thread(target=watch, name="seam-hang-watchdog", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
