"""Home Assistant discovery for the bridge's devices, publishing only what changed.

After every broker (re)connect the announcer first learns which of its configs the broker
already retains (:class:`~bridge.retained.RetainedLearner`), then publishes the difference
between what is retained and what the devices need now (usually nothing).

An entity, once announced, is only removed on purpose: a config is cleared when the backend that
owns its device reported the device gone (a removed event, or absence from a complete snapshot,
which backends only deliver while connected). Retained configs of devices the bridge does not
know (yet) are kept as *orphans*; a device that shows up later adopts them, and only once every
backend has delivered a complete snapshot (:meth:`HomeAssistantDiscovery.backends_complete`)
are the remaining orphans cleared, and only those this instance provably published: the config
names this bridge's ``<base>/bridge/state`` as its availability and its device is in this
instance's manifest (:meth:`bridge.extension.Core.owned_devices`). Another bridge's configs
under the same prefix are never touched. A hub that is down, slow or never connected removes
nothing.

Configs retained in the other layout (``device_based`` switched) are migrated the way Home
Assistant documents it: ``{"migrate_discovery": true}`` on the old topics, then the new configs,
then the old topics cleared, so entities keep their ids, history and settings.
``homeassistant/status`` = ``online`` re-announces everything, at most once per
:data:`REANNOUNCE_INTERVAL`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from bridge.extension import Core, Output
from bridge.logsetup import get_logger
from bridge.messages import IncomingMessage, MqttPort
from bridge.outputs.announced import Announced, Config, availability_topics
from bridge.outputs.discovery import (
    DiscoveryOptions,
    device_object_id,
    discovery_changes,
    discovery_messages,
    is_hub,
)
from bridge.retained import RetainedLearner

if TYPE_CHECKING:
    from bridge.entries import DeviceEntry
    from bridge.topics import TopicScheme

log = get_logger("bridge.announce")

REANNOUNCE_INTERVAL = 30.0
"""Seconds between two re-announcements asked for by Home Assistant's birth message."""

REANNOUNCE_BATCH = 200
"""Devices re-announced per event-loop turn: their configs are built again from the model
(≈0.2 ms each), and a large home must not hold up the loop for seconds."""

MIGRATE_PAYLOAD = '{"migrate_discovery":true}'
"""Home Assistant's hand-over payload between single-component and device-based discovery."""

MIGRATION_STEP = 2.0
"""Seconds between the steps of a layout migration: Home Assistant unloads the old entities
asynchronously and gives no sign when it is done, and a new config that arrives while the old
entity is still loaded is rejected as a duplicate unique id."""


def hubs_first(entries: Iterable[DeviceEntry]) -> list[DeviceEntry]:
    """The entries with the hubs first (otherwise in order): a device's config names its hub
    as ``via_device``, and Home Assistant gives a device its suggested area only when it
    creates it from the device's own config."""
    return sorted(entries, key=lambda entry: not is_hub(entry.device))


class HomeAssistantDiscovery(Output):
    """Keeps the retained discovery configs in step with the devices."""

    def __init__(self, options: DiscoveryOptions, scheme: TopicScheme,
                 entries: Callable[[], Iterable[DeviceEntry]],
                 excluded: frozenset[str] = frozenset(),
                 status_topic: str = "homeassistant/status",
                 migration_step: float = MIGRATION_STEP) -> None:
        self.options = options
        self.scheme = scheme
        self.entries = entries
        self.excluded = excluded
        self.status_topic = status_topic
        self.migration_step = migration_step
        self.published: dict[str, Announced] = {}
        """Device id → what is retained for it (digests, not texts: rebuilt when sent again)."""
        self.orphans: dict[str, dict[str, str]] = {}
        """Object id → retained configs of devices no backend has reported (yet)."""
        self.messages_sent = 0
        self._mqtt: MqttPort | None = None
        self._core: Core | None = None
        self.in_step = False
        """True once the retained configs were learned and reconciled after a connect."""
        self.complete = False
        """True once every backend delivered a complete snapshot (orphans may be cleared)."""
        self._migrating: dict[str, Mapping[str, str | Config]] = {}
        """Device id → configs in the other layout, while their migration runs."""
        self._session = 0
        self._hubs: dict[str, str | None] = {}
        """Backend name → its hub's device id (None: it has none), learned lazily."""
        self._last_announce = 0.0
        self._announce_pending = False
        prefix = options.prefix
        self._learner = RetainedLearner(
            scheme.bridge("discovery_sync"),
            [f"{prefix}/device/+/config", f"{prefix}/+/+/+/config"], self._is_ours)
        self._object_prefix = f"{options.node_id}_"

    def attach(self, mqtt: MqttPort, core: Core | None = None) -> None:
        """Use this MQTT link (discovery never writes to a device), and the core's manifest."""
        self._mqtt = mqtt
        self._core = core

    @property
    def subscriptions(self) -> list[str]:
        """Permanent subscriptions: Home Assistant's birth/will topic."""
        return [self.status_topic]

    # ---- learning what is retained --------------------------------------------------------

    def on_connected(self) -> None:
        """Start learning the retained configs; the reconcile follows."""
        if self._mqtt is None:
            return
        self.in_step = False
        self._session += 1
        self._migrating.clear()
        self._hubs.clear()
        self._learner.start(self._mqtt, self._finish_learning)

    def handle(self, message: IncomingMessage) -> bool:
        """Take a message on one of our subscriptions; False when it is not ours."""
        topic, payload = message.topic, message.payload
        if self._learner.handle(topic, payload, message.retain):
            return True
        if topic == self.status_topic:
            if payload.strip() == b"online":
                self._schedule_reannounce()
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

    def _finish_learning(self, retained: dict[str, bytes]) -> None:
        self.in_step = True
        self.orphans = {}
        for topic, payload in retained.items():
            self.orphans.setdefault(self._object_id(topic), {})[topic] = payload.decode(
                "utf-8", "replace")
        self.published = {}
        for entry in hubs_first(self.entries()):
            self.device_changed(entry)
        if self.complete:
            self._clear_orphans()
        log.info("home assistant discovery in step", devices=len(self.published),
                 retained=len(retained), kept=sum(map(len, self.orphans.values())),
                 sent=self.messages_sent)

    def backends_complete(self) -> None:
        """Every backend has delivered a complete snapshot: configs of devices none of them
        has are gone for good and are cleared."""
        self.complete = True
        if self.in_step:
            self._clear_orphans()

    def _clear_orphans(self) -> None:
        orphans, self.orphans = self.orphans, {}
        owned = self._owned_object_ids()
        cleared = kept = 0
        for object_id, configs in orphans.items():
            ours = {t: p for t, p in configs.items() if object_id in owned and self._ours(p)}
            self._send(discovery_changes(ours, {}))
            cleared += bool(ours)
            kept += len(configs) - len(ours)
        if cleared:
            log.info("home assistant configs of vanished devices cleared", devices=cleared)
        if kept:
            log.info("home assistant configs of other bridges kept", configs=kept)

    def _owned_object_ids(self) -> set[str]:
        owned = self._core.owned_devices() if self._core is not None else {}
        return {device_object_id(device_id, self.options) for device_id in owned}

    def _ours(self, payload: str) -> bool:
        """Whether a retained config was published by this bridge: its availability names
        this bridge's state topic (zigbee2mqtt decides the same way)."""
        return self.scheme.bridge("state") in availability_topics(payload)

    # ---- device changes -------------------------------------------------------------------

    def device_changed(self, entry: DeviceEntry) -> None:
        """Publish what changed in this device's configs (nothing until in step); a hub that
        devices announced before it now name as their ``via_device`` goes first, then them."""
        if not self.in_step or self._mqtt is None:
            return
        linked = self._hub_appeared(entry)
        self._announce(entry)
        for other in linked:
            self._announce(other)

    def _announce(self, entry: DeviceEntry) -> None:
        device_id = entry.device.id
        current = self._configs(entry)
        previous: Mapping[str, str | Config] | None = self.published.get(device_id)
        if previous is None:  # first sight this session: adopt what the broker retains
            previous = self.orphans.pop(device_object_id(device_id, self.options), {})
        self.published[device_id] = Announced(current)
        if device_id in self._migrating:
            return  # the migration's next step publishes the latest configs
        if current and any(map(self._is_other_layout, previous)):
            self._migrate(entry, {t: p for t, p in previous.items() if t not in current})
            return
        self._send(discovery_changes(previous, current))

    def entities(self, entry: DeviceEntry) -> list[dict[str, Any]]:
        """What is announced for a device: each entity's platform, unique id, name and config
        topic, and each device trigger (``device_automation``, named by its subtype and type,
        with no unique id); read-only, for the web page, rebuilt from the model as a re-announce
        is."""
        if entry.device.id not in self.published:
            return []
        found: list[dict[str, Any]] = []
        for topic, payload in sorted(self._configs(entry).items()):
            document = json.loads(payload) if payload else {}
            cmps = document.get("cmps")
            for config in cmps.values() if isinstance(cmps, dict) else [document]:
                if not isinstance(config, dict):
                    continue
                platform = config.get("p") or topic.split("/")[-4]
                if "uniq_id" in config:
                    found.append({"platform": platform, "unique_id": config["uniq_id"],
                                  "name": config.get("name"), "topic": topic})
                elif platform == "device_automation":
                    found.append({"platform": platform, "unique_id": None,
                                  "name": f"trigger {config.get('stype')} "
                                          f"{config.get('type')}", "topic": topic})
        return found

    def _configs(self, entry: DeviceEntry) -> dict[str, str]:
        """The device's discovery configs now (none for a device kept out of discovery)."""
        if entry.device.id in self.excluded:
            return {}
        return discovery_messages(entry.device, entry.topic_name, self.scheme, self.options,
                                  self._hub_of(entry))

    def _hub_of(self, entry: DeviceEntry) -> str | None:
        """The id of the hub (gateway) device of the entry's backend, for ``via_device``."""
        backend = entry.backend.name
        if backend not in self._hubs:
            self._hubs[backend] = next((e.device.id for e in self.entries()
                                        if e.backend is entry.backend and is_hub(e.device)), None)
        return self._hubs[backend]

    def _hub_appeared(self, entry: DeviceEntry) -> list[DeviceEntry]:
        """A hub reported after devices announced without one: they are announced again,
        linked to it (after it: Home Assistant would otherwise create the hub from their
        ``via_device`` as a bare placeholder, which never gets the hub's suggested area)."""
        backend = entry.backend.name
        if not is_hub(entry.device) or backend not in self._hubs or self._hubs[backend]:
            return []
        self._hubs[backend] = entry.device.id
        return [other for other in self.entries()
                if other.backend is entry.backend and other is not entry]

    def device_removed(self, device_id: str) -> None:
        """Clear every config of a device its backend reported gone."""
        self._hubs.clear()
        previous: dict[str, str | Config] = dict(self.published.pop(device_id, {}))
        previous.update(self._migrating.pop(device_id, {}))
        orphans = self.orphans.pop(device_object_id(device_id, self.options), {})
        previous.update({t: p for t, p in orphans.items() if self._ours(p)})
        if self.in_step:
            self._send(discovery_changes(previous, {}))

    def _is_other_layout(self, topic: str) -> bool:
        is_device_topic = topic.startswith(f"{self.options.prefix}/device/")
        return is_device_topic != self.options.device_based

    def _migrate(self, entry: DeviceEntry, old: Mapping[str, str | Config]) -> None:
        """Home Assistant's documented hand-over: migrate payload on the old layout's topics,
        then the new configs, then the old topics (``old``) cleared."""
        device_id = entry.device.id
        self._migrating[device_id] = old
        self._send({topic: MIGRATE_PAYLOAD for topic in old if self._is_other_layout(topic)})
        session = self._session
        loop = asyncio.get_running_loop()

        def announce() -> None:
            if session == self._session and device_id in self._migrating:
                self._send(self._configs(entry))
                loop.call_later(self.migration_step, clear)

        def clear() -> None:
            if session == self._session and device_id in self._migrating:
                self._send(discovery_changes(self._migrating.pop(device_id), {}))
                log.info("home assistant discovery migrated", device=device_id,
                         device_based=self.options.device_based)

        loop.call_later(self.migration_step, announce)

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
        if self.in_step:
            self._reannounce_batch(iter(hubs_first(self.entries())), self._session)

    def _reannounce_batch(self, entries: Iterator[DeviceEntry], session: int) -> None:
        """Send the configs of the next :data:`REANNOUNCE_BATCH` devices, rebuilt from the model
        (what is remembered are digests); the rest in later loop turns."""
        if session != self._session or not self.in_step:
            return  # reconnected meanwhile: that connect announces anyway
        batch = list(itertools.islice(entries, REANNOUNCE_BATCH))
        for entry in batch:
            device_id = entry.device.id
            announced = self.published.get(device_id)
            if announced is not None and device_id not in self._migrating:
                current = self._configs(entry)  # with components it lost named, if it did
                changes = discovery_changes(announced, current)
                self._send({**current, **changes})
                if changes:  # otherwise what is remembered is what was sent
                    self.published[device_id] = Announced(current)
        if len(batch) == REANNOUNCE_BATCH:
            asyncio.get_running_loop().call_soon(self._reannounce_batch, entries, session)
