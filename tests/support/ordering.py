"""The longest test files first, so that two workers end together.

With `--dist loadfile` each file goes whole to one worker, in the order the files were collected. A
file of a few minutes handed out last keeps one worker busy while the other has nothing left: the
suite takes as long as that tail. This plugin remembers how long each file took (pytest's cache, at
the end of a run in the controller) and, in the next run, hands the files out longest first; files it
has not seen yet go first too, as they may be long. The tests of a file keep their order.

A fresh clone has no cache: it starts from the times shipped in ``file-seconds.json`` (without them
its first run hands the two-minute fleet file out late; docs/testing.md has the figures).
Refresh that file from the cache of a whole run with ``python -m tests.support.ordering``.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import pytest

CACHE_KEY = "seam/file-seconds"
SHIPPED = Path(__file__).with_name("file-seconds.json")
CACHE_FILE = Path(".pytest_cache/v") / CACHE_KEY


def shipped() -> dict[str, float]:
    try:
        data = json.loads(SHIPPED.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


class FileOrder:
    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        cache = getattr(config, "cache", None)
        if cache is None or config.getoption("failedfirst", False) or config.getoption("newfirst", False):
            return  # no cache, or the user asked for an order of their own
        known: dict[str, float] = cache.get(CACHE_KEY, {}) or shipped()
        first_seen: dict[str, int] = {}
        for index, item in enumerate(items):
            first_seen.setdefault(file_of(item.nodeid), index)
        unknown = float("inf")
        items.sort(key=lambda item: (-known.get(file_of(item.nodeid), unknown), first_seen[file_of(item.nodeid)]))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[file_of(report.nodeid)] += report.duration

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        cache = getattr(session.config, "cache", None)
        if cache is None or hasattr(session.config, "workerinput") or not self.seconds:
            return  # a worker, or nothing ran: the controller (or a run without workers) records
        known: dict[str, float] = cache.get(CACHE_KEY, {})
        known.update({name: round(seconds, 2) for name, seconds in self.seconds.items()})
        cache.set(CACHE_KEY, known)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(FileOrder(), "seam-file-order")


def main() -> int:
    """Write the file times of the last whole run (this checkout's pytest cache) as the shipped ones."""
    try:
        known = json.loads(CACHE_FILE.read_text())
    except (OSError, ValueError) as exc:
        print(f"no file times in {CACHE_FILE}: run the suite first ({exc})", file=sys.stderr)
        return 1
    SHIPPED.write_text(json.dumps({k: round(v) for k, v in sorted(known.items())}, indent=1) + "\n")
    print(f"{len(known)} files written to {SHIPPED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
