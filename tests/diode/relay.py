"""A lossy UDP relay for the diode tests: drops, duplicates, reorders, corrupts and truncates.

It runs in its own thread with its own sockets, so it is a real hop on the path, not a hook inside
the code under test. Every decision comes from one seeded random generator, and the relay keeps the
ground truth (which fragments of which block got through intact), so a test can compare the
receiver's own account of what was lost with what really happened, exactly.
"""

from __future__ import annotations

import contextlib
import random
import select
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from otseam.diode import mmsg, wire

_SO_RCVBUFFORCE = 33
#: Any UDP datagram fits a slot; the relay carries pydiode's 65,507-byte datagrams in the benchmark too.
_SLOT = 65536
_BATCH = 64


@dataclass
class Impairments:
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    truncate: float = 0.0
    #: Let beacons through untouched (to test block loss without also losing synchronisation).
    spare_beacons: bool = True
    seed: int = 1


@dataclass
class Truth:
    forwarded: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0
    truncated: int = 0
    #: (session, sequence) -> k, for every block the relay saw at least one fragment of.
    blocks: dict[tuple[int, int], int] = field(default_factory=dict)
    #: (session, sequence) -> fragment indexes that reached the receiver unaltered.
    intact: dict[tuple[int, int], set[int]] = field(default_factory=lambda: defaultdict(set))

    def lost_blocks(self, session: int | None = None) -> list[int]:
        return sorted(
            seq
            for (sess, seq), k in self.blocks.items()
            if (session is None or sess == session) and len(self.intact.get((sess, seq), ())) < k
        )


class LossyRelay:
    def __init__(
        self,
        target: tuple[str, int],
        impairments: Impairments,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        keep_truth: bool = True,
        batched: bool | None = None,
    ) -> None:
        self.target = target
        self.batched = mmsg.available() if batched is None else batched
        self.keep_truth = keep_truth
        self.impairments = impairments
        self.truth = Truth()
        self._rng = random.Random(impairments.seed)
        self._lock = threading.Lock()
        self._in = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):
            self._in.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 64 * 1024 * 1024)
        self._in.bind(listen)
        self._in.settimeout(0.05)
        self._out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.address: tuple[str, int] = self._in.getsockname()
        self._held: list[tuple[int, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lossy-relay", daemon=True)

    def __enter__(self) -> LossyRelay:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def set(self, **changes: float | bool) -> None:
        """Change impairment rates while running (e.g. a clean link for the healing snapshot)."""
        with self._lock:
            for name, value in changes.items():
                setattr(self.impairments, name, value)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._in.close()
        self._out.close()

    def _run(self) -> None:
        if self.batched:
            self._run_batched()
            return
        while not self._stop.is_set():
            try:
                data = self._in.recv(65535)
            except TimeoutError:
                self._release_held(force=True)
                continue
            except OSError:
                return
            with self._lock:
                self._relay(data)

    def _run_batched(self) -> None:
        """Up to 64 datagrams per system call each way, so that the relay (a Python process on the same
        cores in the benchmark) costs the link as little as possible. Only plain random loss takes the
        short path; any other impairment, or keeping the truth, goes through :meth:`_relay` as before."""
        # The kernel's segmentation and coalescing on both of its sockets, as the diode's own ends use
        # them: the relay still drops, corrupts or delays datagram by datagram.
        inbound = mmsg.BatchReceiver(self._in, _SLOT, _BATCH, coalesce=True)
        outbound = mmsg.BatchSender(self._out, self.target, _SLOT, _BATCH, segment=True)
        view, out = inbound.view, outbound.buffer
        poller = select.poll()
        poller.register(self._in.fileno(), select.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(50):
                with self._lock:
                    self._release_held(force=True)
                continue
            try:
                got = inbound.receive()
            except OSError:
                return
            starts, sizes = inbound.starts, inbound.sizes
            with self._lock:
                imp = self.impairments
                plain = not (self.keep_truth or imp.spare_beacons or self._held) and not (
                    imp.duplicate or imp.reorder or imp.corrupt or imp.truncate
                )
                if not plain:
                    for i in range(got):
                        if sizes[i] >= 0:
                            self._relay(bytes(view[starts[i] : starts[i] + sizes[i]]))
                    continue
                kept: list[int] = []
                draw, drop = self._rng.random, imp.drop
                for i in range(got):
                    if draw() < drop:
                        self.truth.dropped += 1
                        continue
                    # The draws _relay makes for a datagram it forwards (corrupt, truncate, duplicate,
                    # reorder): a seeded run drops the same datagrams whichever way it forwards them.
                    draw(), draw(), draw(), draw()
                    kept.append(i)
                self.truth.forwarded += len(kept)
            # A coalesced receive can hold more datagrams than the outbound buffer: forward in slices.
            for chunk in range(0, len(kept), _BATCH):
                lengths: list[int] = []
                for i in kept[chunk : chunk + _BATCH]:
                    size, at = sizes[i], len(lengths) * _SLOT
                    if size < 0:  # longer than any UDP datagram: nothing to forward
                        continue
                    out[at : at + size] = view[starts[i] : starts[i] + size]
                    lengths.append(size)
                outbound.set_lengths(lengths)
                first = 0
                while first < len(lengths) and not self._stop.is_set():
                    try:
                        sent = outbound.send(first, len(lengths) - first)
                    except OSError:
                        return
                    if not sent:
                        time.sleep(0.0002)  # the outbound buffer is full: back off, as a real relay would
                    first += sent

    def _relay(self, data: bytes) -> None:
        imp, rng, truth = self.impairments, self._rng, self.truth
        ident = self._identify(data) if self.keep_truth or imp.spare_beacons else None
        spared = imp.spare_beacons and ident is None and data[3:4] == bytes([wire.Kind.BEACON])
        if ident is not None and self.keep_truth:
            session, seq, k, _ = ident
            truth.blocks.setdefault((session, seq), k)
        if not spared and rng.random() < imp.drop:
            truth.dropped += 1
            self._release_held()
            return
        altered = False
        if not spared and rng.random() < imp.corrupt:
            position = rng.randrange(len(data))
            data = data[:position] + bytes([data[position] ^ (1 << rng.randrange(8))]) + data[position + 1 :]
            truth.corrupted += 1
            altered = True
        if not spared and rng.random() < imp.truncate:
            data = data[: rng.randrange(len(data))]
            truth.truncated += 1
            altered = True
        if ident is not None and self.keep_truth and not altered:
            truth.intact[(ident[0], ident[1])].add(ident[3])
        copies = 2 if not spared and rng.random() < imp.duplicate else 1
        truth.duplicated += copies - 1
        for _ in range(copies):
            if not spared and rng.random() < imp.reorder:
                # Held back until one to three later datagrams have gone past it.
                self._held.append((rng.randint(1, 3), data))
                truth.reordered += 1
            else:
                self._send(data)
                self._release_held()

    def _release_held(self, force: bool = False) -> None:
        still: list[tuple[int, bytes]] = []
        for countdown, data in self._held:
            if force or countdown <= 1:
                self._send(data)
            else:
                still.append((countdown - 1, data))
        self._held = still

    def _send(self, data: bytes) -> None:
        self.truth.forwarded += 1
        with contextlib.suppress(OSError):
            self._out.sendto(data, self.target)

    @staticmethod
    def _identify(data: bytes) -> tuple[int, int, int, int] | None:
        """(session, sequence, k, index) of a fragment; None for beacons and anything unparseable."""
        if len(data) < wire.HEADER_SIZE:
            return None
        _, _, kind, _, k, _, index, session, sequence, _ = wire.HEADER.unpack_from(data)
        if kind not in (wire.Kind.DATA, wire.Kind.PARITY):
            return None
        return session, sequence, k, index


__all__ = ["Impairments", "LossyRelay", "Truth"]
