"""Learning which retained messages a broker holds under some topic filters.

The broker sends the retained messages matching a subscription when the subscription is made,
before anything published later on the same connection; so after subscribing to the filters and
to a private marker topic, publishing the marker and receiving it back means every retained
message under the filters has arrived. Only messages flagged retained are collected (live traffic
on the same filters is not the broker's store), and only on topics the filters match (other
subscriptions' retained messages arrive meanwhile too).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from bridge.messages import MqttPort


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches the MQTT filter (``+`` one level, ``#`` the rest)."""
    return filter_matches(topic_filter, topic.split("/"))


def filter_matches(topic_filter: str, levels: list[str]) -> bool:
    """:func:`topic_matches` for a topic already split into its levels."""
    parts = topic_filter.split("/")
    for index, part in enumerate(parts):
        if part == "#":
            return True
        if index >= len(levels) or (part != "+" and part != levels[index]):
            return False
    return len(parts) == len(levels)


class RetainedLearner:
    """One learning round at a time: :meth:`start`, feed :meth:`handle`, get ``on_done``."""

    def __init__(self, marker_base: str, filters: list[str],
                 accept: Callable[[str], bool] = lambda _topic: True) -> None:
        self.marker_base = marker_base
        self.filters = filters
        self.accept = accept
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
        self._mqtt = mqtt
        self._on_done = on_done
        self._learned = {}
        self._marker = f"{self.marker_base}/{secrets.token_hex(6)}"
        mqtt.subscribe(self.filters)
        mqtt.subscribe([self._marker], no_local=False)
        mqtt.publish(self._marker, b"1", False, 1)

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
        learned, self._learned = self._learned or {}, None
        if self._mqtt is not None:
            self._mqtt.unsubscribe([*self.filters, self._marker])
        if self._on_done is not None:
            self._on_done(learned)
