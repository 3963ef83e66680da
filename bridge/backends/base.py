"""The interface every backend implements; the core never knows which one it talks to."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from bridge.model import Device, Event, TraitAddress, WriteFailure, WriteItem

EventSink = Callable[[Event], None]
"""Called synchronously for every event, in order: the hot path has no await per message."""


NOT_STARTED = "not started"
"""A backend's :attr:`Backend.detail` before its first connection attempt ended."""


class BackendError(Exception):
    """A hub call failed: carries the hub's code (if any) and a message safe to publish."""

    def __init__(self, message: str, code: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RequestInvalid(BackendError):
    """A management request was malformed; nothing was sent to the hub.

    ``field`` names the offending field (dotted path, e.g. ``home.name``).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", "invalid_request")
        self.field = field


async def _no_wait() -> None:
    return None


NOT_ACTIVE = "this bridge is a standby now: another member of its failover pair took over"
"""Why a write was not sent (:attr:`Backend.may_write` said no)."""


def _always() -> bool:
    return True


class Backend(abc.ABC):
    """A connection to one hub or cloud account.

    ``run`` connects, emits a :class:`~bridge.model.Snapshot` after every (re)connect, then
    :class:`~bridge.model.TraitChanged` and device events, and reconnects by itself until it
    is cancelled.
    """

    kind: str = ""

    def __init__(self, name: str) -> None:
        self.name = name
        self.connected = False
        self.detail = NOT_STARTED
        self.pace: Callable[[], Awaitable[None]] = _no_wait
        """Awaited by push readers between batches: returns when the output has room."""
        self.may_write: Callable[[], bool] = _always
        """Asked right before a write goes on the wire: False while this process is not the
        active member of a failover pair (a stopped or replaced one sends nothing)."""

    @abc.abstractmethod
    async def run(self, sink: EventSink) -> None:
        """Connect and stream events to ``sink`` until cancelled."""

    @abc.abstractmethod
    async def write(self, items: Sequence[WriteItem]) -> list[WriteFailure]:
        """Send validated writes to the hub; return only the items that failed."""

    @abc.abstractmethod
    async def read(self, addresses: Sequence[TraitAddress]) -> dict[TraitAddress, Any]:
        """Re-read traits from the hub; returns the model values it reported."""

    @abc.abstractmethod
    async def snapshot(self) -> list[Device]:
        """Every device with specs and current values, fetched now (for ``resync``)."""

    @abc.abstractmethod
    async def probe(self) -> int:
        """Connect once and count the devices (for ``aqara-mqtt check``); raise on failure."""

    async def request(self, command: str, args: Mapping[str, Any]) -> Any:
        """Run a backend-specific management command (e.g. ``tuya/home/add``); see docs/api.md.

        Validate ``args`` before any hub call and raise :class:`RequestInvalid` naming the field;
        raise :class:`BackendError` with the hub's code and message when the hub refuses.
        The returned value becomes the ``data`` of the MQTT response.
        """
        raise BackendError(f"command {command!r} is not supported by the {self.kind} backend")

    def homes(self) -> list[dict[str, Any]] | None:
        """Homes with their rooms and device ids, for backends that organise devices so
        (published on ``bridge/homes``); None for the others."""
        return None

    def summary(self) -> dict[str, Any]:
        """Connection facts for ``bridge/info``; never secrets."""
        return {"name": self.name, "type": self.kind, "connected": self.connected,
                "detail": self.detail}
