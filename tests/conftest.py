"""Shared fixtures: real servers on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import servers

pytest_plugins = ["tests.support.ordering"]


@pytest.fixture
def mqtt_broker() -> Iterator[servers.Mosquitto]:
    with servers.mosquitto() as broker:
        yield broker


@pytest.fixture(scope="session")
def pg_server() -> Iterator[servers.Postgres]:
    with servers.postgres() as server:
        yield server
