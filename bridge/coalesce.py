"""Write coalescing: within a flush window the latest value per trait wins.

The caller (the core) adds validated writes as they arrive; when :meth:`WriteCoalescer.add`
returns True it schedules a flush after its window, then :meth:`WriteCoalescer.drain` gives one
batch with a single item per trait address, in the order the addresses first arrived, each with
every origin (e.g. the MQTT message that asked for it) so all of them can be answered.
"""

from __future__ import annotations

from collections.abc import Iterable
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
