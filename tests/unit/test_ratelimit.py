"""Rate-limited reporting (bridge.ratelimit)."""

from __future__ import annotations

import logging

import pytest

from bridge.logsetup import get_logger
from bridge.ratelimit import RateLimitedLog, Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_first_occurrence_passes_repeats_are_counted_until_the_interval_ends() -> None:
    clock = Clock()
    throttle = Throttle(60, clock=clock)
    assert throttle.allow("a") == 0
    assert [throttle.allow("a") for _ in range(5)] == [None] * 5
    assert throttle.allow("b") == 0  # keys are independent
    clock.now += 60
    assert throttle.allow("a") == 5  # the report says how many were held back
    assert throttle.allow("a") is None


def test_keys_are_bounded_oldest_forgotten() -> None:
    throttle = Throttle(60, max_keys=3, clock=Clock())
    for key in "abcd":
        assert throttle.allow(key) == 0
    assert throttle.allow("a") == 0  # forgotten, so reported again
    assert throttle.allow("d") is None


def test_rate_limited_log_writes_one_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    limited = RateLimitedLog(get_logger("bridge.test_ratelimit"), interval=3600)
    written = [limited.warning("garbage", "hub sent garbage", n=n) for n in range(100)]
    assert written == [True] + [False] * 99
    assert sum("hub sent garbage" in r.getMessage() for r in caplog.records) == 1
