"""Every kind of backend the bridge knows: its config model and how to build its client.

Adding a backend: a folder under ``bridge/backends/`` (client, config model, wire mapping,
management commands) and one line in :data:`KINDS`; :mod:`bridge.config` validates its
``backends:`` entries by ``type`` from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridge.backends.aqara_cloud.client import AqaraCloudBackend
from bridge.backends.aqara_cloud.config import AqaraCloudBackendConfig
from bridge.backends.base import Backend
from bridge.backends.studio.client import StudioBackend
from bridge.backends.studio.config import StudioBackendConfig
from bridge.backends.tuya.client import TuyaBackend
from bridge.backends.tuya.config import TuyaBackendConfig
from bridge.config_base import BackendConfigBase


@dataclass(frozen=True, slots=True)
class BackendKind:
    """One kind of hub: its ``backends:`` model and the client built from it."""

    config: type[BackendConfigBase]
    create: Callable[[Any], Backend]


KINDS: tuple[BackendKind, ...] = (
    BackendKind(StudioBackendConfig, StudioBackend.from_config),
    BackendKind(AqaraCloudBackendConfig, AqaraCloudBackend.from_config),
    BackendKind(TuyaBackendConfig, TuyaBackend.from_config),
)
"""In order of preference when two report the same device (local first)."""


def make_backend(spec: BackendConfigBase) -> Backend:
    """The backend client for one ``backends:`` entry."""
    for kind in KINDS:
        if isinstance(spec, kind.config):
            return kind.create(spec)
    raise AssertionError(f"no backend for {spec!r}")  # config validation makes this unreachable
