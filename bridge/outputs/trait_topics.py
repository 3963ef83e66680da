"""The topic tree's record of each device's trait topics, without a string per trait.

A trait topic is ``<base>/<device level>/`` (one string per device) followed by
``<endpointId>/<functionCode>/<traitCode>``, which depends only on the trait's place in the
device. Devices with the same traits (every device of one model, as a rule) share one
:class:`TraitLayout`: the suffixes, and each trait's bit in a device's mask of the topics it holds
retained. A large home thus keeps no topic string per trait and no topic dict or set per device;
a topic is built (one concatenation) when it is published.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Iterable
from dataclasses import dataclass

from bridge.entries import DeviceEntry
from bridge.model import Device, TraitAddress
from bridge.topics import TopicScheme

Place = tuple[int, str, str]
"""A trait's place in its device: endpoint id, function code, trait code."""


def places(device: Device) -> tuple[Place, ...]:
    """Every trait's place, in the device's endpoint/function/trait order."""
    return tuple((endpoint.id, function.code, code)
                 for endpoint in device.endpoints.values()
                 for function in endpoint.functions.values()
                 for code in function.traits)


class TraitLayout:
    """The trait topic suffixes of devices with these traits, and each trait's bit."""

    __slots__ = ("__weakref__", "_by_suffix", "places", "slots")

    def __init__(self, trait_places: tuple[Place, ...], scheme: TopicScheme) -> None:
        self.places = trait_places
        self.slots: dict[Place, tuple[int, str]] = {}
        """Place → (its bit, its topic suffix)."""
        taken: set[str] = set()
        for index, place in enumerate(trait_places):
            suffix = scheme.trait_suffix(*place)
            if suffix in taken:  # codes that spell alike as levels (``a.b`` and ``a_b``)
                suffix = next(f"{suffix}_{n}" for n in itertools.count(2)
                              if f"{suffix}_{n}" not in taken)
            taken.add(suffix)
            self.slots[place] = (1 << index, suffix)
        self._by_suffix: dict[str, Place] | None = None

    def place_of(self, suffix: str) -> Place | None:
        """The trait a topic suffix (``<ep>/<fn>/<trait>`` as published) names, if any: a
        ``/set`` to a level that is not the code itself (``PM2_5Density`` for ``PM2.5Density``
        in the portable style) finds its trait here."""
        if self._by_suffix is None:  # built on first use: most layouts never need it
            self._by_suffix = {s: place for place, (_bit, s) in self.slots.items()}
        return self._by_suffix.get(suffix)

    def suffixes(self, mask: int) -> Iterable[str]:
        """The suffixes of the traits whose bits are set in ``mask``."""
        return (suffix for bit, suffix in self.slots.values() if mask & bit)


class Layouts:
    """One :class:`TraitLayout` per distinct list of traits, for as long as a device uses it."""

    def __init__(self, scheme: TopicScheme | None = None) -> None:
        self.scheme = scheme or TopicScheme("aqara")
        self._layouts: weakref.WeakValueDictionary[tuple[Place, ...], TraitLayout] = (
            weakref.WeakValueDictionary())

    def of(self, device: Device) -> TraitLayout:
        """The layout of ``device``'s traits (shared with every device that has the same)."""
        key = places(device)
        layout = self._layouts.get(key)
        if layout is None:
            layout = self._layouts[key] = TraitLayout(key, self.scheme)
        return layout

    def __len__(self) -> int:
        return len(self._layouts)


@dataclass(slots=True)
class DeviceTopics:
    """A device as the topic tree publishes it: the level its topics are under, the prefix of
    its trait topics, its layout, which trait topics it holds retained (a mask of bits), and the
    availability last published (None: none since the tree knows it)."""

    entry: DeviceEntry
    level: str
    prefix: str
    layout: TraitLayout
    retained: int = 0
    available: bool | None = None

    def topic(self, address: TraitAddress) -> str:
        """The trait's topic (KeyError for a trait the device does not have)."""
        return self.prefix + self.layout.slots[address[1:]][1]

    def mark(self, address: TraitAddress) -> str:
        """The trait's topic, noted as retained (its value is being published)."""
        bit, suffix = self.layout.slots[address[1:]]
        self.retained |= bit
        return self.prefix + suffix

    def retained_topics(self) -> set[str]:
        """The trait topics published retained under the current prefix."""
        prefix = self.prefix
        return {prefix + suffix for suffix in self.layout.suffixes(self.retained)}

    def trait_topics(self) -> set[str]:
        """Every trait topic of the device."""
        prefix = self.prefix
        return {prefix + suffix for _bit, suffix in self.layout.slots.values()}

    def relayout(self, layout: TraitLayout) -> set[str]:
        """Take the device's new traits; returns the retained topics of traits it lost (the
        ones still there stay marked)."""
        if layout is self.layout:  # the same traits (layouts are shared): nothing to move
            return set()
        before = self.retained_topics()
        self.layout = layout
        self.retained = 0
        prefix = self.prefix
        for bit, suffix in layout.slots.values():
            if prefix + suffix in before:
                self.retained |= bit
        return before - self.trait_topics()
