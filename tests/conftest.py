from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.mosquitto import Mosquitto, running_mosquitto


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    """A fresh Mosquitto broker on a free port, per test."""
    with running_mosquitto() as broker:
        yield broker
