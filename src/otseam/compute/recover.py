"""Finding the last ``compute.state`` checkpoint in a journal, newest segment first.

The engine's state lives in the journal itself (not in a side file that could disagree with it): at
start the segments are read from the newest backwards, frame headers only, and only event frames are
decoded, until a checkpoint is found. Checkpoints are written every minute, so this normally reads
part of the newest segment. A damaged frame is skipped (a checkpoint in it is not trusted, the one
before it is used); a journal with no checkpoint means counters start from zero, and the caller
says so in the log.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from otseam.compute.engine import CHECKPOINT_KIND
from otseam.core.records import Event
from otseam.journal import codec, segments

log = logging.getLogger("otseam.compute")


#: How much of the journal is read, newest first, before giving up. A checkpoint is written every minute
#: and at every clean stop, so it is normally in the newest segment; the bound keeps the start of a node
#: whose computed points are new (no checkpoint anywhere) from reading gigabytes.
SEARCH_BUDGET = 1024**3


def last_checkpoint(directory: str | os.PathLike[str], budget: int = SEARCH_BUDGET) -> Event | None:
    """The newest ``compute.state`` event in the newest ``budget`` bytes of the journal at ``directory``."""
    root = Path(directory)
    try:
        names = os.listdir(root)
    except OSError:
        return None
    found = sorted(
        ((base, root / name) for name in names if (base := segments.parse_segment_name(name)) is not None),
        reverse=True,
    )
    searched = 0
    for base, path in found:
        event = _last_in_segment(path, base)
        if event is not None:
            return event
        try:
            searched += path.stat().st_size
        except OSError:
            continue
        if searched >= budget:
            log.warning(
                "no computed-point checkpoint in the newest %d MiB of the journal %s: not searching further",
                searched // 1024**2,
                root,
            )
            break
    return None


def _last_in_segment(path: Path, base: int) -> Event | None:
    frames: list[tuple[int, segments.FrameHeader]] = []
    try:
        # resync: damage in the middle of a segment does not hide the checkpoints written after it.
        for position, header, ok in segments.iter_frames(path, base, verify=False, resync=True):
            if not ok:
                continue
            if header.kind == codec.FRAME_EVENTS:
                frames.append((position, header))
    except OSError as exc:
        log.warning("cannot read journal segment %s while looking for computed-point state: %s", path, exc)
        return None
    if not frames:
        return None
    with open(path, "rb") as file:
        for position, header in reversed(frames):
            file.seek(position)
            frame = file.read(header.size)
            if len(frame) < header.size or not segments.frame_ok(
                frame[: segments.HEADER_SIZE], frame[segments.HEADER_SIZE :], header.crc
            ):
                continue
            try:
                records = codec.decode(header.kind, frame[segments.HEADER_SIZE :], header.count)
            except codec.CorruptPayload:
                continue
            for record in reversed(records):
                if isinstance(record, Event) and record.kind == CHECKPOINT_KIND:
                    return record
    return None


def checkpoint_data(event: Event | None) -> dict[str, Any]:
    return event.data if event is not None and isinstance(event.data, dict) else {}
