"""TCP reassembly for one direction of a connection: segments in, the byte stream out, in order.

Handles what span ports really deliver: retransmissions (the same bytes again, dropped), overlaps (only
the new part kept), out-of-order segments (held in a bounded window until the hole is filled) and lost
segments (after the window overflows, the hole is declared a gap and the analyser resynchronises).
A flow whose SYN we never saw starts at the first segment with data.
"""

from __future__ import annotations

#: Out-of-order segments held per direction before a hole is declared lost.
MAX_PENDING_SEGMENTS = 64
#: Bytes held per direction in out-of-order segments.
MAX_PENDING_BYTES = 256 * 1024
#: A segment further ahead than this is not "out of order" but a different stream position entirely.
MAX_AHEAD = 1 << 20

_MOD = 1 << 32


class TcpDirection:
    """Sequence tracking for one direction. ``feed`` returns the in-order data it can release.

    Each item is ``(data, gap_before)``; ``gap_before`` is True when bytes before ``data`` were lost,
    so the analyser must not assume ``data`` starts on a message boundary.
    """

    __slots__ = ("_pending", "_pending_bytes", "duplicates", "gaps", "next_seq", "saw_syn")

    def __init__(self) -> None:
        self.next_seq: int | None = None
        self.saw_syn = False
        self._pending: dict[int, bytes] = {}
        self._pending_bytes = 0
        self.duplicates = 0
        self.gaps = 0

    def syn(self, seq: int) -> None:
        self.next_seq = (seq + 1) % _MOD
        self.saw_syn = True
        self._pending.clear()
        self._pending_bytes = 0

    def feed(self, seq: int, payload: bytes) -> list[tuple[bytes, bool]]:
        expected = self.next_seq
        if expected is None:
            self.next_seq = (seq + len(payload)) % _MOD
            return [(payload, False)]
        offset = (seq - expected) % _MOD
        if offset == 0:
            self.next_seq = (expected + len(payload)) % _MOD
            if not self._pending:
                return [(payload, False)]
            out = [(payload, False)]
            self._drain(out)
            return out
        if offset >= _MOD - MAX_AHEAD:  # behind: a retransmission, or an overlap with new bytes
            behind = _MOD - offset
            if behind >= len(payload):
                self.duplicates += 1
                return []
            self.next_seq = (expected + len(payload) - behind) % _MOD
            out = [(payload[behind:], False)]
            self._drain(out)
            return out
        fits = len(self._pending) < MAX_PENDING_SEGMENTS and self._pending_bytes + len(payload) <= MAX_PENDING_BYTES
        if offset < MAX_AHEAD and fits:
            if seq not in self._pending:
                self._pending[seq] = payload
                self._pending_bytes += len(payload)
            else:
                self.duplicates += 1
            return []
        # The hole will not be filled within our bounds: give it up and carry on from what we hold.
        return self._skip_hole(seq, payload)

    def _skip_hole(self, seq: int, payload: bytes) -> list[tuple[bytes, bool]]:
        self.gaps += 1
        self._pending[seq] = payload
        self._pending_bytes += len(payload)
        expected = self.next_seq if self.next_seq is not None else seq
        first = min(self._pending, key=lambda s: (s - expected) % _MOD)
        data = self._pending.pop(first)
        self._pending_bytes -= len(data)
        self.next_seq = (first + len(data)) % _MOD
        out = [(data, True)]
        self._drain(out)
        return out

    def _drain(self, out: list[tuple[bytes, bool]]) -> None:
        pending = self._pending
        while pending:
            expected = self.next_seq
            assert expected is not None
            progressed = False
            for seq in list(pending):
                offset = (seq - expected) % _MOD
                if offset == 0 or offset >= _MOD - MAX_AHEAD:
                    data = pending.pop(seq)
                    self._pending_bytes -= len(data)
                    behind = 0 if offset == 0 else _MOD - offset
                    if behind < len(data):
                        out.append((data[behind:], False))
                        self.next_seq = (expected + len(data) - behind) % _MOD
                    else:
                        self.duplicates += 1
                    progressed = True
                    break
            if not progressed:
                return

    def flush(self) -> list[tuple[bytes, bool]]:
        """At the end of a capture or on FIN: release what is held, gaps and all."""
        out: list[tuple[bytes, bool]] = []
        while self._pending:
            expected = self.next_seq if self.next_seq is not None else 0
            first = min(self._pending, key=lambda s: (s - expected) % _MOD)
            data = self._pending.pop(first)
            self._pending_bytes -= len(data)
            gap = (first - expected) % _MOD != 0
            if gap:
                self.gaps += 1
            self.next_seq = (first + len(data)) % _MOD
            out.append((data, gap))
            self._drain(out)
        return out
