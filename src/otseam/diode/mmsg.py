"""Many datagrams per system call: ``sendmmsg`` and ``recvmmsg``, from the diode's C speedups or, where
they were not built, from the C library through ctypes.

A 1,472-byte datagram costs CPython one system call of a few microseconds on each side, a large share
of the whole per-datagram budget at a gigabit (85,000 datagrams a second). Linux moves up to 1,024
datagrams per call with these two; the buffers, iovecs and message headers are allocated once and
reused, so a batch costs one ctypes call and no allocation. The compiled module does the same in one
call with its arrays on the stack, which also spares ctypes' own overhead per call.

Where they are missing (not Linux, a C library without them) :func:`available` is False and the
callers use ``sendto`` / ``recv_into``, one datagram per call: same bytes on the wire, just slower.
"""

from __future__ import annotations

import array
import ctypes
import ctypes.util
import errno
import logging
import os
import socket
import struct
import sys
from collections.abc import Sequence
from typing import Any, cast

from otseam.diode import wire

log = logging.getLogger(__name__)

MSG_DONTWAIT = 0x40
MSG_TRUNC = 0x20


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


_MMSG_SIZE = ctypes.sizeof(_MMsgHdr)
_IOVEC_SIZE = ctypes.sizeof(_IoVec)
#: msg_flags and msg_len of one entry, read straight from the array's memory (no ctypes attribute access
#: per datagram).
_FLAGS_OFFSET = _MsgHdr.msg_flags.offset
_LEN_OFFSET = _MMsgHdr.msg_len.offset
_INT = struct.Struct("=i")
_UINT = struct.Struct("=I")
_SIZE_T = struct.Struct("N")


def _load() -> tuple[Any, Any] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        send, receive = libc.sendmmsg, libc.recvmmsg
    except (OSError, AttributeError):
        return None
    send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    send.restype = ctypes.c_int
    receive.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    receive.restype = ctypes.c_int
    return send, receive


_CALLS = _load()


def available() -> bool:
    """True where sendmmsg and recvmmsg can be called (Linux with glibc or musl)."""
    return _CALLS is not None or _compiled(None) is not None


def _compiled(wanted: bool | None) -> Any:
    """The compiled module if it is wanted and has the two calls (it has them on Linux only)."""
    module = wire.speedups(wanted)
    return module if module is not None and hasattr(module, "recv_batch") else None


def _pin(buffer: bytearray) -> Any:
    """A ctypes view of ``buffer``: while it lives the bytearray cannot be resized, so its address holds."""
    return (ctypes.c_char * len(buffer)).from_buffer(buffer)


def sockaddr_in(address: tuple[str, int]) -> bytes:
    """A ``struct sockaddr_in`` for an IPv4 address (resolved once, here, not per datagram)."""
    host = socket.gethostbyname(address[0])
    return struct.pack("=H", socket.AF_INET) + struct.pack(">H", address[1]) + socket.inet_aton(host) + bytes(8)


#: A coalesced message holds at most this much (the kernel caps a coalesced run at 64 KiB).
COALESCED_SLOT = 65536


class BatchReceiver:
    """Reads up to ``count`` messages per ``recvmmsg`` call into one preallocated buffer.

    After :meth:`receive`, datagram ``i`` lies at ``starts[i]`` in :attr:`buffer` and is ``sizes[i]``
    long; a datagram longer than ``slot`` is reported with size ``-1`` (the kernel truncated it: it
    cannot be ours). With ``coalesce`` (the compiled module on Linux 5.0+: UDP_GRO) the kernel may hand
    over a run of datagrams as one message, which is cut up again here: :attr:`coalescing` says whether
    it does. Without it, a message is one datagram and ``starts[i]`` is ``i * slot``.
    """

    def __init__(
        self,
        sock: socket.socket,
        slot: int,
        count: int = 64,
        compiled: bool | None = None,
        coalesce: bool = False,
    ) -> None:
        self._fd = sock.fileno()
        self.count = count
        self.coalescing = False
        module = _compiled(compiled)
        self._recv_batch = getattr(module, "recv_batch", None)
        if self._recv_batch is not None and coalesce:
            self.coalescing = bool(module.enable_coalescing(self._fd))
        self.slot = max(slot, COALESCED_SLOT) if self.coalescing else slot
        self.buffer = bytearray(self.slot * count)
        self.view = memoryview(self.buffer)
        self.starts: Sequence[int] = list(range(0, self.slot * count, self.slot))
        self.sizes: Sequence[int] = [0] * count
        if self._recv_batch is not None:
            # Filled in place by each receive, and read in place by the checker: no Python integer per
            # datagram. Room for every message cut into the smallest datagrams the C module accepts.
            capacity = count * (self.slot // wire.OVERHEAD + 1)
            self.starts = self._starts_array = array.array("q", bytes(8 * capacity))
            self.sizes = self._sizes_array = array.array("q", bytes(8 * capacity))
            return
        if _CALLS is None:
            raise OSError(errno.ENOSYS, "recvmmsg is not available here")
        self._call = _CALLS[1]
        self._pinned = _pin(self.buffer)
        base = ctypes.addressof(self._pinned)
        self._iovecs = (_IoVec * count)()
        self._messages = (_MMsgHdr * count)()
        for i in range(count):
            self._iovecs[i].iov_base = base + i * slot
            self._iovecs[i].iov_len = slot
            header = self._messages[i].msg_hdr
            header.msg_iov = ctypes.addressof(self._iovecs[i])
            header.msg_iovlen = 1
        self._messages_address = ctypes.addressof(self._messages)
        self._raw = memoryview(self._messages).cast("B")

    def receive(self) -> int:
        """Datagrams now queued (up to ``count`` messages); 0 when none is. Raises OSError on a real error."""
        if self._recv_batch is not None:
            got: int = self._recv_batch(
                self._fd, self.buffer, self.slot, self.count, self._starts_array, self._sizes_array
            )
            return got
        got = self._call(self._fd, self._messages_address, self.count, MSG_DONTWAIT, None)
        if got < 0:
            code = ctypes.get_errno()
            if code in (errno.EAGAIN, errno.EINTR):
                return 0
            raise OSError(code, os.strerror(code))
        raw, sizes, slot = self._raw, cast(list[int], self.sizes), self.slot
        flags_at, len_at = _FLAGS_OFFSET, _LEN_OFFSET
        for i in range(got):
            base = i * _MMSG_SIZE
            size = _UINT.unpack_from(raw, base + len_at)[0]
            if _INT.unpack_from(raw, base + flags_at)[0] & MSG_TRUNC or size > slot:
                size = -1
            sizes[i] = size
        return got


class BatchSender:
    """Sends many datagrams to one address per ``sendmmsg`` call, from a preallocated buffer.

    The caller writes datagram ``i`` at ``i * slot`` of :attr:`buffer` and its length into
    :meth:`set_length`, then calls :meth:`send`. With ``segment`` (the compiled module on Linux 4.18+:
    UDP_SEGMENT) a run of datagrams of equal length goes down the stack as one message and is cut into
    separate datagrams by the kernel or the network card; :attr:`segmenting` turns False for good if
    the route refuses it (a datagram larger than the path's MTU, say).
    """

    def __init__(
        self,
        sock: socket.socket,
        target: tuple[str, int],
        slot: int,
        count: int,
        compiled: bool | None = None,
        segment: bool = False,
    ) -> None:
        self._fd = sock.fileno()
        self.slot = slot
        self.count = count
        self.buffer = bytearray(slot * count)
        self.view = memoryview(self.buffer)
        self._address = sockaddr_in(target)
        self._lengths = [0] * count
        self._send_batch = getattr(_compiled(compiled), "send_batch", None)
        self.segmenting = segment and self._send_batch is not None
        if self._send_batch is not None:
            return
        if _CALLS is None:
            raise OSError(errno.ENOSYS, "sendmmsg is not available here")
        self._call = _CALLS[0]
        self._name = ctypes.create_string_buffer(self._address)
        self._pinned = _pin(self.buffer)
        base = ctypes.addressof(self._pinned)
        self._iovecs = (_IoVec * count)()
        self._messages = (_MMsgHdr * count)()
        for i in range(count):
            self._iovecs[i].iov_base = base + i * slot
            header = self._messages[i].msg_hdr
            header.msg_name = ctypes.addressof(self._name)
            header.msg_namelen = 16
            header.msg_iov = ctypes.addressof(self._iovecs[i])
            header.msg_iovlen = 1
        self._iov_raw = memoryview(self._iovecs).cast("B")
        self._len_offset = _IoVec.iov_len.offset
        self._messages_address = ctypes.addressof(self._messages)

    def set_lengths(self, lengths: Sequence[int]) -> None:
        if self._send_batch is not None:
            self._lengths[: len(lengths)] = lengths
            return
        raw, at, pack = self._iov_raw, self._len_offset, _SIZE_T.pack_into
        for i, length in enumerate(lengths):
            pack(raw, i * _IOVEC_SIZE + at, length)

    def send(self, first: int, count: int) -> int:
        """Send datagrams ``first .. first+count-1``; returns how many left (0 if the queue is full).

        Raises OSError for anything but a full queue (EAGAIN, ENOBUFS) or an interrupted call.
        """
        if self._send_batch is not None:
            try:
                done: int = self._send_batch(
                    self._fd, self._address, self.buffer, self.slot, self._lengths, first, count, self.segmenting
                )
            except OSError as exc:
                if not (self.segmenting and exc.errno in (errno.EINVAL, errno.EIO, errno.EMSGSIZE)):
                    raise
                # This route cannot take segmented messages (a datagram larger than its MTU, most
                # often): one datagram per message from now on, with the same bytes on the wire.
                self.segmenting = False
                log.warning("diode: the route refuses segmented messages (%s); sending datagrams one by one", exc)
                return self.send(first, count)
            return done
        sent = self._call(self._fd, self._messages_address + first * _MMSG_SIZE, count, MSG_DONTWAIT)
        if sent < 0:
            code = ctypes.get_errno()
            if code in (errno.EAGAIN, errno.ENOBUFS, errno.EINTR):
                return 0
            raise OSError(code, os.strerror(code))
        return int(sent)


__all__ = ["BatchReceiver", "BatchSender", "available", "sockaddr_in"]
