"""One browser's live messages: a bounded queue that coalesces and never blocks the bridge.

The core calls outputs synchronously; a browser drains its feed at its own pace. A trait's
queued value is replaced by its newer one (the browser only needs the latest), and when the
queue still overflows it is dropped whole and the browser told to reload its state (``resync``),
so a stalled tab costs the bridge a bounded amount of memory and no waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

from bridge.coalesce import LatestQueue

Message = dict[str, Any]

FEED_LIMIT = 2000
"""The default number of messages a browser's feed holds before it overflows."""

RESYNC: Message = {"t": "resync"}
"""Tells the browser that messages were dropped: fetch the state again."""


class ClientFeed:
    """Messages waiting for one browser; at most ``limit`` of them."""

    def __init__(self, limit: int = FEED_LIMIT) -> None:
        self._queue: LatestQueue[Message] = LatestQueue(limit)
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def dropped(self) -> int:
        """Messages discarded for this browser (coalesced values are not counted)."""
        return self._queue.dropped

    def put(self, message: Message, key: Hashable | None = None) -> None:
        """Queue ``message``; one with the ``key`` of a queued one replaces it."""
        self._queue.put(message, key)
        self._ready.set()

    async def batch(self) -> list[Message]:
        """Wait for messages; all of them, oldest first (or only ``resync`` after an overflow)."""
        await self._ready.wait()
        self._ready.clear()
        if self._queue.overflowed:
            self._queue.drain()
            return [RESYNC]
        return self._queue.drain()
