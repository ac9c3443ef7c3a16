"""What a person watching `seam run` sees: a live table on a terminal, a periodic line in a log.

On a TTY the table is redrawn every tick (devices, points per second, journal depth and age, each sink's
lag and state); log messages scroll above it. When the output goes to a file or journald, one summary
line is logged every ``interval`` seconds instead, so the log stays readable and greppable.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from otseam.runtime.supervisor import Supervisor

log = logging.getLogger("otseam.status")

_STATE_STYLE = {
    "online": "green",
    "offline": "red",
    "connecting": "yellow",
    "running": "green",
    "draining": "cyan",
    "restarting": "red",
    "retrying": "red",
    "stopped": "dim",
}


class StatusView:
    def __init__(self, supervisor: Supervisor, *, console: Console | None = None, interval: float = 10.0) -> None:
        self.supervisor = supervisor
        self.console = console
        self.interval = interval
        self._live: Live | None = None
        self._last_line = 0.0

    @property
    def live(self) -> bool:
        return self.console is not None

    def start(self) -> None:
        if self.console is not None:
            self._live = Live(Text("starting…"), console=self.console, refresh_per_second=2, transient=False)
            self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.update(self.render())
            self._live.stop()
            self._live = None

    def update(self) -> None:
        now = time.monotonic()
        if self._live is not None:
            self._live.update(self.render())
        elif now - self._last_line >= self.interval:
            self._last_line = now
            log.info("%s", self.summary())

    def _journal_numbers(self) -> tuple[int, float]:
        sup = self.supervisor
        if sup.journal is None or sup.journal.closed:
            return 0, 0.0
        cursors = [c for c in sup.journal_metrics().cursors if c.name in sup.sink_stats]
        depth = max((c.depth for c in cursors), default=0)
        age = max((c.oldest_unread_age or 0.0 for c in cursors), default=0.0)
        return depth, age

    def summary(self) -> str:
        sup = self.supervisor
        drivers = [c for c in sup.components.values() if c.kind == "driver"]
        up = sum(1 for c in drivers if c.working)
        depth, age = self._journal_numbers()
        lags = {}
        if sup.journal is not None and not sup.journal.closed:
            lags = {c.name: c.depth for c in sup.journal_metrics().cursors}
        sinks = ", ".join(
            f"{sink_id} {stats.state} lag {lags.get(sink_id, 0)}" for sink_id, stats in sorted(sup.sink_stats.items())
        )
        problems = sup.problems()
        return (
            f"status: devices {up}/{len(drivers)} up, {self.supervisor.points_rate.value:.0f} points/s, "
            f"journal depth {depth} (oldest {age:.1f}s), sinks: {sinks or 'none'}"
            + (f"; DOWN: {'; '.join(problems)}" if problems else "")
        )

    def render(self) -> Group:
        sup = self.supervisor
        depth, age = self._journal_numbers()
        head = Text.assemble(
            ("seam run ", "bold"),
            (str(sup.contract_path), "cyan"),
            f"   {self.supervisor.points_rate.value:,.0f} points/s   journal depth {depth:,} (oldest {age:.1f}s)   ",
            (str(sup.health()["status"]), "bold"),
        )
        devices = Table(title="devices", title_justify="left", expand=False)
        for column in ("device", "state", "samples", "reported", "bad", "latency", "restarts", "last error"):
            devices.add_column(column)
        stats = sup.pipeline.devices if sup.pipeline is not None else {}
        for component in sorted((c for c in sup.components.values() if c.kind == "driver"), key=lambda c: c.id):
            device = stats.get(component.id)
            detail = component.health().get("detail")
            shown = component.state
            if component.state == "running" and isinstance(detail, dict) and isinstance(detail.get("device"), str):
                shown = str(detail["device"])  # online, offline or connecting: the device, not the task
            devices.add_row(
                component.id,
                Text(shown, style=_STATE_STYLE.get(shown, "")),
                f"{device.samples:,}" if device else "0",
                f"{device.reported:,}" if device else "0",
                f"{device.bad_samples:,}" if device else "0",
                f"{device.latency * 1000:.1f} ms" if device else "-",
                str(component.restarts),
                component.last_error[:60],
            )
        sinks = Table(title="sinks", title_justify="left", expand=False)
        for column in ("sink", "state", "delivered", "lag", "errors", "last error"):
            sinks.add_column(column)
        lags = {}
        if sup.journal is not None and not sup.journal.closed:
            lags = {c.name: c.depth for c in sup.journal_metrics().cursors}
        for sink_id, sink in sorted(sup.sink_stats.items()):
            sinks.add_row(
                sink_id,
                Text(sink.state, style=_STATE_STYLE.get(sink.state, "")),
                f"{sink.delivered_records:,}",
                f"{lags.get(sink_id, 0):,}",
                str(sink.errors),
                sink.last_error[:60],
            )
        return Group(head, devices, sinks)
