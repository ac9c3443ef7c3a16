"""Shared fixtures: real servers on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.support import servers

pytest_plugins = ["tests.support.ordering"]

# Hypothesis fails an example that takes longer than 200 ms by default: a timing assertion, which on a
# loaded machine (CI, `make stress`) fails a test that is right (it did, in a stress pass). Examples are
# bounded by their number instead; a test that needs a deadline sets one itself.
settings.register_profile("seam", deadline=None)
settings.load_profile("seam")


@pytest.fixture
def mqtt_broker() -> Iterator[servers.Mosquitto]:
    with servers.mosquitto() as broker:
        yield broker


@pytest.fixture(scope="session")
def pg_server() -> Iterator[servers.Postgres]:
    with servers.postgres() as server:
        yield server
