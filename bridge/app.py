"""Assemble and run the daemon: backends + core + MQTT link, with a clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import secrets as _random
import signal
from collections.abc import Callable
from dataclasses import replace

from bridge.announce import HomeAssistantDiscovery
from bridge.api import Api
from bridge.backends.aqara_cloud import AqaraCloudBackend
from bridge.backends.base import Backend
from bridge.backends.studio import StudioBackend
from bridge.backends.tuya import TuyaBackend
from bridge.config import (
    AqaraCloudBackendConfig,
    BackendConfig,
    Config,
    StudioBackendConfig,
    TuyaBackendConfig,
)
from bridge.core import Bridge, CoreOptions
from bridge.discovery import DiscoveryOptions
from bridge.homie import DISCONNECTED, LOST, READY
from bridge.homie_output import HomieOutput
from bridge.logsetup import get_logger
from bridge.mqtt import MqttLink, MqttSettings
from bridge.secrets import register_secret

log = get_logger("bridge.app")


def make_backend(spec: BackendConfig) -> Backend:
    """The backend client for one ``backends:`` entry (one ``isinstance`` line per type)."""
    if isinstance(spec, StudioBackendConfig):
        return StudioBackend.from_config(spec)
    if isinstance(spec, AqaraCloudBackendConfig):
        return AqaraCloudBackend.from_config(spec)
    if isinstance(spec, TuyaBackendConfig):
        return TuyaBackend.from_config(spec)
    raise AssertionError(f"no backend for {spec!r}")  # config validation makes this unreachable


def mqtt_settings(config: Config) -> MqttSettings:
    """Broker settings from the ``mqtt:`` section; a unique client id when none is set."""
    m = config.mqtt
    tls = m.tls
    return MqttSettings(
        host=m.host,
        port=m.port,
        client_id=m.client_id or f"aqara-mqtt-{_random.token_hex(4)}",
        will_topic=f"{m.base_topic}/bridge/state",
        username=m.username,
        password=m.password.get_secret_value() if m.password else None,
        use_tls=m.use_tls or tls is not None,
        tls_ca=str(tls.ca) if tls and tls.ca else None,
        tls_cert=str(tls.cert) if tls and tls.cert else None,
        tls_key=str(tls.key) if tls and tls.key else None,
        tls_insecure=bool(tls and tls.insecure),
        version=m.version,
        keepalive=m.keepalive,
        qos=m.qos,
        max_queued=m.max_queued,
    )


def core_options(config: Config) -> CoreOptions:
    """The core's settings from the config."""
    return CoreOptions(
        base_topic=config.mqtt.base_topic,
        friendly_names={i: d.name for i, d in config.devices.items() if d.name},
        excluded=frozenset(i for i, d in config.devices.items() if d.exclude),
        write_window=config.bridge.write_window_ms / 1000,
        publish_unchanged=config.bridge.publish_unchanged,
        device_state_topic=config.bridge.device_state_topic,
        info=config.summary(),
    )


def make_discovery(config: Config, bridge: Bridge) -> HomeAssistantDiscovery:
    """Home Assistant discovery from the ``homeassistant:`` section."""
    ha = config.homeassistant
    options = DiscoveryOptions(
        prefix=ha.discovery_prefix,
        device_based=ha.device_based,
        base_topic=config.mqtt.base_topic,
        qos=config.mqtt.qos,
        device_state_topic=config.bridge.device_state_topic,
    )
    excluded = frozenset(i for i, d in config.devices.items() if not d.homeassistant)
    return HomeAssistantDiscovery(options, bridge.topics, lambda: list(bridge.devices.values()),
                                  excluded, ha.status_topic)


def make_homie_keeper(config: Config, homie: HomieOutput) -> MqttLink:
    """A second connection whose will turns the Homie root device ``lost``."""
    settings = replace(mqtt_settings(config), will_topic=homie.root_state_topic,
                       will_payload=LOST, stop_payload=DISCONNECTED)
    settings = replace(settings, client_id=settings.client_id + "-homie")
    keeper: MqttLink

    def ready() -> None:
        keeper.publish(homie.root_state_topic, READY, retain=True)

    keeper = MqttLink(settings, [], lambda _message: None, ready)
    return keeper


class Daemon:
    """The running bridge: one MQTT link, one core, one task per backend."""

    def __init__(self, config: Config, backends: list[Backend] | None = None) -> None:
        for secret in config.secret_values():
            register_secret(secret)
        self.config = config
        self.backends = backends if backends is not None else [
            make_backend(b) for b in config.backends
        ]
        self.bridge = Bridge(self.backends, core_options(config))
        subscriptions = self.bridge.topics.subscriptions()
        if config.homeassistant.enabled:
            discovery = make_discovery(config, self.bridge)
            self.bridge.enable_discovery(discovery)
            subscriptions += discovery.subscriptions
        self.homie_keeper: MqttLink | None = None
        if config.homie.enabled:
            homie = HomieOutput(config.homie.root, lambda: list(self.bridge.devices.values()))
            self.bridge.enable_homie(homie)
            subscriptions += homie.subscriptions
            self.homie_keeper = make_homie_keeper(config, homie)
        self.mqtt = MqttLink(
            mqtt_settings(config),
            subscriptions,
            self.bridge.handle_message,
            self.bridge.on_mqtt_connected,
        )
        self.bridge.attach(self.mqtt)
        for backend in self.backends:
            backend.pace = self.mqtt.room
        self.api = Api(self)
        self.bridge.request_handler = self.api.handle
        self.restart_requested = False
        self._stop: asyncio.Event | None = None

    def request_restart(self) -> None:
        """Stop, and tell the runner to build a fresh daemon from the config (``restart``)."""
        self.restart_requested = True
        if self._stop is not None:
            self._stop.set()

    async def run(self) -> None:
        """Run until cancelled, then publish ``offline`` and close connections."""
        self._stop = asyncio.Event()
        tasks = [asyncio.create_task(self.mqtt.run(), name="mqtt")]
        if self.homie_keeper is not None:
            tasks.append(asyncio.create_task(self.homie_keeper.run(), name="homie"))
        tasks += [asyncio.create_task(b.run(self.bridge.sink_for(b)), name=f"backend:{b.name}")
                  for b in self.backends]
        stopper = asyncio.create_task(self._stop.wait(), name="stop")
        try:
            done, _ = await asyncio.wait([*tasks, stopper],
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a crashed component is a bug: surface it
        finally:
            await self.bridge.drain()
            if self.homie_keeper is not None:
                await self.homie_keeper.stop()
            await self.mqtt.stop()
            for task in [*tasks, stopper]:
                task.cancel()
            for task in [*tasks, stopper]:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def run_until_signalled(daemon: Daemon,
                              reload: Callable[[], Config] | None = None) -> None:
    """Run the daemon until SIGINT or SIGTERM; on a ``restart`` request, run a fresh one
    (from ``reload()``, i.e. the config file read again, when given)."""
    loop = asyncio.get_running_loop()
    while True:
        task = asyncio.create_task(daemon.run())
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if not daemon.restart_requested:
            break
        log.info("restarting")
        config = reload() if reload is not None else daemon.config
        daemon = Daemon(config)
    log.info("stopped")
