"""The failover lease, driven by hand: when standbys claim, when actives may act and step down."""

from __future__ import annotations

import pytest

from bridge.lease import (
    HELD,
    RELEASED,
    ActiveLease,
    LeaseRecord,
    Phase,
    StandbyWatch,
    Timing,
    parse_lease,
)

TIMING = Timing.from_keepalive(4)  # term 6, renew 1, grace 1, settle 1, will_wait 1.5
HOLDER = LeaseRecord("a", 3, HELD, 10)


def watching(record: LeaseRecord | None = HOLDER, at: float = 0.0) -> StandbyWatch:
    watch = StandbyWatch("b", TIMING)
    watch.connected(at)
    watch.learned_retained(record, at)
    return watch


def active(expected: LeaseRecord | None = HOLDER, at: float = 0.0) -> ActiveLease:
    """A lease claimed, echoed, acknowledged and settled at ``at`` + settle."""
    lease = ActiveLease("b", TIMING, expected)
    claim = lease.on_connect(expected, at)
    assert claim is not None
    lease.acknowledged(at)
    lease.observe(claim, at)
    assert lease.tick(at + TIMING.settle) is not None  # the first renewal, at once
    lease.acknowledged(at + TIMING.settle)
    return lease


# ---- the record --------------------------------------------------------------------------

def test_a_record_round_trips_through_its_payload() -> None:
    record = LeaseRecord("pi-a", 7, RELEASED, 3, "pi-b")
    assert parse_lease(record.encode()) == record
    assert parse_lease(HOLDER.encode()) == HOLDER


@pytest.mark.parametrize("payload", [
    b"", b"null", b"[]", b"{}", b"not json", b'{"member": "", "generation": 1}',
    b'{"member": "a", "generation": 0}', b'{"member": "a", "generation": true}',
    b'{"member": "a", "generation": 1.5}', b'{"member": "a", "generation": 1, "state": "x"}',
    b'{"member": 5, "generation": 1}', b'{"member": "a", "generation": 1, "renewal": "2"}',
])
def test_anything_else_is_no_record(payload: bytes) -> None:
    assert parse_lease(payload) is None


def test_the_higher_generation_wins_and_of_equal_ones_the_higher_member() -> None:
    assert LeaseRecord("a", 4).key > LeaseRecord("z", 3).key
    assert LeaseRecord("b", 4).key > LeaseRecord("a", 4).key


def test_the_term_is_the_brokers_timeout_for_a_silent_connection() -> None:
    assert TIMING.term == 6.0
    assert TIMING.takeover_bound == 7.0


# ---- a standby ---------------------------------------------------------------------------

def test_nothing_is_claimed_before_the_retained_record_is_known() -> None:
    watch = StandbyWatch("b", TIMING)
    watch.connected(0)
    assert watch.claim_reason(100) is None


def test_an_empty_lease_topic_is_claimed_at_once_with_generation_one() -> None:
    watch = watching(None)
    assert watch.claim_reason(0) == "no member holds the lease"
    assert watch.next_generation() == 1


def test_a_released_lease_is_claimed_at_once() -> None:
    watch = watching(LeaseRecord("a", 3, RELEASED, 11))
    assert watch.claim_reason(0) == "member a released the lease"
    assert watch.next_generation() == 4


def test_a_lease_handed_to_this_member_is_claimed_at_once() -> None:
    assert watching(LeaseRecord("a", 3, RELEASED, 11, "b")).claim_reason(0) is not None


def test_a_lease_handed_to_another_member_waits_for_it_and_then_is_claimed() -> None:
    watch = watching(LeaseRecord("a", 3, RELEASED, 11, "c"))
    assert watch.claim_reason(6.9) is None
    reason = watch.claim_reason(7.0)
    assert reason is not None
    assert "c, which did not take over" in reason


def test_a_lease_this_member_held_before_a_restart_is_claimed_at_once() -> None:
    assert watching(LeaseRecord("b", 3)).claim_reason(0) == (
        "this member held the lease before it restarted")


def test_a_member_back_from_an_active_phase_waits_its_own_record_out_like_any_other() -> None:
    watch = StandbyWatch("b", TIMING)
    watch.restarted = False
    watch.connected(0)
    watch.learned_retained(LeaseRecord("b", 3), 0)
    assert watch.claim_reason(6.9) is None
    assert watch.claim_reason(7.0) == "member b did not renew the lease for 7 s"


def test_a_renewing_holder_keeps_the_lease() -> None:
    watch = watching()
    for second in range(1, 30):
        watch.observe(LeaseRecord("a", 3, HELD, 10 + second), float(second))
        assert watch.claim_reason(second + 0.99) is None


def test_a_silent_holder_loses_the_lease_after_term_and_grace() -> None:
    watch = watching(at=0)
    watch.observe(LeaseRecord("a", 3, HELD, 11), 2.0)
    assert watch.claim_reason(8.99) is None
    reason = watch.claim_reason(9.0)
    assert reason == "member a did not renew the lease for 7 s"
    assert watch.next_generation() == 4


def test_silence_counts_only_while_this_standby_is_connected() -> None:
    watch = watching(at=0)
    watch.disconnected()
    assert watch.claim_reason(50) is None
    watch.connected(50)
    assert watch.claim_reason(60) is None  # not learned yet on this connection
    watch.learned_retained(HOLDER, 50.5)
    assert watch.claim_reason(56.9) is None
    assert watch.claim_reason(57.0) is not None


def test_the_holders_will_shortens_the_wait() -> None:
    watch = watching(at=0)
    watch.will(1.0)
    assert watch.claim_reason(2.49) is None
    assert watch.claim_reason(2.5) == "the connection of member a was lost (its will arrived)"


def test_a_renewal_after_the_will_cancels_it_a_restarted_holder_or_a_late_will() -> None:
    watch = watching(at=0)
    watch.will(1.0)
    watch.observe(LeaseRecord("a", 3, HELD, 11), 1.2)
    assert watch.claim_reason(3.0) is None
    assert watch.claim_reason(8.25) is not None  # silence again counts from the renewal


def test_an_old_record_delivered_late_changes_nothing() -> None:
    watch = watching(LeaseRecord("c", 5, HELD, 1))
    watch.observe(LeaseRecord("a", 4, RELEASED, 3), 1.0)
    assert watch.record == LeaseRecord("c", 5, HELD, 1)
    assert watch.claim_reason(1.0) is None


def test_a_live_renewal_under_this_members_name_is_a_twin_that_never_claims() -> None:
    watch = watching(LeaseRecord("b", 3))
    watch.observe(LeaseRecord("b", 3, HELD, 11), 0.5, live=True)
    assert watch.twin
    assert watch.claim_reason(100) is None


def test_a_retained_record_under_this_members_name_is_a_restart_not_a_twin() -> None:
    watch = watching(LeaseRecord("b", 3))
    assert not watch.twin
    assert watch.claim_reason(0) is not None


# ---- a claimant and an active member -----------------------------------------------------

def test_a_claim_takes_the_next_generation_and_acts_only_after_its_echo_and_the_settle() -> None:
    lease = ActiveLease("b", TIMING, HOLDER)
    claim = lease.on_connect(HOLDER, 0)
    assert claim == LeaseRecord("b", 4, HELD, 0)
    lease.acknowledged(0)
    assert not lease.may_act(0.5)
    lease.observe(claim, 0.1)
    assert lease.phase is Phase.SETTLING
    assert lease.tick(1.0) is None
    assert not lease.may_act(1.0)
    renewal = lease.tick(1.1)
    assert renewal == LeaseRecord("b", 4, HELD, 1)
    assert lease.may_act(1.1)
    assert lease.active_since == 1.1


def test_a_claim_is_not_made_when_the_lease_changed_since_the_standby_looked() -> None:
    lease = ActiveLease("b", TIMING, HOLDER)
    assert lease.on_connect(LeaseRecord("a", 3, HELD, 11), 0) is None
    assert lease.phase is Phase.ENDED
    assert (lease.end_reason or "").startswith("the lease changed while this member prepared")


def test_a_competing_higher_claim_during_the_settle_wins() -> None:
    lease = ActiveLease("b", TIMING, HOLDER)
    claim = lease.on_connect(HOLDER, 0)
    assert claim is not None
    lease.observe(claim, 0.1)
    lease.observe(LeaseRecord("c", 4), 0.2)
    assert lease.phase is Phase.ENDED
    assert not lease.may_act(5)
    assert lease.replaced_by == LeaseRecord("c", 4)


def test_a_lower_competing_claim_is_ignored() -> None:
    lease = active()
    lease.observe(LeaseRecord("a", 4), 1.5)
    assert lease.may_act(1.5)


def test_a_claim_that_never_comes_back_is_given_up() -> None:
    lease = ActiveLease("b", TIMING, None)
    assert lease.on_connect(None, 0) is not None
    assert lease.tick(5.9) is None
    assert lease.end_reason is None
    lease.tick(6.0)
    assert lease.end_reason == "the claim did not come back from the broker within 6 s"


def test_a_claimant_the_broker_never_lets_claim_gives_up_after_two_terms() -> None:
    lease = ActiveLease("b", TIMING, HOLDER)
    lease.disconnected(0)  # connecting; the guard's round never ends (a stalled cluster)
    assert lease.tick(11.9) is None
    assert lease.end_reason is None
    lease.tick(12.0)
    assert lease.end_reason == "the broker did not let this member claim the lease within 12 s"


def test_an_active_renews_every_period_and_stays_valid_while_the_broker_acknowledges() -> None:
    lease = active()
    now = TIMING.settle
    for _ in range(20):
        now += TIMING.renew
        renewal = lease.tick(now)
        assert renewal is not None
        lease.acknowledged(now)
        assert lease.may_act(now + 0.5)


def test_an_active_whose_renewals_are_not_acknowledged_stops_acting_after_the_term() -> None:
    lease = active()
    for second in range(2, 7):
        lease.tick(float(second))  # renewals handed to the link, never acknowledged
    assert lease.may_act(6.99)
    assert not lease.may_act(7.0)  # last acknowledged renewal at 1.0, + term 6
    lease.tick(7.0)
    assert lease.phase is Phase.ENDED
    assert "not renewed for 6 s" in (lease.end_reason or "")


def test_a_paused_process_sees_its_lease_ran_out_before_it_acts() -> None:
    """SIGSTOP at 1.5, SIGCONT at 30: the clock moved on; the first check says no."""
    lease = active()
    assert lease.may_act(1.5)
    assert not lease.may_act(30.0)


def test_a_disconnected_active_does_not_act_until_the_broker_says_the_lease_is_still_its() -> None:
    lease = active()
    lease.disconnected()
    assert not lease.may_act(2.0)
    assert lease.tick(2.0) is None  # no renewal while down
    renewal = lease.on_connect(LeaseRecord("b", 4, HELD, 1), 2.5)
    assert renewal == LeaseRecord("b", 4, HELD, 2)
    assert lease.may_act(2.5)


def test_a_reconnected_active_that_was_replaced_steps_down_without_acting() -> None:
    lease = active()
    lease.disconnected()
    assert lease.on_connect(LeaseRecord("a", 5), 20.0) is None
    assert lease.phase is Phase.ENDED
    assert not lease.may_act(20.0)
    assert lease.end_reason == "replaced by member a (generation 5)"


def test_a_live_higher_record_replaces_an_active_at_once() -> None:
    lease = active()
    lease.observe(LeaseRecord("a", 5), 2.0)
    assert not lease.may_act(2.0)


def test_its_own_echo_and_older_records_change_nothing() -> None:
    lease = active()
    lease.observe(LeaseRecord("b", 4, HELD, 1), 1.5)
    lease.observe(HOLDER, 1.5)
    assert lease.may_act(1.5)


def test_a_claim_lost_with_its_connection_is_sent_again_or_taken_as_echoed() -> None:
    lease = ActiveLease("b", TIMING, HOLDER)
    claim = lease.on_connect(HOLDER, 0)
    lease.disconnected()
    assert lease.on_connect(HOLDER, 0.5) == claim  # the broker never got it
    lease.disconnected()
    assert lease.on_connect(claim, 0.6) is None  # the broker holds it: its echo
    assert lease.phase is Phase.SETTLING


def test_a_claim_whose_lease_changed_meanwhile_is_not_sent_again() -> None:
    lease = ActiveLease("b", TIMING, HOLDER)
    lease.on_connect(HOLDER, 0)
    lease.disconnected()
    assert lease.on_connect(LeaseRecord("a", 4), 0.5) is None  # a lower claim of the same turn
    assert lease.phase is Phase.ENDED


def test_a_release_ends_the_lease_and_names_the_successor() -> None:
    lease = active()
    record = lease.release("c")
    assert record == LeaseRecord("b", 4, RELEASED, 2, "c")
    assert lease.phase is Phase.ENDED
    assert not lease.may_act(1.5)
    assert lease.end_reason == "handed over to c"
