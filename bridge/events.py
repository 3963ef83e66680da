"""Momentary device events (presses, gestures): their names, their JSON, and repeat detection.

Every backend maps its hub's wording to one vocabulary, the one zigbee2mqtt uses for the same
Aqara devices, so automations written for it carry over: ``single``, ``double``, ``triple``,
``quadruple``, ``hold``, ``release`` (buttons), ``shake``, ``flip90``, ``flip180``, ``rotate_left``,
``rotate_right``, ``slide``, ``tap``, ``fall``, ``wakeup`` (cube), ``vibration``, ``tilt``,
``drop`` (vibration sensor).
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from bridge.model import Device, DeviceEvent, EventSource, event_action

PRESSES = ("single", "double", "triple", "quadruple", "quintuple")
"""The event type of 1, 2, 3… presses in a row (Matter's MultiPressComplete count)."""

_WORD = re.compile(r"[^a-z0-9]+")


def event_name(text: str) -> str:
    """A hub's event label as a vocabulary word: lower case, ``_`` between words
    (``"Rotate Left"`` → ``rotate_left``, ``"flip90"`` stays)."""
    return _WORD.sub("_", text.strip().lower()).strip("_")


def event_document(device: Device, friendly_name: str, source: EventSource,
                   event: DeviceEvent) -> str:
    """The JSON published for one event (per device and on the bridge's stream)."""
    body: dict[str, Any] = {
        "event_type": event.event_type,
        "action": event_action(device, source, event.event_type),
        "button": source.button,
        "endpoint": source.endpoint_id,
        "device": friendly_name,
        "device_id": device.id,
        "time": event.time,
    }
    if event.event_id is not None:
        body["event_id"] = event.event_id
    return json.dumps(body, separators=(",", ":"))


class RepeatFilter:
    """Remembers the last ``capacity`` events it was shown and says when one comes again.

    Hubs deliver at least once (Tuya's message service redelivers what was not acknowledged in
    time, the Aqara cloud retries a push that failed): the same press must not fire twice.
    Memory is bounded: the oldest keys are forgotten first.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[Hashable, None] = OrderedDict()

    def repeated(self, event: DeviceEvent) -> bool:
        """True when ``event`` was seen before (by hub id, else by its hub timestamp); an event
        with neither cannot be told from a new one and is never a repeat."""
        if event.event_id is None and event.time is None:
            return False
        key = (event.device_id, event.endpoint_id, event.button, event.event_type,
               event.event_id, event.time)
        if key in self._seen:
            return True
        self._seen[key] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._seen)
