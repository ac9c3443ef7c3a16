"""One supervised task per driver and per sink.

A component that raises is logged, counted and started again after an exponential backoff with jitter;
nothing else is touched. A component that ran for a while before failing starts its backoff from the
beginning again, so a driver that fails once a day is back within a second, while one that fails on
every start settles at one attempt per ``cap`` seconds instead of spinning.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from otseam.runtime.sinkrunner import Backoff

log = logging.getLogger("otseam.supervisor")

#: A component that stayed up this long before failing is restarted without the accumulated backoff.
_HEALTHY_RUN = 60.0


@dataclass(slots=True)
class Component:
    """A driver or sink as the supervisor, the health endpoint and the terminal see it."""

    kind: str  # "driver" | "source" | "sink"
    id: str
    #: The component's configuration as text; a reload restarts it only when this changes.
    fingerprint: str
    state: str = "starting"  # starting | running | restarting | draining | stopped
    restarts: int = 0
    errors: int = 0
    last_error: str = ""
    last_error_ts: float = 0.0
    started_ts: float = field(default_factory=time.time)
    task: asyncio.Task[None] | None = None
    #: Set to ask the component to finish (a sink drains first); cancellation is the hard stop.
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    #: The running plugin object, for the details it reports itself (``health()``, ``healthy``).
    plugin: object | None = None

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.id}"

    @property
    def working(self) -> bool:
        """Running, and not saying otherwise itself (a link that is down, a device that is away)."""
        return self.state == "running" and getattr(self.plugin, "healthy", True) is not False

    def health(self) -> dict[str, object]:
        entry: dict[str, object] = {
            "state": self.state,
            "restarts": self.restarts,
            "errors": self.errors,
            "last_error": self.last_error,
            "last_error_ts": self.last_error_ts or None,
            "since": self.started_ts,
        }
        report = getattr(self.plugin, "health", None)
        if callable(report):
            try:
                entry["detail"] = report()
            except Exception as exc:  # a plugin's report must never take /health down
                entry["detail"] = {"error": f"{type(exc).__name__}: {exc}"}
        return entry


async def supervise(
    component: Component,
    body: Callable[[], Awaitable[None]],
    *,
    on_failure: Callable[[Component, Exception], None] | None = None,
    backoff: Backoff | None = None,
) -> None:
    """Run ``body`` until ``component.stop`` is set or the task is cancelled, restarting it on failure."""
    backoff = backoff or Backoff(base=1.0, cap=60.0)
    while True:
        started = time.monotonic()
        component.state = "running"
        component.started_ts = time.time()
        try:
            await body()
            if component.stop.is_set():
                component.state = "stopped"
                return
            raise RuntimeError("stopped by itself (a driver or sink must run until it is told to stop)")
        except asyncio.CancelledError:
            component.state = "stopped"
            raise
        except Exception as exc:
            component.errors += 1
            component.last_error = f"{type(exc).__name__}: {exc}".rstrip(": ")
            component.last_error_ts = time.time()
            if time.monotonic() - started > _HEALTHY_RUN:
                backoff.reset()
            delay = backoff.next_delay()
            log.error("%s failed: %s; restarting in %.1fs", component.name, component.last_error, delay)
            # The traceback is for whoever debugs the plugin; an operator reads the line above.
            log.debug("%s failure details", component.name, exc_info=exc)
            if on_failure is not None:
                try:
                    on_failure(component, exc)
                except Exception:
                    log.exception("%s: handling the failure failed too", component.name)
            component.state = "restarting"
            try:
                # Not wait_for: on Python 3.11 it can lose a cancellation (see sinkrunner._wait_or_stop).
                async with asyncio.timeout(delay):
                    await component.stop.wait()
            except TimeoutError:
                component.restarts += 1
                continue
            component.state = "stopped"
            return
