"""Rate-limited reporting: the first occurrence of a kind of problem is reported at once, the
repeats at most once per interval, with how many were held back meanwhile.

A storm of identical problems (garbage frames, denied publishes) then costs a counter increment
each instead of a log line each, and nobody misses that it is still happening.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import structlog


class Throttle:
    """Decides, per key, whether an occurrence is reported now; remembers ``max_keys`` keys."""

    def __init__(self, interval: float = 60.0, max_keys: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._clock = clock
        self._keys: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()

    def allow(self, key: Hashable) -> int | None:
        """None when this occurrence is held back; else how many were held back since the
        previous report of ``key`` (0 for the first one)."""
        now = self._clock()
        entry = self._keys.get(key)
        if entry is not None and now - entry[0] < self.interval:
            self._keys[key] = (entry[0], entry[1] + 1)
            return None
        self._keys[key] = (now, 0)
        self._keys.move_to_end(key)
        if len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
        return 0 if entry is None else entry[1]


class RateLimitedLog:
    """A logger's ``warning`` that reports each key at most once per interval."""

    def __init__(self, logger: structlog.stdlib.BoundLogger, interval: float = 60.0) -> None:
        self.logger = logger
        self.throttle = Throttle(interval)

    def warning(self, key: Hashable, event: str, **fields: Any) -> bool:
        """Log ``event`` unless ``key`` was logged less than ``interval`` ago; whether it was.

        A report after held-back repeats carries ``repeated=<count>``."""
        held = self.throttle.allow(key)
        if held is None:
            return False
        if held:
            fields["repeated"] = held
        self.logger.warning(event, **fields)
        return True
