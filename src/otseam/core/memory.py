"""Keeping freed memory for reuse instead of handing it back to the kernel at once (glibc only).

A process that moves hundreds of megabytes a second through buffers of 64 KiB to a few MiB (the diode's
blocks and journal writes) frees and allocates them thousands of times a second. glibc's defaults give
free memory at the top of the heap back to the kernel as soon as 128 KiB are free there, and serve
anything from 128 KiB up (rising with use, up to 32 MiB) with a fresh mmap: a batch of blocks held
until the journal write and then freed is paid for again, page by page, by the next batch. Measured
with bench/bench_diode_sides.py: the receiver took about 50,000 page faults per 300 MB received, and
about 500 with this (some 5% of its CPU). Raising the thresholds keeps up to ``trim`` bytes of freed
heap for the next buffer, a bounded cost in memory.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

#: mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

_done = False


def keep_freed_memory(trim: int = 64 << 20, top_pad: int = 16 << 20, mmap_threshold: int = 16 << 20) -> bool:
    """Tune glibc's allocator for this process, once; False where it is not glibc (nothing changes)."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        gnu_get_libc_version = libc.gnu_get_libc_version  # glibc has it, musl does not
    except (OSError, AttributeError):
        return False
    gnu_get_libc_version.restype = ctypes.c_char_p
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    ok = all(
        mallopt(parameter, value) == 1
        for parameter, value in (
            (_M_MMAP_THRESHOLD, mmap_threshold),
            (_M_TRIM_THRESHOLD, trim),
            (_M_TOP_PAD, top_pad),
        )
    )
    if not ok:
        log.debug("glibc %s refused a malloc setting", gnu_get_libc_version().decode())
    _done = ok
    return ok
