"""What waits for the broker, in the order it was published (sans-IO; :class:`ParkingLine`).

While the broker is slow or away, the MQTT link parks publications here. A retained topic keeps
only its latest value (the broker converges on it all the same), anything else is kept as it
is, up to a bound. They leave in the order of the publications that are still wanted: a retained
topic that takes another value moves to the back of the line, after everything parked before
that value, so a consumer never sees a message before one that was published ahead of it (a
Homie ``$state`` after the ``$description`` it announces, a discovery config before the state
it describes, an event after its device's description). The same value again keeps its place.

The line holds a retained topic by its name; its places are numbered implicitly (the first's
number is kept), so a move costs one slot and no object. A topic's earlier places are skipped
when they come up; when skipped places outnumber the live ones the line is compacted once, so
its length stays within a constant factor of what is parked (amortised O(1) per message).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

__all__ = ["ParkingLine", "Unacknowledged"]

V = TypeVar("V")
"""A parked retained value."""
M = TypeVar("M")
"""A parked message that is not retained."""

COMPACT_SLACK = 1024
"""Skipped places tolerated beyond the live ones before the line is compacted."""


_ABSENT = object()


class Unacknowledged(Generic[V]):
    """A retained message sent but never acknowledged (see :meth:`ParkingLine.put_back`)."""

    __slots__ = ("topic", "value")

    def __init__(self, topic: str, value: V) -> None:
        self.topic = topic
        self.value = value


class _Other(Generic[M]):
    """A non-retained message in the line (wrapped: a topic name is a plain ``str``)."""

    __slots__ = ("alive", "message")

    def __init__(self, message: M) -> None:
        self.message = message
        self.alive = True
        """False once dropped at the bound (its place is then skipped)."""


class ParkingLine(Generic[V, M]):
    """Parked retained values (latest per topic) and other messages, in publication order."""

    def __init__(self, other_limit: int = 1000) -> None:
        self.other_limit = other_limit
        """Non-retained messages kept at most; beyond it the oldest is dropped."""
        self.dropped = 0
        """Non-retained messages dropped at the bound."""
        self._others: deque[_Other[M]] = deque()
        """The live non-retained messages, in line order (the oldest is dropped first)."""
        self._retained: dict[str, V] = {}
        self._line: deque[str | _Other[M]] = deque()
        self._head = 0
        """The number of the line's first place."""
        self._moved: dict[str, int] = {}
        """Topic → the place of its latest entry, for topics that are in the line more than
        once (their other places are skipped)."""
        self._high_water = 0
        self.peak = 0
        """The most messages parked at once, since start."""

    def __len__(self) -> int:
        return len(self._retained) + len(self._others)

    def park_retained(self, topic: str, value: V, newer: bool = True) -> None:
        """Park a retained value; ``newer`` False (a resend) never replaces a parked value."""
        retained = self._retained
        before = retained.get(topic, _ABSENT)
        if before is _ABSENT:
            self._line.append(topic)
            self._high_water = max(self._high_water, len(retained) + 1)
        elif not newer:
            return
        elif before != value:
            self._moved[topic] = self._head + len(self._line)
            self._line.append(topic)
            self._compact_if_slack()
        retained[topic] = value
        self.peak = max(self.peak, len(self))

    def park_other(self, message: M) -> None:
        """Park a message that is not retained; beyond the bound the oldest is dropped."""
        other = _Other(message)
        self._others.append(other)
        self._line.append(other)
        if len(self._others) > self.other_limit:
            self._others.popleft().alive = False
            self.dropped += 1
            self._compact_if_slack()
        self.peak = max(self.peak, len(self))

    def put_back(self, entries: Iterable[Unacknowledged[V] | M]) -> None:
        """Put messages that were sent but never acknowledged at the front, in their order:
        they were published before anything parked now. A retained one whose topic is parked
        again meanwhile is left out (the parked value is newer)."""
        front: list[str | _Other[M]] = []
        others: list[_Other[M]] = []
        for entry in entries:
            if isinstance(entry, Unacknowledged):
                if entry.topic not in self._retained:
                    self._retained[entry.topic] = entry.value
                    front.append(entry.topic)
            else:
                other = _Other(entry)
                others.append(other)
                front.append(other)
        self._line.extendleft(reversed(front))
        self._head -= len(front)
        self._others.extendleft(reversed(others))
        while len(self._others) > self.other_limit:  # the newest go: the oldest were sent
            self._others.pop().alive = False
            self.dropped += 1
        self._high_water = max(self._high_water, len(self._retained))

    def drain(self, budget: int, send_retained: Callable[[str, V], None],
              send_other: Callable[[M], None]) -> int:
        """Hand up to ``budget`` messages to the senders, first parked first; returns how many."""
        line, retained, moved = self._line, self._retained, self._moved
        sent = 0
        while line and sent < budget:
            entry = line.popleft()
            place = self._head
            self._head += 1
            if isinstance(entry, _Other):
                if not entry.alive:
                    continue
                self._others.popleft()
                send_other(entry.message)
            else:
                latest = moved.get(entry)
                if latest is not None:
                    if latest != place:
                        continue  # an earlier place: the value goes out from its latest one
                    del moved[entry]
                send_retained(entry, retained.pop(entry))
            sent += 1
        if not line:
            self._head = 0
        return sent

    def take_high_water(self) -> int:
        """Once nothing retained is parked: the most that were since then (0 otherwise), and
        the dict's table, sized for that many, is let go."""
        if self._retained or not self._high_water:
            return 0
        high, self._high_water = self._high_water, 0
        self._retained = {}
        return high

    def clear(self) -> int:
        """Forget everything parked; returns how many messages that was."""
        count = len(self)
        self._retained.clear()
        self._line.clear()
        self._moved.clear()
        self._others.clear()
        self._head = 0
        return count

    def _compact_if_slack(self) -> None:
        """Drop the skipped places once they outnumber the live ones: afterwards every topic
        is in the line once."""
        line = self._line
        if len(line) <= 2 * len(self) + COMPACT_SLACK:
            return
        moved, head = self._moved, self._head
        self._line = deque(
            entry for offset, entry in enumerate(line)
            if (entry.alive if isinstance(entry, _Other)
                else moved.get(entry, head + offset) == head + offset))
        self._moved, self._head = {}, 0
