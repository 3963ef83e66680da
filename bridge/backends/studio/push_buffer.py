"""Hub pushes that arrive while a snapshot is taken, replayed once it is in (pure, no IO).

A trait's pushes are coalesced: only its latest value can be newer than what the snapshot read,
so the buffer holds at most one entry per trait, plus every other push (device events, button
presses) in arrival order. Past ``limit`` entries it overflows and keeps nothing: the caller takes
the snapshot again. Without a limit (the last attempt) it never overflows; the coalesced traits
bound it by the size of the home, so no push is lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.backends.aqara_events import is_event_trait
from bridge.backends.aqara_spec import first
from bridge.coalesce import LatestQueue


class PushBuffer:
    """Pushes kept in arrival order, a trait's latest value replacing its earlier ones."""

    def __init__(self, limit: int | None) -> None:
        self._queue: LatestQueue[dict[str, Any]] = LatestQueue(limit)

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def overflowed(self) -> bool:
        """More than ``limit`` entries came: nothing is kept (the snapshot is taken again)."""
        return self._queue.overflowed

    def add(self, message: dict[str, Any]) -> None:
        """Keep ``message`` (a push of several traits is kept trait by trait)."""
        data = message.get("data")
        if message.get("type") == "objectEvent" or not isinstance(data, list | Mapping):
            self._queue.put(message)
            return
        for item in data if isinstance(data, list) else [data]:
            self._queue.put({**message, "data": item} if isinstance(data, list) else message,
                            _trait_key(item))

    def drain(self) -> list[dict[str, Any]]:
        """Every kept push, oldest first; the buffer is empty afterwards."""
        return self._queue.drain()


def _trait_key(item: Any) -> tuple[str, ...] | None:
    """What identifies a trait push (None for anything else, and for a momentary event, which is
    never coalesced: every press counts)."""
    if not isinstance(item, Mapping):
        return None
    function, trait = item.get("functionCode"), item.get("traitCode")
    if not isinstance(function, str) or not isinstance(trait, str):
        return None
    if is_event_trait(function, trait):
        return None
    return (str(first(item, "deviceId", "did", "subjectId")), str(item.get("endpointId")),
            function, trait)
