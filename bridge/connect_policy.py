"""How the MQTT link picks a broker, waits, picks a protocol and learns what a broker refuses:
plain decisions on plain values (no socket, no clock, no paho), fed by ``bridge/mqtt.py``.

- :class:`Rotation`: the brokers in order, the next one at once after a failure, a backoff only
  after a whole round failed, and reset only by a connection that lasted (:data:`STABLE_AFTER`).
- :func:`fallback`: per attempt, whether an MQTT 5 CONNECT that was refused, hung up on or left
  unanswered is tried again at once with MQTT 3.1.1 (never remembered across connections).
- :func:`unacknowledged`, :func:`suspect`, :class:`Blocker`: when a broker drops the connection
  right after a publish (NATS does on a topic with ``.``; others on a payload above their limit),
  which packet probably did it, and the rule that stops sending such packets.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

STABLE_AFTER = 60.0
"""Seconds a connection must last before the reconnect backoff starts again from
:data:`FIRST_DELAY`: a broker that accepts the bridge and drops it again at once (an ACL, a
packet it refuses, a cluster node shedding clients) is retried ever more slowly, not every
second."""

FIRST_DELAY = 1.0
"""Seconds waited after the first round of brokers that all failed; doubled per round."""


def where(address: tuple[str, int]) -> str:
    """``host:port`` (an IPv6 address in brackets)."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Rotation:
    """Which broker to try next and how long to wait before: the addresses in order, the next
    one at once after a failed attempt or a lost connection; a wait (the backoff, doubling from
    :data:`FIRST_DELAY` up to ``max_delay``, with jitter) only once a whole round of addresses
    failed. A connection shorter than ``stable_after`` counts as a failure of its address; only
    a longer one resets the backoff. Once connected the link stays on that address until the
    connection is lost; then the next one in order (wrapping) is tried first."""

    def __init__(self, addresses: Sequence[tuple[str, int]], max_delay: float,
                 stable_after: float = STABLE_AFTER,
                 jitter: Callable[[float, float], float] = random.uniform) -> None:
        if not addresses:
            raise ValueError("no broker address")
        self.addresses = tuple(addresses)
        self.max_delay = max_delay
        self.stable_after = stable_after
        self.jitter = jitter
        """``(low, high) -> seconds``: the part of the backoff actually waited (tests fix it)."""
        self.index = 0
        """The address in use, or to try next."""
        self.delay = FIRST_DELAY
        """The backoff before the next wait, before jitter."""
        self._failed = 0
        """Addresses that failed since the round began."""
        self._since: float | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.addresses[self.index]

    def failed(self) -> float:
        """The attempt on :attr:`index` failed: move to the next address and return the seconds
        to wait before trying it (0 within a round; the backoff once a round is complete)."""
        self._since = None
        self.index = (self.index + 1) % len(self.addresses)
        self._failed += 1
        if self._failed < len(self.addresses):
            return 0.0
        self._failed = 0
        base = min(self.delay, self.max_delay)
        self.delay = min(self.delay * 2, self.max_delay)
        return self.jitter(base * 0.5, base)

    def connected(self, now: float) -> None:
        """The broker at :attr:`index` accepted the connection at ``now`` (seconds)."""
        self._since = now

    def stable(self, now: float) -> bool:
        """Whether the current connection has lasted :attr:`stable_after` by ``now``."""
        return self._since is not None and now - self._since >= self.stable_after

    def lost(self, now: float) -> float:
        """The connection was lost at ``now``: the seconds to wait before the next attempt (on
        the next address). A stable connection resets the backoff and begins a new round; a
        short one is a failed attempt."""
        if not self.stable(now):
            return self.failed()
        self._since = None
        self.delay = FIRST_DELAY
        self._failed = 0
        self.index = (self.index + 1) % len(self.addresses)
        return 0.0


# ---- MQTT 5, else 3.1.1, per attempt ------------------------------------------------------------

Outcome = Literal["accepted", "refused", "hung up", "silent", "unreachable"]
"""How one connection attempt ended: CONNACK success; CONNACK refusal; the connection closed
before any CONNACK; no CONNACK within the timeout; no connection (TCP, TLS, a file)."""

PROTOCOL_REFUSALS = frozenset({
    132,  # MQTT 5 CONNACK reason "Unsupported protocol version"
    1,  # MQTT 3.1.1 CONNACK return code "unacceptable protocol version"
})

Fallback = Literal["refused", "hung up", "silent"]


def fallback(configured: str, outcome: Outcome, code: int = 0) -> Fallback | None:
    """Why an attempt made with ``configured`` is tried again at once with MQTT 3.1.1 on the same
    broker, or None. Only MQTT 5 falls back, and only when the broker said it does not speak it
    (a CONNACK refusing the version: Mosquitto configured 3.1.1-only, NATS, EMQX 4 answer so),
    hung up on it (RabbitMQ 3.10, rumqttd's 3.1.1 listener) or ignored it (amqtt). A refusal for
    another reason (credentials, ACL) is no protocol problem. The choice is made per attempt and
    never kept: the next connection tries MQTT 5 again, so a transient fault (a broker that was
    only restarting or slow) cannot downgrade an MQTT 5 broker for good."""
    if configured != "5":
        return None
    if outcome == "refused":
        return "refused" if code in PROTOCOL_REFUSALS else None
    if outcome == "hung up" or outcome == "silent":
        return outcome
    return None


def fallback_text(why: Fallback, timeout: float) -> str:
    """``MqttLink.fallback_reason``: why this connection is MQTT 3.1.1 although 5 is set."""
    if why == "refused":
        return "refused MQTT 5 (unsupported protocol version)"
    if why == "hung up":
        return "hung up on the MQTT 5 CONNECT (closed the connection without a CONNACK)"
    return f"silent: no answer to the MQTT 5 CONNECT within {timeout:g} s"


# ---- what a broker drops the connection for -----------------------------------------------

MAX_LEVELS = 8
"""Topic levels some brokers stop at (AWS IoT Core: 7 ``/``)."""

MAX_TOPIC_BYTES = 256
"""Topic bytes some brokers stop at (AWS IoT Core)."""

MAX_PAYLOAD = 1 << 20
"""Payload bytes (1 MiB) above which some brokers drop the client (NATS: ``max_payload``,
1 MB by default)."""

MAX_BLOCKS = 8
"""Rules learned at most: a broker that keeps dropping the bridge for reasons of its own must
not make it stop publishing everything, one guess after another."""

QOS0_RING = 256
"""QoS 0 publishes remembered per connection (they are never acknowledged; QoS 1 and 2 ones
are kept by the link until their acknowledgement anyway)."""

MID_SPACE = 65535
"""Packet ids run 1..65535, then wrap."""

NAMED_REASONS = {
    0x87: "Not authorized",  # EMQX with deny_action = disconnect, on a topic its ACL denies
    0x8F: "Topic Filter invalid",
    0x90: "Topic Name invalid",
    0x95: "Packet too large",
    0x99: "Payload format invalid",
    0xA2: "Wildcard Subscriptions not supported",
}
"""MQTT 5 DISCONNECT reasons by which a broker says that a packet of ours was the cause: no
second drop is needed to believe it. Any other reason it gives ("Session taken over", "Server
shutting down", "Server busy"...) says that no packet was."""

_FILTER_REASONS = frozenset({0x8F, 0xA2})
_WHITESPACE = re.compile(r"\s")


class Packet(NamedTuple):
    """A packet sent to the broker, as far as a broker may refuse it."""

    topic: str
    """The PUBLISH topic, or a SUBSCRIBE / UNSUBSCRIBE filter."""
    size: int = 0
    """Payload bytes (0 for a filter)."""
    filter: bool = False
    """A subscription filter, not a PUBLISH."""


_Test = Callable[[str, int], bool]

_FEATURES: tuple[tuple[str, str, _Test, str], ...] = (
    # key, rule text (short), test, the likely cause (a sentence's middle)
    ("dot", "topics containing '.'", lambda t, _s: "." in t,
     "does not allow '.' in topics (NATS does not; set mqtt.topic_style: portable)"),
    ("whitespace", "topics containing whitespace",
     lambda t, _s: _WHITESPACE.search(t) is not None,
     "does not allow spaces or other whitespace in topics (NATS does not; "
     "set mqtt.topic_style: portable)"),
    ("wildcard", "topics containing '*' or '>'", lambda t, _s: "*" in t or ">" in t,
     "does not allow '*' or '>' in topics (NATS wildcards; set mqtt.topic_style: portable)"),
    ("non-ascii", "topics with non-ASCII characters", lambda t, _s: not t.isascii(),
     "does not allow non-ASCII characters in topics (give the devices concerned ASCII names "
     "in devices: <id>: name)"),
    ("levels", f"topics of more than {MAX_LEVELS} levels",
     lambda t, _s: t.count("/") >= MAX_LEVELS,
     f"allows at most {MAX_LEVELS} topic levels (AWS IoT Core allows {MAX_LEVELS - 1} '/')"),
    ("length", f"topics longer than {MAX_TOPIC_BYTES} bytes",
     lambda t, _s: len(t.encode()) > MAX_TOPIC_BYTES,
     f"allows topics of at most {MAX_TOPIC_BYTES} bytes (AWS IoT Core does)"),
    ("payload", "payloads larger than 1 MiB", lambda _t, s: s > MAX_PAYLOAD,
     "limits the size of a message (NATS: max_payload, 1 MB by default)"),
)
_BY_KEY = {key: (text, test, cause) for key, text, test, cause in _FEATURES}


@dataclass(frozen=True, slots=True)
class Rule:
    """What is no longer sent: every topic with a feature, or one exact topic."""

    key: str
    """A feature of :data:`_FEATURES` (``"dot"``, ``"payload"``...) or ``"topic"``."""
    topic: str | None = None
    """The one topic (or filter) of a ``"topic"`` rule."""

    @property
    def text(self) -> str:
        """A short text for ``bridge/info``: ``topics containing '.'``."""
        if self.key == "topic":
            return f"the topic '{self.topic}'"
        return _BY_KEY[self.key][0]

    def matches(self, topic: str, size: int = 0) -> bool:
        if self.key == "topic":
            return topic == self.topic
        return _BY_KEY[self.key][1](topic, size)


def feature(packet: Packet) -> Rule | None:
    """The first feature of the packet some broker refuses (the rule blocking it), or None."""
    for key, _text, test, _cause in _FEATURES:
        if test(packet.topic, packet.size):
            return Rule(key)
    return None


class Unacknowledged(NamedTuple):
    """What :func:`unacknowledged` found."""

    packets: list[Packet]
    """Oldest first."""
    complete: bool
    """False when older QoS 0 publishes may have fallen out of the ring unseen: the oldest
    packet here is then not necessarily the oldest unacknowledged one."""
    answered: bool
    """The broker acknowledged a packet of this connection before these: it was handling
    what it got until then (a broker dropping every client at once acknowledges nothing)."""


def unacknowledged(
    last_mid: int,
    in_flight: Iterable[tuple[int, Packet]],
    qos0: Sequence[tuple[int, Packet]],
    requests: Iterable[tuple[int, Packet]] = (),
    ring_size: int = QOS0_RING,
) -> Unacknowledged:
    """The packets the broker had not processed when it dropped the connection, oldest first.

    Each packet has its packet id, given in send order by one counter (``last_mid`` is the
    newest): QoS 1/2 publishes awaiting their acknowledgement (``in_flight``), the ring of QoS 0
    publishes (``qos0``, the newest ``ring_size``) and subscription requests awaiting theirs
    (``requests``, one entry per filter). A broker handles a connection's packets in order, so
    the newest packet id that is none of these was acknowledged, and proves that everything sent
    before it was handled: the packets younger than it are the candidates. When the ring is full
    and reaches past that point, older QoS 0 publishes may have fallen out of it unseen: then
    the list is incomplete. Packet ids are counted from 1 per connection (a new client each
    time), so when every id down to 1 is unacknowledged, nothing was acknowledged.
    """
    items: list[tuple[int, int, Packet]] = []  # (age, order, packet)
    for source in (in_flight, qos0, requests):
        for mid, packet in source:
            items.append(((last_mid - mid) % MID_SPACE, len(items), packet))
    ages = {age for age, _order, _packet in items}
    boundary = 0
    while boundary in ages:
        boundary += 1
    complete = not (len(qos0) >= ring_size
                    and (last_mid - qos0[0][0]) % MID_SPACE < boundary)
    young = sorted((i for i in items if i[0] < boundary), key=lambda i: (-i[0], i[1]))
    return Unacknowledged([packet for _age, _order, packet in young], complete,
                          complete and boundary < last_mid)


def suspect(packets: Sequence[Packet], complete: bool = True,
            said: int | None = None) -> tuple[Packet, Rule] | None:
    """The packet that most probably made the broker drop the connection, and the rule that
    would stop it, among the unacknowledged ``packets`` (oldest first; see
    :func:`unacknowledged`): the oldest publish with a feature some broker refuses, else the
    oldest subscription filter with one, else the oldest publish, else the oldest filter (those
    two as exact topics, and only from a complete list). ``said``: the broker's MQTT 5
    DISCONNECT reason, if it sent one: "Packet too large" blames the largest publish, a filter
    reason the filters first."""
    if not packets:
        return None
    if said == 0x95:
        largest = max((p for p in packets if not p.filter), key=lambda p: p.size, default=None)
        if largest is not None:
            return largest, Rule("payload") if largest.size > MAX_PAYLOAD else Rule(
                "topic", largest.topic)
    publishes = [p for p in packets if not p.filter]
    filters = [p for p in packets if p.filter]
    groups = (filters, publishes) if said in _FILTER_REASONS else (publishes, filters)
    for group in groups:
        for packet in group:
            rule = feature(packet)
            if rule is not None:
                return packet, rule
    if not complete:
        return None
    for group in groups:
        if group:
            return group[0], Rule("topic", group[0].topic)
    return None


def reason_text(packet: Packet, rule: Rule, said: int | None = None) -> str:
    """The human sentence for a block: what happened, the likely cause, what is done."""
    if packet.filter:
        what = f"a subscription to '{packet.topic}'"
    elif rule.key == "payload" or said == 0x95:
        what = f"a publish of {_size(packet.size)} to '{packet.topic}'"
    else:
        what = f"a publish to '{packet.topic}'"
    told = f" (its DISCONNECT said: {NAMED_REASONS[said]})" if said in NAMED_REASONS else ""
    if rule.key == "topic":
        cause = "refuses this topic (an ACL, or a name it reserves?)"
        done = (f"'{rule.topic}' is no longer subscribed" if packet.filter
                else f"'{rule.topic}' is no longer published")
    else:
        cause = _BY_KEY[rule.key][2]
        text = rule.text
        done = (f"{text.replace('topics', 'filters', 1)} are no longer subscribed"
                if packet.filter else f"{text} are no longer published")
    return f"the broker closed the connection right after {what}{told}; it probably {cause}; {done}"


def _size(size: int) -> str:
    if size >= 1 << 20:
        return f"{size / (1 << 20):.1f} MiB"
    if size >= 1 << 10:
        return f"{size / (1 << 10):.1f} KiB"
    return f"{size} bytes"


@dataclass(frozen=True, slots=True)
class Block:
    rule: Rule
    example: str
    """The topic (or filter) that gave it away."""
    reason: str


class Verdict(NamedTuple):
    """What one lost connection taught: ``kind`` is

    - ``"none"``: nothing unacknowledged, or no telling which packet it was;
    - ``"suspect"``: a first suspect, blocked if the next short connection ends the same way;
    - ``"blocked"``: a new rule (:attr:`Blocker.blocks` has it);
    - ``"spared"``: the rule would hit the protected topic (the bridge's state): not blocked;
    - ``"full"``: :data:`MAX_BLOCKS` rules are in place, no more are learned.
    """

    kind: Literal["none", "suspect", "blocked", "spared", "full"]
    packet: Packet | None = None
    rule: Rule | None = None
    reason: str = ""
    first: bool = True
    """For "spared" and "full": the first time this rule got that answer (log it once)."""


class Blocker:
    """The rules learned from a broker that drops the connection after some packets, and the
    test the link applies to what it sends.

    A drop is believed only when it repeats (or when the broker named the cause in its MQTT 5
    DISCONNECT): a broker restarting while a device's publish is in flight must not silence
    that device, or every topic with a ``.`` (device ids have them), for the process's life. A
    suspect is blocked when the previous lost connection had the same one and this connection
    did not last (see :class:`Rotation`); NATS, which drops the bridge on its first publish to a
    topic with a ``.``, is told so at the second connection. And only a broker that was
    handling the connection counts (it had acknowledged something; the bridge's SUBSCRIBE comes
    first): one that drops every client right after its CONNACK (a client id taken over again
    and again, a node shedding clients) has no packet to blame. A filter with a feature is the
    exception, as the SUBSCRIBE is the first packet and such filters are rare.

    A block lasts for the process's life: the broker's refusal is a property of its
    configuration, which the bridge cannot observe changing, and trying the topic again would
    drop the connection again, with what is in flight. To lift it, fix the cause
    (``mqtt.topic_style: portable``, a device name, the broker's limits) and restart the
    bridge. ``protected`` (the will topic: the bridge's ``bridge/state``) is never blocked, as
    the bridge would then look offline.
    """

    def __init__(self, protected: str = "") -> None:
        self.protected = protected
        self.blocks: list[Block] = []
        self._rules: tuple[Rule, ...] = ()
        self._previous: Rule | None = None
        self._told: set[tuple[str, Rule]] = set()

    def __bool__(self) -> bool:
        return bool(self._rules)

    def blocks_topic(self, topic: str, size: int = 0) -> bool:
        """Whether a packet on ``topic`` (a publish of ``size`` bytes, or a filter) is blocked."""
        return any(rule.matches(topic, size) for rule in self._rules)

    def drop(self, packets: Sequence[Packet], stable: bool, complete: bool = True,
             said: int | None = None, answered: bool = True) -> Verdict:
        """A connection was lost with ``packets`` unacknowledged (oldest first), ``complete``
        and ``answered`` as :func:`unacknowledged` says; ``stable``: it had lasted (see
        :class:`Rotation`); ``said``: the broker's MQTT 5 DISCONNECT reason, if it sent one."""
        live = [p for p in packets if not self.blocks_topic(p.topic, p.size)]
        found = None if said is not None and said not in NAMED_REASONS else suspect(
            live, complete, said)
        if found is not None and not (answered or said is not None or (
                found[0].filter and found[1].key != "topic")):
            found = None
        if found is None:
            self._previous = None
            return Verdict("none")
        packet, rule = found
        reason = reason_text(packet, rule, said)
        confirmed = said in NAMED_REASONS or (not stable and self._previous == rule)
        self._previous = rule
        if not confirmed:
            return Verdict("suspect", packet, rule, reason)
        self._previous = None
        if self.protected and (packet.topic == self.protected or rule.matches(self.protected)):
            return self._once("spared", packet, rule, reason)
        if len(self.blocks) >= MAX_BLOCKS:
            return self._once("full", packet, rule, reason)
        self.blocks.append(Block(rule, packet.topic, reason))
        self._rules += (rule,)
        return Verdict("blocked", packet, rule, reason)

    def _once(self, kind: Literal["spared", "full"], packet: Packet, rule: Rule,
              reason: str) -> Verdict:
        first = (kind, rule) not in self._told
        self._told.add((kind, rule))
        return Verdict(kind, packet, rule, reason, first)
