"""Remembering, across restarts, which merged reads a device refused.

A device that answers exception 02 to a merged read gets the read split (planner.Block.split). The
refused reads are kept in ``<data dir>/modbus/<device>.splits.json`` so that after a restart the driver
does not send the device the same refused request again. A read is named by its table, start and
count: if the contract changes, the plan changes, the names no longer match and nothing stale applies.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger("otseam.drivers.modbus")


class SplitMemory:
    def __init__(self, data_dir: str | None, device_id: str) -> None:
        self.path = Path(data_dir) / "modbus" / f"{device_id}.splits.json" if data_dir else None
        self.refused: set[str] = set()
        self._warned = False
        if self.path is not None and self.path.exists():
            try:
                loaded = json.loads(self.path.read_text())
                self.refused = {str(label) for label in loaded.get("refused", [])}
            except (OSError, ValueError, AttributeError) as exc:
                log.warning("%s: cannot read (%s); starting without remembered splits", self.path, exc)

    def remember(self, label: str) -> None:
        if label in self.refused:
            return
        self.refused.add(label)
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps({"refused": sorted(self.refused)}, indent=1) + "\n")
            os.replace(temporary, self.path)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("%s: cannot save remembered splits (%s); they last until restart", self.path, exc)
