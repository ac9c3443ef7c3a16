"""The diode link's health as the OPC UA replica shows it.

On the IT side the replica's values come through a one-way link. Whether that link is up, how far
behind the values are, and how many gaps it had are facts an IT client must be able to read next to
the values. The state is learnt from the journal the sink already reads (the diode receiver's
``diode.link`` and ``diode.gap`` events, and the samples' own timestamps); a runtime that knows more
may push it through ``LinkHealth.update`` instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from otseam.core.records import Event, Sample


@dataclass(slots=True)
class LinkHealth:
    #: None until the receiver said something: unknown is not up.
    up: bool | None = None
    #: Seconds between a sample's source time and its arrival on this node (the last sample seen).
    lag: float = 0.0
    gaps: int = 0
    blocks_lost: int = 0
    last_change: float = field(default_factory=time.time)

    def observe(self, record: Sample | Event) -> bool:
        """Fold one journal record in; True when ``up`` changed."""
        if isinstance(record, Sample):
            self.lag = max(0.0, record.gateway_ts - record.source_ts)
            return False
        if record.kind == "diode.link":
            up = str(record.data.get("state", "")).lower() == "up"
            changed = up != self.up
            self.up = up
            if changed:
                self.last_change = record.ts
            return changed
        if record.kind == "diode.gap":
            self.gaps += 1
            self.blocks_lost += int(record.data.get("blocks", 0) or 0)
        return False

    def update(self, **facts: Any) -> None:
        """For a runtime that measures the link itself."""
        for name, value in facts.items():
            if name not in ("up", "lag", "gaps", "blocks_lost", "last_change"):
                raise TypeError(f"LinkHealth has no field {name!r}")
            setattr(self, name, value)
