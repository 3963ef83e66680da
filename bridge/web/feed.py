"""One browser's live messages: a bounded queue that coalesces and never blocks the bridge.

The core calls outputs synchronously; a browser drains its feed at its own pace. A trait's
queued value is replaced by its newer one (the browser only needs the latest), and when the
queue still overflows it is dropped whole and the browser told to reload its state (``resync``),
so a stalled tab costs the bridge a bounded amount of memory and no waiting.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Hashable
from typing import Any

Message = dict[str, Any]

RESYNC: Message = {"t": "resync"}
"""Tells the browser that messages were dropped: fetch the state again."""


class ClientFeed:
    """Messages waiting for one browser; at most ``limit`` of them."""

    def __init__(self, limit: int = 2000) -> None:
        self.limit = limit
        self.dropped = 0
        """Messages discarded for this browser (coalesced values are not counted)."""
        self._items: dict[Hashable, Message] = {}
        self._unique = itertools.count()
        self._resync = False
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: Message, key: Hashable | None = None) -> None:
        """Queue ``message``; one with the ``key`` of a queued one replaces it."""
        if self._resync:
            self.dropped += 1
            return
        if key is None:
            key = next(self._unique)
        elif key in self._items:  # moved to the end: the order of the latest changes is kept
            del self._items[key]
            self._items[key] = message
            return
        if len(self._items) >= self.limit:
            self.dropped += len(self._items) + 1
            self._items.clear()
            self._resync = True
        else:
            self._items[key] = message
        self._ready.set()

    async def batch(self) -> list[Message]:
        """Wait for messages; all of them, oldest first (or only ``resync`` after an overflow)."""
        await self._ready.wait()
        self._ready.clear()
        if self._resync:
            self._resync = False
            return [RESYNC]
        batch = list(self._items.values())
        self._items.clear()
        return batch
