"""Records a sink will never accept: kept in a dead-letter file, counted and announced, not retried.

A record that a sink refuses for good (a value its peer cannot represent, a name it will not take)
would otherwise be offered again and again, holding up every record behind it until the journal's
retention deleted it. The sink says so by raising ``RecordsRejected`` after delivering the rest; the
runner hands those records here. Each goes to ``<data_dir>/dead-letter/<sink>.jsonl`` as one JSON line
(journal source and offset, the record, the reason, when), and one ``sink.rejected`` event per batch
names the sink, the offsets and the reason, so other sinks (a historian, the IT side) see it too.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otseam.core.records import Batch, Event, Record, Sample, Severity

if TYPE_CHECKING:
    from otseam.core.plugins import RecordsRejected

log = logging.getLogger(__name__)

#: The kind of the event that announces rejected records (never itself dead-lettered with an event,
#: so a sink that refuses these events cannot start a loop).
REJECTED_KIND = "sink.rejected"


def _as_json(record: Record) -> dict[str, Any]:
    if isinstance(record, Sample):
        return {
            "point": record.point,
            "value": record.value,
            "quality": record.quality.label,
            "source_ts": record.source_ts,
            "gateway_ts": record.gateway_ts,
        }
    return {
        "ts": record.ts,
        "kind": record.kind,
        "source": record.source,
        "severity": record.severity.label,
        "message": record.message,
        "data": record.data,
    }


class DeadLetters:
    """One sink's dead-letter file, and the event it raises for each rejection."""

    def __init__(self, sink_id: str, data_dir: str | os.PathLike[str], announce: Callable[[Sequence[Record]], None]):
        self.sink_id = sink_id
        self.path = Path(data_dir) / "dead-letter" / f"{sink_id}.jsonl"
        self.announce = announce

    def put(self, batch: Batch, rejected: RecordsRejected) -> int:
        """Write the batch's records named by ``rejected`` and announce them; returns how many."""
        wanted = set(rejected.offsets)
        chosen = [(o, r) for o, r in zip(batch.offsets, batch.records, strict=True) if o in wanted]
        if not chosen:
            return 0
        now = time.time()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(
            json.dumps(
                {"sink": self.sink_id, "source": batch.source, "offset": offset, "reason": rejected.reason,
                 "rejected_at": now, "record": _as_json(record)},
                default=str,
            ) + "\n"
            for offset, record in chosen
        )  # fmt: skip
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())
        offsets = [o for o, _ in chosen]
        log.warning(
            "sink %s rejected %d record(s) for good (%s): kept in %s",
            self.sink_id,
            len(chosen),
            rejected.reason,
            self.path,
        )
        if not all(isinstance(r, Event) and r.kind == REJECTED_KIND for _, r in chosen):
            self.announce(
                [
                    Event(
                        now,
                        REJECTED_KIND,
                        self.sink_id,
                        Severity.MEDIUM,
                        f"sink {self.sink_id} rejected {len(chosen)} record(s): {rejected.reason}",
                        {
                            "sink": self.sink_id,
                            "source": batch.source,
                            "first_offset": min(offsets),
                            "last_offset": max(offsets),
                            "count": len(offsets),
                            "reason": rejected.reason,
                            "file": str(self.path),
                        },
                    )
                ]
            )
        return len(chosen)
