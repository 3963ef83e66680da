"""The web page's output: hears the core's events, keeps the last of them (``history``) and fans
them out to each browser's feed; hands the page's writes to the core's one validated write path
and waits for their answer."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping
from typing import Any

from bridge.entries import DeviceEntry
from bridge.extension import Core, Output
from bridge.messages import MqttPort, Origin
from bridge.model import DeviceEvent, EventSource, Trait, TraitAddress, event_action
from bridge.payloads import response
from bridge.secrets import redact_obj
from bridge.topics import DeviceGet, DeviceSet, TopicScheme, TraitGet, TraitSet
from bridge.web.feed import FEED_LIMIT, ClientFeed, Message
from bridge.web.history import HISTORY_LIMIT, History, brief
from bridge.web.views import device_summary, value_label

ANSWER_TIMEOUT = 30.0
"""How long a write from the page waits for the hub's answer."""

CORRELATION_PREFIX = b"web:"


class WebOutput(Output):
    """Live messages for the open pages, and their writes."""

    def __init__(self, topics: TopicScheme, feed_limit: int = FEED_LIMIT,
                 history_limit: int = HISTORY_LIMIT) -> None:
        self.topics = topics
        self.feed_limit = feed_limit
        self.feeds: set[ClientFeed] = set()
        self.history = History(history_limit)
        """Values, presses, availability, devices added, renamed and removed, log lines and
        answers: what a page opened later shows first."""
        self.core: Core | None = None
        self.last_change: dict[str, float] = {}
        """Device id → when the bridge last saw one of its values change (epoch seconds)."""
        self._pending: dict[bytes, asyncio.Future[Mapping[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._dropped_before = 0
        """Messages dropped for browsers that have gone since."""

    # ---- browsers -------------------------------------------------------------------------

    def open_feed(self) -> ClientFeed:
        """A new browser's feed (close it with :meth:`close_feed`)."""
        feed = ClientFeed(self.feed_limit)
        self.feeds.add(feed)
        return feed

    def close_feed(self, feed: ClientFeed) -> None:
        if feed in self.feeds:
            self.feeds.discard(feed)
            self._dropped_before += feed.dropped

    @property
    def dropped(self) -> int:
        """Messages dropped for slow browsers since the start."""
        return self._dropped_before + sum(feed.dropped for feed in self.feeds)

    def _send(self, message: Message, key: Any = None) -> None:
        for feed in self.feeds:
            feed.put(message, key)

    def _keep(self, message: Message, key: Any = None) -> None:
        """Keep ``message`` in the history and send it to the open pages."""
        self._send(self.history.add(message), key)

    def _device_of(self, topic: str | None) -> str | None:
        """The id of the device a ``/set`` or ``/get`` topic names, when it is known."""
        command = self.topics.parse(topic) if topic else None
        if self.core is None or not isinstance(command, TraitSet | TraitGet | DeviceSet
                                               | DeviceGet):
            return None
        entry = self.core.entry_at(command.device)
        return entry.device.id if entry is not None else None

    # ---- writes ---------------------------------------------------------------------------

    async def write(self, entry: DeviceEntry, address: TraitAddress,
                    raw: str) -> Mapping[str, Any]:
        """Write through the core; its answer (``payloads.response``: ``status``, and ``error``
        with the reason when the write was rejected or the hub refused it)."""
        assert self.core is not None, "attach() first"
        correlation = CORRELATION_PREFIX + str(next(self._ids)).encode()
        topic = self.topics.trait(entry.topic_name, address)
        future = asyncio.get_running_loop().create_future()
        self._pending[correlation] = future
        try:
            self.core.write(entry.device.id, address, raw,
                            Origin(f"{topic}/set", raw, None, correlation))
            return await asyncio.wait_for(future, ANSWER_TIMEOUT)
        except TimeoutError:
            return response("error", error_code="timeout",
                            error_message=f"no answer from the hub within {ANSWER_TIMEOUT:.0f} s")
        finally:
            self._pending.pop(correlation, None)

    def answered(self, origin: Origin, body: Mapping[str, Any]) -> None:
        correlation = origin.correlation_data
        if origin.response_topic is None and correlation is not None:
            future = self._pending.pop(correlation, None)
            if future is not None and not future.done():
                future.set_result(body)
        message: Message = {"t": "answer", "time": time.time(), "topic": origin.topic,
                            "status": body.get("status")}
        device = self._device_of(origin.topic)
        if device is not None:  # a device's /set or /get: what was sent (never a request's)
            message["id"] = device
            message["payload"] = brief(origin.payload)
        error = body.get("error")
        if isinstance(error, Mapping):
            message["error"] = str(error.get("message") or error.get("code"))
        self._keep(redact_obj(message))

    # ---- the core's events ----------------------------------------------------------------

    def attach(self, mqtt: MqttPort, core: Core) -> None:
        self.core = core

    def on_connected(self) -> None:
        self._send({"t": "status"}, ("status",))

    def backends_complete(self) -> None:
        self.on_connected()

    def device_changed(self, entry: DeviceEntry) -> None:
        """A device delivered again or changed: its row on the open pages (not history)."""
        self._device(entry, {"t": "device"})

    def device_added(self, entry: DeviceEntry) -> None:
        self._device(entry, self.history.add(self._noted(entry, "added")))

    def device_renamed(self, entry: DeviceEntry) -> None:
        self._device(entry, self.history.add(self._noted(entry, "renamed")))

    @staticmethod
    def _noted(entry: DeviceEntry, change: str) -> Message:
        return {"t": "device", "id": entry.device.id, "name": entry.friendly_name,
                "change": change, "time": time.time()}

    def _device(self, entry: DeviceEntry, message: Message) -> None:
        if self.feeds:  # no page open (as at start-up): nothing to build
            self._send({**message, "device": device_summary(
                entry, self.last_change.get(entry.device.id))}, ("d", entry.device.id))

    def device_removed(self, device_id: str) -> None:
        self.last_change.pop(device_id, None)
        self._keep({"t": "removed", "id": device_id, "time": time.time()}, ("d", device_id))

    def value_changed(self, entry: DeviceEntry, address: TraitAddress, trait: Trait) -> None:
        now = time.time()
        self.last_change[address.device_id] = now
        message = {"t": "value", "id": address.device_id, "path": address.path(),
                   "value": trait.value, "time": now}
        label = value_label(trait.spec, trait.value)
        if label is not None:
            message["label"] = label
        self._keep(message, address)

    def availability_changed(self, entry: DeviceEntry, available: bool) -> None:
        self._keep({"t": "availability", "id": entry.device.id, "available": available,
                    "time": time.time()}, ("a", entry.device.id))

    def event_fired(self, entry: DeviceEntry, source: EventSource, event: DeviceEvent,
                    document: str) -> None:
        self._keep({"t": "action", "id": entry.device.id, "time": time.time(),
                    "action": event_action(entry.device, source, event.event_type)})

    def logged(self, entry: Mapping[str, Any]) -> None:
        message = {"t": "log", "time": time.time(), **redact_obj(dict(entry))}
        device = self._device_of(entry.get("topic"))
        if device is not None:
            message["id"] = device
        self._keep(message)
