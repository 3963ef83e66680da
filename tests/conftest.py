from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.logwatch import LogWatch
from tests.mosquitto import Mosquitto, running_mosquitto

# The suite must pass on a loaded 2-core machine: property tests judge correctness, not speed.
settings.register_profile(
    "loaded-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("loaded-machine")

# The Ctrl+C tests send SIGINT to the commands they start. A suite started in the background by a
# non-interactive shell (`cmd &`) inherits SIGINT ignored and would pass that on to every child,
# which then cannot be interrupted: give the children the terminal's default instead.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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
