"""Many datagrams per system call: ``sendmmsg`` and ``recvmmsg`` from the C library, through ctypes.

A 1,472-byte datagram costs CPython one system call of a few microseconds on each side, a large share
of the whole per-datagram budget at a gigabit (85,000 datagrams a second). Linux moves up to 1,024
datagrams per call with these two; the buffers, iovecs and message headers are allocated once and
reused, so a batch costs one ctypes call and no allocation.

Where they are missing (not Linux, a C library without them) :func:`available` is False and the
callers use ``sendto`` / ``recv_into``, one datagram per call: same bytes on the wire, just slower.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import struct
import sys
from collections.abc import Sequence
from typing import Any

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
    return _CALLS is not None


def _pin(buffer: bytearray) -> Any:
    """A ctypes view of ``buffer``: while it lives the bytearray cannot be resized, so its address holds."""
    return (ctypes.c_char * len(buffer)).from_buffer(buffer)


def sockaddr_in(address: tuple[str, int]) -> bytes:
    """A ``struct sockaddr_in`` for an IPv4 address (resolved once, here, not per datagram)."""
    host = socket.gethostbyname(address[0])
    return struct.pack("=H", socket.AF_INET) + struct.pack(">H", address[1]) + socket.inet_aton(host) + bytes(8)


class BatchReceiver:
    """Reads up to ``count`` datagrams per ``recvmmsg`` call into one preallocated buffer.

    Datagram ``i`` of a batch lies at ``i * slot`` in :attr:`buffer`; :meth:`receive` returns how many
    arrived and fills :attr:`sizes`. A datagram longer than ``slot`` is reported with size ``-1`` (the
    kernel truncated it: it cannot be ours).
    """

    def __init__(self, sock: socket.socket, slot: int, count: int = 64) -> None:
        if _CALLS is None:
            raise OSError(errno.ENOSYS, "recvmmsg is not available here")
        self._call = _CALLS[1]
        self._fd = sock.fileno()
        self.slot = slot
        self.count = count
        self.buffer = bytearray(slot * count)
        self.view = memoryview(self.buffer)
        self.sizes = [0] * count
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
        """Datagrams now queued, up to ``count``; 0 when none is. Raises OSError on a real error."""
        got: int = self._call(self._fd, self._messages_address, self.count, MSG_DONTWAIT, None)
        if got < 0:
            code = ctypes.get_errno()
            if code in (errno.EAGAIN, errno.EINTR):
                return 0
            raise OSError(code, os.strerror(code))
        raw, sizes, slot = self._raw, self.sizes, self.slot
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
    :meth:`set_length`, then calls :meth:`send`.
    """

    def __init__(self, sock: socket.socket, target: tuple[str, int], slot: int, count: int) -> None:
        if _CALLS is None:
            raise OSError(errno.ENOSYS, "sendmmsg is not available here")
        self._call = _CALLS[0]
        self._fd = sock.fileno()
        self.slot = slot
        self.count = count
        self.buffer = bytearray(slot * count)
        self.view = memoryview(self.buffer)
        self._name = ctypes.create_string_buffer(sockaddr_in(target))
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
        raw, at, pack = self._iov_raw, self._len_offset, _SIZE_T.pack_into
        for i, length in enumerate(lengths):
            pack(raw, i * _IOVEC_SIZE + at, length)

    def send(self, first: int, count: int) -> int:
        """Send datagrams ``first .. first+count-1``; returns how many left (0 if the queue is full).

        Raises OSError for anything but a full queue (EAGAIN, ENOBUFS) or an interrupted call.
        """
        sent = self._call(self._fd, self._messages_address + first * _MMSG_SIZE, count, MSG_DONTWAIT)
        if sent < 0:
            code = ctypes.get_errno()
            if code in (errno.EAGAIN, errno.ENOBUFS, errno.EINTR):
                return 0
            raise OSError(code, os.strerror(code))
        return int(sent)


__all__ = ["BatchReceiver", "BatchSender", "available", "sockaddr_in"]
