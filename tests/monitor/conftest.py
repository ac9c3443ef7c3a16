"""Where the shared public captures are: $SEAM_FIXTURES, else ../shared/fixtures beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURE_NAMES = ["icsnpp_modbus_example.pcap", "modbus_test_data_part1.pcap", "modbus_test_data_part2.pcap"]


def pcaps_dir() -> Path:
    base = Path(os.environ["SEAM_FIXTURES"]) if os.environ.get("SEAM_FIXTURES") else REPO.parent / "shared" / "fixtures"
    return base / "pcaps" if (base / "pcaps").is_dir() else base


@pytest.fixture(scope="session")
def pcaps() -> Path:
    directory = pcaps_dir()
    missing = [name for name in FIXTURE_NAMES if not (directory / name).is_file()]
    if missing:
        raise RuntimeError(f"public captures {missing} not found in {directory}: set SEAM_FIXTURES")
    return directory
