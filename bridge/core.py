"""The bridge core: backend events → registry and state → outputs; writes and reads → hubs.

Everything here runs synchronously on the event loop, except the hub calls themselves (writes and
re-reads), which run as tasks. A trait change costs a few dict look-ups and one call per output
that overrides ``value_changed``. The core publishes only the ``bridge/*`` topics; everything a
device shows on MQTT is an output's (``bridge.extension``), which the core names none of.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from bridge import __version__, events, health, payloads
from bridge.backends.base import NOT_ACTIVE, NOT_STARTED, Backend, BackendError, EventSink
from bridge.coalesce import WriteCoalescer
from bridge.codec import WriteRejected, decode_set
from bridge.entries import DeviceEntry
from bridge.extension import Output
from bridge.instance import GuardOutcome, Identity, InstanceGuard, rival_message
from bridge.lease_keeper import LeaseKeeper, TrackedPort
from bridge.logsetup import get_logger
from bridge.messages import (
    JSON_PROPERTIES,
    TEXT_PROPERTIES,
    IncomingMessage,
    MqttPort,
    Origin,
    Payload,
    PublishProperties,
    response_properties,
)
from bridge.model import (
    Availability,
    BackendStatus,
    Device,
    DeviceAdded,
    DeviceEvent,
    DeviceRemoved,
    DeviceRenamed,
    DeviceUpdated,
    Event,
    Snapshot,
    Trait,
    TraitAddress,
    TraitChanged,
    WriteFailure,
    WriteItem,
)
from bridge.ratelimit import RateLimitedLog
from bridge.topics import BridgeRequest, TopicScheme

log = get_logger("bridge.core")


MAX_VALUE_CHARS = 256 * 1024
"""Longest value (as published text) republished from a hub; longer ones are refused and logged:
no real trait needs it, and a broken hub must not fill the broker with megabytes."""

MAX_WAITING_GETS = 1000
"""``/get`` requests that may wait for one trait's (or device's) read; more are refused."""

SOURCE_PREFERENCE = ("studio", "aqara_cloud", "tuya")
"""When two backends report the same device id, the earlier kind here is its source (local
first): its state is published and writes go to it; the other backend's events are ignored."""


def source_rank(backend: Backend) -> int:
    """Position of the backend's kind in :data:`SOURCE_PREFERENCE` (unknown kinds last)."""
    kind = backend.kind
    return SOURCE_PREFERENCE.index(kind) if kind in SOURCE_PREFERENCE else len(SOURCE_PREFERENCE)


@dataclass(frozen=True, slots=True)
class CoreOptions:
    """The core's settings (from the ``mqtt``, ``devices`` and ``bridge`` config sections)."""

    base_topic: str = "aqara"
    topic_style: str = "standard"
    """How levels from device data are spelled (:data:`bridge.topics.TOPIC_STYLES`)."""
    friendly_names: Mapping[str, str] = field(default_factory=dict)
    excluded: frozenset[str] = frozenset()
    write_window: float = 0.05
    publish_unchanged: bool = False
    device_state_topic: bool = True
    """For the topic tree output (the app builds it): publish ``<base>/<device>`` documents."""
    clear_stale_topics: bool = True
    """For the topic tree output: sweep retained topics of devices that are gone."""
    info: Mapping[str, Any] = field(default_factory=dict)
    instance: Identity | None = None
    """This bridge among several on a broker (default: its base topic, no hubs named)."""


class Bridge:
    """Keeps MQTT in step with the hubs and turns MQTT commands into hub calls."""

    def __init__(self, backends: Sequence[Backend], options: CoreOptions) -> None:
        self.backends = {backend.name: backend for backend in backends}
        self.options = options
        self.topics = TopicScheme(options.base_topic, options.topic_style)
        self.devices: dict[str, DeviceEntry] = {}
        self._by_topic: dict[str, DeviceEntry] = {}
        self._coalescers = {name: WriteCoalescer[Origin]() for name in self.backends}
        self._windows: dict[str, asyncio.TimerHandle] = {}
        """Backends whose coalescing window is open, with the timer that closes it."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._snapshots_seen: set[str] = set()
        self._mqtt: MqttPort | None = None
        self._qos: int | None = None
        self.started_at = time.time()
        self.events_handled = 0
        self.request_handler: Callable[[str, IncomingMessage], None] | None = None
        self.outputs: list[Output] = []
        self._value_hooks: tuple[Callable[[DeviceEntry, TraitAddress, Trait], None], ...] = ()
        """``value_changed`` of the outputs that override it (the hot path calls only these)."""
        self._log_hooks: tuple[Callable[[Mapping[str, Any]], None], ...] = ()
        self._answer_hooks: tuple[Callable[[Origin, Mapping[str, Any]], None], ...] = ()
        """``logged`` and ``answered`` of the outputs that override them."""
        self.info_extra: Callable[[], Mapping[str, Any]] | None = None
        """More top-level ``bridge/info`` fields (the MQTT link's counters)."""
        self._gets: dict[tuple[TraitAddress, ...], list[Origin]] = {}
        self.values_refused = 0
        self.writes_queued = 0
        self.writes_rejected = 0
        self.writes_failed = 0
        """Write counters: sent to a hub, refused by validation, refused by the hub."""
        self._warn = RateLimitedLog(log)
        self._repeats = events.RepeatFilter()
        self.events_fired = 0
        self.events_repeated = 0
        self.identity = options.instance or Identity(options.base_topic.replace("/", "_"), ())
        self.guard: InstanceGuard | None = None
        self._hold: Callable[[str | None], None] | None = None
        self.owned: dict[str, str] = {}
        """Device id → topic level this instance published before this connection (its
        manifest on the broker, read at each connect): with the current devices, what a
        clean-up may clear."""
        self.keeper: LeaseKeeper | None = None
        """The failover lease (``instance.failover``): gates commands, hub writes, publishes."""
        self.on_conflict: Callable[[str], None] | None = None
        """Called with the reason when another bridge owns the base topic (the app stops)."""
        self.conflict: str | None = None

    # ---- wiring ---------------------------------------------------------------------------

    def attach(self, mqtt: MqttPort) -> None:
        """Use this MQTT link for everything the bridge sends."""
        self._mqtt = mqtt
        for output in self.outputs:
            output.attach(mqtt, self)

    def add_output(self, output: Output) -> None:
        """Feed ``output`` from now on (it takes incoming messages in the order added)."""
        self.outputs.append(output)
        if type(output).value_changed is not Output.value_changed:
            self._value_hooks += (output.value_changed,)
        if type(output).logged is not Output.logged:
            self._log_hooks += (output.logged,)
        if type(output).answered is not Output.answered:
            self._answer_hooks += (output.answered,)
        if self._mqtt is not None:
            output.attach(self._mqtt, self)

    def entries(self) -> Iterable[DeviceEntry]:
        """Every device the bridge publishes."""
        return self.devices.values()

    def sink_for(self, backend: Backend) -> EventSink:
        """The event callback to hand to ``backend.run``."""
        return lambda event: self.handle_event(backend, event)

    def publish(self, topic: str, payload: Payload, retain: bool = False,
                properties: PublishProperties | None = None) -> None:
        """Publish through the attached MQTT link (dropped when none is attached).

        A callable payload is built when the message is sent (a parked one only once)."""
        if self._mqtt is not None:
            self._mqtt.publish(topic, payload, retain, None, properties)

    def publish_json(self, topic: str, document: str | Callable[[], str],
                     retain: bool = False) -> None:
        """Publish a JSON document, with its MQTT 5 content type."""
        self.publish(topic, document, retain, JSON_PROPERTIES)

    def guard_base_topic(self, hold: Callable[[str | None], None]) -> None:
        """Check at each connect, before publishing, that no other bridge owns the base topic
        (:mod:`bridge.instance`); ``hold(prefix)`` makes the link park every publish but those
        under ``prefix`` (None: publish again)."""
        self._hold = hold
        self.guard = InstanceGuard(self.topics, self.identity, self._guarded,
                                   self._rival, self._state_lost)

    def use_lease(self, keeper: LeaseKeeper) -> None:
        """Serve as a failover member: after the guard, claim (or resume) the lease, and act
        only while it holds (:mod:`bridge.lease_keeper`). Needs :meth:`guard_base_topic`."""
        self.keeper = keeper

    def on_mqtt_connected(self) -> None:
        """After every broker (re)connect: learn who owns the base topic (when guarded), then
        state online and every retained topic republished."""
        if self.guard is not None and self._hold is not None and self._mqtt is not None:
            self._hold(self.topics.bridge("instance_sync/"))
            if self.keeper is not None:
                self.keeper.connecting(cast(TrackedPort, self._mqtt))
            self.guard.start(self._mqtt)
            return
        self._claimed()

    def _guarded(self, outcome: GuardOutcome) -> None:
        assert self._hold is not None
        assert self.guard is not None
        if outcome.conflict is not None:
            self._refuse(outcome.conflict)
            return
        if outcome.adopted_foreign:
            log.warning("the base topic was last used by another bridge (now offline); its "
                        "retained topics are left as they are", base_topic=self.topics.base)
        self.owned = dict(outcome.owned)
        if self.keeper is not None:
            self.keeper.learned(self._go_on)
        else:
            self._go_on()

    def _go_on(self) -> None:
        """The base topic (and the lease, for a failover member) is ours: publish."""
        assert self._hold is not None
        assert self.guard is not None
        self._hold(None)
        self._claimed()
        self.guard.watch()

    def _refuse(self, reason: str) -> None:
        """Another bridge owns the base topic: publish nothing, say why, let the app stop."""
        self.conflict = reason
        log.error(reason)
        if self.on_conflict is not None:
            self.on_conflict(reason)

    def _rival(self, other: Identity) -> None:
        """A live process of another bridge published on our ``bridge/info``."""
        if self.keeper is not None and not self.identity.is_other_instance(other):
            return  # another member of this instance: the lease says who is active
        reason = rival_message(self.identity, other, self.topics.base)
        if self.identity.yields_to(other):
            self._refuse(reason + f"; this one ({self.identity.describe()}) started later "
                         "and stops")
            return
        log.warning(reason + "; this one started first and keeps the base topic")
        self.publish(self.topics.bridge("state"), "online", True, TEXT_PROPERTIES)
        self.publish_info()

    def _state_lost(self) -> None:
        """``bridge/state`` says offline while we run (a killed predecessor's late will)."""
        if self.conflict is None:
            log.info("bridge/state was set to offline by another client; publishing online")
            self.publish(self.topics.bridge("state"), "online", True, TEXT_PROPERTIES)

    def owned_devices(self) -> Mapping[str, str]:
        """:attr:`owned`: device id → level this instance published before this connection."""
        return self.owned

    def _claimed(self) -> None:
        """The base topic is ours: state online, and every retained topic republished."""
        self.publish(self.topics.bridge("state"), "online", True, TEXT_PROPERTIES)
        self.publish_info()
        if self._snapshots_seen:
            self.publish_device_list()
            self.publish_homes()
        for output in self.outputs:  # first: an output learning what the broker retains
            # (the topic tree) compares the availability that follows
            output.on_connected()
        for entry in self.devices.values():
            entry.available = None  # republished: the broker may have lost it
            self._publish_availability(entry)

    @property
    def backends_complete(self) -> bool:
        """True once every backend has delivered a complete snapshot (while connected)."""
        return self._snapshots_seen.issuperset(self.backends)

    # ---- events from backends ------------------------------------------------------------

    def handle_event(self, backend: Backend, event: Event) -> None:
        """Apply one backend event; synchronous, called in the order the hub sent them."""
        self.events_handled += 1
        if isinstance(event, TraitChanged):
            if not self._absurd(backend, event.address, event.value):
                self._on_trait_changed(backend, event)
            return
        if isinstance(event, DeviceEvent):
            self._on_device_event(backend, event)
            return
        if isinstance(event, Snapshot):
            self._drop_absurd(backend, event.devices)
        elif isinstance(event, DeviceAdded | DeviceUpdated):
            self._drop_absurd(backend, [event.device])
        if isinstance(event, Snapshot):
            self._on_snapshot(backend, event.devices)
        elif isinstance(event, Availability):
            entry = self._owned(backend, event.device_id)
            if entry is not None and entry.device.online != event.online:
                entry.device.online = event.online
                self._publish_availability(entry)
                self._event("device_availability", entry, online=event.online)
        elif isinstance(event, DeviceAdded | DeviceUpdated):
            if event.device.id not in self.options.excluded:
                added = event.device.id not in self.devices
                self._upsert(backend, event.device)
                self._event("device_added" if added else "device_updated",
                            self.devices[event.device.id])
                self.publish_device_list()
        elif isinstance(event, DeviceRemoved):
            entry = self._owned(backend, event.device_id)
            if entry is not None:
                self._remove(entry)
                self._event("device_removed", entry)
                self.publish_device_list()
        elif isinstance(event, DeviceRenamed):
            entry = self._owned(backend, event.device_id)
            if entry is not None:
                old = entry.device.name
                entry.device.name = event.name
                self._event("device_renamed", entry, old_name=old)
                for output in self.outputs:
                    output.device_renamed(entry)
                self.publish_device_list()
        elif isinstance(event, BackendStatus):
            self._on_backend_status(backend, event)
        if isinstance(event, Snapshot | DeviceAdded | DeviceUpdated | DeviceRemoved) and (
                backend.homes() is not None):
            self.publish_homes()

    def _drop_absurd(self, backend: Backend, devices: Iterable[Device]) -> None:
        """Forget values too large to republish in a device description from a hub."""
        for device in devices:
            for address, trait in device.iter_traits():
                if trait.value is not None and self._absurd(backend, address, trait.value):
                    trait.value = None

    def _absurd(self, backend: Backend, address: TraitAddress, value: Any) -> bool:
        """Whether a value from a hub is too large to republish (then logged, rate-limited)."""
        if isinstance(value, str):
            size = len(value)
        elif isinstance(value, dict | list):
            size = len(json.dumps(value, separators=(",", ":")))
        else:
            return False
        if size <= MAX_VALUE_CHARS:
            return False
        self.values_refused += 1
        self._warn.warning(("absurd", address), "refused a value from the hub: too large",
                           backend=backend.name, device=address.device_id,
                           trait=address.path(), chars=size, limit=MAX_VALUE_CHARS)
        return True

    def _owned(self, backend: Backend, device_id: str) -> DeviceEntry | None:
        """The device's entry when ``backend`` is its source (events from others are ignored)."""
        entry = self.devices.get(device_id)
        return entry if entry is not None and entry.backend is backend else None

    def _on_trait_changed(self, backend: Backend, event: TraitChanged) -> None:
        address = event.address
        entry = self.devices.get(address.device_id)
        if entry is None or entry.backend is not backend:
            return
        trait = entry.device.trait(address.endpoint_id, address.function_code, address.trait_code)
        if trait is None:
            return
        self._apply(entry, address, trait, event.value, event.time, self.options.publish_unchanged)

    def _apply(self, entry: DeviceEntry, address: TraitAddress, trait: Trait, value: Any,
               stamp: int | None, force: bool) -> None:
        if value == trait.value and type(value) is type(trait.value) and not force:
            return
        trait.value = value
        trait.time = stamp
        if value is None or not trait.spec.readable:
            return
        for hook in self._value_hooks:
            hook(entry, address, trait)

    def _on_device_event(self, backend: Backend, event: DeviceEvent) -> None:
        """A press or gesture: once to every output and on ``bridge/events``, never retained
        and never stored; a repeated delivery of the same hub event is dropped."""
        entry = self._owned(backend, event.device_id)
        if entry is None:
            return
        source = entry.device.event_source(event.endpoint_id, event.button)
        if source is None or event.event_type not in source.event_types:
            self._warn.warning(("event", event.device_id), "the hub reported an event the "
                               "device does not declare; dropped", device=event.device_id,
                               button=event.button, event_type=event.event_type)
            return
        if self._repeats.repeated(event):
            self.events_repeated += 1
            log.debug("repeated hub event dropped", device=event.device_id,
                      event_type=event.event_type, event_id=event.event_id)
            return
        self.events_fired += 1
        document = events.event_document(entry.device, entry.friendly_name, source, event)
        self.publish_json(self.topics.bridge("events"), document)
        for output in self.outputs:
            output.event_fired(entry, source, event, document)

    def _on_snapshot(self, backend: Backend, devices: Iterable[Device]) -> None:
        seen: set[str] = set()
        for device in devices:
            if device.id in self.options.excluded:
                continue
            seen.add(device.id)
            self._upsert(backend, device)
        for entry in [e for e in self.devices.values()
                      if e.backend is backend and e.device.id not in seen]:
            self._remove(entry)
            self._event("device_removed", entry)
        self._snapshots_seen.add(backend.name)
        self.publish_device_list()
        if self.backends_complete:
            # only now is a device that no backend has really gone: outputs may clear it
            for output in self.outputs:
                output.backends_complete()
        # the model just built lives until the next snapshot: keep it out of the cyclic
        # collector's passes, which otherwise rescan a large home (latency spikes under load)
        gc.freeze()

    def _on_backend_status(self, backend: Backend, status: BackendStatus) -> None:
        if not status.connected:
            for entry in self.devices.values():
                if entry.backend is backend:
                    self._publish_availability(entry)
            for output in self.outputs:
                output.hub_lost()
        self.publish_info()

    def hub_unreached(self) -> bool:
        """Whether a backend tried to connect and is not connected."""
        return any(not b.connected and b.detail != NOT_STARTED for b in self.backends.values())

    # ---- device registry ------------------------------------------------------------------

    def _topic_name_for(self, device: Device) -> tuple[str, str]:
        friendly = self.options.friendly_names.get(device.id) or str(
            device.extra.get("friendly_name") or device.id)  # e.g. Tuya's rooms_in_topics
        wanted = self.topics.device_level(friendly)
        # lazily: the first free candidate, so a new device costs O(1), not O(devices)
        candidates = itertools.chain((wanted, self.topics.device_level(device.id)),
                                     (f"{wanted}_{n}" for n in itertools.count(2)))
        for name in candidates:
            holder = self._by_topic.get(name)
            if holder is None or holder.device.id == device.id:
                if name != wanted:
                    log.warning("topic name taken", device=device.id, wanted=wanted, using=name)
                return friendly, name
        raise AssertionError("unreachable: the candidates never run out")

    def _upsert(self, backend: Backend, device: Device) -> None:
        entry = self.devices.get(device.id)
        if entry is None:
            friendly, name = self._topic_name_for(device)
            entry = DeviceEntry(device, backend, friendly, name)
            self.devices[device.id] = entry
            self._by_topic[name] = entry
            self._by_topic.setdefault(self.topics.device_level(device.id), entry)
            self._publish_availability(entry)
            for output in self.outputs:
                output.device_added(entry)
            return
        if entry.backend is not backend:
            if source_rank(backend) >= source_rank(entry.backend):
                return  # the same device through a less preferred backend: published once
            log.info("device now comes from a preferred backend", device=device.id,
                     backend=backend.name, previous=entry.backend.name)
        old_device = entry.device
        entry.device = device
        entry.backend = backend
        self._publish_availability(entry)
        for output in self.outputs:
            output.device_replaced(entry, old_device)

    def _remove(self, entry: DeviceEntry) -> None:
        """Forget a device (its outputs clear what they published for it)."""
        del self.devices[entry.device.id]
        for output in self.outputs:
            output.device_removed(entry.device.id)
        for name in (entry.topic_name, self.topics.device_level(entry.device.id)):
            if self._by_topic.get(name) is entry:
                del self._by_topic[name]

    def _publish_availability(self, entry: DeviceEntry) -> None:
        available = entry.backend.connected and entry.device.online
        if available == entry.available:
            return
        entry.available = available
        for output in self.outputs:
            output.availability_changed(entry, available)

    def find_device(self, ref: str) -> DeviceEntry | None:
        """A device by id, friendly name or topic level."""
        entry = self.devices.get(ref) or self._by_topic.get(ref)
        if entry is None:
            entry = next((e for e in self.devices.values() if e.friendly_name == ref), None)
        return entry

    def describe(self, entry: DeviceEntry) -> dict[str, Any]:
        """The device's ``bridge/devices`` entry."""
        return payloads.device_info(entry.device, entry.friendly_name, entry.topic_name,
                                    self.topics)

    def rename(self, entry: DeviceEntry, name: str) -> None:
        """Give a device a new friendly name and topic level (the outputs move what they
        published: old retained topics cleared, new ones published).

        Raises ValueError when the name is unusable or taken by another device.
        """
        level = self.topics.device_level(name)
        if level != name.strip():
            raise ValueError(f"'{name}' cannot be a topic level (no + # / or control "
                             f"characters, not 'bridge'); try '{level}'")
        holder = self._by_topic.get(level)
        if holder is not None and holder is not entry:
            raise ValueError(f"'{name}' is already used by device {holder.device.id}")
        old_name = entry.friendly_name
        for key in [k for k, e in self._by_topic.items() if e is entry]:
            del self._by_topic[key]
        entry.friendly_name = name.strip()
        entry.topic_name = level
        self._by_topic[level] = entry
        self._by_topic.setdefault(self.topics.device_level(entry.device.id), entry)
        entry.available = None  # published again under the new topic level
        self._publish_availability(entry)
        for output in self.outputs:
            output.device_renamed(entry)
        self._event("device_renamed", entry, old_friendly_name=old_name)
        self.publish_device_list()

    # ---- bridge topics --------------------------------------------------------------------

    def publish_info(self) -> None:
        """Retained ``bridge/info``: version, backends and their state, config without secrets."""
        self.publish_json(self.topics.bridge("info"), json.dumps(self.info()), retain=True)

    def info(self) -> dict[str, Any]:
        """The ``bridge/info`` document."""
        backends = [backend.summary() for backend in self.backends.values()]
        info = {
            "version": __version__,
            "started_at": int(self.started_at),
            "health": health.assess(backends).as_json(),
            "instance": self.identity.as_json(),
            "backends": backends,
            "config": dict(self.options.info),
        }
        if self.keeper is not None:
            info["failover"] = self.keeper.info()
        if self.info_extra is not None:
            info.update(self.info_extra())
        return info

    def publish_homes(self) -> None:
        """Retained ``bridge/homes``: homes, rooms and device ids of backends that have them."""
        listings = [(b.name, homes) for b in self.backends.values()
                    if (homes := b.homes()) is not None]
        if listings:
            homes = [{**home, "backend": name} for name, listing in listings for home in listing]
            self.publish_json(self.topics.bridge("homes"), json.dumps(homes), retain=True)

    def publish_device_list(self) -> None:
        """Retained ``bridge/devices``: every device with its spec and topics (built when sent:
        a burst of device changes while the link is busy builds it once)."""
        self.publish_json(self.topics.bridge("devices"), self._device_list, retain=True)

    def _device_list(self) -> str:
        # one device at a time: the whole listing as objects was a large home's memory peak
        listing = ", ".join(
            json.dumps(payloads.device_info(e.device, e.friendly_name, e.topic_name, self.topics))
            for e in self.devices.values())
        return f"[{listing}]"

    def _event(self, kind: str, entry: DeviceEntry, **fields: Any) -> None:
        device = {"id": entry.device.id, "friendly_name": entry.friendly_name,
                  "name": entry.device.name, "backend": entry.backend.name}
        self.publish_json(self.topics.bridge("event"),
                          json.dumps(payloads.event(kind, device=device, **fields)))

    def report(self, level: str, message: str, origin: Origin | None = None,
               **extra: Any) -> None:
        """A line on ``bridge/log`` (and in the daemon's log)."""
        getattr(log, level if level in ("info", "warning", "error") else "info")(
            message, topic=origin.topic if origin else None)
        entry = payloads.log_entry(level, message, origin.topic if origin else None,
                                   origin.payload if origin else None, **extra)
        self.publish_json(self.topics.bridge("log"), json.dumps(entry))
        for log_hook in self._log_hooks:
            log_hook(entry)

    def respond(self, origin: Origin, body: Mapping[str, Any]) -> None:
        """Answer on the MQTT 5 response topic of a request, when it named one."""
        if origin.response_topic:
            self.publish(origin.response_topic, json.dumps(body),
                          properties=response_properties(origin.correlation_data))
        for answer_hook in self._answer_hooks:
            answer_hook(origin, body)

    # ---- commands from MQTT --------------------------------------------------------------

    def handle_message(self, message: IncomingMessage) -> None:
        """Dispatch one message received on the bridge's or the outputs' subscriptions."""
        if self.guard is not None and self.guard.handle(message.topic, message.payload,
                                                        message.retain):
            return
        if self.conflict is not None:
            return  # not ours to act on: the app is stopping
        keeper = self.keeper
        if keeper is not None:
            if keeper.handle(message.topic, message.payload, message.retain):
                return
            if not keeper.may_act():
                keeper.commands_dropped += 1  # on an ordered broker, the active one had it
                return
        command = self.topics.parse(message.topic)
        if isinstance(command, BridgeRequest):
            if self.request_handler is not None:
                self.request_handler(command.command, message)
            return
        for output in self.outputs:
            if output.handle(message):
                return

    def entry_at(self, level: str) -> DeviceEntry | None:
        """The device whose topic level (or id as a level) is ``level``."""
        return self._by_topic.get(level)

    def read(self, entry: DeviceEntry, addresses: tuple[TraitAddress, ...],
             origin: Origin) -> None:
        """A ``/get``: one hub read per trait (or device) at a time; requests that arrive while
        it runs share its answer (a storm of /get costs one read, not one each)."""
        waiting = self._gets.get(addresses)
        if waiting is None:
            self._gets[addresses] = [origin]
            self._spawn(self._answer_get(entry, addresses))
        elif len(waiting) < MAX_WAITING_GETS:
            waiting.append(origin)
        else:
            self._warn.warning(("gets", addresses[0].device_id), "too many /get requests waiting "
                               "for one read; refusing the rest", device=entry.device.id)
            self.respond(origin, payloads.response(
                "error", error_code="busy",
                error_message=f"{MAX_WAITING_GETS} requests already wait for this read"))

    def write(self, device_id: str, address: TraitAddress, raw: bytes | str,
              origin: Origin) -> None:
        """The one validated write path for outputs: check ``raw`` against the trait's spec and
        queue it for the hub, or answer ``origin`` with the reason it was rejected."""
        entry = self.devices.get(device_id)
        if entry is not None:
            self.write_all(entry, [(address, raw)], origin)

    def write_all(self, entry: DeviceEntry, items: Sequence[tuple[TraitAddress, bytes | str]],
                  origin: Origin) -> None:
        """:meth:`write` for several traits of one device, all or nothing: one bad item
        rejects them all."""
        try:
            writes = [self._validate(entry, address, raw) for address, raw in items]
        except WriteRejected as exc:
            self.writes_rejected += 1
            self.reject(origin, exc.reason)
            return
        self.writes_queued += len(writes)
        self._queue_writes(entry.backend, writes, origin)

    def reject(self, origin: Origin, reason: str) -> None:
        """Answer a request that cannot be carried out (and log it on ``bridge/log``)."""
        self.report("warning", f"rejected: {reason}", origin)
        self.respond(origin, payloads.response("error", error_code="rejected",
                                               error_message=reason))

    def _validate(self, entry: DeviceEntry, address: TraitAddress,
                  raw: bytes | str) -> WriteItem:
        trait = entry.device.trait(*address[1:])
        where = address.path()
        if trait is None:
            raise WriteRejected(f"device '{entry.topic_name}' has no trait {where}")
        value = decode_set(trait.spec, raw, current=trait.value, where=where)
        if not entry.backend.connected:
            raise WriteRejected(f"the hub of device '{entry.topic_name}' is not connected")
        if not entry.device.online:
            raise WriteRejected(f"device '{entry.topic_name}' is offline")
        return WriteItem(address, value)

    def _queue_writes(self, backend: Backend, items: Sequence[WriteItem], origin: Origin) -> None:
        """Leading-edge coalescing: the first write of a burst goes to the hub at once and opens
        the window; what arrives while it is open is gathered and sent when it closes."""
        coalescer = self._coalescers[backend.name]
        for item in items:
            coalescer.add(item, origin)
        if backend.name not in self._windows:
            self._flush_writes(backend)
            self._open_window(backend)

    def _open_window(self, backend: Backend) -> None:
        loop = asyncio.get_running_loop()
        self._windows[backend.name] = loop.call_later(self.options.write_window,
                                                      self._close_window, backend)

    def _close_window(self, backend: Backend) -> None:
        del self._windows[backend.name]
        if self._coalescers[backend.name]:  # gathered during the window: send, keep gathering
            self._flush_writes(backend)
            self._open_window(backend)

    def _flush_writes(self, backend: Backend) -> None:
        batch = self._coalescers[backend.name].drain()
        if batch:
            self._spawn(self._write(backend, batch))

    async def _write(self, backend: Backend, batch: list[tuple[WriteItem, list[Origin]]]) -> None:
        items = [item for item, _ in batch]
        try:
            if not backend.may_write():
                raise BackendError(NOT_ACTIVE, "not_active")
            failures = await backend.write(items)
        except BackendError as exc:
            failures = [WriteFailure(item, exc.code, exc.message) for item in items]
        except Exception as exc:  # a bug in a backend: still answer every write
            log.exception("backend write crashed", backend=backend.name)
            failures = [WriteFailure(item, "internal_error", f"internal error: {exc}")
                        for item in items]
        failed = {failure.item.address: failure for failure in failures}
        self.writes_failed += len(failed)
        answered: dict[Origin, list[str]] = {}
        for item, origins in batch:
            failure = failed.get(item.address)
            if failure is not None:
                code = f" (code {failure.code})" if failure.code is not None else ""
                reason = f"the hub refused {item.address.path()}: {failure.message}{code}"
                for origin in origins:
                    self.report("error", f"write failed: {reason}", origin)
                    answered.setdefault(origin, []).append(reason)
            else:
                for origin in origins:
                    answered.setdefault(origin, [])
        for origin, reasons in answered.items():
            if reasons:
                body = payloads.response("error", error_code="hub_error",
                                         error_message="; ".join(reasons))
            else:
                body = payloads.response("ok")
            self.respond(origin, body)

    async def _answer_get(self, entry: DeviceEntry, addresses: tuple[TraitAddress, ...]) -> None:
        body, failure = payloads.response("ok"), None
        try:
            await self.refresh(entry, list(addresses))
        except Exception as exc:
            if isinstance(exc, BackendError):
                code, failure = "hub_error", exc.message
            else:  # a bug in a backend: still answer
                log.exception("backend read crashed", backend=entry.backend.name)
                code, failure = "internal_error", f"internal error: {exc}"
            body = payloads.response("error", error_code=code, error_message=failure)
        finally:
            origins = self._gets.pop(addresses, [])  # later /get requests read again
        if failure is not None:
            self.report("error", f"re-read failed: {failure}", origins[0] if origins else None,
                        requests=len(origins))
        for origin in origins:
            self.respond(origin, body)

    async def refresh(self, entry: DeviceEntry, addresses: list[TraitAddress]) -> None:
        """Re-read traits from the hub and republish them, changed or not."""
        values = await entry.backend.read(addresses)
        for address, value in values.items():
            trait = entry.device.trait(*address[1:])
            if trait is not None and self.devices.get(address.device_id) is entry:
                self._apply(entry, address, trait, value, None, force=True)

    async def resync(self, backend: Backend) -> int:
        """Take a full snapshot of one backend now and reconcile; returns its device count."""
        devices = await backend.snapshot()
        self.handle_event(backend, Snapshot(tuple(devices)))
        return sum(1 for e in self.devices.values() if e.backend is backend)

    def pending_writes(self) -> int:
        """Writes waiting in the coalescing windows."""
        return sum(len(c) for c in self._coalescers.values())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("hub call crashed", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait for pending hub calls (used on shutdown)."""
        for backend in self.backends.values():
            self._flush_writes(backend)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
