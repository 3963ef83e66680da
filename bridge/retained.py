"""Learning which retained messages a broker holds under some topic filters.

The broker sends the retained messages matching a subscription when the subscription is made,
before anything published later on the same connection; so after subscribing to the filters and
to a private marker topic, publishing the marker and receiving it back means every retained
message under the filters has arrived. Only messages flagged retained are collected (live traffic
on the same filters is not the broker's store), and only on topics the filters match (other
subscriptions' retained messages arrive meanwhile too).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable

from bridge.messages import MqttPort


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


class RetainedLearner:
    """One learning round at a time: :meth:`start`, feed :meth:`handle`, get ``on_done``."""

    def __init__(self, marker_base: str, filters: list[str],
                 accept: Callable[[str], bool] = lambda _topic: True,
                 retry: float = MARKER_RETRY) -> None:
        self.marker_base = marker_base
        self.filters = filters
        self.accept = accept
        self.retry = retry
        self.markers_sent = 0
        """Markers published (more than one per round when the broker lost some)."""
        self._retry_handle: asyncio.TimerHandle | None = None
        self._learned: dict[str, bytes] | None = None
        self._marker = ""
        self._mqtt: MqttPort | None = None
        self._on_done: Callable[[dict[str, bytes]], None] | None = None

    @property
    def learning(self) -> bool:
        """True between :meth:`start` and the marker's return."""
        return self._learned is not None

    def start(self, mqtt: MqttPort, on_done: Callable[[dict[str, bytes]], None]) -> None:
        """Subscribe, publish the marker; ``on_done(topic → payload)`` once it is back."""
        if self._retry_handle is not None:
            self._retry_handle.cancel()
        self._mqtt = mqtt
        self._on_done = on_done
        self._learned = {}
        self.markers_sent = 0
        self._marker = f"{self.marker_base}/{secrets.token_hex(6)}"
        # QoS 0: what is learned comes at once over this connection, and a broker cluster
        # sets a QoS 1 subscription up far more slowly (NATS: a JetStream consumer each)
        mqtt.subscribe(self.filters, qos=0)
        mqtt.subscribe([self._marker], no_local=False, qos=0)
        self._send_marker()

    def _send_marker(self) -> None:
        self._retry_handle = None
        if self._learned is None or self._mqtt is None:
            return
        self._mqtt.publish(self._marker, b"1", False, 1)
        self.markers_sent += 1
        if self.markers_sent >= MARKER_ATTEMPTS:
            return  # a reconnect starts a new round anyway
        with contextlib.suppress(RuntimeError):  # no loop (a unit test driving it by hand)
            self._retry_handle = asyncio.get_running_loop().call_later(
                self.retry, self._send_marker)

    def handle(self, topic: str, payload: bytes, retain: bool) -> bool:
        """Take a message; True when it was the learner's (marker or a learned message)."""
        learned = self._learned
        if learned is None:
            return False
        if topic == self._marker:
            self._finish()
            return True
        if retain and any(topic_matches(f, topic) for f in self.filters) and self.accept(topic):
            if payload:
                learned[topic] = payload
            return True
        return False

    def _finish(self) -> None:
        if self._retry_handle is not None:
            self._retry_handle.cancel()
            self._retry_handle = None
        learned, self._learned = self._learned or {}, None
        if self._mqtt is not None:
            self._mqtt.unsubscribe([*self.filters, self._marker])
        if self._on_done is not None:
            self._on_done(learned)
