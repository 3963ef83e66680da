"""Clearing retained topics under the base topic that belong to no current device.

A device renamed in the config, excluded, or removed while the bridge was down leaves its
retained topics (``<base>/<old name>/…``) behind. After every broker (re)connect the sweeper
learns which device levels the broker retains (from ``<base>/<device>`` and
``<base>/<device>/availability``, which the bridge publishes for every device); once every
backend has delivered a complete snapshot, the levels that belong to no current device are
stale: everything retained under them is learned in a second round and cleared. Nothing is
cleared before that point, so a hub that is down, slow or never connected removes nothing.
Retained ``/set`` and ``/get`` commands (a command is never state) are cleared at the same time.
"""

from __future__ import annotations

from collections.abc import Callable

from bridge.logsetup import get_logger
from bridge.messages import MqttPort
from bridge.retained import RetainedLearner
from bridge.topics import TopicScheme

log = get_logger("bridge.stale")


class StaleTopicSweeper:
    """Learns the device levels retained under the base topic and clears the stale ones."""

    def __init__(self, scheme: TopicScheme, current_levels: Callable[[], set[str]]) -> None:
        self.scheme = scheme
        self.current_levels = current_levels
        self.complete = False
        self.cleared = 0
        """Retained topics cleared so far (for tests and the log)."""
        self._mqtt: MqttPort | None = None
        self._levels: set[str] | None = None
        self._commands: set[str] = set()
        base = scheme.base
        self._prefix = base + "/"
        self._levels_learner = RetainedLearner(
            scheme.bridge("stale_sync"), [f"{base}/+", f"{base}/+/availability"], self._is_device)
        self._topics_learner: RetainedLearner | None = None

    def attach(self, mqtt: MqttPort) -> None:
        """Use this MQTT link."""
        self._mqtt = mqtt

    def on_connected(self) -> None:
        """Learn which device levels the broker retains."""
        if self._mqtt is None:
            return
        self._levels = None
        self._topics_learner = None
        self._levels_learner.start(self._mqtt, self._levels_learned)

    def handle(self, topic: str, payload: bytes, retain: bool) -> bool:
        """Take a message; True when it belonged to a learning round."""
        if self._levels_learner.handle(topic, payload, retain):
            return True
        learner = self._topics_learner
        return learner is not None and learner.handle(topic, payload, retain)

    def retained_command(self, topic: str) -> None:
        """A ``/set`` or ``/get`` the broker retains: cleared with the next sweep."""
        self._commands.add(topic)
        self._sweep()

    def backends_complete(self) -> None:
        """Every backend delivered a complete snapshot: stale levels are known now."""
        self.complete = True
        self._sweep()

    def _is_device(self, topic: str) -> bool:
        level = topic[len(self._prefix):].split("/", 1)[0]
        return level != "bridge"

    def _levels_learned(self, learned: dict[str, bytes]) -> None:
        self._levels = {topic[len(self._prefix):].split("/", 1)[0] for topic in learned}
        self._sweep()

    def _sweep(self) -> None:
        if not self.complete or self._levels is None or self._mqtt is None:
            return
        commands, self._commands = self._commands, set()
        self._clear(commands)
        stale = sorted(self._levels - self.current_levels())
        self._levels = set()
        if not stale:
            return
        log.info("clearing retained topics of vanished devices", devices=stale)
        self._topics_learner = RetainedLearner(
            self.scheme.bridge("stale_sync"), [f"{self._prefix}{level}/#" for level in stale])
        self._topics_learner.start(self._mqtt, lambda learned: self._clear(set(learned)))

    def _clear(self, topics: set[str]) -> None:
        assert self._mqtt is not None
        for topic in sorted(topics):
            self._mqtt.publish(topic, b"", True)
        self.cleared += len(topics)
