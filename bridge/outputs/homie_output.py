"""Homie output: every device under ``homie/5/<id>/…`` (children of the bridge's root device)
and/or ``homie/<id>/…`` (Homie 4, for openHAB), on the bridge's own MQTT link.

MQTT gives one will per connection and the bridge's is ``<base>/bridge/state``, so the Homie 5
root device ``homie/5/aqara-mqtt`` has a second small connection (the app's keeper) whose will
sets its ``$state`` to ``lost``; controllers treat the children of a lost root as lost. Every
other Homie topic, the root's ``init``/``$description``/``ready`` included, goes over the main
link, so one connection orders them: a device is ``init`` → description and values → ``ready``;
the root says ``ready`` only after its description and while its will is armed, and goes through
``init`` whenever its description changes; a removed device has ``$state`` cleared first, then
every other topic. The root's description (which lists the children) is only published once
every backend has delivered a complete snapshot, so a slow hub never shrinks the list. On a clean
stop (:meth:`HomieOutput.stopping`) every device says ``disconnected``, the root last. Homie 4
has no children and no will per device: its devices go ``disconnected`` on a clean stop only.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.extension import Core, Output
from bridge.logsetup import get_logger
from bridge.messages import IncomingMessage, MqttPort, Origin
from bridge.model import DeviceEvent, EventSource, Trait, TraitAddress
from bridge.outputs.homie import (
    DISCONNECTED,
    HOMIE_VERSION,
    INIT,
    READY,
    Convention,
    Versions,
    description,
    device_homie_id,
    event_topic,
    homie_messages,
    homie_value,
    layout,
    parse_homie_set,
    resolve_set,
    set_payload_text,
)

if TYPE_CHECKING:
    from bridge.entries import DeviceEntry
    from bridge.outputs.homie import Layout

log = get_logger("bridge.homie")

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


def clock_ms() -> int:
    """Wall-clock milliseconds (the base of new description versions)."""
    return time.time_ns() // 1_000_000


def load_versions(path: Path | None) -> Versions:
    """The description versions recorded in ``path`` (none yet, or unreadable: an empty record,
    and the clock alone keeps versions growing)."""
    known = None
    if path is not None and path.exists():
        try:
            known = Versions.load(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            log.warning("ignoring the Homie version file", path=str(path), error=str(error))
    return Versions(clock_ms, known)


def save_versions(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (a crash leaves the old record or the new)."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as error:
        log.warning("could not write the Homie version file", path=str(path), error=str(error))


class HomieOutput(Output):
    """Keeps ``homie/5/…`` and/or ``homie/…`` (Homie 4) in step with the bridge's devices."""

    def __init__(self, root: str, entries: Callable[[], Iterable[DeviceEntry]],
                 root_device: str = ROOT_ID, majors: Sequence[int] = (5,),
                 versions: Versions | None = None, version_file: Path | None = None) -> None:
        self.root = root
        self.root_device = root_device
        """The Homie 5 id of the bridge's own device (see :func:`root_id`)."""
        self.conventions = [Convention(major, root) for major in sorted(majors, reverse=True)]
        self.has_root = 5 in majors
        """Homie 5 is on: the root device is published (and needs the keeper's will)."""
        self.entries = entries
        self.versions = versions if versions is not None else Versions(clock_ms)
        self.version_file = version_file
        self.will_armed: Callable[[], bool] = lambda: True
        """Whether the keeper holding the root's will is connected (set by the app)."""
        self._mqtt: MqttPort | None = None
        self._core: Core | None = None
        self._topics: dict[str, dict[str, str]] = {}
        """Device id → the retained messages (besides $state) published for it."""
        self._layouts: dict[str, Layout] = {}
        self._by_homie_id: dict[str, str] = {}
        self._prefixes = [convention.prefix for convention in self.conventions]
        self._root = Convention(5, root)
        self._root_scheduled = False
        self._save_scheduled = False
        self.complete = False
        """True once every backend delivered a complete snapshot (the children are known)."""

    def attach(self, mqtt: MqttPort, core: Core | None = None) -> None:
        """Use this MQTT link, and this core for the commands controllers send."""
        self._mqtt = mqtt
        self._core = core

    @property
    def subscriptions(self) -> list[str]:
        """Where controllers send commands: ``homie/5/+/+/+/set`` and/or ``homie/+/+/+/set``."""
        return [convention.set_subscription() for convention in self.conventions]

    @property
    def root_state_topic(self) -> str:
        """The root device's ``$state`` (the keeper connection's will: ``lost``)."""
        return self._root.state_topic(self.root_device)

    def root_messages(self) -> list[tuple[str, str]]:
        """The root device in order: ``init``; once the children are known its description;
        and ``ready`` when its will is armed too."""
        messages = [(self.root_state_topic, INIT)]
        if self.complete:
            document = self.versions.stamp(self.root_device, {
                "homie": HOMIE_VERSION, "name": "aqara-mqtt bridge",
                "children": sorted(self._by_homie_id), "nodes": {}})
            messages += self._root.description_messages(self.root_device, document).items()
            if self.will_armed():
                messages.append((self.root_state_topic, READY))
        return messages

    def on_connected(self) -> None:
        """Republish everything (the broker may have lost it)."""
        self._topics.clear()
        for entry in self.entries():
            self.device_changed(entry)
        self._publish_root()

    def root_reconnected(self) -> None:
        """The keeper (re)connected: its will is armed, the root can be ``ready`` again."""
        self._publish_root()

    def backends_complete(self) -> None:
        """Every backend delivered a complete snapshot: the root's children list is right."""
        self.complete = True
        self._publish_root()

    def _publish_root(self) -> None:
        """Publish the root device once this loop turn is over (children come in bursts)."""
        if self.has_root and not self._root_scheduled:
            self._root_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_root)

    def _send_root(self) -> None:
        self._root_scheduled = False
        for topic, payload in self.root_messages():
            self._send(topic, payload)
        self._versions_changed()

    def _versions_changed(self) -> None:
        """Record new versions once this loop turn is over (one write per burst)."""
        if self.version_file is not None and self.versions.dirty and not self._save_scheduled:
            self._save_scheduled = True
            asyncio.get_running_loop().call_soon(self._save)

    def _save(self) -> None:
        self._save_scheduled = False
        if self.version_file is not None:
            save_versions(self.version_file, self.versions.dump())

    def device_changed(self, entry: DeviceEntry) -> None:
        """(Re)announce a device whose description or name changed."""
        device = entry.device
        homie_id = device_homie_id(device.id)
        document = self.versions.stamp(homie_id, description(
            device, self.root_device if self.has_root else None))
        messages: dict[str, str] = {}
        for convention in self.conventions:
            messages.update(homie_messages(device, document, convention))
        self._versions_changed()
        known = self._topics.get(device.id)
        if known is not None and known == messages:
            return
        new_device = device.id not in self._layouts
        self._layouts[device.id] = layout(device)
        self._by_homie_id[homie_id] = device.id
        for convention in self.conventions:
            self._send(convention.state_topic(homie_id), INIT)
        for topic in (known or {}).keys() - messages.keys():
            self._send(topic, "")
        for topic, payload in messages.items():
            self._send(topic, payload)
        for convention in self.conventions:
            self._send(convention.state_topic(homie_id), READY)
        self._topics[device.id] = messages
        if new_device:
            self._publish_root()

    def value_changed(self, entry: DeviceEntry, address: TraitAddress, trait: Trait) -> None:
        """A trait's new value (hot path: one dict look-up and one publish per convention)."""
        device_id = address.device_id
        known = self._layouts.get(device_id)
        if known is None:
            return
        payload = homie_value(trait.spec, trait.value)
        if payload is None:
            return
        node, prop = known.properties[address]
        messages = self._topics.get(device_id)
        for prefix in self._prefixes:
            topic = f"{prefix}/{known.device_id}/{node}/{prop}"
            self._send(topic, payload)
            if messages is not None:
                messages[topic] = payload

    def event_fired(self, entry: DeviceEntry, source: EventSource, event: DeviceEvent,
                    document: str) -> None:
        """The event type on the source's property: not retained, QoS 0 (the convention's
        rule for non-retained properties: an event arrives now or never, not late)."""
        if self._mqtt is not None and entry.device.id in self._layouts:
            for convention in self.conventions:
                self._mqtt.publish(event_topic(entry.device, source, convention),
                                   event.event_type, False, 0)

    def device_removed(self, device_id: str) -> None:
        """Clear ``$state`` first, then every other topic of the device."""
        messages = self._topics.pop(device_id, None)
        self._layouts.pop(device_id, None)
        homie_id = device_homie_id(device_id)
        self._by_homie_id.pop(homie_id, None)
        for convention in self.conventions:
            self._send(convention.state_topic(homie_id), "")
        for topic in messages or {}:
            self._send(topic, "")
        self._publish_root()

    def stopping(self) -> None:
        """A clean stop: every device ``disconnected``, then the root; nothing after that."""
        for layout_ in self._layouts.values():
            for convention in self.conventions:
                self._send(convention.state_topic(layout_.device_id), DISCONNECTED)
        if self.has_root:
            self._send(self.root_state_topic, DISCONNECTED)
        self._mqtt = None

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
        for convention in self.conventions:
            parsed = parse_homie_set(topic, convention)
            if parsed is None:
                continue
            homie_id, node, prop = parsed
            device_id = self._by_homie_id.get(homie_id)
            if device_id is None:
                continue
            for entry in self.entries():
                if entry.device.id == device_id:
                    address = resolve_set(entry.device, node, prop)
                    return (device_id, address) if address is not None else None
        return None

    def _send(self, topic: str, payload: str) -> None:
        if self._mqtt is not None:
            self._mqtt.publish(topic, payload, True)
