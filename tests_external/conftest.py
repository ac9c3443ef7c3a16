"""The external suite: tests against public captures that are not kept in the repository.

SEAM_FIXTURES names the directory that holds them (its ``pcaps/`` folder, or the captures themselves).
A missing corpus stops the run with an error: these tests are never skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PUBLIC_CAPTURES = ["icsnpp_modbus_example.pcap", "modbus_test_data_part1.pcap", "modbus_test_data_part2.pcap"]


def public_dir() -> Path:
    value = os.environ.get("SEAM_FIXTURES", "")
    if not value:
        raise pytest.UsageError("the external suite needs SEAM_FIXTURES: the directory of the public captures")
    base = Path(value)
    directory = base / "pcaps" if (base / "pcaps").is_dir() else base
    missing = [name for name in PUBLIC_CAPTURES if not (directory / name).is_file()]
    if missing:
        raise pytest.UsageError(f"SEAM_FIXTURES={value}: {', '.join(missing)} not found in {directory}")
    return directory


def pytest_configure(config: pytest.Config) -> None:
    public_dir()  # fail before collecting anything


@pytest.fixture(scope="session")
def corpus() -> dict[str, Path]:
    directory = public_dir()
    return {name: directory / name for name in PUBLIC_CAPTURES}


@pytest.fixture(params=PUBLIC_CAPTURES)
def capture(corpus: dict[str, Path], request: pytest.FixtureRequest) -> Path:
    return corpus[request.param]
