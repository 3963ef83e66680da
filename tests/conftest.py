from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.logwatch import LogWatch
from tests.mosquitto import Mosquitto, running_mosquitto

# The suite must pass on a loaded 2-core machine: property tests judge correctness, not speed.
settings.register_profile(
    "loaded-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("loaded-machine")


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    """A fresh Mosquitto broker on a free port, per test."""
    with running_mosquitto() as broker:
        yield broker


@pytest.fixture
async def logs() -> AsyncIterator[LogWatch]:
    watch = LogWatch()
    root = logging.getLogger()
    level = root.level
    root.addHandler(watch)
    root.setLevel(logging.DEBUG)
    try:
        yield watch
    finally:
        root.removeHandler(watch)
        root.setLevel(level)
