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
from bridge.model import TraitAddress


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
        elif isinstance(data, list):
            for item in data:
                self._queue.put({**message, "data": item}, _trait_key(item))
        else:
            self._queue.put(message, _trait_key(data))

    def drain(self) -> list[dict[str, Any]]:
        """Every kept push, oldest first; the buffer is empty afterwards."""
        return self._queue.drain()


def _trait_key(item: Any) -> TraitAddress | None:
    """What identifies a trait push (None for anything else, and for a momentary event, which is
    never coalesced: every press counts)."""
    address = trait_address(item) if isinstance(item, Mapping) else None
    if address is None or is_event_trait(address.function_code, address.trait_code):
        return None
    return address


def trait_address(item: Mapping[str, Any]) -> TraitAddress | None:
    """The trait a Studio item names (a push, a read result, a refused write): the device as
    ``deviceId``, ``did`` or ``subjectId``, the endpoint as a number or a numeric string."""
    device_id = first(item, "deviceId", "did", "subjectId")
    endpoint = item.get("endpointId")
    function = item.get("functionCode")
    trait = item.get("traitCode")
    endpoint_id: int | None = None
    if isinstance(endpoint, int | str) and not isinstance(endpoint, bool):
        try:
            endpoint_id = int(endpoint)
        except ValueError:
            endpoint_id = None
    if (not isinstance(device_id, str) or endpoint_id is None or not isinstance(function, str)
            or not isinstance(trait, str)):
        return None
    return TraitAddress(device_id, endpoint_id, function, trait)
