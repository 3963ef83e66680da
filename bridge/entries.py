"""The device registry's entries, shared by the core and every output.

They live below both so that an output can read what the core publishes without importing the
core (and the core never imports an output).
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.backends.base import Backend
from bridge.model import Device


@dataclass(slots=True)
class DeviceEntry:
    """A device the bridge publishes, with its friendly name and topic level."""

    device: Device
    backend: Backend
    friendly_name: str
    topic_name: str
    available: bool | None = None
