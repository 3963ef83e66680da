"""The MQTT link's decisions as plain values (bridge.connect_policy): no socket, no clock."""

from __future__ import annotations

import pytest

from bridge.connect_policy import (
    FIRST_DELAY,
    MAX_BLOCKS,
    MAX_LEVELS,
    MAX_PAYLOAD,
    MAX_TOPIC_BYTES,
    MID_SPACE,
    STABLE_AFTER,
    Blocker,
    Outcome,
    Packet,
    Rotation,
    Rule,
    Unacknowledged,
    fallback,
    fallback_text,
    feature,
    reason_text,
    suspect,
    unacknowledged,
    where,
)

A, B, C = ("a.example", 1883), ("b.example", 1884), ("c.example", 1885)


def high(low: float, top: float) -> float:
    """Jitter that always waits the most."""
    return top


def rotation(*addresses: tuple[str, int], max_delay: float = 30.0,
             stable_after: float = STABLE_AFTER) -> Rotation:
    return Rotation(addresses or (A,), max_delay, stable_after, jitter=high)


# ---- addresses and backoff ----------------------------------------------------------------------


def test_one_broker_backs_off_doubling_up_to_the_maximum() -> None:
    r = rotation(A, max_delay=10)
    assert [r.failed() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    assert r.index == 0
    assert r.address == A


def test_the_jitter_waits_between_half_and_all_of_the_delay() -> None:
    asked: list[tuple[float, float]] = []

    def jitter(low: float, top: float) -> float:
        asked.append((low, top))
        return low

    r = Rotation([A], 30, jitter=jitter)
    assert [r.failed() for _ in range(3)] == [0.5, 1.0, 2.0]
    assert asked == [(0.5, 1.0), (1.0, 2.0), (2.0, 4.0)]


def test_the_default_jitter_stays_within_half_and_all_of_the_delay() -> None:
    r = Rotation([A], 30)
    waits = [r.failed() for _ in range(4)]
    for wait, base in zip(waits, [1, 2, 4, 8], strict=True):
        assert base / 2 <= wait <= base


def test_a_round_tries_every_broker_at_once_then_waits() -> None:
    r = rotation(A, B, C)
    assert (r.failed(), r.index) == (0, 1)
    assert (r.failed(), r.index) == (0, 2)
    assert (r.failed(), r.index) == (FIRST_DELAY, 0)  # the round failed: wait, from the first
    assert [r.failed() for _ in range(3)] == [0, 0, 2]  # the next round waits longer
    assert r.index == 0


def test_a_connection_stays_on_its_broker_until_lost_then_the_next_is_tried() -> None:
    r = rotation(A, B, stable_after=60)
    r.failed()  # A is down
    assert r.index == 1
    r.connected(100.0)
    assert r.index == 1  # no going back to A while B holds
    assert not r.stable(159.9)
    assert r.stable(160.0)
    assert r.lost(500.0) == 0  # stable: the next one (wrapping to A) at once
    assert r.index == 0
    assert r.delay == FIRST_DELAY


def test_a_stable_connection_resets_the_backoff_and_the_round() -> None:
    r = rotation(A, B, stable_after=60)
    for _ in range(6):
        r.failed()
    assert r.delay == 8
    r.connected(0.0)
    assert r.lost(61.0) == 0
    assert r.delay == FIRST_DELAY
    assert r.failed() == 0  # a new round: the other broker first, no wait
    assert r.failed() == FIRST_DELAY


def test_a_short_connection_counts_as_a_failure() -> None:
    r = rotation(A, stable_after=60)
    waits = []
    for n in range(5):  # a broker that accepts and drops at once
        r.connected(n * 100.0)
        waits.append(r.lost(n * 100.0 + 0.1))
    assert waits == [1, 2, 4, 8, 16]  # not a connect per second forever


def test_a_short_connection_moves_on_within_the_round() -> None:
    r = rotation(A, B)
    r.connected(0.0)
    assert r.lost(1.0) == 0  # A dropped us quickly: B at once
    assert r.index == 1
    r.connected(1.0)
    assert r.lost(2.0) == FIRST_DELAY  # B as well: the round is complete
    assert r.index == 0


def test_a_failed_attempt_is_no_connection() -> None:
    r = rotation(A, stable_after=0)
    r.connected(0.0)
    r.failed()
    assert not r.stable(1000.0)
    assert rotation(A).stable(1e9) is False  # never connected


def test_a_zero_stable_after_makes_every_connection_stable() -> None:
    r = rotation(A, B, stable_after=0)
    r.connected(5.0)
    assert r.lost(5.0) == 0
    assert r.index == 1


def test_no_address_is_an_error() -> None:
    with pytest.raises(ValueError, match="no broker"):
        Rotation([], 30)


def test_where_names_the_broker() -> None:
    assert where(("127.0.0.1", 1883)) == "127.0.0.1:1883"
    assert where(("broker.lan", 8883)) == "broker.lan:8883"
    assert where(("::1", 1883)) == "[::1]:1883"


# ---- MQTT 5, else 3.1.1 -------------------------------------------------------------------------


@pytest.mark.parametrize(("outcome", "code", "expected"), [
    ("refused", 132, "refused"),  # MQTT 5 "Unsupported protocol version"
    ("refused", 1, "refused"),  # a 3.1.1 CONNACK "unacceptable protocol version"
    ("refused", 135, None),  # "Not authorized": no protocol problem
    ("refused", 134, None),  # "Bad user name or password"
    ("hung up", 0, "hung up"),
    ("silent", 0, "silent"),
    ("unreachable", 0, None),  # no connection at all: 3.1.1 would not get further
    ("accepted", 0, None),
])
def test_mqtt5_falls_back_when_refused_hung_up_on_or_ignored(
        outcome: Outcome, code: int, expected: str | None) -> None:
    assert fallback("5", outcome, code) == expected


@pytest.mark.parametrize("outcome", ["refused", "hung up", "silent", "unreachable", "accepted"])
def test_a_311_attempt_never_falls_back(outcome: Outcome) -> None:
    assert fallback("3.1.1", outcome, 1) is None


def test_the_fallback_reasons_say_what_the_broker_did() -> None:
    assert fallback_text("refused", 5).startswith("refused MQTT 5")
    assert "hung up" in fallback_text("hung up", 5)
    assert fallback_text("silent", 5.0) == (
        "silent: no answer to the MQTT 5 CONNECT within 5 s")


# ---- features some broker refuses ---------------------------------------------------------------


@pytest.mark.parametrize(("topic", "size", "key"), [
    ("aqara/lumi1.54ef44d1e6a0/1/Output/OnOff", 0, "dot"),
    ("aqara/Living Room/light", 0, "whitespace"),
    ("aqara/tab\there", 0, "whitespace"),
    ("aqara/nbsp\u00a0here", 0, "whitespace"),  # whitespace first, then non-ASCII
    ("aqara/line\nbreak", 0, "whitespace"),
    ("aqara/star*/x", 0, "wildcard"),
    ("aqara/gt>/x", 0, "wildcard"),
    ("aqara/küche/licht", 0, "non-ascii"),
    ("/".join(["l"] * (MAX_LEVELS + 1)), 0, "levels"),
    ("t/" + "x" * MAX_TOPIC_BYTES, 0, "length"),
    ("aqara/big", MAX_PAYLOAD + 1, "payload"),
    ("aqara/a.b c", 0, "dot"),  # the first feature in order
])
def test_features_are_classified(topic: str, size: int, key: str) -> None:
    rule = feature(Packet(topic, size))
    assert rule == Rule(key)
    assert rule.matches(topic, size)


@pytest.mark.parametrize(("topic", "size"), [
    ("aqara/dining_light/1/Output/OnOff", 100),
    ("aqara/+/+/set", 0),  # MQTT wildcards are fine
    ("aqara/#", 0),
    ("/".join(["l"] * MAX_LEVELS), 0),  # exactly the limit
    ("x" * MAX_TOPIC_BYTES, 0),
    ("aqara/exactly-1MiB", MAX_PAYLOAD),
    ("homie/5/dev/node/prop/set", 0),
])
def test_ordinary_topics_have_no_feature(topic: str, size: int) -> None:
    assert feature(Packet(topic, size)) is None


def test_topic_length_counts_utf8_bytes() -> None:
    assert feature(Packet("é" * (MAX_TOPIC_BYTES // 2))) == Rule("non-ascii")
    long = "é" * (MAX_TOPIC_BYTES // 2 + 1)
    assert Rule("length").matches(long)
    assert not Rule("length").matches("é" * (MAX_TOPIC_BYTES // 2))


def test_rules_match_and_say_what_they_block() -> None:
    dot = Rule("dot")
    assert dot.matches("a.b")
    assert not dot.matches("a/b")
    assert dot.text == "topics containing '.'"
    exact = Rule("topic", "aqara/x")
    assert exact.matches("aqara/x")
    assert not exact.matches("aqara/x/y")
    assert exact.text == "the topic 'aqara/x'"
    payload = Rule("payload")
    assert payload.matches("t", MAX_PAYLOAD + 1)
    assert not payload.matches("t")
    assert payload.text == "payloads larger than 1 MiB"
    assert Rule("levels").text == f"topics of more than {MAX_LEVELS} levels"
    assert Rule("whitespace").text == "topics containing whitespace"


# ---- which packets were not handled -------------------------------------------------------------


def p(topic: str, size: int = 10) -> Packet:
    return Packet(topic, size)


def f(topic: str) -> Packet:
    return Packet(topic, filter=True)


def test_nothing_sent_nothing_unacknowledged() -> None:
    assert unacknowledged(0, [], []) == Unacknowledged([], True, False)


def test_the_newest_acknowledged_packet_bounds_the_candidates() -> None:
    # ids 1..6 in send order: 1 and 2 acknowledged (QoS 1), 3 in flight, 4 QoS 0, 5 in flight,
    # 6 QoS 0
    found = unacknowledged(6, [(3, p("t/3")), (5, p("t/5"))], [(4, p("t/4")), (6, p("t/6"))])
    assert found.packets == [p("t/3"), p("t/4"), p("t/5"), p("t/6")]
    assert found.complete
    assert found.answered  # id 2 was acknowledged


def test_a_qos0_publish_before_an_acknowledged_one_was_handled() -> None:
    # 1: QoS 0, 2: QoS 1 acknowledged, 3: QoS 0
    found = unacknowledged(3, [], [(1, p("old")), (3, p("new"))])
    assert found.packets == [p("new")]
    assert found.answered


def test_an_in_flight_packet_older_than_an_acknowledged_one_is_not_a_candidate() -> None:
    # in-order handling: the acknowledgement of 3 means 1 was handled (its PUBACK was lost)
    assert unacknowledged(4, [(1, p("one")), (4, p("four"))], []).packets == [p("four")]


def test_nothing_acknowledged_since_the_connect_is_no_answer() -> None:
    # a SUBSCRIBE (1) and two publishes, none acknowledged: the broker handled nothing
    found = unacknowledged(3, [(2, p("a")), (3, p("b"))], [], [(1, f("cmd/#"))])
    assert found.packets == [f("cmd/#"), p("a"), p("b")]
    assert found.complete
    assert not found.answered
    # the SUBSCRIBE acknowledged: answered
    assert unacknowledged(3, [(2, p("a")), (3, p("b"))], []).answered


def test_only_qos0_publishes_are_all_candidates() -> None:
    ring = [(n, p(f"t/{n}")) for n in range(1, 6)]
    found = unacknowledged(5, [], ring)
    assert found.packets == [p(f"t/{n}") for n in range(1, 6)]
    assert found.complete
    assert not found.answered
    # after an acknowledged SUBSCRIBE (id 1)
    assert unacknowledged(6, [], [(n + 1, x) for n, x in ring]).answered


def test_packet_ids_wrap() -> None:
    last = 2
    in_flight = [(MID_SPACE - 1, p("a")), (MID_SPACE, p("b")), (1, p("c")), (2, p("d"))]
    assert unacknowledged(last, in_flight, []).packets == [p("a"), p("b"), p("c"), p("d")]
    by_id = unacknowledged(last, list(reversed(in_flight)), []).packets  # not argument order
    assert by_id == [p("a"), p("b"), p("c"), p("d")]


def test_subscription_filters_are_candidates_in_their_order() -> None:
    requests = [(2, f("cmd/#")), (2, f("x.y/#"))]
    found = unacknowledged(3, [(3, p("t"))], [], requests)
    assert found.packets == [f("cmd/#"), f("x.y/#"), p("t")]
    assert found.answered


def test_a_full_ring_reaching_past_the_boundary_is_incomplete() -> None:
    ring = [(n, p(f"t/{n}")) for n in range(11, 15)]  # older QoS 0 ones fell out
    found = unacknowledged(14, [], ring, ring_size=4)
    assert len(found.packets) == 4
    assert not found.complete
    assert not found.answered  # id 10 may be a QoS 0 publish that fell out: no telling
    # the same ring, but an acknowledged QoS 1 (id 12) bounds it: complete
    ring2 = [(11, p("t/11")), (13, p("t/13")), (14, p("t/14")), (15, p("t/15"))]
    found = unacknowledged(15, [], ring2, ring_size=4)
    assert found.packets == [p("t/13"), p("t/14"), p("t/15")]
    assert found.complete
    assert found.answered
    assert unacknowledged(14, [], ring[1:], ring_size=4).complete  # not full


# ---- the suspect --------------------------------------------------------------------------------


def test_the_oldest_publish_with_a_feature_is_the_suspect() -> None:
    packets = [p("plain/1"), p("dev/a.b/1"), p("plain/2"), p("dev/c d/2")]
    assert suspect(packets) == (p("dev/a.b/1"), Rule("dot"))


def test_without_features_the_oldest_publish_is_blamed_exactly() -> None:
    packets = [f("cmd/#"), p("plain/1"), p("plain/2")]
    assert suspect(packets) == (p("plain/1"), Rule("topic", "plain/1"))


def test_filters_come_after_publishes() -> None:
    assert suspect([f("a.b/#"), p("x/y.z")]) == (p("x/y.z"), Rule("dot"))
    assert suspect([p("plain"), f("a b/#")]) == (f("a b/#"), Rule("whitespace"))
    assert suspect([f("cmd/#"), f("req/#")]) == (f("cmd/#"), Rule("topic", "cmd/#"))


def test_an_incomplete_list_blames_only_a_feature() -> None:
    assert suspect([p("plain/1"), p("plain/2")], complete=False) is None
    assert suspect([p("plain/1"), p("a.b")], complete=False) == (p("a.b"), Rule("dot"))


def test_nothing_unacknowledged_no_suspect() -> None:
    assert suspect([]) is None


def test_packet_too_large_blames_the_largest_publish() -> None:
    packets = [p("a.b", 10), p("big", 500_000), p("huge", MAX_PAYLOAD + 5), f("x.y/#")]
    assert suspect(packets, said=0x95) == (p("huge", MAX_PAYLOAD + 5), Rule("payload"))
    assert suspect(packets[:2], said=0x95) == (p("big", 500_000), Rule("topic", "big"))
    assert suspect([f("x/#")], said=0x95) == (f("x/#"), Rule("topic", "x/#"))


def test_a_filter_reason_blames_the_filters_first() -> None:
    packets = [p("a.b"), f("c.d/#")]
    assert suspect(packets, said=0x8F) == (f("c.d/#"), Rule("dot"))
    assert suspect([p("plain"), f("cmd/#")], said=0xA2) == (f("cmd/#"), Rule("topic", "cmd/#"))


# ---- the reason ---------------------------------------------------------------------------------


def test_the_reason_names_the_topic_the_cause_and_what_is_done() -> None:
    topic = "aqara/lumi1.54ef44d1e6a0/1/Output/OnOff"
    assert reason_text(p(topic), Rule("dot")) == (
        "the broker closed the connection right after a publish to "
        "'aqara/lumi1.54ef44d1e6a0/1/Output/OnOff'; it probably does not allow '.' in topics "
        "(NATS does not; set mqtt.topic_style: portable); topics containing '.' are no longer "
        "published")


def test_the_reasons_of_the_other_rules() -> None:
    big = reason_text(p("aqara/doc", 3 << 20), Rule("payload"))
    assert "a publish of 3.0 MiB to 'aqara/doc'" in big
    assert "NATS: max_payload, 1 MB by default" in big
    assert big.endswith("payloads larger than 1 MiB are no longer published")
    exact = reason_text(p("aqara/x"), Rule("topic", "aqara/x"))
    assert exact.endswith("it probably refuses this topic (an ACL, or a name it reserves?); "
                          "'aqara/x' is no longer published")
    sub = reason_text(f("a.b/#"), Rule("dot"))
    assert "right after a subscription to 'a.b/#'" in sub
    assert sub.endswith("filters containing '.' are no longer subscribed")
    assert reason_text(f("cmd/#"), Rule("topic", "cmd/#")).endswith(
        "'cmd/#' is no longer subscribed")
    told = reason_text(p("a b"), Rule("whitespace"), said=0x90)
    assert "(its DISCONNECT said: Topic Name invalid)" in told
    assert "a publish of 2.0 KiB" in reason_text(p("t", 2048), Rule("topic", "t"), said=0x95)
    assert "a publish of 12 bytes" in reason_text(p("t", 12), Rule("topic", "t"), said=0x95)
    for key in ("wildcard", "non-ascii", "levels", "length"):
        assert "it probably " in reason_text(p("t"), Rule(key))


# ---- the blocker --------------------------------------------------------------------------------

DOTTED = "aqara/lumi1.54ef44d1e6a0/1/Output/OnOff"
STATE = "aqara/bridge/state"


def test_one_drop_is_only_a_suspicion() -> None:
    blocker = Blocker(STATE)
    verdict = blocker.drop([p(DOTTED)], stable=False)
    assert verdict.kind == "suspect"
    assert verdict.rule == Rule("dot")
    assert not blocker
    assert not blocker.blocks_topic(DOTTED)


def test_the_same_suspect_at_the_next_short_connection_is_blocked() -> None:
    blocker = Blocker(STATE)
    blocker.drop([p("plain/1"), p(DOTTED)], stable=True)
    verdict = blocker.drop([p("aqara/other.dot/x"), p("plain/2")], stable=False)
    assert verdict.kind == "blocked"
    assert verdict.packet == p("aqara/other.dot/x")
    assert blocker
    assert blocker.blocks_topic(DOTTED)
    assert blocker.blocks_topic("x.y/#")  # a filter too
    assert not blocker.blocks_topic("aqara/plain/1")
    [block] = blocker.blocks
    assert block.example == "aqara/other.dot/x"
    assert block.rule == Rule("dot")
    assert block.reason == verdict.reason


def test_a_drop_after_a_connection_that_lasted_does_not_confirm() -> None:
    # a broker restarted twice, a day apart, with a dotted topic in flight each time
    blocker = Blocker(STATE)
    blocker.drop([p(DOTTED)], stable=False)
    assert blocker.drop([p(DOTTED)], stable=True).kind == "suspect"
    assert not blocker
    assert blocker.drop([p(DOTTED)], stable=False).kind == "blocked"  # then it repeats quickly


def test_a_different_suspect_or_a_clean_drop_starts_over() -> None:
    blocker = Blocker(STATE)
    blocker.drop([p(DOTTED)], stable=False)
    assert blocker.drop([p("a b")], stable=False).kind == "suspect"
    assert blocker.drop([], stable=False).kind == "none"
    assert blocker.drop([p("c d")], stable=False).kind == "suspect"
    assert not blocker
    blocker.drop([p("plain/1")], stable=False)
    assert blocker.drop([p("plain/2")], stable=False).kind == "suspect"  # other exact topics


def test_an_exact_topic_is_blocked_when_it_repeats() -> None:
    blocker = Blocker(STATE)
    blocker.drop([p("aqara/refused"), p("aqara/next")], stable=False)
    verdict = blocker.drop([p("aqara/refused")], stable=False)
    assert verdict.kind == "blocked"
    assert verdict.rule == Rule("topic", "aqara/refused")
    assert blocker.blocks_topic("aqara/refused")
    assert not blocker.blocks_topic("aqara/next")


def test_a_broker_that_names_the_cause_is_believed_at_once() -> None:
    blocker = Blocker(STATE)
    verdict = blocker.drop([p("a b/c")], stable=True, said=0x90)
    assert verdict.kind == "blocked"
    assert "Topic Name invalid" in verdict.reason
    acl = Blocker(STATE)  # EMQX's deny_action = disconnect
    verdict = acl.drop([p("aqara/secret"), p("aqara/next")], stable=True, said=0x87)
    assert verdict.rule == Rule("topic", "aqara/secret")
    assert "(its DISCONNECT said: Not authorized)" in verdict.reason


def test_a_broker_that_handled_nothing_has_no_packet_to_blame() -> None:
    # it drops every client right after the CONNACK: the SUBSCRIBE and the first publishes are
    # always in flight, whatever they are
    blocker = Blocker(STATE)
    for _ in range(3):
        assert blocker.drop([f("cmd/#"), p(DOTTED)], stable=False, answered=False).kind == (
            "none")
        assert blocker.drop([f("cmd/#")], stable=False, answered=False).kind == "none"
    assert not blocker
    # but a filter with a feature, the first packet, is believed when it repeats
    blocker.drop([f("a.b/#"), f("cmd/#")], stable=False, answered=False)
    assert blocker.drop([f("a.b/#")], stable=False, answered=False).kind == "blocked"
    assert blocker.blocks_topic("x.y/#")
    # as is a broker that names the cause
    named = Blocker(STATE)
    assert named.drop([p("a b")], stable=False, said=0x90, answered=False).kind == "blocked"


def test_a_broker_that_gives_another_reason_was_not_dropping_a_packet() -> None:
    blocker = Blocker(STATE)
    for _ in range(3):  # "Session taken over": another client with our id
        assert blocker.drop([p(DOTTED)], stable=False, said=0x8E).kind == "none"
    assert blocker.drop([p(DOTTED)], stable=False, said=0x8B).kind == "none"  # shutting down
    assert not blocker


def test_the_state_topic_is_never_blocked() -> None:
    blocker = Blocker(STATE)
    blocker.drop([p(STATE)], stable=False)
    verdict = blocker.drop([p(STATE), p("plain")], stable=False)
    assert verdict.kind == "spared"
    assert verdict.first
    assert not blocker
    blocker.drop([p(STATE)], stable=False)
    again = blocker.drop([p(STATE)], stable=False)
    assert again.kind == "spared"
    assert not again.first  # said once


def test_a_rule_that_would_hit_the_state_topic_is_not_applied() -> None:
    blocker = Blocker("my.home/bridge/state")  # everything under the base has a '.'
    blocker.drop([p("my.home/dev/x")], stable=False)
    assert blocker.drop([p("my.home/dev/x")], stable=False).kind == "spared"
    assert not blocker.blocks_topic("my.home/dev/x")
    big = Blocker("my.home/bridge/state")  # a payload rule does not hit it
    assert big.drop([p("my.home/doc", MAX_PAYLOAD + 1)], stable=True, said=0x95).kind == (
        "blocked")


def test_blocked_packets_are_no_suspects_the_next_cause_is_found() -> None:
    blocker = Blocker(STATE)
    for _ in range(2):
        blocker.drop([p("a.b"), p("c d")], stable=False)
    assert blocker.blocks_topic("a.b")
    # packets of the blocked kind are never sent again; were one still reported, it is skipped
    blocker.drop([p("a.b"), p("c d")], stable=False)
    verdict = blocker.drop([p("c d"), p("e.f")], stable=False)
    assert verdict.kind == "blocked"
    assert verdict.rule == Rule("whitespace")
    assert [b.rule for b in blocker.blocks] == [Rule("dot"), Rule("whitespace")]


def test_blocks_are_bounded() -> None:
    blocker = Blocker(STATE)
    for n in range(MAX_BLOCKS):
        assert blocker.drop([p(f"t/{n}")], stable=True, said=0x90).kind == "blocked"
    verdict = blocker.drop([p("t/last")], stable=True, said=0x90)
    assert verdict.kind == "full"
    assert verdict.first
    assert not blocker.drop([p("t/last")], stable=True, said=0x90).first
    assert len(blocker.blocks) == MAX_BLOCKS
    assert not blocker.blocks_topic("t/last")


class NatsLike:
    """A broker model: handles a connection's packets in order, acknowledges each, and drops
    the connection at the first publish whose topic it refuses."""

    def __init__(self, refuses: str) -> None:
        self.refuses = refuses

    def unacknowledged(self, sent: list[Packet]) -> list[Packet]:
        for n, packet in enumerate(sent):
            if any(c in packet.topic for c in self.refuses):
                return sent[n:]
        return []


def test_a_nats_like_broker_converges_in_a_few_connections() -> None:
    broker = NatsLike(". ")
    blocker = Blocker(STATE)
    republish = [p(STATE), p("aqara/plain/1"), p("aqara/lumi.1/x"), p("aqara/plain/2"),
                 p("aqara/Living Room/y"), p("aqara/lumi.2/x"), p("aqara/plain/3")]
    connections = 0
    while True:
        connections += 1
        sent = [x for x in republish if not blocker.blocks_topic(x.topic, x.size)]
        lost = broker.unacknowledged(sent)
        if not lost:
            break
        blocker.drop(lost, stable=False)
        assert connections < 10, "no convergence"
    assert connections == 5  # two per cause, then one that lasts
    assert [b.rule for b in blocker.blocks] == [Rule("dot"), Rule("whitespace")]
    assert [b.example for b in blocker.blocks] == ["aqara/lumi.1/x", "aqara/Living Room/y"]
