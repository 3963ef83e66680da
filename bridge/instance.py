"""Who this bridge is among several on one broker, and what it may call its own (sans-IO).

Several bridges may share a broker: one per hub, site or cloud project. Each is an *instance*
(``instance.id``, by default its base topic) serving some hubs (:class:`Identity`), and a base
topic belongs to one instance at a time. Before it publishes anything after a (re)connect, the
bridge reads what the broker retains of its base topic (:class:`InstanceGuard`):

- ``<base>/bridge/info`` names the instance that published there last;
- ``<base>/bridge/state`` says whether that instance is ``online`` (its will says ``offline``);
- ``<base>/bridge/devices`` lists the devices (and their topic levels) that instance published.

Another instance that is online there means a misconfiguration: two bridges would overwrite
each other's ``bridge/*`` topics; this one refuses to go on (:attr:`GuardOutcome.conflict`).
Otherwise the retained device list is this instance's *manifest* when the info names this very
instance: the devices it published before, the only ones whose retained topics and Home
Assistant configs a clean-up may clear. A list published by another instance is nobody's to
clear. While running, the guard keeps listening on those topics: a live ``bridge/info`` of
another process (two bridges started at once) makes the younger one step down, and a
``bridge/state`` that is not ``online`` (the late will of a killed predecessor) is corrected.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge import jsonlimits
from bridge.messages import MqttPort
from bridge.retained import RetainedLearner
from bridge.topics import TopicScheme

ONLINE = b"online"


@dataclass(frozen=True, slots=True)
class Identity:
    """An instance (``id`` and the hubs it serves) and one process of it (``member``)."""

    id: str
    hubs: tuple[str, ...]
    member: str = field(default_factory=lambda: secrets.token_hex(6))
    started: float = field(default_factory=time.time)
    failover: bool = False
    """A member of an active/standby pair: its id alone names its instance (the members may
    reach the hubs by other addresses)."""

    def as_json(self) -> dict[str, Any]:
        """The ``instance`` object of ``bridge/info``."""
        return {"id": self.id, "hubs": list(self.hubs), "member": self.member,
                "started": round(self.started, 3)}

    def is_other_instance(self, other: Identity) -> bool:
        """True when ``other`` is a different instance, not another run of this one: another id,
        or (both naming hubs) no hub in common."""
        if other.id != self.id:
            return True
        if self.failover:
            return False
        return bool(self.hubs and other.hubs and not set(self.hubs) & set(other.hubs))

    def yields_to(self, other: Identity) -> bool:
        """Of two live processes on one base topic, the younger steps down (ties: the member)."""
        return (other.started, other.member) < (self.started, self.member)

    def describe(self) -> str:
        """For messages: the instance's id and when this process started."""
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"instance '{self.id}' (started {started})"


def identity_of(info: Mapping[str, Any]) -> Identity | None:
    """The identity a ``bridge/info`` document names (None: none, or not understood)."""
    instance = info.get("instance")
    if not isinstance(instance, Mapping) or not isinstance(instance.get("id"), str):
        return None
    hubs = instance.get("hubs")
    started = instance.get("started")
    return Identity(instance["id"],
                    tuple(h for h in hubs if isinstance(h, str)) if isinstance(hubs, list) else (),
                    str(instance.get("member", "")),
                    float(started) if isinstance(started, int | float) else 0.0)


def parse_info(payload: bytes) -> Mapping[str, Any] | None:
    """A ``bridge/info`` document; None when it is no JSON object."""
    try:
        document = jsonlimits.loads(payload, jsonlimits.MQTT_MAX_BYTES)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def manifest(payload: bytes, scheme: TopicScheme) -> dict[str, str]:
    """Device id → topic level of a retained ``bridge/devices`` list (what it names well)."""
    try:
        listing = jsonlimits.loads(payload, jsonlimits.HUB_MAX_BYTES)
    except ValueError:
        return {}
    prefix = scheme.base + "/"
    found: dict[str, str] = {}
    for entry in listing if isinstance(listing, list) else ():
        if not isinstance(entry, dict):
            continue
        device_id, topic = entry.get("id"), entry.get("topic")
        if isinstance(device_id, str) and isinstance(topic, str) and topic.startswith(prefix):
            level = topic[len(prefix):]
            if level and "/" not in level:
                found[device_id] = level
    return found


@dataclass(frozen=True, slots=True)
class GuardOutcome:
    """What the broker's retained ``bridge/*`` topics say at a connect."""

    conflict: str | None = None
    """Why this bridge must not go on (another instance is online on its base topic)."""
    owned: Mapping[str, str] = field(default_factory=dict)
    """Device id → topic level that this instance published before (its manifest)."""
    adopted_foreign: bool = False
    """The base topic was last used by another instance (now offline): nothing of it is ours."""


def assess(identity: Identity, scheme: TopicScheme,
           retained: Mapping[str, bytes]) -> GuardOutcome:
    """Decide from the retained ``state``, ``info`` and ``devices`` of the base topic."""
    info_payload = retained.get(scheme.bridge("info"))
    info = parse_info(info_payload) if info_payload else None
    previous = identity_of(info) if info is not None else None
    foreign = previous is not None and identity.is_other_instance(previous)
    if foreign and retained.get(scheme.bridge("state"), b"").strip() == ONLINE:
        assert previous is not None
        return GuardOutcome(conflict=(
            f"another aqara-mqtt bridge, {previous.describe()}, is online on the base topic "
            f"'{scheme.base}'; give this one its own mqtt.base_topic (each bridge on a broker "
            "needs its own), or stop the other one. If it no longer runs, clear its state: "
            f"mosquitto_pub -r -n -t '{scheme.bridge('state')}'"))
    devices = retained.get(scheme.bridge("devices"))
    owned = manifest(devices, scheme) if devices and not foreign else {}
    return GuardOutcome(owned=owned, adopted_foreign=foreign)


class InstanceGuard:
    """Reads the base topic's retained ``bridge/*`` topics at each connect, then watches them."""

    def __init__(self, scheme: TopicScheme, identity: Identity,
                 on_outcome: Callable[[GuardOutcome], None],
                 on_rival: Callable[[Identity], None],
                 on_state_lost: Callable[[], None]) -> None:
        self.scheme = scheme
        self.identity = identity
        self.on_outcome = on_outcome
        self.on_rival = on_rival
        """A live process of another (or the same) instance published on our ``bridge/info``."""
        self.on_state_lost = on_state_lost
        """Our ``bridge/state`` was set to something else than ``online`` while we run."""
        self._info = scheme.bridge("info")
        self._state = scheme.bridge("state")
        self._learner = RetainedLearner(
            scheme.bridge("instance_sync"), [self._state, self._info, scheme.bridge("devices")])
        self._mqtt: MqttPort | None = None
        self.watching = False

    def start(self, mqtt: MqttPort) -> None:
        """Learn what is retained; ``on_outcome`` follows."""
        self._mqtt = mqtt
        self.watching = False
        self._learner.start(mqtt, self._learned)

    def watch(self) -> None:
        """After this bridge published its state and info: listen for rivals and a lost state."""
        if self._mqtt is not None:
            self.watching = True
            self._mqtt.subscribe([self._state, self._info], qos=0)

    def _learned(self, retained: dict[str, bytes]) -> None:
        self.on_outcome(assess(self.identity, self.scheme, retained))

    def handle(self, topic: str, payload: bytes, retain: bool) -> bool:
        """Take a message; True when it was the guard's."""
        if self._learner.handle(topic, payload, retain):
            return True
        if not self.watching:
            return False
        if topic == self._state:
            if not retain and payload.strip() != ONLINE:  # retained: the value before ours
                self.on_state_lost()
            return True
        if topic == self._info:
            if not retain:  # published just now: its process is alive
                info = parse_info(payload)
                other = identity_of(info) if info is not None else None
                if other is not None and other.member != self.identity.member:
                    self.on_rival(other)
            return True
        return False


def rival_message(ours: Identity, other: Identity, base: str) -> str:
    """What to say when a live rival publishes on our base topic."""
    if ours.is_other_instance(other):
        return (f"another aqara-mqtt bridge, {other.describe()}, publishes on the base topic "
                f"'{base}' too; give each bridge its own mqtt.base_topic")
    return (f"a second process of {other.describe()} publishes on the base topic '{base}' with "
            "the same configuration; run one process per instance")

