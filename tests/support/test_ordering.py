"""The file order a fresh clone starts from: the times shipped beside the plugin."""

from __future__ import annotations

from pathlib import Path

from tests.support import ordering

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_times_name_test_files_that_exist_and_put_the_fleet_first() -> None:
    times = ordering.shipped()
    assert len(times) > 100
    missing = [name for name in times if not (ROOT / name).is_file()]
    assert missing == [], f"file-seconds.json names files that are gone: refresh it ({ordering.__doc__})"
    assert max(times, key=lambda name: times[name]) == "tests/fleet/test_fleet.py"


def test_every_test_file_has_a_shipped_time() -> None:
    """A test file without one is handed out first (it may be long): say so when one is added."""
    files = {str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")}
    unknown = sorted(files - set(ordering.shipped()))
    assert unknown == [], f"no shipped time for {unknown}: run the suite, then python -m tests.support.ordering"
