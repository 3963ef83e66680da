"""Homie 5 output: every device under ``homie/5/<id>/…``, children of the bridge's root device.

MQTT gives one will per connection and the bridge's is ``<base>/bridge/state``, so the Homie
root device ``homie/5/aqara-mqtt/$state`` is kept by a second small connection whose will is
``lost``; controllers treat the children of a lost root as lost. Each device goes through
``init`` → description and values → ``ready``; a removed device has ``$state`` cleared first,
then every other topic. The root's description (which lists the children) is only published once
every backend has delivered a complete snapshot, so a slow hub never shrinks the list.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from bridge.extension import Core, Output
from bridge.messages import IncomingMessage, MqttPort, Origin
from bridge.model import DeviceEvent, EventSource, Trait, TraitAddress
from bridge.outputs.homie import (
    HOMIE_VERSION,
    INIT,
    READY,
    device_homie_id,
    event_topic,
    homie_messages,
    homie_value,
    layout,
    parse_homie_set,
    resolve_set,
    set_payload_text,
    set_subscription,
    state_topic,
)

if TYPE_CHECKING:
    from bridge.entries import DeviceEntry
    from bridge.outputs.homie import Layout

ROOT_ID = "aqara-mqtt"
"""The Homie id of the bridge's own (root) device, for the default instance (``aqara``)."""


def root_id(instance_id: str) -> str:
    """The root device's Homie id for an instance: :data:`ROOT_ID` for the default instance
    ``aqara`` (so a single bridge keeps it), else ``aqara-mqtt-<instance>``, so two bridges on
    one broker never share a root (and its list of children)."""
    if instance_id == "aqara":
        return ROOT_ID
    slug = re.sub(r"[^a-z0-9]+", "-", instance_id.lower()).strip("-")
    return f"{ROOT_ID}-{slug}" if slug else ROOT_ID


class HomieOutput(Output):
    """Keeps ``homie/5/…`` in step with the bridge's devices."""

    def __init__(self, root: str, entries: Callable[[], Iterable[DeviceEntry]],
                 root_device: str = ROOT_ID) -> None:
        self.root = root
        self.root_device = root_device
        """The Homie id of the bridge's own device (see :func:`root_id`)."""
        self.entries = entries
        self._mqtt: MqttPort | None = None
        self._core: Core | None = None
        self._topics: dict[str, dict[str, str]] = {}
        """Device id → the retained messages (besides $state) published for it."""
        self._layouts: dict[str, Layout] = {}
        self._by_homie_id: dict[str, str] = {}
        self._root_scheduled = False
        self.complete = False
        """True once every backend delivered a complete snapshot (the children are known)."""

    def attach(self, mqtt: MqttPort, core: Core | None = None) -> None:
        """Use this MQTT link, and this core for the commands controllers send."""
        self._mqtt = mqtt
        self._core = core

    @property
    def subscriptions(self) -> list[str]:
        """Where controllers send commands: ``homie/5/+/+/+/set``."""
        return [set_subscription(self.root)]

    @property
    def root_state_topic(self) -> str:
        """The root device's ``$state`` (the keeper connection's will: ``lost``)."""
        return f"{self.root}/5/{self.root_device}/$state"

    def root_messages(self) -> dict[str, str]:
        """The root device: its description listing the children, and ``ready``."""
        children = sorted(self._by_homie_id)
        digest = hashlib.sha256("\n".join(children).encode()).hexdigest()
        description = {"homie": HOMIE_VERSION, "name": "aqara-mqtt bridge",
                       "version": int(digest[:12], 16), "children": children, "nodes": {}}
        return {f"{self.root}/5/{self.root_device}/$description": json.dumps(description),
                self.root_state_topic: READY}

    def on_connected(self) -> None:
        """Republish everything (the broker may have lost it)."""
        self._topics.clear()
        for entry in self.entries():
            self.device_changed(entry)
        self._publish_root()

    def backends_complete(self) -> None:
        """Every backend delivered a complete snapshot: the root's children list is right."""
        self.complete = True
        self._publish_root()

    def _publish_root(self) -> None:
        """Publish the root device once this loop turn is over (children come in bursts)."""
        if self.complete and not self._root_scheduled:
            self._root_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_root)

    def _send_root(self) -> None:
        self._root_scheduled = False
        for topic, payload in self.root_messages().items():
            self._send(topic, payload)

    def device_changed(self, entry: DeviceEntry) -> None:
        """(Re)announce a device whose description or name changed."""
        device = entry.device
        messages = homie_messages(device, root=self.root, parent=self.root_device)
        known = self._topics.get(device.id)
        if known is not None and known == messages:
            return
        new_device = device.id not in self._layouts
        self._layouts[device.id] = layout(device)
        self._by_homie_id[device_homie_id(device.id)] = device.id
        state = state_topic(device.id, self.root)
        self._send(state, INIT)
        for topic in (known or {}).keys() - messages.keys():
            self._send(topic, "")
        for topic, payload in messages.items():
            self._send(topic, payload)
        self._send(state, READY)
        self._topics[device.id] = messages
        if new_device:
            self._publish_root()

    def value_changed(self, entry: DeviceEntry, address: TraitAddress, trait: Trait) -> None:
        """A trait's new value (hot path: one dict look-up and one publish)."""
        device_id = address.device_id
        known = self._layouts.get(device_id)
        if known is None:
            return
        payload = homie_value(trait.spec, trait.value)
        if payload is None:
            return
        node, prop = known.properties[address]
        topic = f"{self.root}/5/{known.device_id}/{node}/{prop}"
        self._send(topic, payload)
        messages = self._topics.get(device_id)
        if messages is not None:
            messages[topic] = payload

    def event_fired(self, entry: DeviceEntry, source: EventSource, event: DeviceEvent,
                    document: str) -> None:
        """The event type on the source's non-retained property (Homie 5 ``retained: false``)."""
        if self._mqtt is not None and entry.device.id in self._layouts:
            self._mqtt.publish(event_topic(entry.device, source, self.root), event.event_type,
                               False)

    def device_removed(self, device_id: str) -> None:
        """Clear ``$state`` first, then every other topic of the device."""
        messages = self._topics.pop(device_id, None)
        self._layouts.pop(device_id, None)
        self._by_homie_id.pop(device_homie_id(device_id), None)
        self._send(state_topic(device_id, self.root), "")
        for topic in messages or {}:
            self._send(topic, "")
        self._publish_root()

    def handle(self, message: IncomingMessage) -> bool:
        """A controller's ``…/set``: handed to the core's validated write path. Retained
        commands are the broker replaying old ones, never executed."""
        target = self.resolve(message.topic)
        if target is None:
            return False
        if not message.retain and self._core is not None:
            self._core.write(*target, set_payload_text(message.payload), Origin.of(message))
        return True

    def resolve(self, topic: str) -> tuple[str, TraitAddress] | None:
        """The device id and trait a Homie ``…/set`` topic addresses, if any."""
        parsed = parse_homie_set(topic, self.root)
        if parsed is None:
            return None
        homie_id, node, prop = parsed
        device_id = self._by_homie_id.get(homie_id)
        if device_id is None:
            return None
        for entry in self.entries():
            if entry.device.id == device_id:
                address = resolve_set(entry.device, node, prop)
                return (device_id, address) if address is not None else None
        return None

    def _send(self, topic: str, payload: str) -> None:
        if self._mqtt is not None:
            self._mqtt.publish(topic, payload, True)
