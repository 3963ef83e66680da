"""Learning which retained messages a broker holds under some topic filters.

The broker sends the retained messages matching a subscription when the subscription is made,
before anything published later on the same connection; so after subscribing to the filters and
to a private marker topic, publishing the marker and receiving it back means every retained
message under the filters has arrived. Only messages flagged retained are collected (live traffic
on the same filters is not the broker's store), and only on topics the filters match (other
subscriptions' retained messages arrive meanwhile too).

A round can keep each message's MQTT 5 content type as well (``content_types=True``): its marker
is then published with one, and whether it comes back with it tells whether this connection
carries properties at all (MQTT 3.1.1 does not). A round with a ``deadline`` ends when it
elapses even if the marker never came back, with what was learned by then
(:attr:`Learned.complete` False).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable

from bridge.messages import TEXT_PROPERTIES, MqttPort


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches the MQTT filter (``+`` one level, ``#`` the rest and the
    parent; a wildcard first level does not match a ``$`` topic)."""
    return filter_matches(topic_filter, topic.split("/"))


def filter_matches(topic_filter: str, levels: list[str]) -> bool:
    """:func:`topic_matches` for a topic already split into its levels."""
    if levels[0].startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    parts = topic_filter.split("/")
    for index, part in enumerate(parts):
        if part == "#":
            return True
        if index >= len(levels) or (part != "+" and part != levels[index]):
            return False
    return len(parts) == len(levels)


MARKER_RETRY = 2.0
"""Seconds after which the marker is published again while it has not come back: a broker
cluster that has just lost a node may accept a connection before its subscriptions work (NATS
takes seconds), and a marker lost then would leave the round unfinished for good."""


MARKER_ATTEMPTS = 30
"""Markers published per round at most (a minute of retries)."""


class Learned(dict[str, bytes]):
    """What a round learned: topic → retained payload (a dict, as every caller reads it), and,
    when the round kept them and the connection carries them, each topic's content type."""

    def __init__(self) -> None:
        super().__init__()
        self.content_types: dict[str, str] | None = None
        """Topic → content type of the retained message (absent: it had none); None when the
        connection does not carry properties (then payloads alone are compared)."""
        self.complete = True
        """False when the round ended at its deadline, without its marker."""

    def holds(self, topic: str, payload: str | bytes, content_type: str) -> bool:
        """Whether the broker retains exactly this message on ``topic`` (the same bytes, and the
        same content type where the connection shows it); the topic is forgotten either way."""
        retained = self.pop(topic, None)
        types = self.content_types
        kept_type = None if types is None else types.pop(topic, None)
        if retained is None:
            return False
        data = payload.encode() if isinstance(payload, str) else payload
        return retained == data and (types is None or kept_type == content_type)

    def forget(self, topic: str) -> bool:
        """Drop what was learned of ``topic``; True when something was retained there."""
        if self.content_types is not None:
            self.content_types.pop(topic, None)
        return self.pop(topic, None) is not None


class RetainedLearner:
    """One learning round at a time: :meth:`start`, feed :meth:`handle`, get ``on_done``."""

    def __init__(self, marker_base: str, filters: list[str],
                 accept: Callable[[str], bool] = lambda _topic: True,
                 retry: float = MARKER_RETRY, *, content_types: bool = False,
                 deadline: float | None = None) -> None:
        self.marker_base = marker_base
        self.filters = filters
        self.accept = accept
        self.retry = retry
        self.keep_types = content_types
        self.deadline = deadline
        self.markers_sent = 0
        """Markers published (more than one per round when the broker lost some)."""
        self._retry_handle: asyncio.TimerHandle | None = None
        self._deadline_handle: asyncio.TimerHandle | None = None
        self._learned: Learned | None = None
        self._types: dict[str, str] = {}
        """Topic → content type, this round."""
        self._shared: dict[str, str] = {}
        """Each distinct content type text, kept once."""
        self._marker = ""
        self._mqtt: MqttPort | None = None
        self._on_done: Callable[[Learned], None] | None = None

    @property
    def learning(self) -> bool:
        """True between :meth:`start` and the marker's return (or the deadline)."""
        return self._learned is not None

    def start(self, mqtt: MqttPort, on_done: Callable[[Learned], None]) -> None:
        """Subscribe, publish the marker; ``on_done(topic → payload)`` once it is back (or the
        deadline passed)."""
        self._cancel_timers()
        self._mqtt = mqtt
        self._on_done = on_done
        self._learned = Learned()
        self._types, self._shared = {}, {}
        self.markers_sent = 0
        self._marker = f"{self.marker_base}/{secrets.token_hex(6)}"
        # QoS 0: what is learned comes at once over this connection, and a broker cluster
        # sets a QoS 1 subscription up far more slowly (NATS: a JetStream consumer each)
        mqtt.subscribe(self.filters, qos=0)
        mqtt.subscribe([self._marker], no_local=False, qos=0)
        self._send_marker()
        if self.deadline is not None:
            with contextlib.suppress(RuntimeError):  # no loop (a unit test driving it by hand)
                self._deadline_handle = asyncio.get_running_loop().call_later(
                    self.deadline, self._finish, False, False)

    def _send_marker(self) -> None:
        self._retry_handle = None
        if self._learned is None or self._mqtt is None:
            return
        self._mqtt.publish(self._marker, b"1", False, 1,
                           TEXT_PROPERTIES if self.keep_types else None)
        self.markers_sent += 1
        if self.markers_sent >= MARKER_ATTEMPTS:
            return  # a reconnect starts a new round anyway
        with contextlib.suppress(RuntimeError):  # no loop (a unit test driving it by hand)
            self._retry_handle = asyncio.get_running_loop().call_later(
                self.retry, self._send_marker)

    def handle(self, topic: str, payload: bytes, retain: bool,
               content_type: str | None = None) -> bool:
        """Take a message; True when it was the learner's (marker or a learned message)."""
        learned = self._learned
        if learned is None:
            return False
        if topic == self._marker:
            self._finish(carried=content_type is not None)
            return True
        if not retain:
            return False
        levels = topic.split("/")
        if any(filter_matches(f, levels) for f in self.filters) and self.accept(topic):
            if payload:
                learned[topic] = payload
                if content_type is not None and self.keep_types:
                    self._types[topic] = self._shared.setdefault(content_type, content_type)
                elif self._types:
                    self._types.pop(topic, None)
            return True
        return False

    def _cancel_timers(self) -> None:
        for handle in (self._retry_handle, self._deadline_handle):
            if handle is not None:
                handle.cancel()
        self._retry_handle = self._deadline_handle = None

    def _finish(self, carried: bool = False, complete: bool = True) -> None:
        """End the round; ``carried``: the marker came back with its content type (without the
        marker, a content type seen on any message proves the same)."""
        self._cancel_timers()
        learned, self._learned = self._learned or Learned(), None
        learned.complete = complete
        if self.keep_types and (carried or self._types):
            learned.content_types = self._types
        self._types, self._shared = {}, {}
        if self._mqtt is not None:
            self._mqtt.unsubscribe([*self.filters, self._marker])
        if self._on_done is not None:
            self._on_done(learned)
