"""The plain topic tree: every device under ``<base>/<device>/…``, and its commands.

Retained, per device: one topic per readable trait (``<base>/<device>/<ep>/<fn>/<trait>``),
``<base>/<device>/availability``, and the JSON document of its current values
(``<base>/<device>``, rebuilt at most once per loop turn). Not retained: ``<base>/<device>/event``,
one message per press or gesture. A renamed device has its old topics
cleared and its new ones published; retained topics of devices that no longer exist are swept
(:mod:`bridge.outputs.stale`). ``/set`` and ``/get`` under the base topic are parsed here and
handed to the core's validated write and read paths.

After a connect, when the broker may hold what this instance published before (its manifest is
not empty), the first snapshot is held back until a learning round
(:class:`~bridge.retained.RetainedLearner`) has read what the broker retains of this instance's
device levels; then only the topics whose retained message differs (bytes, and the MQTT 5
content type) or is missing are published. Changes from the hub meanwhile go out at once and are
left out of the comparison. A hub snapshot that comes after the round is compared as it comes;
what was learned is dropped once every backend has delivered one.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Protocol, runtime_checkable

from bridge import jsonlimits, payloads
from bridge.codec import WriteRejected, decode_device_set, echoes_read_only, encode_payload
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
from bridge.retained import Learned, RetainedLearner
from bridge.topics import (
    BadTopic,
    BridgeRequest,
    DeviceGet,
    DeviceSet,
    TopicScheme,
    TraitGet,
    TraitSet,
)
from bridge.trim import release_free_memory

log = get_logger("bridge.topic_tree")

TRIM_AFTER = 10_000
"""Topics learned in a round above which the heap freed with them is given back to the OS."""

LEARN_DEADLINE = 10.0
"""Seconds a connect's learning round may take (a broker that loses or refuses every marker):
then what arrived by then is compared and everything else published."""


def _echoes_read_only(device: Device, endpoint: int, function: str, code: str,
                      raw: str) -> bool:
    trait = device.trait(endpoint, function, code)
    return trait is not None and echoes_read_only(trait.spec, raw, trait.value)


def _document(device: Device) -> str:
    """The retained ``<base>/<device>`` JSON of the device's current values."""
    return json.dumps(payloads.device_state(device), separators=(",", ":"))


@runtime_checkable
class _Connection(Protocol):
    """A port that says whether it is connected (the MQTT link; a unit test's recorder is not)."""

    connected: bool


class _Recorder:
    """The link while the first snapshot is held back: what is published meanwhile is a live
    change, and its topic is noted so that the comparison leaves it alone."""

    def __init__(self, link: MqttPort, topics: set[str]) -> None:
        self.link = link
        self.topics = topics

    def publish(self, topic: str, payload: Payload, retain: bool = False,
                qos: int | None = None, properties: PublishProperties | None = None) -> None:
        self.topics.add(topic)
        self.link.publish(topic, payload, retain, qos, properties)

    def subscribe(self, filters: list[str], no_local: bool = True,
                  qos: int | None = None) -> None:
        self.link.subscribe(filters, no_local, qos)

    def unsubscribe(self, filters: list[str]) -> None:
        self.link.unsubscribe(filters)


class TopicTree(Output):
    """Keeps ``<base>/<device>/…`` in step with the registry and routes its commands."""

    def __init__(self, topics: TopicScheme, device_state_topic: bool = True,
                 clear_stale_topics: bool = True) -> None:
        self.topics = topics
        self.device_state_topic = device_state_topic
        self._mqtt: MqttPort | None = None
        """The link, or a :class:`_Recorder` of it while the first snapshot is held back."""
        self._link: MqttPort | None = None
        self._core: Core | None = None
        self._devices: dict[str, DeviceTopics] = {}
        """Device id → its topic level, trait topics and what it holds retained."""
        self._layouts = Layouts(topics)
        self._dirty_docs: set[str] = set()
        self._docs_scheduled = False
        self.syncing = False
        """The first snapshot is held back: what the broker retains is being learned."""
        self.complete = False
        self.resent = 0
        self.unchanged = 0
        """Topics published, and left as the broker retains them, when comparing (counters)."""
        self._owned_levels: set[str] = set()
        self._learner = RetainedLearner(
            topics.bridge("topics_sync"),
            [f"{topics.base}/+", f"{topics.base}/+/availability", f"{topics.base}/+/+/+/+"],
            self._is_owned, content_types=True, deadline=LEARN_DEADLINE)
        self._learned: Learned | None = None
        """What the broker retains of devices not compared yet (until every backend is complete)."""
        self._learned_size = 0
        self._fresh: set[str] = set()
        """Topics published while the first snapshot was held back."""
        self._cleared: set[str] = set()
        """Topics cleared since the last comparison: what a broker retained there before is no
        reason not to publish (the clear may still be on its way, parked by the link)."""
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
        """Use this MQTT link, and this core for the commands and the manifest."""
        self._mqtt = self._link = mqtt
        self._core = core
        if self.stale is not None:
            self.stale.attach(mqtt)
        if isinstance(mqtt, _Connection) and not mqtt.connected:
            # what the link parks before its first connect would all be sent: a snapshot that
            # comes first waits for the comparison instead
            self._hold_back()

    def _publish(self, topic: str, payload: Payload,
                 properties: PublishProperties | None = None) -> None:
        if self._mqtt is not None:
            self._mqtt.publish(topic, payload, True, None, properties)

    # ---- registry → retained topics ------------------------------------------------------

    def on_connected(self) -> None:
        """Learn what the broker retains of this instance's devices and publish what differs
        (without a manifest nothing of it is retained: everything is published); learn what is
        stale."""
        self._learned = None
        owned = self._core.owned_devices() if self._core is not None else {}
        if owned and self._link is not None:
            self._owned_levels = set(owned.values())
            if not self.syncing or self._learner.learning:
                # a fresh record of what goes out live; what was published before the first
                # connect is parked, not lost, and stays recorded
                self._hold_back()
            self._learner.start(self._link, self._compare)
        else:
            self._release()
            for device in self._devices.values():
                self._publish_values(device)
        if self.stale is not None:
            self.stale.on_connected()

    def backends_complete(self) -> None:
        """Every backend delivered a complete snapshot: stale topics can be known, and what
        was learned of devices that never came is dropped."""
        self.complete = True
        if not self.syncing:
            self._drop_learned()
        if self.stale is not None:
            self.stale.backends_complete()

    def _is_owned(self, topic: str) -> bool:
        return topic[len(self.topics.base) + 1:].partition("/")[0] in self._owned_levels

    def _hold_back(self) -> None:
        assert self._link is not None
        self.syncing = True
        self._fresh = set()
        self._mqtt = _Recorder(self._link, self._fresh)

    def _release(self) -> None:
        self.syncing = False
        self._mqtt = self._link
        self._fresh = set()

    def _compare(self, learned: Learned) -> None:
        """The round is over: publish what of each device the broker does not retain as is."""
        if not learned.complete:
            log.warning("the broker did not finish the retained-topics round in time; "
                        "publishing what it did not show", learned=len(learned))
        for topic in self._cleared:
            learned.forget(topic)
        self._cleared.clear()
        fresh, self._mqtt, self.syncing = self._fresh, self._link, False
        self._learned_size = len(learned)
        resent, unchanged = self.resent, self.unchanged
        for device in self._devices.values():
            self._sync(device, learned, fresh)
        if self._core is not None and self._core.hub_unreached():
            self._unvouched(learned)
        self._fresh = set()
        self._learned = learned
        if self.complete:
            self._drop_learned()
        log.info("topic tree in step with what the broker retains", devices=len(self._devices),
                 published=self.resent - resent, unchanged=self.unchanged - unchanged,
                 live=len(fresh))

    def hub_lost(self) -> None:
        """A hub is down: devices of the manifest it has not delivered are offline (once the
        round is over; until then its comparison does this)."""
        if self._learned is not None:
            self._unvouched(self._learned)

    def _unvouched(self, learned: Learned) -> None:
        """Devices of the manifest that no hub has delivered while a hub is down are offline
        until one does: a retained ``online`` from before would say otherwise (and Home
        Assistant's Connectivity would show Connected for a dead hub). A hub that is only slow
        changes nothing (no blink at every restart)."""
        present = {device.level for device in self._devices.values()}
        for level in self._owned_levels - present:
            topic = self.topics.availability(level)
            if learned.get(topic) == b"online":
                learned.forget(topic)  # when the device comes, its availability goes out
                self._publish(topic, "offline", TEXT_PROPERTIES)

    def _drop_learned(self) -> None:
        """Forget what was learned; after a large round, give the freed heap back."""
        if self._learned is not None:
            self._learned = None
            if self._learned_size >= TRIM_AFTER:
                release_free_memory()

    def _sync(self, published: DeviceTopics, learned: Learned,
              fresh: frozenset[str] | set[str] = frozenset()) -> None:
        """Publish the device's topics that the broker does not retain as they are now."""
        entry = published.entry
        slots, prefix = published.layout.slots, published.prefix
        for address, trait in entry.device.iter_traits():
            bit, suffix = slots[address[1:]]
            topic = prefix + suffix
            if trait.value is None or not trait.spec.readable:
                if learned.forget(topic):  # an earlier run's: cleared with the device
                    published.retained |= bit
                continue
            published.retained |= bit
            payload, is_json = encode_payload(trait.spec, trait.value)
            self._keep(learned, fresh, topic, payload,
                       JSON_PROPERTIES if is_json else TEXT_PROPERTIES)
        if self.device_state_topic:
            topic = self.topics.device(entry.topic_name)
            if entry.device.id in self._dirty_docs:  # goes out this turn anyway
                learned.forget(topic)
            else:
                self._keep(learned, fresh, topic, _document(entry.device), JSON_PROPERTIES)
        if entry.available is not None:
            self._keep(learned, fresh, self.topics.availability(entry.topic_name),
                       "online" if entry.available else "offline", TEXT_PROPERTIES)
            published.available = entry.available

    def _keep(self, learned: Learned, fresh: frozenset[str] | set[str], topic: str, payload: str,
              properties: PublishProperties) -> None:
        """Publish unless the broker retains exactly this (or it went out live meanwhile)."""
        if topic in fresh:
            learned.forget(topic)
        elif learned.holds(topic, payload, properties.content_type):
            self.unchanged += 1
        else:
            self.resent += 1
            self._publish(topic, payload, properties)

    def trait_topic(self, entry: DeviceEntry, address: TraitAddress) -> str:
        """The topic a trait of a published device is published under."""
        return self._devices[entry.device.id].topic(address)

    def device_added(self, entry: DeviceEntry) -> None:
        """Publish a new device's values."""
        level = entry.topic_name
        device = self._devices[entry.device.id] = DeviceTopics(
            entry, level, self.topics.trait_prefix(level), self._layouts.of(entry.device))
        if self.syncing:
            return  # compared once what the broker retains is known
        if self._learned is not None:
            self._sync(device, self._learned)
        else:
            self._publish_values(device)

    def device_replaced(self, entry: DeviceEntry, previous: Device) -> None:
        """Clear the topics of traits the device lost; publish the values that changed."""
        published = self._devices[entry.device.id]
        for topic in published.relayout(self._layouts.of(entry.device)):
            self._clear_topic(topic)  # a trait the device no longer has
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
        """``<base>/<device>/availability``: online or offline (compared with what the broker
        retains while that is being learned, unless it changed)."""
        published = self._devices.get(entry.device.id)
        if self.syncing and (published is None or published.available in (None, available)):
            return  # the core's republish at a connect, or a device not published yet
        if published is None and self._learned is not None:
            return  # compared when the device is added, right after
        if published is not None:
            published.available = available
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
            self._clear_topic(topic)
        published.retained = 0
        published.available = None

    def _clear_topic(self, topic: str) -> None:
        self._publish(topic, b"")
        self._fresh.discard(topic)  # went out live, but no value to leave alone
        if self._learned is not None:
            self._learned.forget(topic)
        else:
            self._cleared.add(topic)

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
        """Take a learning round's message, or a ``/set`` or ``/get`` under the base topic."""
        learned = self._learner.handle(message.topic, message.payload, message.retain,
                                       message.content_type)
        # both rounds take a retained message under a stale level
        swept = self.stale is not None and self.stale.handle(message.topic, message.payload,
                                                              message.retain)
        if learned or swept:
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
                members = decode_device_set(message.payload)
            except WriteRejected as exc:
                core.reject(origin, exc.reason)
                return True
            # the device document sent back edited: its read-only members at their current
            # values are ignored (any other value of one is refused by the write as usual)
            items = [(TraitAddress(device_id, e, f, t), raw) for e, f, t, raw in members
                     if not _echoes_read_only(entry.device, e, f, t, raw)]
            if not items:
                core.reject(origin, "nothing to set" if not members else
                            "nothing to set: every member is read-only, at its current value")
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
