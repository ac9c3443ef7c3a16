"""Process-wide tuning Seam applies: the allocator (diode processes, at start) and BLAS threads (on import)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

from otseam.core.memory import keep_freed_memory

PROBE = """
import resource, sys
from otseam.core.memory import keep_freed_memory
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    # The receiver's pattern: a batch of block-sized buffers held until the journal write, then all freed.
    batch = [b"\x01" * 100_000 for _ in range(200)]  # written: every page is touched
    del batch
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
"""


def test_freed_buffers_are_reused_without_page_faults() -> None:
    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        return int(out.stdout)

    # Seam runs on glibc Linux (Debian); elsewhere keep_freed_memory() is a documented no-op returning False.
    assert platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() and keep_freed_memory()  # once per process, then a no-op
    default, tuned = faults("default"), faults("tuned")
    # Untuned, the 20 MB freed at the top of the heap go back to the kernel each time and every page
    # faults in again for the next batch; tuned, they are kept for it.
    assert default > 10 * tuned, (default, tuned)


def test_importing_seam_keeps_numpy_to_one_blas_thread() -> None:
    """OpenBLAS's worker threads spin after start-up and took CPU from the diode on two cores."""
    probe = "import os, otseam, numpy; print(len(os.listdir('/proc/self/task')))"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    assert int(out.stdout) == 1
