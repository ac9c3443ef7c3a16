from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.control.node import start_node
from tests.core.seamrun import SeamRun


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeamRun]:
    workdir: Path = tmp_path_factory.mktemp("node")
    running = start_node(workdir)
    try:
        yield running
    finally:
        running.stop()
