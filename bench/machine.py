"""The machine a benchmark ran on, printed at the top of its output: figures only mean something with it."""

from __future__ import annotations

import os
import platform
from pathlib import Path

#: The CPU flags that change Seam's figures (vector units for the C paths, AES/SHA for the MACs).
INTERESTING_FLAGS = ("sse4_2", "avx", "avx2", "avx512f", "avx512bw", "aes", "vaes", "sha_ni", "pclmulqdq")


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
    return (
        f"{model}, {os.cpu_count()} cores, flags {shown}, {platform.system()} {platform.release().split('-')[0]}, "
        f"Python {platform.python_version()}"
    )


if __name__ == "__main__":
    print(describe())
