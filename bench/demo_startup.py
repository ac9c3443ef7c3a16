"""How long `make demo` takes on a fresh clone until both consoles answer: `python bench/demo_startup.py`.

Clones this repository's HEAD into a temporary directory, runs `make demo` there with pip's and npm's
caches off (wheels and packages come from the configured indexes, as on a new machine), and measures
the time until the demo prints its guide and the IT console serves its page and uPlot. Then it sends
Ctrl-C (SIGINT to the process group, as a terminal does) and checks that nothing is left running.
It needs the network (or local package mirrors) for pip and npm; it is not part of `python -m bench`.
Target (issue 21): a working console in under two minutes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.machine import describe

ROOT = Path(__file__).resolve().parent.parent
GUIDE_END = "stop         Ctrl-C"
LIMIT = 600.0


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def main() -> int:
    print(describe())
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="seam-demo-clone-") as tmp:
        clone = Path(tmp) / "seam"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        out = Path(tmp) / "make-demo.out"
        env = {**os.environ, "PIP_NO_CACHE_DIR": "1", "npm_config_cache": str(Path(tmp) / "npm-cache")}
        start = time.monotonic()
        with out.open("w") as sink:
            make = subprocess.Popen(
                ["make", "demo"], cwd=clone, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        try:
            guide = console = None
            while time.monotonic() - start < LIMIT and make.poll() is None:
                text = out.read_text(errors="replace")
                if guide is None and GUIDE_END in text:
                    guide = time.monotonic() - start
                if guide is not None and console is None:
                    line = next(line for line in text.splitlines() if "IT console" in line)
                    base = line.split()[2].rstrip("/")
                    if _answers(f"{base}/static/try.html") and _answers(f"{base}/vendor/uplot/uPlot.min.css"):
                        console = time.monotonic() - start
                        break
                time.sleep(0.25)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(make.pid, signal.SIGINT)
            try:
                code = make.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(make.pid, signal.SIGKILL)
                code = make.wait()
        left = subprocess.run(["pgrep", "-f", str(clone)], capture_output=True, text=True).stdout.split()
        print(f"load average after: {os.getloadavg()[0]:.1f}")
        if console is None:
            print(out.read_text(errors="replace")[-3000:])
            print(f"FAILED: no working console within {LIMIT:.0f} s (make exited {make.returncode})")
            return 1
        print(f"guide printed after {guide:.1f} s; IT console with its charts' code answering after {console:.1f} s")
        print(f"make demo after Ctrl-C: exit {code}; processes left running: {len(left)}")
        print(f"target < 120 s: {'met' if console < 120 else 'NOT met'}")
        return 0 if console < 120 and not left else 1


if __name__ == "__main__":
    sys.exit(main())
