"""How a plugin puts a write it refused on record.

The read-only replica, the OPC UA server and the Sparkplug edge node refuse every write that reaches
them from the IT side. Each refusal becomes a record of the node's hash-chained audit log (and, through
it, an ``audit.<kind>`` event in the journal that crosses the diode). The refusal itself never waits for
its record: it is answered at once on the event loop, and the record is written (fsync'd) by one worker
thread in the order the refusals happened, so a client hammering writes cannot stall the server's reads.

Bounded: at most ``limit`` records wait for the worker; beyond that the refusals are counted, and the
next record written says how many were folded into it. If the audit log cannot be written, the refusal
still stands, the failure is logged, counted (``unrecorded``) and a plain ``audit.unrecorded`` event of
high severity goes into the journal, so the gap is visible on both sides of the diode.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from otseam.audit.log import AuditLog, AuditUnavailable
from otseam.core.records import Event, Severity

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RefusalStats:
    recorded: int = 0
    #: Refusals whose record could not be written (the audit log was unavailable).
    unrecorded: int = 0
    #: Refusals folded into a later record because too many were waiting.
    folded: int = 0


class Refusals:
    def __init__(self, audit: AuditLog, source: str, *, limit: int = 256) -> None:
        self.audit = audit
        self.source = source
        self.limit = limit
        self.stats = RefusalStats()
        self._pending = 0
        self._folded = 0
        self._guard = threading.Lock()
        self._worker: ThreadPoolExecutor | None = None
        self._last: Future[None] | None = None

    def record(
        self,
        kind: str,
        actor: str,
        subject: str,
        data: dict[str, Any],
        message: str,
        severity: Severity = Severity.HIGH,
    ) -> None:
        """Queue the record of one refusal; returns at once."""
        # What a client sent (a user name, a metric name, node ids) is bounded before it is kept.
        actor, subject, message = _bounded(actor), _bounded(subject), _bounded(message, 2000)
        data = {str(k)[:100]: _bounded(v) for k, v in list(data.items())[:50]}
        with self._guard:
            if self._pending >= self.limit:
                self._folded += 1
                self.stats.folded += 1
                return
            self._pending += 1
            folded, self._folded = self._folded, 0
            if self._worker is None:
                self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"audit-{self.source}")
            if folded:
                data = {**data, "folded": folded}
                message = f"{message} (and {folded} more refusals not recorded one by one)"
            self._last = self._worker.submit(self._write, kind, actor, subject, data, message, severity)

    def _write(
        self, kind: str, actor: str, subject: str, data: dict[str, Any], message: str, severity: Severity
    ) -> None:
        try:
            self.audit.append(kind, actor, subject, data, severity, message)
            self.stats.recorded += 1
        except AuditUnavailable as exc:
            self.stats.unrecorded += 1
            log.error("%s: a refused write is not in the audit log (%s): %s", self.source, exc, message)
            self._unrecorded(kind, actor, subject, data, message, str(exc))
        except Exception:  # a bug here must not end the worker: later refusals still need recording
            self.stats.unrecorded += 1
            log.exception("%s: recording a refused write failed", self.source)
        finally:
            self._done(kind, actor, subject, data, message, severity)

    def _done(
        self, kind: str, actor: str, subject: str, data: dict[str, Any], message: str, severity: Severity
    ) -> None:
        """One record less waiting; when none waits and refusals were folded, they get a record of their own."""
        with self._guard:
            self._pending -= 1
            if self._pending or not self._folded or self._worker is None:
                return
            folded, self._folded = self._folded, 0
            self._pending += 1
            summary = f"{folded} more refusals like this one, not recorded one by one: {message}"
            try:
                self._last = self._worker.submit(
                    self._write, kind, actor, subject, {**data, "folded": folded}, summary, severity
                )
            except RuntimeError:  # closing: say it in the log at least
                self._pending -= 1
                log.error("%s: %d refused writes were not recorded one by one: %s", self.source, folded, message)

    def _unrecorded(
        self, kind: str, actor: str, subject: str, data: dict[str, Any], message: str, problem: str
    ) -> None:
        journal = self.audit.journal
        if journal is None:
            return
        event = Event(
            self.audit.clock(),
            "audit.unrecorded",
            self.source,
            Severity.HIGH,
            f"NOT in the audit log ({problem}): {message}",
            {"kind": kind, "actor": actor, "subject": subject, "data": data, "problem": problem},
        )
        try:
            journal.append([event])
        except Exception as exc:
            log.error("%s: the unrecorded refusal could not be journalled either: %s", self.source, exc)

    def flush(self) -> None:
        """Wait until every queued record is written (or found unwritable)."""
        while True:
            with self._guard:
                last = self._last
            if last is None:
                return
            last.result()
            with self._guard:
                if self._last is last:  # nothing (such as a summary of folded refusals) queued after it
                    return

    def close(self) -> None:
        """Write what is queued, then stop the worker (a sink's close)."""
        with self._guard:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.shutdown(wait=True)


def _bounded(value: Any, limit: int = 500) -> Any:
    """``value`` with every text cut to ``limit`` characters and every list to 50 items."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + "..."
    if isinstance(value, list | tuple):
        return [_bounded(item, limit) for item in value[:50]]
    if isinstance(value, dict):
        return {str(k)[:100]: _bounded(v, limit) for k, v in list(value.items())[:50]}
    return value
