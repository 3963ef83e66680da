"""What Home Assistant discovery announced for a device, remembered without the configs' text.

To publish only what changed, discovery compares a device's new configs with the ones it
announced before; when a device-based config loses components, the new one names them with their
platform only (Home Assistant's way of removing a component). Neither needs the old text (≈2 KB
of JSON per device): a digest tells whether a config changed, and the old config's components
(key → platform) tell what it lost. A config that must be sent again is built anew from the
model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from bridge import jsonlimits

Components = tuple[tuple[str, Any], ...]
"""A device-based config's components as (key, platform) pairs."""

_SHARED: dict[Components, Components] = {}
_SHARED_MAX = 10_000


def _shared(components: Components) -> Components:
    """One tuple per distinct component list: devices of one model announce the same."""
    if len(_SHARED) >= _SHARED_MAX:
        return components
    try:
        return _SHARED.setdefault(components, components)
    except TypeError:  # a platform that is not a string (a retained config of someone else)
        return components


def digest(payload: str) -> bytes:
    """A config's fingerprint (128 bits of BLAKE2b)."""
    return hashlib.blake2b(payload.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def removable_components(payload: str) -> Components:
    """The components a device-based config announces (more than a bare ``{"p": …}``, which is
    itself a removal), as (key, platform); none for any other payload."""
    try:
        document = jsonlimits.loads(payload, jsonlimits.MQTT_MAX_BYTES)  # retained by anyone
    except ValueError:
        return ()
    cmps = document.get("cmps") if isinstance(document, dict) else None
    if not isinstance(cmps, dict):
        return ()
    return tuple((key, config.get("p")) for key, config in cmps.items()
                 if isinstance(config, dict) and len(config) > 1)


def availability_topics(payload: str) -> set[str]:
    """The availability topics a discovery config names (``avty``/``availability`` lists of
    ``t``/``topic``, or ``avty_t``/``availability_topic``), in either layout."""
    try:
        document = jsonlimits.loads(payload, jsonlimits.MQTT_MAX_BYTES)  # retained by anyone
    except ValueError:
        return set()
    if not isinstance(document, dict):
        return set()
    topics: set[str] = set()
    for key in ("avty_t", "availability_topic"):
        if isinstance(document.get(key), str):
            topics.add(document[key])
    for key in ("avty", "availability"):
        items = document.get(key)
        for item in items if isinstance(items, list) else ():
            if isinstance(item, dict):
                topic = item.get("t", item.get("topic"))
                if isinstance(topic, str):
                    topics.add(topic)
    return topics


class Config(NamedTuple):
    """An announced config: its digest and its components."""

    digest: bytes
    components: Components

    def matches(self, payload: str) -> bool:
        """Whether ``payload`` is the config announced."""
        return self.digest == digest(payload)


class Announced(Mapping[str, Config]):
    """Topic → :class:`Config` of the (non-empty) configs announced for one device."""

    __slots__ = ("_configs",)

    def __init__(self, configs: Mapping[str, str]) -> None:
        self._configs = tuple(
            (topic, digest(payload), _shared(removable_components(payload)))
            for topic, payload in configs.items() if payload)

    def __getitem__(self, topic: str) -> Config:
        for known, fingerprint, components in self._configs:
            if known == topic:
                return Config(fingerprint, components)
        raise KeyError(topic)

    def __iter__(self) -> Iterator[str]:
        return (topic for topic, _digest, _components in self._configs)

    def __len__(self) -> int:
        return len(self._configs)
