"""Clearing retained topics under the base topic of devices this instance published and that
are gone.

A device renamed in the config, excluded, or removed while the bridge was down leaves its
retained topics (``<base>/<old level>/…``) behind. Which levels this instance published before
is its manifest, the retained ``bridge/devices`` it published last (read at every connect by
:mod:`bridge.instance`, and kept up as devices are published): never "whatever is under the base
topic", which may be another bridge's or another program's. Once every backend has delivered a
complete snapshot, the levels of the manifest that belong to no current device are stale:
their device document and availability are cleared, and everything retained under them is
learned in a second round and cleared. Nothing is cleared before that point, so a hub that is
down, slow or never connected removes nothing. Retained ``/set`` and ``/get`` commands (a
command is never state) to this instance's devices are cleared at the same time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from bridge.logsetup import get_logger
from bridge.messages import MqttPort
from bridge.retained import RetainedLearner
from bridge.topics import TopicScheme

log = get_logger("bridge.stale")


class StaleTopicSweeper:
    """Clears the retained topics of this instance's device levels that are stale."""

    def __init__(self, scheme: TopicScheme, current_levels: Callable[[], set[str]],
                 owned: Callable[[], Mapping[str, str]] = dict) -> None:
        self.scheme = scheme
        self.current_levels = current_levels
        self.owned = owned
        """Device id → level this instance published (the core's manifest)."""
        self.complete = False
        self.cleared = 0
        """Retained topics cleared so far (for tests and the log)."""
        self._mqtt: MqttPort | None = None
        self._connected = False
        self._swept = False
        """The stale levels of this connection were handled."""
        self._commands: set[str] = set()
        self._prefix = scheme.base + "/"
        self._topics_learner: RetainedLearner | None = None

    def attach(self, mqtt: MqttPort) -> None:
        """Use this MQTT link."""
        self._mqtt = mqtt

    def on_connected(self) -> None:
        """A new connection: its stale levels are swept once every backend is complete."""
        self._connected = self._mqtt is not None
        self._swept = False
        self._topics_learner = None
        self._sweep()

    def handle(self, topic: str, payload: bytes, retain: bool) -> bool:
        """Take a message; True when it belonged to a learning round."""
        learner = self._topics_learner
        return learner is not None and learner.handle(topic, payload, retain)

    def retained_command(self, topic: str) -> None:
        """A ``/set`` or ``/get`` the broker retains: cleared with the next sweep, when it
        addresses a device of this instance."""
        self._commands.add(topic)
        self._sweep()

    def backends_complete(self) -> None:
        """Every backend delivered a complete snapshot: stale levels are known now."""
        self.complete = True
        self._sweep()

    def _sweep(self) -> None:
        if not self.complete or not self._connected or self._mqtt is None:
            return
        commands, self._commands = self._commands, set()
        ours = self.current_levels() | set(self.owned().values())
        self._clear({topic for topic in commands
                     if topic[len(self._prefix):].split("/", 1)[0] in ours})
        if self._swept:
            return
        self._swept = True
        stale = sorted(set(self.owned().values()) - self.current_levels())
        if not stale:
            return
        log.info("clearing retained topics of vanished devices", devices=stale)
        # exact topics first: a broker may keep retained messages for exact subscriptions
        # only (RabbitMQ), where the learning round below finds nothing
        self._clear({topic for level in stale for topic in (
            self.scheme.device(level), self.scheme.availability(level))})
        self._topics_learner = RetainedLearner(
            self.scheme.bridge("stale_sync"), [f"{self._prefix}{level}/#" for level in stale])
        self._topics_learner.start(self._mqtt, lambda learned: self._clear(set(learned)))

    def _clear(self, topics: set[str]) -> None:
        assert self._mqtt is not None
        for topic in sorted(topics):
            self._mqtt.publish(topic, b"", True)
        self.cleared += len(topics)
