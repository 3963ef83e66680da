"""Assemble and run the daemon: backends + core + MQTT link, with a clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import secrets as _random
import signal

from bridge.backends.base import Backend
from bridge.backends.studio import StudioBackend
from bridge.config import BackendConfig, Config, StudioBackendConfig
from bridge.core import Bridge, CoreOptions
from bridge.logsetup import get_logger
from bridge.mqtt import MqttLink, MqttSettings
from bridge.secrets import register_secret

log = get_logger("bridge.app")


def make_backend(spec: BackendConfig) -> Backend:
    """The backend client for one ``backends:`` entry (one ``isinstance`` line per type)."""
    if isinstance(spec, StudioBackendConfig):
        return StudioBackend.from_config(spec)
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
        self.mqtt = MqttLink(
            mqtt_settings(config),
            self.bridge.topics.subscriptions(),
            self.bridge.handle_message,
            self.bridge.on_mqtt_connected,
        )
        self.bridge.attach(self.mqtt)

    async def run(self) -> None:
        """Run until cancelled, then publish ``offline`` and close connections."""
        tasks = [asyncio.create_task(self.mqtt.run(), name="mqtt")]
        tasks += [asyncio.create_task(b.run(self.bridge.sink_for(b)), name=f"backend:{b.name}")
                  for b in self.backends]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # a crashed component is a bug: surface it
        finally:
            await self.bridge.drain()
            await self.mqtt.stop()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def run_until_signalled(daemon: Daemon) -> None:
    """Run the daemon until SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(daemon.run())
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    log.info("stopped")
