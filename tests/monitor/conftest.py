"""The captures the monitor's tests read: made here, by real peers talking to `seam sim` (see traffic.py).

The public captures (Digital Bond's, ICSNPP's) are read by the external suite, tests_external/, which
defines a ``corpus`` fixture of the same shape, so that the generic tests below run on both.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.monitor import traffic

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Capture name → file, recorded once per test process (about five seconds)."""
    return traffic.generate(tmp_path_factory.mktemp("captures"))


@pytest.fixture(params=traffic.CAPTURES)
def capture(corpus: dict[str, Path], request: pytest.FixtureRequest) -> Path:
    """Each capture in turn."""
    return corpus[request.param]
