"""TCP reassembly for one direction of a connection: segments in, the byte stream out, in order.

Handles what span ports really deliver: retransmissions (the same bytes again, dropped), overlaps (only
the new part kept), out-of-order segments (held in a bounded window until the hole is filled) and lost
segments (after the window overflows, the hole is declared a gap and the analyser resynchronises).
A flow whose SYN we never saw starts at the first segment with data.

The first copy is not trusted blindly: the last ``RECENT_BYTES`` of released data are kept, and a
retransmission or an overlap that carries *different* bytes for sequence numbers already seen is a
conflict (counted, and reported by the engine as an evasion attempt). The receiving host keeps one of the
two copies (which one depends on its TCP stack), so what the monitor decoded may not be what the device
executed; two held out-of-order copies of one range that disagree are conflicts as well.

Every piece of data released keeps the frame number and capture time of the segment that carried it, not
of the segment that happened to release it: a request held behind a hole and let go when the hole is
filled, on FIN, or at the end of the capture is still reported at the frame and time it crossed the wire.
"""

from __future__ import annotations

from typing import NamedTuple

#: Out-of-order segments held per direction before a hole is declared lost.
MAX_PENDING_SEGMENTS = 64
#: Bytes held per direction in out-of-order segments.
MAX_PENDING_BYTES = 256 * 1024
#: A segment further ahead than this is not "out of order" but a different stream position entirely.
MAX_AHEAD = 1 << 20
#: Bytes of released stream data kept per direction to compare retransmissions with.
RECENT_BYTES = 16 * 1024

_MOD = 1 << 32


class Chunk(NamedTuple):
    """In-order stream data and where it came from."""

    data: bytes
    #: True when bytes before ``data`` were lost: it need not start on a message boundary.
    gap: bool
    #: The frame that carried these bytes, and its capture time.
    frame: int
    ts: float


class Conflict(NamedTuple):
    """A segment that carried different bytes for sequence numbers already seen."""

    seq: int
    #: How many bytes of the overlap differ from the first copy.
    differing: int
    #: The overlap compared, in bytes.
    compared: int
    frame: int
    ts: float


class TcpDirection:
    """Sequence tracking for one direction. ``feed`` returns the in-order :class:`Chunk` s it can release;
    conflicting retransmissions found on the way are appended to ``conflicts`` (the engine empties it)."""

    __slots__ = ("_pending", "_pending_bytes", "_recent", "conflicts", "duplicates", "gaps", "next_seq", "saw_syn")

    def __init__(self) -> None:
        self.next_seq: int | None = None
        self.saw_syn = False
        # Held out-of-order segments by sequence number: payload, frame number, capture time.
        self._pending: dict[int, tuple[bytes, int, float]] = {}
        self._pending_bytes = 0
        # The last released bytes, ending at next_seq (kept up to twice RECENT_BYTES, trimmed in bulk).
        self._recent = bytearray()
        self.duplicates = 0
        self.gaps = 0
        self.conflicts: list[Conflict] = []

    def _released(self, data: bytes) -> None:
        recent = self._recent
        recent += data
        if len(recent) > 2 * RECENT_BYTES:
            del recent[: len(recent) - RECENT_BYTES]

    def _compare(self, seq: int, payload: bytes, behind: int, frame: int, ts: float) -> None:
        """``payload`` starts ``behind`` bytes before next_seq: compare the part we kept."""
        recent = self._recent
        start = len(recent) - behind  # where seq falls in recent (negative: before what we kept)
        skip = max(0, -start)
        length = min(len(payload), behind) - skip
        if length <= 0:
            return
        first = start + skip
        theirs = payload[skip : skip + length]
        if recent[first : first + length] != theirs:
            ours = recent[first : first + length]
            differing = sum(1 for a, b in zip(ours, theirs, strict=True) if a != b)
            self.conflicts.append(Conflict((seq + skip) % _MOD, differing, length, frame, ts))

    def syn(self, seq: int) -> None:
        self.next_seq = (seq + 1) % _MOD
        self.saw_syn = True
        self._pending.clear()
        self._pending_bytes = 0
        self._recent.clear()

    def feed(self, seq: int, payload: bytes, frame: int, ts: float) -> list[Chunk]:
        """A data segment carried by ``frame`` at capture time ``ts``."""
        expected = self.next_seq
        if expected is None:
            self.next_seq = (seq + len(payload)) % _MOD
            self._released(payload)
            return [Chunk(payload, False, frame, ts)]
        offset = (seq - expected) % _MOD
        if offset == 0:
            self.next_seq = (expected + len(payload)) % _MOD
            self._released(payload)
            if not self._pending:
                return [Chunk(payload, False, frame, ts)]
            out = [Chunk(payload, False, frame, ts)]
            self._drain(out)
            return out
        if offset >= _MOD - MAX_AHEAD:  # behind: a retransmission, or an overlap with new bytes
            behind = _MOD - offset
            self._compare(seq, payload, behind, frame, ts)
            if behind >= len(payload):
                self.duplicates += 1
                return []
            self.next_seq = (expected + len(payload) - behind) % _MOD
            self._released(payload[behind:])
            out = [Chunk(payload[behind:], False, frame, ts)]
            self._drain(out)
            return out
        fits = len(self._pending) < MAX_PENDING_SEGMENTS and self._pending_bytes + len(payload) <= MAX_PENDING_BYTES
        if offset < MAX_AHEAD and fits:
            held = self._pending.get(seq)
            if held is None:
                self._pending[seq] = (payload, frame, ts)
                self._pending_bytes += len(payload)
            else:
                self.duplicates += 1
                common = min(len(held[0]), len(payload))
                if held[0][:common] != payload[:common]:
                    differing = sum(1 for a, b in zip(held[0][:common], payload[:common], strict=True) if a != b)
                    self.conflicts.append(Conflict(seq, differing, common, frame, ts))
            return []
        # The hole will not be filled within our bounds: give it up and carry on from what we hold.
        return self._skip_hole(seq, payload, frame, ts)

    def _skip_hole(self, seq: int, payload: bytes, frame: int, ts: float) -> list[Chunk]:
        self.gaps += 1
        self._pending[seq] = (payload, frame, ts)
        self._pending_bytes += len(payload)
        expected = self.next_seq if self.next_seq is not None else seq
        first = min(self._pending, key=lambda s: (s - expected) % _MOD)
        data, held_frame, held_ts = self._pending.pop(first)
        self._pending_bytes -= len(data)
        self.next_seq = (first + len(data)) % _MOD
        self._recent.clear()  # bytes after a hole: nothing before them to compare with
        self._released(data)
        out = [Chunk(data, True, held_frame, held_ts)]
        self._drain(out)
        return out

    def _drain(self, out: list[Chunk]) -> None:
        pending = self._pending
        while pending:
            expected = self.next_seq
            assert expected is not None
            progressed = False
            for seq in list(pending):
                offset = (seq - expected) % _MOD
                if offset == 0 or offset >= _MOD - MAX_AHEAD:
                    data, frame, ts = pending.pop(seq)
                    self._pending_bytes -= len(data)
                    behind = 0 if offset == 0 else _MOD - offset
                    if behind:
                        self._compare(seq, data, behind, frame, ts)
                    if behind < len(data):
                        out.append(Chunk(data[behind:], False, frame, ts))
                        self._released(data[behind:])
                        self.next_seq = (expected + len(data) - behind) % _MOD
                    else:
                        self.duplicates += 1
                    progressed = True
                    break
            if not progressed:
                return

    def flush(self) -> list[Chunk]:
        """At the end of a capture or on FIN: release what is held, gaps and all."""
        out: list[Chunk] = []
        while self._pending:
            expected = self.next_seq if self.next_seq is not None else 0
            first = min(self._pending, key=lambda s: (s - expected) % _MOD)
            data, frame, ts = self._pending.pop(first)
            self._pending_bytes -= len(data)
            gap = (first - expected) % _MOD != 0
            if gap:
                self.gaps += 1
                self._recent.clear()
            self.next_seq = (first + len(data)) % _MOD
            self._released(data)
            out.append(Chunk(data, gap, frame, ts))
            self._drain(out)
        return out
