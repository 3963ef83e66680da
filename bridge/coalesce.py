"""Coalescing: the latest value per key wins.

Writes: the caller (the core) adds validated writes as they arrive; when
:meth:`WriteCoalescer.add` returns True it schedules a flush after its window, then
:meth:`WriteCoalescer.drain` gives one batch with a single item per trait address, in the order
the addresses first arrived, each with every origin (e.g. the MQTT message that asked for it) so
all of them can be answered.

Queues: :class:`LatestQueue` keeps items in the order of their latest change, bounded, for a
consumer that only needs the latest value per key (a browser's live feed, the hub pushes held
while a snapshot is taken).
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

from bridge.model import TraitAddress, WriteItem

T = TypeVar("T")


class WriteCoalescer(Generic[T]):
    """Pending writes keyed by trait address; the latest value wins, origins accumulate."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: dict[TraitAddress, tuple[list[WriteItem], list[T]]] = {}

    def add(self, item: WriteItem, origin: T) -> bool:
        """Store ``item`` (replacing a pending value for the same address) with its origin.

        Returns True when this call made the buffer non-empty: the caller schedules a flush.
        """
        was_empty = not self._pending
        entry = self._pending.get(item.address)
        if entry is None:
            self._pending[item.address] = ([item], [origin])
        else:
            entry[0][0] = item
            entry[1].append(origin)
        return was_empty

    def drain(self) -> list[tuple[WriteItem, list[T]]]:
        """Every pending write with its origins, in first-arrival order; empties the buffer."""
        pending, self._pending = self._pending, {}
        return [(items[0], origins) for items, origins in pending.values()]

    def __len__(self) -> int:
        """The number of distinct trait addresses pending."""
        return len(self._pending)


def chunk(
    items: Iterable[WriteItem], max_items: int | None, max_devices: int | None
) -> list[list[WriteItem]]:
    """Split a batch, keeping order, so no chunk has more than ``max_items`` items or more than
    ``max_devices`` distinct devices (None = no limit; e.g. the Aqara cloud's 50 traits and 10
    devices per call). Limits below 1 raise ValueError.
    """
    if max_items is not None and max_items < 1:
        raise ValueError(f"max_items must be at least 1, got {max_items}")
    if max_devices is not None and max_devices < 1:
        raise ValueError(f"max_devices must be at least 1, got {max_devices}")
    chunks: list[list[WriteItem]] = []
    current: list[WriteItem] = []
    devices: set[str] = set()
    for item in items:
        device = item.address.device_id
        full = max_items is not None and len(current) >= max_items
        too_many = (
            max_devices is not None and device not in devices and len(devices) >= max_devices
        )
        if current and (full or too_many):
            chunks.append(current)
            current, devices = [], set()
        current.append(item)
        devices.add(device)
    if current:
        chunks.append(current)
    return chunks


class LatestQueue(Generic[T]):
    """Items in the order of their latest change: an item with the key of a queued one replaces
    it and moves to the end. Past ``limit`` items (None: no limit) the queue overflows: what it
    held is dropped, and so is every item put until the next :meth:`drain`; all of them are
    counted in :attr:`dropped` (replaced items are not)."""

    __slots__ = ("_items", "_unique", "dropped", "limit", "overflowed")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.overflowed = False
        self.dropped = 0
        self._items: dict[Hashable, T] = {}
        self._unique = itertools.count()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T, key: Hashable | None = None) -> None:
        """Queue ``item``; None as ``key`` never replaces anything."""
        if self.overflowed:
            self.dropped += 1
            return
        items = self._items
        if key is None:
            key = next(self._unique)
        elif key in items:
            del items[key]  # moved to the end
            items[key] = item
            return
        if self.limit is not None and len(items) >= self.limit:
            self.dropped += len(items) + 1
            items.clear()
            self.overflowed = True
        else:
            items[key] = item

    def drain(self) -> list[T]:
        """Every queued item, oldest change first; empty and no longer overflowed afterwards."""
        items = list(self._items.values())
        self._items.clear()
        self.overflowed = False
        return items
