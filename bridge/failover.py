"""A failover member (``instance.failover``): stand by until the lease is free, serve, repeat.

A standby keeps one light MQTT connection (no hub connection): it follows the lease
(:class:`~bridge.lease.StandbyWatch`), checks that it could reach every hub (a TCP connect to
each hub's address) and says so on its retained ``<base>/bridge/standby/<member>`` (its will
turns it ``offline``). When it claims, it closes that connection and runs the full
:class:`~bridge.app.Daemon` with an :class:`~bridge.lease.ActiveLease`; when that active phase
ends (replaced, lease lost, handed over), it stands by again.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any, TypeVar

from bridge.app import Daemon, mqtt_settings
from bridge.config import Config
from bridge.lease import ActiveLease, StandbyWatch, Timing, parse_lease
from bridge.lease_keeper import boottime, standby_document
from bridge.logsetup import get_logger
from bridge.messages import JSON_PROPERTIES, IncomingMessage
from bridge.mqtt import MqttLink
from bridge.retained import RetainedLearner
from bridge.systemd import Notifier
from bridge.topics import TopicScheme

log = get_logger("bridge.failover")

TICK = 0.1
"""Seconds between a standby's looks at the lease."""
PROBE_INTERVAL = 5.0
"""Seconds between a standby's checks that it reaches the hubs."""
PROBE_TIMEOUT = 2.0

T = TypeVar("T")


async def reaches(address: tuple[str, int]) -> bool:
    """True when a TCP connection to ``address`` opens within :data:`PROBE_TIMEOUT`."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            _reader, writer = await asyncio.open_connection(*address)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class Standby:
    """One standby phase: returns from :meth:`run` with the reason to claim the lease."""

    def __init__(self, config: Config, watch: StandbyWatch, notifier: Notifier,
                 clock: Callable[[], float] = boottime) -> None:
        self.config = config
        self.watch = watch
        self.notifier = notifier
        self.clock = clock
        scheme = TopicScheme(config.mqtt.base_topic, config.mqtt.topic_style)
        self.lease_topic = scheme.bridge("lease")
        self.state_topic = scheme.bridge("state")
        self.topic = scheme.bridge(f"standby/{config.member}")
        settings = mqtt_settings(config)
        self.link = MqttLink(
            replace(settings, client_id=f"{settings.client_id}-standby", will_topic=self.topic),
            [], self._message, self._connected)
        self._learner = RetainedLearner(scheme.bridge("instance_sync"), [self.lease_topic])
        self.hub_reachable: bool | None = None
        """None until the first check is done (a standby says nothing it does not know)."""
        self.since = time.time()
        self._was_connected = False
        self._reason: asyncio.Future[str] | None = None

    async def run(self) -> str:
        """Stand by until this member should claim; the reason why."""
        self._reason = asyncio.get_running_loop().create_future()
        tasks = [asyncio.create_task(self.link.run(), name="standby-mqtt"),
                 asyncio.create_task(self._probe_hubs(), name="standby-probe"),
                 asyncio.create_task(self._look(), name="standby-lease")]
        try:
            return await self._reason
        finally:
            await self.link.stop()  # its standby topic says offline: it is no longer one
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _connected(self) -> None:
        self._was_connected = True
        self.watch.connected(self.clock())
        self.link.subscribe([self.state_topic], qos=0)
        self._learner.start(self.link, self._learned)
        if self.hub_reachable is not None:
            self._publish_presence()

    def _learned(self, retained: dict[str, bytes]) -> None:
        payload = retained.get(self.lease_topic)
        self.watch.learned_retained(parse_lease(payload) if payload else None, self.clock())
        self.link.subscribe([self.lease_topic], qos=0)  # the learner unsubscribed its filters
        self._tell_service()

    def _message(self, message: IncomingMessage) -> None:
        if self._learner.handle(message.topic, message.payload, message.retain):
            return
        if message.topic == self.lease_topic:
            record = parse_lease(message.payload)
            if record is not None:
                changed = self.watch.record is None or record.key != self.watch.record.key
                twin = self.watch.twin
                self.watch.observe(record, self.clock(), live=not message.retain)
                if self.watch.twin and not twin:
                    log.error("another process runs as this failover member; give each member "
                              "its own instance.member (this one stands by for good)",
                              member=self.config.member)
                if changed:
                    self._tell_service()
        elif (message.topic == self.state_topic and not message.retain
              and message.payload.strip() != b"online"):
            self.watch.will(self.clock())

    async def _look(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            if self._was_connected and not self.link.connected:
                self._was_connected = False
                self.watch.disconnected()
            reason = self.watch.claim_reason(self.clock())
            if reason is not None and self._reason is not None and not self._reason.done():
                self._reason.set_result(reason)

    async def _probe_hubs(self) -> None:
        addresses = [a for a in (b.hub_address() for b in self.config.backends) if a]
        while True:
            results = await asyncio.gather(*(reaches(a) for a in addresses))
            reachable = all(results)
            if reachable != self.hub_reachable:
                self.hub_reachable = reachable
                self._publish_presence()
            await asyncio.sleep(PROBE_INTERVAL)

    def _publish_presence(self) -> None:
        document = standby_document(self.config.member, bool(self.hub_reachable), self.since)
        self.link.publish(self.topic, document, True, None, JSON_PROPERTIES)
        self._tell_service()

    def _tell_service(self) -> None:
        """systemd: a standby is ready; its status names the active member."""
        if not self.notifier.enabled:
            return
        record = self.watch.record
        active = (f"active: {record.member} (generation {record.generation})"
                  if record is not None else "no member is active")
        hubs = {True: "hubs reachable", False: "a hub is not reachable",
                None: "hubs not checked yet"}[self.hub_reachable]
        self.notifier.ready(f"ok (standby); {active}; {hubs}")


async def _until_signalled(work: Coroutine[Any, Any, T]) -> T | None:
    """Run ``work``; SIGINT or SIGTERM cancels it (None)."""
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(work)
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        return None


async def run_member(config: Config, reload: Callable[[], Config] | None = None) -> int:
    """Stand by and serve in turn until SIGINT or SIGTERM; the exit code (2: refused)."""
    timing = Timing.from_keepalive(config.keepalive)
    watch = StandbyWatch(config.member, timing)
    notifier = Notifier()
    log.info("failover member starting", member=config.member,
             lease_seconds=timing.term, takeover_within=timing.takeover_bound)
    while True:
        reason = await _until_signalled(Standby(config, watch, notifier).run())
        if reason is None:
            break
        log.info("taking over", member=config.member, reason=reason,
                 generation=watch.next_generation())
        daemon = Daemon(config, lease=ActiveLease(config.member, timing, watch.record))
        await _until_signalled(daemon.run())
        watch.restarted = False
        if daemon.refused is not None:
            return 2
        if daemon.restart_requested:
            log.info("restarting")
            config = reload() if reload is not None else config
        elif daemon.stepped_down is None:
            break  # signalled
    notifier.stopping()
    log.info("stopped")
    return 0
