"""Momentary events among Tuya's data points: wireless and scene switch presses, cube gestures,
vibration alarms.

A wireless (scene) switch reports each press as an Enum DP per button, ``switch<n>_value``, whose
value is ``single_click``, ``double_click`` or ``long_press`` (Tuya's standard instruction set for
wireless switches, category ``wxkg``; the exact range is INFERRED from public clients). A cube's
``cube_action`` (gesture names, e.g. ``shake``, ``flip90``, ``rotate_left``) and a vibration
sensor's ``shock_state`` (``vibration``, ``tilt``, ``drop``; ``normal`` is no event) are INFERRED.
Such a DP is an event, never state: it is not a trait of the device, a polled value of it fires
nothing (it would repeat the last press), and only a pushed status report fires an event.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from bridge.events import event_name
from bridge.model import DeviceEvent, EventSource

if TYPE_CHECKING:  # the model module builds devices with these functions
    from bridge.backends.tuya.model import DpSpec

_BUTTON = re.compile(r"switch(\d+)_value")
_OTHER_EVENTS = frozenset({"cube_action", "shock_state"})
_WORDS = {"single_click": "single", "double_click": "double", "long_press": "hold",
          "click": "single", "press": "single"}
_NOT_EVENTS = frozenset({"normal", "none", ""})


def is_event_dp(dp: DpSpec) -> bool:
    """Whether a DP reports momentary events rather than state."""
    return _is_event(dp.type, dp.code)


@lru_cache(maxsize=4096)
def _is_event(dp_type: str, code: str) -> bool:
    """:func:`is_event_dp` by the DP's (hashable) type and code: asked per DP of every pushed
    report, so the regex runs once per distinct DP (DpSpec itself is unhashable)."""
    return dp_type == "Enum" and (_BUTTON.fullmatch(code) is not None or code in _OTHER_EVENTS)


@lru_cache(maxsize=4096)
def _button(code: str) -> str:
    match = _BUTTON.fullmatch(code)
    return match.group(1) if match else "1"


def event_type(raw: Any) -> str | None:
    """The event type of a reported value (None: no event, e.g. ``normal``)."""
    if not isinstance(raw, str):
        return None
    word = _WORDS.get(raw.strip().lower()) or event_name(raw)
    return None if word in _NOT_EVENTS else word


def event_sources(dps: Iterable[DpSpec], endpoint_id: int) -> tuple[EventSource, ...]:
    """The device's event sources, in button order."""
    sources = []
    for dp in dps:
        if is_event_dp(dp):
            kinds = tuple(dict.fromkeys(k for k in map(event_type, dp.options) if k))
            sources.append(EventSource(endpoint_id, _button(dp.code), kinds, (dp.code,)))
    return tuple(sorted(sources, key=lambda s: (len(s.button), s.button)))


def device_event(device_id: str, endpoint_id: int, dp: DpSpec, raw: Any, time: int | None,
                 data_id: str | None) -> DeviceEvent | None:
    """The event of one pushed status item of an event DP (None when it fires nothing)."""
    kind = event_type(raw)
    if kind is None:
        return None
    return DeviceEvent(device_id, endpoint_id, _button(dp.code), kind, time, data_id)
