"""The machine a benchmark ran on, printed at the top of its output: figures only mean something with it."""

from __future__ import annotations

import os
import platform
from pathlib import Path

#: The CPU flags that change Seam's figures (vector units for the C paths, AES/SHA for the MACs).
INTERESTING_FLAGS = ("sse4_2", "avx", "avx2", "avx512f", "avx512bw", "aes", "vaes", "sha_ni", "pclmulqdq")


#: Bit 5 of a virtio balloon's feature bits: VIRTIO_BALLOON_F_REPORTING, free page reporting.
_BALLOON_REPORTING = 5


def returns_freed_memory() -> bool:
    """Whether this is a virtual machine whose balloon reports free pages to the host. Memory freed then
    goes back to the host, and the next write to it costs a fault in the host, charged to the writer as
    system time: figures per CPU-second of anything that writes much fresh memory (a journal's page
    cache) swing from run to run, so quote medians of several runs there."""
    for features in Path("/sys/bus/virtio/drivers/virtio_balloon").glob("virtio*/features"):
        try:
            bits = features.read_text().strip()
        except OSError:
            continue
        if len(bits) > _BALLOON_REPORTING and bits[_BALLOON_REPORTING] == "1":
            return True
    return False


def describe() -> str:
    """'AMD EPYC 7B13, 2 cores, flags avx2 aes sha_ni, Linux 6.1, Python 3.11.7'."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", "unknown CPU", platform.processor()):
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    shown = " ".join(f for f in INTERESTING_FLAGS if f in flags) or "none of note"
    balloon = ", freed memory returned to the host (balloon page reporting)" if returns_freed_memory() else ""
    return (
        f"{model}, {os.cpu_count()} cores, flags {shown}, {platform.system()} {platform.release().split('-')[0]}, "
        f"Python {platform.python_version()}{balloon}"
    )


if __name__ == "__main__":
    print(describe())
