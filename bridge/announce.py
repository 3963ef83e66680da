"""Home Assistant discovery for the bridge's devices, publishing only what changed.

After every broker (re)connect the announcer first learns which of its configs the broker
already retains: it subscribes to the discovery topics, then publishes a marker on a private
topic; the broker sends retained messages when a subscription is made, before anything we publish
later, so when the marker comes back every retained config has arrived. Then it publishes the
difference between what is retained and what the devices need now (usually nothing), clears
configs of devices that are gone, and unsubscribes. ``homeassistant/status`` = ``online``
re-announces everything, at most once per :data:`REANNOUNCE_INTERVAL`.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from bridge.discovery import (
    DiscoveryOptions,
    device_object_id,
    discovery_changes,
    discovery_messages,
)
from bridge.logsetup import get_logger
from bridge.packed import PackedTexts

if TYPE_CHECKING:
    from bridge.core import DeviceEntry
    from bridge.topics import TopicScheme

log = get_logger("bridge.announce")

REANNOUNCE_INTERVAL = 30.0
"""Seconds between two re-announcements asked for by Home Assistant's birth message."""


class Subscriber(Protocol):
    """The MQTT operations the announcer needs besides publishing."""

    def publish(self, topic: str, payload: str | bytes, retain: bool = False,
                qos: int | None = None, properties: Any = None) -> None: ...

    def subscribe(self, filters: list[str], no_local: bool = True) -> None: ...

    def unsubscribe(self, filters: list[str]) -> None: ...


class HomeAssistantDiscovery:
    """Keeps the retained discovery configs in step with the devices."""

    def __init__(self, options: DiscoveryOptions, scheme: TopicScheme,
                 entries: Callable[[], Iterable[DeviceEntry]],
                 excluded: frozenset[str] = frozenset(),
                 status_topic: str = "homeassistant/status") -> None:
        self.options = options
        self.scheme = scheme
        self.entries = entries
        self.excluded = excluded
        self.status_topic = status_topic
        self.published: dict[str, Mapping[str, str]] = {}
        """Device id → the configs currently retained for it."""
        self.messages_sent = 0
        self._mqtt: Subscriber | None = None
        self.in_step = False
        """True once the retained configs were learned and reconciled after a connect."""
        self._learning: dict[str, str] | None = None
        self._marker = ""
        self._last_announce = 0.0
        self._announce_pending = False
        prefix = options.prefix
        self._learn_filters = [f"{prefix}/device/+/config", f"{prefix}/+/+/+/config"]
        self._object_prefix = f"{options.node_id}_"

    def attach(self, mqtt: Subscriber) -> None:
        """Use this MQTT link."""
        self._mqtt = mqtt

    @property
    def subscriptions(self) -> list[str]:
        """Permanent subscriptions: Home Assistant's birth/will topic."""
        return [self.status_topic]

    # ---- learning what is retained --------------------------------------------------------

    def on_connected(self) -> None:
        """Start learning the retained configs; the reconcile follows the marker."""
        if self._mqtt is None:
            return
        self.in_step = False
        self._learning = {}
        self._marker = self.scheme.bridge(f"discovery_sync/{secrets.token_hex(6)}")
        self._mqtt.subscribe(self._learn_filters)
        self._mqtt.subscribe([self._marker], no_local=False)
        self._mqtt.publish(self._marker, b"1", False, 1)

    def handle(self, topic: str, payload: bytes) -> bool:
        """Take a message on one of our subscriptions; False when it is not ours."""
        if topic == self._marker and self._learning is not None:
            self._finish_learning()
            return True
        if topic == self.status_topic:
            if payload.strip() == b"online":
                self._schedule_reannounce()
            return True
        if self._learning is not None and self._is_ours(topic):
            if payload:
                self._learning[topic] = payload.decode("utf-8", "replace")
            return True
        return False

    def _is_ours(self, topic: str) -> bool:
        return topic.endswith("/config") and self._object_id(topic).startswith(
            self._object_prefix)

    def _object_id(self, topic: str) -> str:
        """``<prefix>/device/<object_id>/config`` or ``<prefix>/<p>/<object_id>/<c>/config``."""
        if not topic.startswith(self.options.prefix + "/"):
            return ""
        levels = topic[len(self.options.prefix) + 1:].split("/")
        return levels[1] if len(levels) in (3, 4) else ""

    def _finish_learning(self) -> None:
        assert self._mqtt is not None
        retained, self._learning = self._learning or {}, None
        self.in_step = True
        self._mqtt.unsubscribe([*self._learn_filters, self._marker])
        by_object: dict[str, dict[str, str]] = {}
        for topic, payload in retained.items():
            by_object.setdefault(self._object_id(topic), {})[topic] = payload
        self.published = {}
        for entry in self.entries():
            object_id = device_object_id(entry.device.id, self.options)
            self.published[entry.device.id] = by_object.pop(object_id, {})
            self.device_changed(entry)
        for stale in by_object.values():  # devices that are gone
            self._send(discovery_changes(stale, {}))
        log.info("home assistant discovery in step", devices=len(self.published),
                 retained=len(retained), sent=self.messages_sent)

    # ---- device changes -------------------------------------------------------------------

    def device_changed(self, entry: DeviceEntry) -> None:
        """Publish what changed in this device's configs (nothing until in step)."""
        if not self.in_step or self._mqtt is None:
            return
        device_id = entry.device.id
        if device_id in self.excluded:
            current: dict[str, str] = {}
        else:
            current = discovery_messages(entry.device, entry.topic_name, self.scheme,
                                         self.options)
        self._send(discovery_changes(self.published.get(device_id, {}), current))
        self.published[device_id] = PackedTexts(current)

    def device_removed(self, device_id: str) -> None:
        """Clear every config of a device that is gone."""
        previous = self.published.pop(device_id, {})
        if self.in_step:
            self._send(discovery_changes(previous, {}))

    def _send(self, messages: Mapping[str, str]) -> None:
        assert self._mqtt is not None
        for topic, payload in messages.items():
            self._mqtt.publish(topic, payload, True, self.options.qos)
            self.messages_sent += 1

    # ---- re-announcing --------------------------------------------------------------------

    def _schedule_reannounce(self) -> None:
        if self._announce_pending:
            return
        self._announce_pending = True
        wait = max(0.0, self._last_announce + REANNOUNCE_INTERVAL - time.monotonic())
        # a little jitter, as Home Assistant recommends, so bridges do not all answer at once
        asyncio.get_running_loop().call_later(wait + random.uniform(0.5, 2.0), self._reannounce)

    def _reannounce(self) -> None:
        self._announce_pending = False
        self._last_announce = time.monotonic()
        if not self.in_step:
            return
        for configs in self.published.values():
            self._send(configs)
