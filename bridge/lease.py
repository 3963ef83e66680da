"""Which member of an active/standby pair serves the hub: a lease on the broker (sans-IO).

Two or more processes of one instance (``instance.failover``) share a retained lease topic,
``<base>/bridge/lease``. Its holder, the *active* member, connects to the hubs, publishes and
executes commands; the others are *standbys*. The record names the holder and a *generation*
that only grows: every claim takes the highest generation seen plus one, and of two records the
one with the higher ``(generation, member)`` wins (:meth:`LeaseRecord.key`).

The rules, with ``term`` = 1.5 x the MQTT keepalive (the time after which the broker drops a
silent connection and publishes its will; see :class:`Timing`):

- The active renews the record every ``renew`` seconds (QoS 1, retained). It may act (send to a
  hub, publish, execute a command) only while connected and less than ``term`` after sending a
  renewal the broker acknowledged (:meth:`ActiveLease.may_act`); a paused or cut-off process
  therefore stops by itself, before anyone can take over.
- A standby claims when the lease is released, when it names nobody or this very member (a
  restarted process), when the active's will arrived and no renewal followed within
  ``will_wait``, or when no renewal arrived for ``term + grace`` while this standby was
  connected (:meth:`StandbyWatch.claim_reason`).
- A claim counts once the claimant received its own record back (the broker ordered it) and
  ``settle`` seconds passed without a higher record (another claimant). Commands that arrive
  before then are not executed: on an ordered broker they reached the old active first.
- Whoever receives a record with a higher key than its own steps down at once.

The clock is the caller's (``CLOCK_BOOTTIME`` in the daemon: it counts a stopped process and a
suspended machine, so a member resumed after a pause sees that its lease ran out).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, replace
from typing import Any

from bridge import jsonlimits

HELD, RELEASED = "held", "released"


@dataclass(frozen=True, slots=True)
class Timing:
    """The lease's periods, in seconds, all derived from the MQTT keepalive."""

    term: float
    """How long an active keeps acting after its last acknowledged renewal."""
    renew: float = 1.0
    """How often the active renews."""
    grace: float = 1.0
    """What a standby waits beyond ``term`` (clock rates, a late renewal)."""
    settle: float = 1.0
    """How long a claimant waits for a competing claim before it acts."""
    will_wait: float = 1.5
    """After the active's will: how long a renewal may still come (a restarted active)."""

    @classmethod
    def from_keepalive(cls, keepalive: float) -> Timing:
        """``term`` = 1.5 x keepalive: when a silent active's lease ends, the broker has dropped
        its connection too, so nothing it queued can arrive after a takeover."""
        return cls(term=1.5 * keepalive)

    @property
    def takeover_bound(self) -> float:
        """The longest a standby waits after the active went silent, before it claims."""
        return self.term + self.grace


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The retained lease: holder, generation, state; ``renewal`` counts the holder's renewals."""

    member: str
    generation: int
    state: str = HELD
    renewal: int = 0
    successor: str | None = None
    """With ``released``: the member the holder hands over to (the one that reaches the hub)."""

    @property
    def key(self) -> tuple[int, str]:
        """Of two records, the higher key wins."""
        return (self.generation, self.member)

    def encode(self) -> bytes:
        """The JSON payload."""
        document: dict[str, Any] = {"member": self.member, "generation": self.generation,
                                    "state": self.state, "renewal": self.renewal}
        if self.successor is not None:
            document["successor"] = self.successor
        return json.dumps(document, separators=(",", ":")).encode()


def parse_lease(payload: bytes) -> LeaseRecord | None:
    """A lease record; None for an empty payload or anything that is not one."""
    try:
        document = jsonlimits.loads(payload, jsonlimits.MQTT_MAX_BYTES) if payload else None
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    member, generation = document.get("member"), document.get("generation")
    state, renewal = document.get("state", HELD), document.get("renewal", 0)
    successor = document.get("successor")
    if (not isinstance(member, str) or not member or type(generation) is not int
            or generation < 1 or state not in (HELD, RELEASED) or type(renewal) is not int):
        return None
    return LeaseRecord(member, generation, state, renewal,
                       successor if isinstance(successor, str) else None)


def describe(record: LeaseRecord | None) -> str:
    """For messages: ``member a, generation 3, renewal 10``."""
    if record is None:
        return "nobody"
    return (f"member {record.member}, generation {record.generation}, {record.state}, "
            f"renewal {record.renewal}")


class StandbyWatch:
    """A standby's view of the lease: when to claim it."""

    def __init__(self, member: str, timing: Timing) -> None:
        self.member = member
        self.timing = timing
        self.record: LeaseRecord | None = None
        """The highest record seen."""
        self.learned = False
        """The retained record (or its absence) is known for the current connection."""
        self._quiet_since: float | None = None
        """When the holder was last heard (or this standby connected, if later)."""
        self._will_at: float | None = None
        self._released_at: float | None = None
        self.restarted = True
        """This process has not been active yet: a record under its own name is its previous
        run's (it claims at once). After an active phase, its own record is one to wait out."""
        self.twin = False
        """A live renewal named this member while it stands by: another process has its name
        (the members would take the lease from each other forever); it claims nothing."""

    def connected(self, now: float) -> None:
        """A (re)connect: what is retained is learned anew; silence counts from now."""
        self.learned = False
        self._quiet_since = now
        self._will_at = None

    def disconnected(self) -> None:
        """No claim while disconnected: this standby would not see the holder's renewals."""
        self.learned = False
        self._quiet_since = None

    def learned_retained(self, record: LeaseRecord | None, now: float) -> None:
        """The retained record at this connect (None: the topic is empty)."""
        if record is not None:
            self.observe(record, now)
        self.learned = True

    def observe(self, record: LeaseRecord, now: float, live: bool = False) -> None:
        """A lease record received (``live``: published now, not what the broker retained)."""
        if self.record is not None and record.key < self.record.key:
            return  # an old record, delivered late
        if live and record.member == self.member and record.state == HELD:
            self.twin = True
        if record != self.record:
            self._quiet_since = now
            self._will_at = None
        self.record = record
        self._released_at = now if record.state == RELEASED else None

    def will(self, now: float) -> None:
        """The active's will arrived (``bridge/state`` went ``offline`` live)."""
        if self._will_at is None:
            self._will_at = now

    def claim_reason(self, now: float) -> str | None:
        """Why to claim now, or None to go on waiting."""
        if not self.learned or self._quiet_since is None or self.twin:
            return None
        record, timing = self.record, self.timing
        if record is None:
            return "no member holds the lease"
        if record.state == RELEASED:
            if record.successor in (None, self.member):
                return f"member {record.member} released the lease"
            assert self._released_at is not None
            if now - self._released_at >= timing.takeover_bound:  # the successor never came
                return (f"member {record.member} handed over to {record.successor}, which did "
                        f"not take over within {timing.takeover_bound:g} s")
            return None
        if record.member == self.member and self.restarted:
            return "this member held the lease before it restarted"
        if self._will_at is not None and now - self._will_at >= timing.will_wait:
            return f"the connection of member {record.member} was lost (its will arrived)"
        if now - self._quiet_since >= timing.takeover_bound:
            return (f"member {record.member} did not renew the lease for "
                    f"{timing.takeover_bound:g} s")
        return None

    def next_generation(self) -> int:
        """The generation a claim made now takes."""
        return self.record.generation + 1 if self.record is not None else 1


class Phase(enum.Enum):
    """Where an active member's lease stands."""

    CLAIMING = "claiming"
    """The claim is published; its echo has not come back."""
    SETTLING = "settling"
    """The echo came back; waiting ``settle`` for a competing claim."""
    ACTIVE = "active"
    ENDED = "ended"
    """Replaced by a higher record, expired, or released: the member steps down."""


class ActiveLease:
    """The lease of a member that claims it: claim, settle, renew, and whether it may act now.

    ``expected`` is the record the standby saw when it decided to claim: at the claimant's own
    connect the broker's retained record must still be that one (else someone renewed or claimed
    meanwhile, and this member stands down without claiming)."""

    def __init__(self, member: str, timing: Timing, expected: LeaseRecord | None) -> None:
        self.member = member
        self.timing = timing
        self.expected = expected
        generation = expected.generation + 1 if expected is not None else 1
        self.record = LeaseRecord(member, generation)
        self.phase = Phase.CLAIMING
        self.connected = False
        self.end_reason: str | None = None
        self.replaced_by: LeaseRecord | None = None
        self.active_since: float | None = None
        """When the claim settled (this member's clock)."""
        self._claimed_at: float | None = None
        self._began: float | None = None
        """The first connect of this claimant: its claim must settle within 2 terms of it."""
        self._valid_until = float("-inf")
        self._settle_until = float("inf")
        self._next_renewal = float("inf")

    @property
    def generation(self) -> int:
        """The fencing token: every write this member sends is made under it."""
        return self.record.generation

    def on_connect(self, retained: LeaseRecord | None, now: float) -> LeaseRecord | None:
        """At each connect, with the retained record: the record to publish now (the claim, or
        a renewal), or None (nothing to send; when :attr:`phase` is ENDED, step down)."""
        self.connected = True
        if self.phase is Phase.ENDED:
            return None
        if retained is not None and retained.key > self.record.key:
            self._end(f"replaced by member {retained.member} (generation {retained.generation})",
                      retained)
            return None
        if self.phase is Phase.CLAIMING:
            if self._claimed_at is None:
                if retained != self.expected:
                    self._end(f"the lease changed while this member prepared its claim (now "
                              f"{describe(retained)}, was {describe(self.expected)})", retained)
                    return None
                self._claimed_at = now
                return self.record
            if retained == self.record:  # the broker holds the claim: as good as its echo
                self.observe(retained, now)
                return None
            if retained != self.expected:
                self._end("the lease changed while this member's claim was on its way "
                          f"(now {describe(retained)})", retained)
                return None
            return self.record  # lost with the last connection: again
        return self._renewal(now)

    def disconnected(self, now: float | None = None) -> None:
        """The link is down (or connecting, at ``now``): no acting until :meth:`on_connect` said
        the lease is still ours."""
        self.connected = False
        if self._began is None and now is not None:
            self._began = now

    def observe(self, record: LeaseRecord, now: float) -> None:
        """A lease record received on the lease topic."""
        if self.phase is Phase.ENDED:
            return
        if record.key > self.record.key:
            self._end(f"replaced by member {record.member} (generation {record.generation})",
                      record)
        elif record == self.record and self.phase is Phase.CLAIMING:
            self.phase = Phase.SETTLING
            self._settle_until = now + self.timing.settle

    def acknowledged(self, sent_at: float) -> None:
        """The broker acknowledged the claim or a renewal handed to the link at ``sent_at``."""
        self._valid_until = max(self._valid_until, sent_at + self.timing.term)

    def tick(self, now: float) -> LeaseRecord | None:
        """Advance: the settle ends, the lease expires; a renewal to publish when one is due."""
        term = self.timing.term
        if self.phase is Phase.CLAIMING and self._claimed_at is not None and (
                now - self._claimed_at >= term):
            self._end(f"the claim did not come back from the broker within {term:g} s")
            return None
        if self.phase in (Phase.CLAIMING, Phase.SETTLING) and self._began is not None and (
                now - self._began >= 2 * term):
            self._end(f"the broker did not let this member claim the lease within "
                      f"{2 * term:g} s")
            return None
        if self.phase is Phase.SETTLING and now >= self._settle_until:
            self.phase = Phase.ACTIVE
            self.active_since = now
            self._next_renewal = now
        if self.phase in (Phase.SETTLING, Phase.ACTIVE) and now >= self._valid_until:
            self._end(f"the lease was not renewed for {term:g} s (the broker acknowledged no "
                      "renewal)")
            return None
        if self.phase is Phase.ACTIVE and self.connected and now >= self._next_renewal:
            return self._renewal(now)
        return None

    def may_act(self, now: float) -> bool:
        """True while this member may send to a hub, publish and execute commands."""
        return self.phase is Phase.ACTIVE and self.connected and now < self._valid_until

    def expired(self, now: float) -> bool:
        """True once an active member's last acknowledged renewal is ``term`` old."""
        return self.phase is Phase.ACTIVE and now >= self._valid_until

    def release(self, successor: str | None = None) -> LeaseRecord:
        """The record that hands the lease over (a clean stop, or a lost hub)."""
        self._end("released" if successor is None else f"handed over to {successor}")
        return replace(self.record, state=RELEASED, renewal=self.record.renewal + 1,
                       successor=successor)

    def _renewal(self, now: float) -> LeaseRecord:
        self.record = replace(self.record, renewal=self.record.renewal + 1)
        self._next_renewal = now + self.timing.renew
        return self.record

    def _end(self, reason: str, by: LeaseRecord | None = None) -> None:
        if self.phase is not Phase.ENDED:
            self.phase = Phase.ENDED
            self.end_reason = reason
            self.replaced_by = by
