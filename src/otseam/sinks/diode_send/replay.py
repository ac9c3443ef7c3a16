"""Backfill without a back channel: re-send a range of the OT journal through the running diode sink.

The IT side cannot ask for anything (nothing crosses back), so an operator reads the gap it reports
(``diode.gap`` events, ``/health``: journal offsets and source time span) and asks the OT side to send
that range again: ``seam diode replay`` writes a request file into the sink's replay directory in the
node's data directory, the running sink (inside ``seam run``, which holds the journal) picks it up,
reads the range with a cursor of its own and sends it in blocks flagged as replay, at the sink's rate,
between its live blocks; then it writes a result file beside the request. The receiver deduplicates by
journal offset, so it stores only the records it lacks.

Files, in ``<data dir>/diode-replay/<sink id>/``: ``<name>.request.json`` (``from_offset``,
``to_offset``, ``since``, ``until``: any of them null), answered by ``<name>.done.json`` (records and
offsets sent, or an error). Both are replaced atomically.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REQUEST_SUFFIX = ".request.json"
DONE_SUFFIX = ".done.json"
#: Records read from the journal per block batch while replaying.
CHUNK = 5000


class ReplayError(ValueError):
    pass


def replay_dir(data_dir: str | Path, sink_id: str) -> Path:
    return Path(data_dir) / "diode-replay" / sink_id


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    from_offset: int | None = None
    to_offset: int | None = None
    #: Source time bounds (seconds since the epoch, gateway time of samples, time of events), inclusive.
    since: float | None = None
    until: float | None = None

    def __post_init__(self) -> None:
        for name in ("from_offset", "to_offset"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ReplayError(f"{name} must be a non-negative integer, got {value!r}")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value)
            ):
                raise ReplayError(f"{name} must be a time in seconds since the epoch, got {value!r}")
        if self.from_offset is None and self.to_offset is None and self.since is None and self.until is None:
            raise ReplayError("a replay needs a range: offsets (from/to) or times (since/until)")
        if self.from_offset is not None and self.to_offset is not None and self.from_offset > self.to_offset:
            raise ReplayError(f"from_offset {self.from_offset} is after to_offset {self.to_offset}")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ReplayError("since is after until")

    @classmethod
    def from_json(cls, text: str) -> ReplayRequest:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ReplayError(f"not JSON: {exc}") from None
        if not isinstance(data, dict) or set(data) - {"from_offset", "to_offset", "since", "until"}:
            raise ReplayError("a request is an object with from_offset, to_offset, since, until")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(
            {"from_offset": self.from_offset, "to_offset": self.to_offset, "since": self.since, "until": self.until}
        )


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def answer(request_path: Path, result: dict[str, Any]) -> None:
    """Write the result beside the request, then remove the request."""
    name = request_path.name.removesuffix(REQUEST_SUFFIX)
    write_atomically(request_path.with_name(name + DONE_SUFFIX), json.dumps(result))
    request_path.unlink(missing_ok=True)
