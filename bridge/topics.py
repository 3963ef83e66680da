"""The MQTT topic scheme: building the topics the bridge publishes and parsing the ones it receives.

Layout under the base topic (``aqara`` by default, may have several levels)::

    <base>/bridge/<sub>                                        bridge state, info, devices, log, ...
    <base>/bridge/request/<command>  →  <base>/bridge/response/<command>
    <base>/<device>                                            device JSON
    <base>/<device>/availability
    <base>/<device>/event                                      momentary events, not retained
    <base>/<device>/<endpointId>/<functionCode>/<traitCode>    one trait, plain text
    .../set  .../get                                           subscribed, on devices and traits

Every level that comes from device data passes through :func:`sanitize_level`; the device level
``bridge`` is reserved, so a device whose name sanitises to ``bridge`` is published as ``bridge_``.

A command of several words is written with dots in its topic (``request/device.rename``), so the
bridge's own topics never have the five levels of a trait topic and ``<base>/+/+/+/+`` matches
trait topics only. The slash form (``request/device/rename``) is still understood and answered
in the same form, for older clients.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from bridge.model import TraitAddress

MAX_LEVEL_LENGTH = 256
"""The longest topic level :func:`sanitize_level` returns (in characters)."""

RESERVED_DEVICE_LEVELS = frozenset({"bridge"})
"""Device levels that would collide with the bridge's own topics."""

_NONCHARACTERS = "".join(
    chr(plane * 0x10000 + low) for plane in range(1, 17) for low in (0xFFFE, 0xFFFF)
)
# Wildcards, the level separator, C0/C1 controls (NUL included), lone surrogates (not encodable as
# UTF-8) and Unicode noncharacters (which MQTT says SHOULD NOT appear in topic names).
_UNSAFE = re.compile(
    "[+#/\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff" + _NONCHARACTERS + "]"
)


@lru_cache(maxsize=16384)
def sanitize_level(text: str) -> str:
    """A topic level safe to publish: never empty, no ``+ # /``, NUL or control characters.

    Surrounding whitespace is stripped, unsafe characters become ``_``, inner spaces stay
    (as zigbee2mqtt does), the result is at most :data:`MAX_LEVEL_LENGTH` characters and an empty
    result becomes ``_``. The function is idempotent.
    """
    level = _UNSAFE.sub("_", text.strip())
    if len(level) > MAX_LEVEL_LENGTH:
        level = level[:MAX_LEVEL_LENGTH].rstrip()
    return level or "_"


def device_level(name: str) -> str:
    """The topic level for a device name: sanitised, reserved names get a trailing ``_``."""
    level = sanitize_level(name)
    if level in RESERVED_DEVICE_LEVELS:
        return level + "_"
    return level


TOPIC_STYLES = ("standard", "portable")
"""``standard``: every character MQTT allows in a level; ``portable``: also no ``.``, no
whitespace and no ``*`` or ``>``, so the topics are legal on NATS (whose subjects use ``.`` as
their separator and forbid spaces) and mean the same on RabbitMQ (which maps ``.`` to ``/``)."""

_NOT_PORTABLE = re.compile(r"[.\s*>]")


@lru_cache(maxsize=16384)
def portable_level(text: str) -> str:
    """:func:`sanitize_level`, and ``.``, whitespace, ``*`` and ``>`` become ``_`` too."""
    return _NOT_PORTABLE.sub("_", sanitize_level(text))


def portable_device_level(name: str) -> str:
    """:func:`device_level` in the portable style."""
    level = portable_level(name)
    if level in RESERVED_DEVICE_LEVELS:
        return level + "_"
    return level


# ---- parsed incoming topics ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraitSet:
    """``<base>/<device>/<endpointId>/<functionCode>/<traitCode>/set``."""

    device: str
    endpoint_id: int
    function_code: str
    trait_code: str


@dataclass(frozen=True, slots=True)
class TraitGet:
    """``<base>/<device>/<endpointId>/<functionCode>/<traitCode>/get``."""

    device: str
    endpoint_id: int
    function_code: str
    trait_code: str


@dataclass(frozen=True, slots=True)
class DeviceSet:
    """``<base>/<device>/set``: a JSON document with several trait values."""

    device: str


@dataclass(frozen=True, slots=True)
class DeviceGet:
    """``<base>/<device>/get``: re-read every readable trait of the device."""

    device: str


@dataclass(frozen=True, slots=True)
class BridgeRequest:
    """``<base>/bridge/request/<command>``: ``command`` by its name (``device/rename``), whether
    the topic wrote it ``device.rename`` or ``device/rename``."""

    command: str


@dataclass(frozen=True, slots=True)
class BadTopic:
    """A topic under the bridge's subscriptions that cannot be understood."""

    reason: str


Incoming = TraitSet | TraitGet | DeviceSet | DeviceGet | BridgeRequest | BadTopic


def _quote(level: str) -> str:
    return f"'{level[:64]}…'" if len(level) > 64 else f"'{level}'"


class TopicScheme:
    """Builds and parses the bridge's topics under ``base`` (e.g. ``aqara`` or ``home/aqara``),
    with levels from device data spelled in ``style`` (see :data:`TOPIC_STYLES`)."""

    __slots__ = ("_bridge", "_prefix", "_prefix_len", "base", "device_level", "level", "style")

    def __init__(self, base: str, style: str = "standard") -> None:
        if style not in TOPIC_STYLES:
            raise ValueError(f"topic style {style!r} must be one of {', '.join(TOPIC_STYLES)}")
        self.style = style
        portable = style == "portable"
        self.level = portable_level if portable else sanitize_level
        """A level from device data (a function or trait code) in this style."""
        self.device_level = portable_device_level if portable else device_level
        """A device's topic level for its name in this style."""
        if not base or base.startswith("/") or base.endswith("/") or "//" in base:
            raise ValueError(f"base topic {base!r} must be non-empty levels separated by '/'")
        if base.startswith("$") or any(c in base for c in "+#\x00"):
            raise ValueError(
                f"base topic {base!r} must not contain '+', '#', NUL or start with '$'"
            )
        if portable and _NOT_PORTABLE.search(base):
            raise ValueError(f"base topic {base!r} must not contain '.', spaces, '*' or '>' "
                             "with the portable topic style")
        self.base = base
        self._prefix = base + "/"
        self._prefix_len = len(self._prefix)
        self._bridge = self._prefix + "bridge/"

    # ---- building ----

    def bridge(self, sub: str) -> str:
        """``<base>/bridge/<sub>`` (``sub`` is the bridge's own, e.g. ``state`` or ``devices``)."""
        return self._bridge + sub

    def device(self, name: str) -> str:
        """``<base>/<device>``: the device's JSON document."""
        return self._prefix + self.device_level(name)

    def availability(self, name: str) -> str:
        """``<base>/<device>/availability``."""
        return f"{self._prefix}{self.device_level(name)}/availability"

    def event(self, name: str) -> str:
        """``<base>/<device>/event``: the device's presses and gestures (never retained)."""
        return f"{self._prefix}{self.device_level(name)}/event"

    def trait(self, name: str, address: TraitAddress) -> str:
        """``<base>/<device>/<endpointId>/<functionCode>/<traitCode>``."""
        return self.trait_prefix(name) + self.trait_suffix(*address[1:])

    def trait_prefix(self, name: str) -> str:
        """``<base>/<device>/``: what every trait topic of the device starts with."""
        return f"{self._prefix}{self.device_level(name)}/"

    def trait_suffix(self, endpoint_id: int, function_code: str, trait_code: str) -> str:
        """``<endpointId>/<functionCode>/<traitCode>``: the rest of a trait topic."""
        level = self.level
        return f"{endpoint_id}/{level(function_code)}/{level(trait_code)}"

    def response(self, command: str) -> str:
        """``<base>/bridge/response/<command>``, each level of the command sanitised."""
        return self._bridge + "response/" + "/".join(map(self.level, command.split("/")))

    def response_to(self, request_topic: str) -> str:
        """The response topic of a request topic, with the command written the same way
        (``request/device.rename`` → ``response/device.rename``)."""
        return self.response(request_topic.removeprefix(self._bridge + "request/"))

    def subscriptions(self) -> list[str]:
        """The topic filters the bridge subscribes to under the base topic."""
        return [*self.command_subscriptions(), self.request_subscription()]

    def command_subscriptions(self) -> list[str]:
        """``/set`` and ``/get`` of devices and traits (the topic tree's)."""
        p = self._prefix
        return [f"{p}+/set", f"{p}+/get", f"{p}+/+/+/+/set", f"{p}+/+/+/+/get"]

    def request_subscription(self) -> str:
        """``bridge/request/#`` (the core's)."""
        return f"{self._bridge}request/#"

    # ---- parsing ----

    def parse(self, topic: str) -> Incoming | None:
        """What an incoming topic asks for; None for topics the bridge does not handle.

        Anything else under ``<base>/bridge/`` than ``request/<command>`` is None (the bridge's own
        namespace, e.g. its responses), as are topics outside the base or of another shape.
        """
        if not topic.startswith(self._prefix):
            return None
        rest = topic[self._prefix_len:]
        if rest.startswith("bridge/") or rest == "bridge":
            if rest.startswith("bridge/request/"):
                command = rest[15:].replace(".", "/")
                return BridgeRequest(command) if command else BadTopic("missing request command")
            if rest == "bridge/request":
                return BadTopic("missing request command")
            return None
        parts = rest.split("/")
        n = len(parts)
        if n == 2:
            device, action = parts
            if action == "set":
                return DeviceSet(device) if device else BadTopic("empty device level")
            if action == "get":
                return DeviceGet(device) if device else BadTopic("empty device level")
            return None
        if n == 5:
            device, endpoint, function_code, trait_code, action = parts
            if action != "set" and action != "get":
                return None
            if not (device and function_code and trait_code):
                return BadTopic("empty topic level")
            if not (endpoint.isascii() and endpoint.isdigit()):
                return BadTopic(f"endpoint id {_quote(endpoint)} is not an integer")
            if len(endpoint) > 18:
                return BadTopic(f"endpoint id {_quote(endpoint)} is out of range")
            if action == "set":
                return TraitSet(device, int(endpoint), function_code, trait_code)
            return TraitGet(device, int(endpoint), function_code, trait_code)
        return None
