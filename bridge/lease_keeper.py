"""The active member's side of the failover lease, on the daemon's own MQTT link.

It claims or resumes the lease at each connect (after the instance guard learned what is
retained), renews it, says whether this member may act now (:meth:`LeaseKeeper.may_act`: the
gate in front of every hub write, every publish and every command), follows the standbys
(``<base>/bridge/standby/<member>``) and ends the active phase when the lease is lost, replaced,
or handed to a standby that reaches a hub this member lost. See :mod:`bridge.lease`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any, Protocol

from bridge import jsonlimits
from bridge.lease import ActiveLease, LeaseRecord, Phase, parse_lease
from bridge.logsetup import get_logger
from bridge.messages import MqttPort
from bridge.topics import TopicScheme

log = get_logger("bridge.lease")

SENT_KEPT = 16
"""Own records remembered until they come back (16 s of renewals)."""
TICK = 0.1
"""Seconds between checks of the lease (settle, renewals, expiry, a lost hub)."""


def boottime() -> float:
    """A clock that also runs while the process is stopped or the machine suspended."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class TrackedPort(MqttPort, Protocol):
    """An MQTT link that can publish past the lease gate and report the acknowledgement."""

    connected: bool

    def publish_tracked(self, topic: str, payload: bytes,
                        on_ack: Callable[[], None]) -> None: ...


class LeaseKeeper:
    """Claims, renews and watches the lease for one active phase of a member."""

    def __init__(self, scheme: TopicScheme, lease: ActiveLease,
                 hubs_lost_for: Callable[[float], float],
                 on_end: Callable[[str], None],
                 clock: Callable[[], float] = boottime) -> None:
        self.lease = lease
        self.topic = scheme.bridge("lease")
        self.standby_filter = scheme.bridge("standby/+")
        self._standby_prefix = scheme.bridge("standby/")
        self.hubs_lost_for = hubs_lost_for
        """Seconds (at the given time) since some hub of this member went unreachable; 0."""
        self.on_end = on_end
        self.clock = clock
        self.standbys: dict[str, bool] = {}
        """Standing-by members → whether they reach every hub (their ``standby/`` topics)."""
        self.on_standbys: Callable[[], None] | None = None
        """Called when :attr:`standbys` changed (``bridge/info`` lists them)."""
        self.commands_dropped = 0
        """Commands and requests not executed because this member was not (yet) active."""
        self._retained: LeaseRecord | None = None
        self._sent: dict[LeaseRecord, float] = {}
        """Records published and not yet acknowledged → when (the last few)."""
        self._mqtt: TrackedPort | None = None
        self._on_settled: Callable[[], None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._since_wall: float | None = None
        self._ended = False
        """:attr:`on_end` was called, or the end was this member's own choice (a release)."""

    # ---- the gate ----------------------------------------------------------------------

    def may_act(self) -> bool:
        """True while this member holds the lease: the gate for hub writes and commands."""
        mqtt = self._mqtt
        return mqtt is not None and mqtt.connected and self.lease.may_act(self.clock())

    def may_publish(self) -> bool:
        """The MQTT link's gate: open until the lease ended or ran out. While this member is
        not (yet, or again) confirmed, the guard holds publishes back; they are sent once the
        lease is ours, or discarded when it ended."""
        lease = self.lease
        return lease.phase is not Phase.ENDED and not lease.expired(self.clock())

    # ---- connection --------------------------------------------------------------------

    def connecting(self, mqtt: TrackedPort) -> None:
        """At each connect, before the guard's learning round: no acting until the round says
        the lease is (still) ours; what the broker retains on the lease topic arrives before the
        round ends (our own records come back too)."""
        self._mqtt = mqtt
        self._retained = None
        self.lease.disconnected(self.clock())
        self._schedule()  # a claim that never comes back ends, learned or not
        mqtt.subscribe([self.topic], no_local=False, qos=0)
        mqtt.subscribe([self.standby_filter], qos=0)

    def learned(self, on_settled: Callable[[], None]) -> None:
        """The guard's round ended: claim or resume; ``on_settled`` once this member may act."""
        now = self.clock()
        self._on_settled = on_settled
        record = self.lease.on_connect(self._retained, now)
        if record is not None:
            self._send(record, now)
        self._schedule()
        self._check(now)

    # ---- messages ----------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes, retain: bool) -> bool:
        """Take a message; True when it was the keeper's."""
        if topic == self.topic:
            record = parse_lease(payload)
            if record is not None:
                if retain:
                    self._retained = record
                elif record in self._sent:  # our own, back from the broker: as good as a PUBACK
                    self.lease.acknowledged(self._sent.pop(record))
                self.lease.observe(record, self.clock())
                self._check(self.clock())
            return True
        if topic.startswith(self._standby_prefix):
            self._standby(topic[len(self._standby_prefix):], payload)
            return True
        return False

    def _standby(self, member: str, payload: bytes) -> None:
        try:
            document = jsonlimits.loads(payload, jsonlimits.MQTT_MAX_BYTES) if payload else None
        except ValueError:
            document = None
        if isinstance(document, dict) and member != self.lease.member:
            reachable = document.get("hub_reachable") is True
            changed = self.standbys.get(member) != reachable
            self.standbys[member] = reachable
        else:
            changed = self.standbys.pop(member, None) is not None
        if changed and self.on_standbys is not None:
            self.on_standbys()

    # ---- time --------------------------------------------------------------------------

    def _schedule(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(TICK, self._tick)

    def _tick(self) -> None:
        self._timer = None
        now = self.clock()
        record = self.lease.tick(now)
        if record is not None:
            self._send(record, now)
        self._check(now)
        if self.lease.phase is not Phase.ENDED:
            self._schedule()

    def _check(self, now: float) -> None:
        lease = self.lease
        if lease.phase is Phase.ACTIVE and self._on_settled is not None:
            settled, self._on_settled = self._on_settled, None
            self._since_wall = time.time()
            log.info("this member is active", member=lease.member, generation=lease.generation)
            settled()
        if lease.phase is Phase.ACTIVE:
            self._hand_over_if_blind(now)
        if lease.phase is Phase.ENDED and not self._ended:
            self._ended = True
            self.stop()
            self.on_end(lease.end_reason or "the lease ended")

    def _hand_over_if_blind(self, now: float) -> None:
        """A hub lost for a term while a standby reaches every hub: that standby takes over."""
        if self.hubs_lost_for(now) < self.lease.timing.term:
            return
        successor = next((m for m, reachable in sorted(self.standbys.items()) if reachable), None)
        if successor is not None:
            log.warning("a hub is unreachable from this member but not from a standby; handing "
                        "over", successor=successor)
            self.release(successor)
            self.on_end(f"handed over to {successor}: a hub was unreachable from this member")

    def release(self, successor: str | None = None) -> None:
        """Hand the lease over (a clean stop, or a lost hub); the active phase ends."""
        if self.lease.phase is Phase.ENDED:
            return
        self._ended = True
        self._send(self.lease.release(successor), self.clock())

    def stop(self) -> None:
        """No more ticks."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _send(self, record: LeaseRecord, now: float) -> None:
        """Publish a record; the lease counts from ``now`` once the broker acknowledged it or
        sent it back (a cluster may be slow to acknowledge a retained message it forwards)."""
        if self._mqtt is not None:
            self._sent[record] = now
            while len(self._sent) > SENT_KEPT:
                del self._sent[next(iter(self._sent))]
            self._mqtt.publish_tracked(self.topic, record.encode(),
                                       lambda: self.lease.acknowledged(now))

    # ---- reporting ---------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """The ``failover`` object of ``bridge/info``."""
        lease = self.lease
        return {"member": lease.member, "generation": lease.generation,
                "since": round(self._since_wall, 3) if self._since_wall else None,
                "lease_seconds": lease.timing.term,
                "standbys": [{"member": m, "hub_reachable": r}
                             for m, r in sorted(self.standbys.items())]}


def standby_document(member: str, hub_reachable: bool, since: float) -> str:
    """A standby's retained ``<base>/bridge/standby/<member>``."""
    return json.dumps({"member": member, "role": "standby", "hub_reachable": hub_reachable,
                       "since": round(since, 3)})
