"""Which (source, offset) pairs the IT journal already holds, so nothing is written twice.

Records arrive mostly in order, so each source's offsets are kept as a short list of half-open
intervals; a hole (a block lost beyond repair) stays a hole until a snapshot brings the values that
fell into it. Holes older than ``max_intervals`` are forgotten (treated as seen): a snapshot only
carries current values, so an old hole can never be filled anyway.
"""

from __future__ import annotations

import bisect
import json
import os
from pathlib import Path


class OffsetSet:
    def __init__(self, max_intervals: int = 4096) -> None:
        self.max_intervals = max_intervals
        self._starts: dict[str, list[int]] = {}
        self._ends: dict[str, list[int]] = {}

    def add(self, source: str, offset: int) -> bool:
        """Record ``offset`` as written; False if it already was."""
        starts = self._starts.setdefault(source, [])
        ends = self._ends.setdefault(source, [])
        if ends and ends[-1] == offset:  # the common case: the next offset in order
            ends[-1] = offset + 1
            return True
        i = bisect.bisect_right(starts, offset) - 1
        if i >= 0 and offset < ends[i]:
            return False
        joins_left = i >= 0 and ends[i] == offset
        joins_right = i + 1 < len(starts) and starts[i + 1] == offset + 1
        if joins_left and joins_right:
            ends[i] = ends[i + 1]
            del starts[i + 1], ends[i + 1]
        elif joins_left:
            ends[i] = offset + 1
        elif joins_right:
            starts[i + 1] = offset
        else:
            starts.insert(i + 1, offset)
            ends.insert(i + 1, offset + 1)
            if len(starts) > self.max_intervals:
                # Forget the oldest hole by merging the two oldest intervals.
                ends[0] = ends[1]
                del starts[1], ends[1]
        return True

    def add_run(self, source: str, first: int, last: int) -> bool:
        """Record ``first..last`` at once if all of it is beyond everything seen; False (nothing
        recorded) otherwise, and the caller goes offset by offset."""
        starts = self._starts.setdefault(source, [])
        ends = self._ends.setdefault(source, [])
        if ends and first < ends[-1]:
            return False
        if ends and first == ends[-1]:
            ends[-1] = last + 1
        else:
            starts.append(first)
            ends.append(last + 1)
            if len(starts) > self.max_intervals:
                ends[0] = ends[1]
                del starts[1], ends[1]
        return True

    def contains(self, source: str, offset: int) -> bool:
        starts = self._starts.get(source, [])
        i = bisect.bisect_right(starts, offset) - 1
        return i >= 0 and offset < self._ends[source][i]

    def holes(self, source: str) -> int:
        return max(0, len(self._starts.get(source, [])) - 1)

    # --- persistence: a small JSON file, replaced atomically -------------------------------------

    def save(self, path: Path) -> None:
        data = {s: list(zip(self._starts[s], self._ends[s], strict=True)) for s in self._starts}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, max_intervals: int = 4096) -> OffsetSet:
        """The saved set; an absent file is an empty set, an unreadable one an error with a remedy."""
        result = cls(max_intervals)
        if not path.exists():
            return result
        try:
            data = json.loads(path.read_text())
            for source, intervals in data.items():
                starts = [int(a) for a, _ in intervals]
                ends = [int(b) for _, b in intervals]
                if not isinstance(source, str) or starts != sorted(starts):
                    raise ValueError("intervals out of order")
                result._starts[source] = starts
                result._ends[source] = ends
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(
                f"the receiver's state file {path} is damaged ({exc}); move it aside to start afresh "
                "(records re-sent in the next snapshot may then be written twice)"
            ) from None
        return result
