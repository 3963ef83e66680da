"""The plain topic tree: every device under ``<base>/<device>/…``, and its commands.

Retained, per device: one topic per readable trait (``<base>/<device>/<ep>/<fn>/<trait>``),
``<base>/<device>/availability``, and the JSON document of its current values
(``<base>/<device>``, rebuilt at most once per loop turn). Not retained: ``<base>/<device>/event``,
one message per press or gesture. A renamed device has its old topics
cleared and its new ones published; retained topics of devices that no longer exist are swept
(:mod:`bridge.outputs.stale`). ``/set`` and ``/get`` under the base topic are parsed here and
handed to the core's validated write and read paths.
"""

from __future__ import annotations

import asyncio
import functools
import json

from bridge import jsonlimits, payloads
from bridge.codec import WriteRejected, decode_device_set, encode_payload
from bridge.entries import DeviceEntry
from bridge.extension import Core, Output
from bridge.logsetup import get_logger
from bridge.messages import (
    JSON_PROPERTIES,
    TEXT_PROPERTIES,
    IncomingMessage,
    MqttPort,
    Origin,
    Payload,
    PublishProperties,
)
from bridge.model import Device, DeviceEvent, EventSource, Trait, TraitAddress
from bridge.outputs.stale import StaleTopicSweeper
from bridge.outputs.trait_topics import DeviceTopics, Layouts
from bridge.topics import (
    BadTopic,
    BridgeRequest,
    DeviceGet,
    DeviceSet,
    TopicScheme,
    TraitGet,
    TraitSet,
)

log = get_logger("bridge.topic_tree")


def _document(device: Device) -> str:
    """The retained ``<base>/<device>`` JSON of the device's current values."""
    return json.dumps(payloads.device_state(device), separators=(",", ":"))


class TopicTree(Output):
    """Keeps ``<base>/<device>/…`` in step with the registry and routes its commands."""

    def __init__(self, topics: TopicScheme, device_state_topic: bool = True,
                 clear_stale_topics: bool = True) -> None:
        self.topics = topics
        self.device_state_topic = device_state_topic
        self._mqtt: MqttPort | None = None
        self._core: Core | None = None
        self._devices: dict[str, DeviceTopics] = {}
        """Device id → its topic level, trait topics and what it holds retained."""
        self._layouts = Layouts(topics)
        self._dirty_docs: set[str] = set()
        self._docs_scheduled = False
        self.stale: StaleTopicSweeper | None = None
        if clear_stale_topics:
            self.stale = StaleTopicSweeper(
                topics, lambda: {d.entry.topic_name for d in self._devices.values()},
                lambda: self._core.owned_devices() if self._core is not None else {})

    @property
    def subscriptions(self) -> list[str]:
        """``/set`` and ``/get`` of every device and trait."""
        return self.topics.command_subscriptions()

    def attach(self, mqtt: MqttPort, core: Core) -> None:
        """Use this MQTT link, and this core for the commands."""
        self._mqtt = mqtt
        self._core = core
        if self.stale is not None:
            self.stale.attach(mqtt)

    def _publish(self, topic: str, payload: Payload,
                 properties: PublishProperties | None = None) -> None:
        if self._mqtt is not None:
            self._mqtt.publish(topic, payload, True, None, properties)

    # ---- registry → retained topics ------------------------------------------------------

    def on_connected(self) -> None:
        """Republish every device's values and document; learn what is stale."""
        for device in self._devices.values():
            self._publish_values(device)
        if self.stale is not None:
            self.stale.on_connected()

    def backends_complete(self) -> None:
        """Every backend delivered a complete snapshot: stale topics can be known."""
        if self.stale is not None:
            self.stale.backends_complete()

    def trait_topic(self, entry: DeviceEntry, address: TraitAddress) -> str:
        """The topic a trait of a published device is published under."""
        return self._devices[entry.device.id].topic(address)

    def device_added(self, entry: DeviceEntry) -> None:
        """Publish a new device's values."""
        level = entry.topic_name
        device = self._devices[entry.device.id] = DeviceTopics(
            entry, level, self.topics.trait_prefix(level), self._layouts.of(entry.device))
        self._publish_values(device)

    def device_replaced(self, entry: DeviceEntry, previous: Device) -> None:
        """Clear the topics of traits the device lost; publish the values that changed."""
        published = self._devices[entry.device.id]
        for topic in published.relayout(self._layouts.of(entry.device)):
            self._publish(topic, b"")  # a trait the device no longer has
            self._mark_doc(entry)
        for address, trait in entry.device.iter_traits():
            before = previous.trait(*address[1:])
            changed = before is None or before.value != trait.value
            if trait.value is not None and trait.spec.readable and changed:
                self._publish_value(published.mark(address), trait)
                self._mark_doc(entry)

    def device_renamed(self, entry: DeviceEntry) -> None:
        """A new topic level: clear the old topics, publish under the new one."""
        published = self._devices.get(entry.device.id)
        if published is None or published.level == entry.topic_name:
            return  # only the hub's name changed: the topics stay
        self._clear(published)
        published.level = entry.topic_name
        published.prefix = self.topics.trait_prefix(entry.topic_name)
        self._publish_values(published)

    def device_removed(self, device_id: str) -> None:
        """Clear every retained topic published for the device."""
        published = self._devices.pop(device_id, None)
        if published is not None:
            self._clear(published)

    def value_changed(self, entry: DeviceEntry, address: TraitAddress, trait: Trait) -> None:
        """Publish the trait's new value (the hot path)."""
        published = self._devices[entry.device.id]  # published.mark(address), inlined:
        bit, suffix = published.layout.slots[address[1:]]
        published.retained |= bit
        topic = published.prefix + suffix
        payload, is_json = encode_payload(trait.spec, trait.value)
        if self._mqtt is not None:
            self._mqtt.publish(topic, payload, True, None,
                               JSON_PROPERTIES if is_json else TEXT_PROPERTIES)
        if self.device_state_topic:  # _mark_doc inlined: once per trait change
            self._dirty_docs.add(entry.device.id)
            if not self._docs_scheduled:
                self._docs_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush_docs)

    def availability_changed(self, entry: DeviceEntry, available: bool) -> None:
        """``<base>/<device>/availability``: online or offline."""
        self._publish(self.topics.availability(entry.topic_name),
                      "online" if available else "offline", TEXT_PROPERTIES)

    def event_fired(self, entry: DeviceEntry, source: EventSource, event: DeviceEvent,
                    document: str) -> None:
        """``<base>/<device>/event``: the event's JSON, never retained (a retained press would
        fire again at every reconnect and for every new subscriber)."""
        if self._mqtt is not None:
            self._mqtt.publish(self.topics.event(entry.topic_name), document, False, None,
                               JSON_PROPERTIES)

    def _device_topics(self, level: str) -> set[str]:
        return {self.topics.device(level), self.topics.availability(level)}

    def _publish_value(self, topic: str, trait: Trait) -> None:
        payload, is_json = encode_payload(trait.spec, trait.value)
        self._publish(topic, payload, JSON_PROPERTIES if is_json else TEXT_PROPERTIES)

    def _publish_values(self, published: DeviceTopics) -> None:
        entry = published.entry
        for address, trait in entry.device.iter_traits():
            if trait.value is not None and trait.spec.readable:
                self._publish_value(published.mark(address), trait)
        self._mark_doc(entry)

    def _clear(self, published: DeviceTopics) -> None:
        """Clear every retained topic published for the device under its current level."""
        self._dirty_docs.discard(published.entry.device.id)
        for topic in published.retained_topics() | self._device_topics(published.level):
            self._publish(topic, b"")
        published.retained = 0

    def _mark_doc(self, entry: DeviceEntry) -> None:
        if not self.device_state_topic:
            return
        self._dirty_docs.add(entry.device.id)
        if not self._docs_scheduled:
            self._docs_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_docs)

    def _flush_docs(self) -> None:
        self._docs_scheduled = False
        dirty, self._dirty_docs = self._dirty_docs, set()
        for device_id in dirty:
            published = self._devices.get(device_id)
            if published is not None:
                entry = published.entry
                # built when sent: while the link is congested a device's document waits
                # parked, and only its latest state is ever serialised
                self._publish(self.topics.device(entry.topic_name),
                              functools.partial(_document, entry.device), JSON_PROPERTIES)

    # ---- commands: /set and /get ---------------------------------------------------------

    def handle(self, message: IncomingMessage) -> bool:
        """Take a stale-sweep message, or a ``/set`` or ``/get`` under the base topic."""
        if self.stale is not None and self.stale.handle(message.topic, message.payload,
                                                         message.retain):
            return True
        command = self.topics.parse(message.topic)
        if command is None or self._core is None:
            return False
        core = self._core
        origin = Origin.of(message)
        if len(message.payload) > jsonlimits.MQTT_MAX_BYTES:
            core.reject(origin, f"the payload is larger than {jsonlimits.MQTT_MAX_BYTES} bytes")
            return True
        if not message.payload and message.response_topic is None and isinstance(
                command, TraitSet | DeviceSet):
            # an empty payload is how a retained /set is deleted, never a value to write
            log.debug("empty /set payload ignored", topic=message.topic)
            return True
        if message.retain:
            self._ignore_retained(core, origin)
            return True
        if isinstance(command, BadTopic):
            core.reject(origin, command.reason)
            return True
        assert not isinstance(command, BridgeRequest)  # the core's own, never handed here
        entry = core.entry_at(command.device)
        if entry is None:
            core.reject(origin, f"unknown device '{command.device}'")
            return True
        device_id = entry.device.id
        if isinstance(command, TraitSet):
            core.write_all(entry, [(self._address(entry, command), message.payload)], origin)
        elif isinstance(command, DeviceSet):
            try:
                items = [(TraitAddress(device_id, e, f, t), raw)
                         for e, f, t, raw in decode_device_set(message.payload)]
            except WriteRejected as exc:
                core.reject(origin, exc.reason)
                return True
            if not items:
                core.reject(origin, "nothing to set")
            else:
                core.write_all(entry, items, origin)
        elif isinstance(command, TraitGet):
            address = self._address(entry, command)
            if entry.device.trait(*address[1:]) is None:
                core.reject(origin, f"device '{command.device}' has no trait {address.path()}")
            else:
                core.read(entry, (address,), origin)
        elif isinstance(command, DeviceGet):
            readable = [a for a, t in entry.device.iter_traits() if t.spec.readable]
            core.read(entry, tuple(readable), origin)
        return True

    def _address(self, entry: DeviceEntry, command: TraitSet | TraitGet) -> TraitAddress:
        """The trait a ``/set`` or ``/get`` topic names: its levels are the codes, or (for codes
        a level cannot spell as they are) the levels the device's traits are published under."""
        device_id = entry.device.id
        address = TraitAddress(device_id, command.endpoint_id, command.function_code,
                               command.trait_code)
        if entry.device.trait(*address[1:]) is not None:
            return address
        published = self._devices.get(device_id)
        place = None if published is None else published.layout.place_of(
            f"{command.endpoint_id}/{command.function_code}/{command.trait_code}")
        return address if place is None else TraitAddress(device_id, *place)

    def _ignore_retained(self, core: Core, origin: Origin) -> None:
        """A command the broker replays from its store (it was published with the retain flag):
        executing it at every (re)connect would repeat an old command, so it is not."""
        cleared = self.stale is not None
        if self.stale is not None:
            self.stale.retained_command(origin.topic)
        reason = ("retained command ignored: publish /set and /get without the retain flag"
                  + (" (the retained message is cleared)" if cleared else ""))
        core.report("warning", reason, origin)
        core.respond(origin, payloads.response("error", error_code="retained",
                                               error_message=reason))
