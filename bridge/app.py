"""Assemble and run the daemon: backends + core + MQTT link, with a clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets as _random
import signal
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from bridge import health
from bridge.api import Api
from bridge.backends.base import Backend, EventSink
from bridge.backends.registry import make_backend
from bridge.config import Config
from bridge.core import Bridge, CoreOptions
from bridge.instance import Identity
from bridge.lease import ActiveLease
from bridge.lease_keeper import LeaseKeeper, boottime
from bridge.logsetup import get_logger
from bridge.model import BackendStatus, Event, Snapshot
from bridge.mqtt import MqttLink, MqttSettings
from bridge.outputs.announce import HomeAssistantDiscovery
from bridge.outputs.discovery import DiscoveryOptions
from bridge.outputs.homie import DISCONNECTED, LOST
from bridge.outputs.homie_output import HomieOutput, load_versions, root_id
from bridge.outputs.topic_tree import TopicTree
from bridge.secrets import register_secret
from bridge.systemd import Notifier
from bridge.web.output import WebOutput
from bridge.web.server import WebServer, WebSettings

log = get_logger("bridge.app")


def client_id(config: Config) -> str:
    """``mqtt.client_id`` (with the member's name for a failover member: the members share one
    config, and a broker drops a client when another connects with its id), else a unique one."""
    configured = config.mqtt.client_id
    if configured is None:
        return f"aqara-mqtt-{_random.token_hex(4)}"
    return f"{configured}-{config.member}" if config.instance.failover else configured


def mqtt_settings(config: Config) -> MqttSettings:
    """Broker settings from the ``mqtt:`` section; a unique client id when none is set."""
    m = config.mqtt
    tls = m.tls
    brokers = m.brokers
    return MqttSettings(
        host=brokers[0][0],
        port=brokers[0][1],
        failover=tuple(brokers[1:]),
        client_id=client_id(config),
        will_topic=f"{m.base_topic}/bridge/state",
        username=m.username,
        password=m.password.get_secret_value() if m.password else None,
        use_tls=m.use_tls or tls is not None,
        tls_ca=str(tls.ca) if tls and tls.ca else None,
        tls_cert=str(tls.cert) if tls and tls.cert else None,
        tls_key=str(tls.key) if tls and tls.key else None,
        tls_insecure=bool(tls and tls.insecure),
        version=m.version,
        keepalive=config.keepalive,
        qos=m.qos,
        max_queued=m.max_queued,
    )


def core_options(config: Config) -> CoreOptions:
    """The core's settings from the config."""
    hubs = tuple(config.hub_keys())
    return CoreOptions(
        base_topic=config.mqtt.base_topic,
        topic_style=config.mqtt.topic_style,
        instance=(Identity(config.instance_id, hubs, config.member, failover=True)
                  if config.instance.failover else Identity(config.instance_id, hubs)),
        friendly_names={i: d.name for i, d in config.devices.items() if d.name},
        excluded=frozenset(i for i, d in config.devices.items() if d.exclude),
        write_window=config.bridge.write_window_ms / 1000,
        publish_unchanged=config.bridge.publish_unchanged,
        device_state_topic=config.bridge.device_state_topic,
        clear_stale_topics=config.bridge.clear_stale_topics,
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
    keeper = MqttLink(settings, [], lambda _message: None, homie.root_reconnected)
    homie.will_armed = lambda: keeper.connected
    return keeper


class Daemon:
    """The running bridge: one MQTT link, one core, one task per backend."""

    def __init__(self, config: Config, backends: list[Backend] | None = None,
                 lease: ActiveLease | None = None) -> None:
        for secret in config.secret_values():
            register_secret(secret)
        self.config = config
        self.backends = backends if backends is not None else [
            make_backend(b) for b in config.backends
        ]
        options = core_options(config)
        self.bridge = Bridge(self.backends, options)
        self.topic_tree = TopicTree(self.bridge.topics, options.device_state_topic,
                                    options.clear_stale_topics)
        self.bridge.add_output(self.topic_tree)  # first: the other outputs come after it
        self.discovery: HomeAssistantDiscovery | None = None
        if config.homeassistant.enabled:
            self.discovery = make_discovery(config, self.bridge)
            self.bridge.add_output(self.discovery)
        self.homie_keeper: MqttLink | None = None
        self.homie: HomieOutput | None = None
        if config.homie.enabled:
            self.homie = HomieOutput(
                config.homie.root, lambda: list(self.bridge.devices.values()),
                root_id(config.instance_id), config.homie.versions,
                load_versions(config.homie.version_file), config.homie.version_file)
            self.bridge.add_output(self.homie)
            if self.homie.has_root:
                self.homie_keeper = make_homie_keeper(config, self.homie)
        self.web: WebServer | None = None
        if config.frontend.enabled:
            self.web = self._make_web()
        self.mqtt = MqttLink(
            mqtt_settings(config),
            [self.bridge.topics.request_subscription()]
            + [topic for output in self.bridge.outputs for topic in output.subscriptions],
            self.bridge.handle_message,
            self._on_mqtt_connected,
        )
        self.bridge.attach(self.mqtt)
        self.bridge.guard_base_topic(self.mqtt.hold)
        self.bridge.on_conflict = self._refuse
        self.mqtt.on_denied = self._publish_denied
        self.mqtt.on_blocked = self._publish_blocked
        self.bridge.info_extra = self._mqtt_info
        for backend in self.backends:
            backend.pace = self.mqtt.room
        self.keeper: LeaseKeeper | None = None
        self.stepped_down: str | None = None
        """Why this failover member stopped being active (it goes back to standing by)."""
        self._hubs_down: dict[str, float] = {}
        """Backends not connected now → since when (the lease's clock)."""
        if lease is not None:
            self._use_lease(lease)
        self.api = Api(self)
        self.bridge.request_handler = self.api.handle
        self.restart_requested = False
        self.refused: str | None = None
        """Why this bridge stopped at once: another one owns its base topic (exit code 2)."""
        self._stop: asyncio.Event | None = None
        self.notifier = Notifier()  # systemd, when it started us
        self._settled: set[str] = set()
        """Backends whose first connection attempt ended (a snapshot, or a failure)."""

    def _use_lease(self, lease: ActiveLease) -> None:
        """A failover member: act only while the lease holds (:mod:`bridge.lease_keeper`)."""
        keeper = self.keeper = LeaseKeeper(self.bridge.topics, lease, self._hubs_lost_for,
                                           self._step_down)
        keeper.on_standbys = self.bridge.publish_info
        self.bridge.use_lease(keeper)
        self.mqtt.fence = keeper.may_publish
        for backend in self.backends:
            backend.may_write = keeper.may_act

    def _hubs_lost_for(self, now: float) -> float:
        """Seconds since the longest-lost hub went away (0: every hub connected)."""
        return now - min(self._hubs_down.values()) if self._hubs_down else 0.0

    def _step_down(self, reason: str) -> None:
        """The lease is lost or handed over: stop at once, sending nothing more."""
        self.stepped_down = reason
        log.warning("this member is no longer active; standing by", reason=reason)
        self.mqtt.discard()
        if self._stop is not None:
            self._stop.set()

    def health(self) -> health.Health:
        """The bridge's health now (see :mod:`bridge.health`)."""
        return health.assess(b.summary() for b in self.backends)

    def _make_web(self) -> WebServer:
        """The web page (``frontend:``): an output, and its server."""
        front = self.config.frontend
        output = WebOutput(self.bridge.topics, history_limit=front.history)
        self.bridge.add_output(output)
        settings = WebSettings(front.host, front.port,
                               front.token.get_secret_value() if front.token else None,
                               front.base_path)
        entities = self.discovery.entities if self.discovery is not None else None
        return WebServer(settings, output, lambda: self.bridge.devices, self._web_status,
                         entities)

    def _web_status(self) -> dict[str, Any]:
        """The web page's bridge status: ``bridge/info`` plus the MQTT link and counters."""
        assert self.web is not None, "only the web page asks for it"
        bridge, mqtt = self.bridge, self.mqtt
        status = bridge.info()
        status["mqtt"].update(connected=mqtt.connected, host=mqtt.settings.host,
                              port=mqtt.settings.port)  # with _mqtt_info's fields (info_extra)
        status["counters"] = {
            "events_handled": bridge.events_handled, "writes": bridge.writes_queued,
            "writes_rejected": bridge.writes_rejected, "writes_failed": bridge.writes_failed,
            "values_refused": bridge.values_refused, "mqtt_published": mqtt.published,
            "mqtt_dropped": mqtt.dropped, "web_dropped": self.web.output.dropped}
        return status

    def _on_mqtt_connected(self) -> None:
        self.bridge.on_mqtt_connected()
        self._tell_service()

    def _sink(self, backend: Backend) -> EventSink:
        core_sink = self.bridge.sink_for(backend)

        def sink(event: Event) -> None:
            core_sink(event)
            if isinstance(event, Snapshot):
                self._hubs_down.pop(backend.name, None)
            elif isinstance(event, BackendStatus) and not event.connected:
                self._hubs_down.setdefault(backend.name, boottime())
            if isinstance(event, Snapshot) or (
                    isinstance(event, BackendStatus) and not event.connected):
                self._settled.add(backend.name)
            if isinstance(event, Snapshot | BackendStatus):
                self._tell_service()

        return sink

    def _tell_service(self) -> None:
        """systemd: ready once the broker is connected and every hub has delivered its first
        snapshot or failed its first attempt; the status line is the health line."""
        if not self.notifier.enabled:
            return
        line = self.health().line()
        if self.keeper is not None:
            line += f" (active member {self.keeper.lease.member}, generation " \
                    f"{self.keeper.lease.generation})"
        if len(self.mqtt.settings.addresses) > 1:
            line += f" (broker {self.mqtt.broker})"  # which node of several it is on
        if not self.mqtt.connected:
            self.notifier.status(f"waiting for the MQTT broker; {line}")
        elif len(self._settled) < len(self.backends):
            self.notifier.status(line)
        else:
            self.notifier.ready(line)

    async def _watchdog(self, interval: float) -> None:
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    def _mqtt_info(self) -> dict[str, Any]:
        mqtt = self.mqtt
        return {"mqtt": {"protocol": mqtt.version, "fallback_reason": mqtt.fallback_reason,
                         "broker": mqtt.broker, "denied_publishes": mqtt.denied,
                         "last_denied": mqtt.last_denied, "blocked": mqtt.blocked,
                         "blocked_publishes": mqtt.blocked_publishes}}

    def _publish_blocked(self, topic: str, reason: str) -> None:
        """A topic the broker drops the connection for: no longer sent; said once."""
        self.bridge.report("error", reason, blocked_topic=topic)
        self.bridge.publish_info()

    def _refuse(self, reason: str) -> None:
        """Another bridge owns the base topic: stop, publishing nothing (not even offline)."""
        self.refused = reason
        if self._stop is not None:
            self._stop.set()

    def _publish_denied(self, topic: str, reason: str) -> None:
        """A publish the broker refused (its ACL, most likely): on bridge/log and bridge/info."""
        self.bridge.report("warning", f"the broker refused a publish to {topic}: {reason} "
                           "(check the broker's ACL for the bridge's user)",
                           denied_publishes=self.mqtt.denied)
        self.bridge.publish_info()

    async def _start_web(self, web: WebServer) -> None:
        """Listen; a page that cannot is reported, and the bridge runs on without it."""
        try:
            await web.start()
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            self.bridge.report("error", f"the web page cannot listen on {web.settings.host}:"
                               f"{web.settings.port}: {reason}")

    def request_restart(self) -> None:
        """Stop, and tell the runner to build a fresh daemon from the config (``restart``)."""
        self.restart_requested = True
        if self._stop is not None:
            self._stop.set()

    async def run(self) -> None:
        """Run until cancelled, then publish ``offline`` and close connections."""
        self._stop = asyncio.Event()
        if self.web is not None:
            await self._start_web(self.web)
        tasks = [asyncio.create_task(self.mqtt.run(), name="mqtt")]
        if self.homie_keeper is not None:
            tasks.append(asyncio.create_task(self.homie_keeper.run(), name="homie"))
        tasks += [asyncio.create_task(b.run(self._sink(b)), name=f"backend:{b.name}")
                  for b in self.backends]
        if self.notifier.watchdog_interval is not None:
            tasks.append(asyncio.create_task(self._watchdog(self.notifier.watchdog_interval),
                                             name="watchdog"))
        stopper = asyncio.create_task(self._stop.wait(), name="stop")
        try:
            done, _ = await asyncio.wait([*tasks, stopper],
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a crashed component is a bug: surface it
        finally:
            publish_state = self.refused is None and self.stepped_down is None
            if self.keeper is not None:
                if publish_state:
                    self.keeper.release()  # a standby takes over at once
                self.keeper.stop()
            await self.bridge.drain()
            if self.web is not None:
                await self.web.stop()
            if self.homie is not None and publish_state:
                self.homie.stopping()  # on this link, before its stop: the broker gets them first
            await self.mqtt.stop(publish_state=publish_state)
            if self.homie_keeper is not None:
                await self.homie_keeper.stop(publish_state=publish_state)
            for task in [*tasks, stopper]:
                task.cancel()
            for task in [*tasks, stopper]:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def run_until_signalled(daemon: Daemon,
                              reload: Callable[[], Config] | None = None) -> int:
    """Run the daemon until SIGINT or SIGTERM; on a ``restart`` request, run a fresh one
    (from ``reload()``, i.e. the config file read again, when given). Returns the exit code:
    2 when the bridge refused to run beside another one on its base topic, else 0."""
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
    daemon.notifier.stopping()
    log.info("stopped")
    return 2 if daemon.refused is not None else 0
