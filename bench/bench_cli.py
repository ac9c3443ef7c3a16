"""Start-up cost of the `seam` command: CPU seconds (user + system) of one whole process.

    .venv/bin/python bench/bench_cli.py [--repeat 7]

Each case runs the command as an operator would (a fresh interpreter, the installed package); the figure
is the best of --repeat runs, read from the child's resource usage, so other load on the machine does
not inflate it the way wall time would. The peer is the floor every Python command pays: an interpreter
that starts and exits (`python -c pass`), and one that only imports typer, rich and pydantic, the
libraries any command of this kind would load.
"""

from __future__ import annotations

import argparse
import platform
import resource
import subprocess
import sys
from pathlib import Path

from otseam.contract.init import example_text


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                wanted = ("avx2", "avx512f", "sse4_2", "aes", "sha_ni")
                return " ".join(f for f in line.split(":", 1)[1].split() if f in wanted)
    except OSError:
        pass
    return ""


def cpu_seconds(command: list[str], cwd: Path) -> float | None:
    """CPU of one run; None when the command failed (an older Seam without it)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(command, cwd=cwd, capture_output=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode not in (0, 1):
        return None
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    work = Path(subprocess.run(["mktemp", "-d"], capture_output=True, text=True, check=True).stdout.strip())
    (work / "seam.yaml").write_text(example_text())
    seam = [sys.executable, "-m", "otseam.cli"]
    cases = {
        "python -c pass (floor)": [sys.executable, "-c", "pass"],
        "import typer, rich, pydantic (floor)": [sys.executable, "-c", "import typer, rich.console, pydantic"],
        "seam --version": [*seam, "--version"],
        "seam --help": [*seam, "--help"],
        "seam check seam.yaml (the example)": [*seam, "check", "seam.yaml"],
    }
    print(f"CPU: {cpu_name()} [{cpu_flags()}], Python {platform.python_version()}")
    print(f"best of {args.repeat}, CPU seconds (user+system) per start")
    for name, command in cases.items():
        runs = [cpu_seconds(command, work) for _ in range(args.repeat)]
        done = [r for r in runs if r is not None]
        print(f"  {name:<40} {min(done):6.3f} s" if done else f"  {name:<40} failed")


if __name__ == "__main__":
    main()
