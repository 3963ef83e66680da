"""The interface between the core and its outputs.

An output is an extension the core feeds: it hears about the device registry (devices added,
changed, renamed, removed; values; availability), about MQTT (re)connects, and takes the incoming
messages on the topics it owns. The core keeps a list of outputs and names none of them. An output
that wants to change a device hands the decoded write to :meth:`Core.write`, the core's one
validated write path, so every write is checked the same way whichever topic it came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from bridge.entries import DeviceEntry
from bridge.messages import IncomingMessage, MqttPort, Origin
from bridge.model import Device, DeviceEvent, EventSource, Trait, TraitAddress


class Core(Protocol):
    """What an output may ask of the core."""

    def entries(self) -> Iterable[DeviceEntry]:
        """Every device the bridge publishes."""
        ...

    def write(self, device_id: str, address: TraitAddress, raw: bytes | str,
              origin: Origin) -> None:
        """Validate a decoded write against the trait's spec and queue it for the hub (or answer
        ``origin`` with the reason it was rejected)."""
        ...

    def write_all(self, entry: DeviceEntry, items: Sequence[tuple[TraitAddress, bytes | str]],
                  origin: Origin) -> None:
        """:meth:`write` for several traits of one device, all or nothing."""
        ...

    def read(self, entry: DeviceEntry, addresses: tuple[TraitAddress, ...],
             origin: Origin) -> None:
        """Re-read traits from the hub and republish them; answer ``origin`` when done."""
        ...

    def entry_at(self, level: str) -> DeviceEntry | None:
        """The device whose topic level (or id as a level) is ``level``."""
        ...

    def hub_unreached(self) -> bool:
        """Whether a backend tried to connect and is not connected: the devices it has not
        delivered cannot be vouched for."""
        ...

    def owned_devices(self) -> Mapping[str, str]:
        """Device id → topic level of every device this instance published before this
        connection (its manifest on the broker): with the current devices, all a clean-up may
        clear."""
        ...

    def reject(self, origin: Origin, reason: str) -> None:
        """Answer a request that cannot be carried out (and log it on ``bridge/log``)."""
        ...

    def report(self, level: str, message: str, origin: Origin | None = None,
               **extra: Any) -> None:
        """A line on ``bridge/log`` (and in the daemon's log)."""
        ...

    def respond(self, origin: Origin, body: Mapping[str, Any]) -> None:
        """Answer on the MQTT 5 response topic of a request, when it named one."""
        ...


class Output:
    """Base of every output; each hook does nothing unless the output overrides it."""

    @property
    def subscriptions(self) -> list[str]:
        """Topic filters this output owns (subscribed on every connection)."""
        return []

    def attach(self, mqtt: MqttPort, core: Core) -> None:
        """Use this MQTT link, and this core for writes."""

    def on_connected(self) -> None:
        """The broker (re)connected: republish what it may have lost."""

    def backends_complete(self) -> None:
        """Every backend delivered a complete snapshot: devices not seen are really gone."""

    def device_changed(self, entry: DeviceEntry) -> None:
        """A device's description changed (also the default for added and renamed)."""

    def device_added(self, entry: DeviceEntry) -> None:
        """A new device is published."""
        self.device_changed(entry)

    def device_replaced(self, entry: DeviceEntry, previous: Device) -> None:
        """A known device came again from its backend; ``previous`` is its former description."""
        self.device_changed(entry)

    def device_renamed(self, entry: DeviceEntry) -> None:
        """A device's name (hub name, or friendly name and topic level) changed."""
        self.device_changed(entry)

    def device_removed(self, device_id: str) -> None:
        """A device is gone (its backend said so)."""

    def value_changed(self, entry: DeviceEntry, address: TraitAddress, trait: Trait) -> None:
        """A readable trait has a new value, ``trait.value`` (hot path: keep it cheap)."""

    def availability_changed(self, entry: DeviceEntry, available: bool) -> None:
        """A device became reachable or unreachable."""

    def hub_lost(self) -> None:
        """A backend failed to connect or lost its hub (see :meth:`Core.hub_unreached`)."""

    def event_fired(self, entry: DeviceEntry, source: EventSource, event: DeviceEvent,
                    document: str) -> None:
        """A device fired a momentary event (a press, a gesture), once: publish it without the
        retain flag, never as state. ``document`` is its JSON (:mod:`bridge.events`)."""

    def logged(self, entry: Mapping[str, Any]) -> None:
        """The core put this line on ``bridge/log`` (``payloads.log_entry``)."""

    def answered(self, origin: Origin, body: Mapping[str, Any]) -> None:
        """The core answered a request from ``origin`` (a write's or read's result)."""

    def handle(self, message: IncomingMessage) -> bool:
        """Take a message outside the base topic; True when it is this output's."""
        return False
