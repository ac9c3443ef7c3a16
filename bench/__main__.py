"""Run every benchmark in this folder, one after the other: `python -m bench [NAME ...]`.

Each benchmark is a standalone script (`bench/bench_<area>.py`) that prints Seam's figures and its
peer's from the same run. Results are recorded by hand in docs/benchmarks.md with the machine state.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    scripts = sorted(here.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if any(name in s.stem for name in argv)]
    failed = 0
    for script in scripts:
        print(f"=== {script.stem}", flush=True)
        failed += subprocess.run([sys.executable, str(script)], check=False).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
