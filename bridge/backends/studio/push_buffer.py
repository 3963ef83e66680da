"""Hub pushes that arrive while a snapshot is taken, replayed once it is in (pure, no IO).

A trait's pushes are coalesced: only its latest value can be newer than what the snapshot read,
so the buffer holds at most one entry per trait, plus every other push (device events, button
presses) in arrival order. Past ``limit`` entries it overflows and keeps nothing: the caller takes
the snapshot again. Without a limit (the last attempt) it never overflows; the coalesced traits
bound it by the size of the home, so no push is lost.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Mapping
from typing import Any

from bridge.backends.aqara_events import is_event_trait


class PushBuffer:
    """Pushes kept in arrival order, a trait's latest value replacing its earlier ones."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.overflowed = False
        self._entries: dict[Hashable, dict[str, Any]] = {}
        self._unique = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, message: dict[str, Any]) -> None:
        """Keep ``message`` (a push of several traits is kept trait by trait)."""
        if self.overflowed:
            return  # moot: the snapshot is taken again
        data = message.get("data")
        if message.get("type") == "objectEvent" or not isinstance(data, list | Mapping):
            self._keep(next(self._unique), message)
            return
        for item in data if isinstance(data, list) else [data]:
            key = _trait_key(item)
            self._keep(next(self._unique) if key is None else key,
                       {**message, "data": item} if isinstance(data, list) else message)

    def drain(self) -> list[dict[str, Any]]:
        """Every kept push, oldest first; the buffer is empty afterwards."""
        kept = list(self._entries.values())
        self._entries.clear()
        return kept

    def _keep(self, key: Hashable, message: dict[str, Any]) -> None:
        entries = self._entries
        if key in entries:
            del entries[key]  # moved to the end: the order of the latest changes is kept
        elif self.limit is not None and len(entries) >= self.limit:
            self.overflowed = True
            entries.clear()
            return
        entries[key] = message


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
    device = item.get("deviceId", item.get("did", item.get("subjectId")))
    return str(device), str(item.get("endpointId")), function, trait
