"""Run tests several times in a row while other processes keep every core busy.

    python -m tests.support.stress --runs 5 -- tests/diode tests/core -n 2

A test that passes only on an idle machine waits on time instead of on its condition; this is how such
a test is found before CI finds it. The load is one busy process per core (nice 0, like a real
neighbour), started before the first run and stopped after the last. Stops at the first failed run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

BUSY = "while True: pass"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2, help="busy processes (default: one per core)")
    parser.add_argument("pytest_args", nargs="*", help="arguments for pytest, after --")
    args = parser.parse_args(argv)
    hogs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(args.hogs)]
    try:
        for run in range(1, args.runs + 1):
            started = time.monotonic()
            code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args.pytest_args])
            print(f"stress: run {run}/{args.runs} exit {code} in {time.monotonic() - started:.0f} s", flush=True)
            if code != 0:
                return code
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    print(f"stress: {args.runs} runs in a row passed with {args.hogs} busy processes beside them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
