"""The call budget counter, the quota gate and the quota code tables (pure, with a fake clock)."""

from __future__ import annotations

import pytest

from bridge.backends.aqara_cloud.client import call_kind as aqara_kind
from bridge.backends.call_budget import (
    BUCKETS,
    CLOSED,
    MAX_KINDS,
    OPEN,
    QUOTA_BACKOFF_S,
    RETRYING,
    TUYA_PERMISSION_CODES,
    TUYA_QUOTA_CODES,
    CallBudget,
    QuotaGate,
    aqara_quota_detail,
    aqara_quota_reason,
    retry_text,
    tuya_quota_detail,
)
from bridge.backends.tuya.client import call_kind as tuya_kind
from bridge.health import QUOTA_PREFIXES, hub_state
from bridge.secrets import redact_obj


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---- CallBudget ----------------------------------------------------------------------------------


def test_counts_by_kind_within_the_hour() -> None:
    clock = Clock()
    budget = CallBudget(clock=clock)
    budget.record("poll")
    budget.record("poll")
    budget.record("command")
    clock.now += 1800
    budget.record("poll", 3)
    assert budget.per_hour() == {"poll": 5, "command": 1}
    assert list(budget.per_hour()) == ["poll", "command"]  # largest first
    assert budget.total() == 6
    assert budget.as_json() == {"window_s": 3600, "total": 6,
                                "by_kind": {"poll": 5, "command": 1},
                                "since_start": {"poll": 5, "command": 1}}


def test_calls_older_than_the_hour_drop_out_minute_by_minute() -> None:
    clock = Clock(0.0)
    budget = CallBudget(clock=clock)
    budget.record("login")  # minute 0
    clock.now = 59 * 60.0
    budget.record("poll")  # minute 59
    assert budget.per_hour() == {"login": 1, "poll": 1}
    clock.now = 3599.0  # still minute 59: the token call is 59 min 59 s old
    assert budget.per_hour() == {"login": 1, "poll": 1}
    clock.now = 3600.0  # minute 60: minute 0 left the window
    assert budget.per_hour() == {"poll": 1}
    clock.now = 2 * 3600.0
    assert budget.per_hour() == {}
    assert budget.total() == 0
    assert budget.as_json()["since_start"] == {"login": 1, "poll": 1}  # forever


def test_memory_is_bounded_however_many_calls_and_kinds() -> None:
    clock = Clock(0.0)
    budget = CallBudget(clock=clock)
    for second in range(0, 3 * 3600, 7):  # three hours of calls, many kinds
        clock.now = float(second)
        budget.record(f"kind{second % 50}")
    assert len(budget._buckets) <= BUCKETS
    assert all(len(counts) <= MAX_KINDS + 1 for _, counts in budget._buckets)
    assert len(budget.since_start) <= MAX_KINDS + 1
    assert "other" in budget.since_start  # kinds beyond MAX_KINDS share one entry
    assert sum(budget.since_start.values()) == len(range(0, 3 * 3600, 7))
    # the last hour holds about an hour of them (whole minutes)
    assert abs(budget.total() - 3600 / 7) <= 60 / 7 + 1


def test_a_clock_stepping_back_never_loses_a_count() -> None:
    clock = Clock(600.0)
    budget = CallBudget(clock=clock)
    budget.record("poll")
    clock.now = 500.0
    budget.record("poll")
    assert budget.since_start["poll"] == 2
    clock.now = 600.0
    assert budget.per_hour() == {"poll": 2}


def test_nothing_to_count_and_bad_windows() -> None:
    budget = CallBudget(clock=Clock())
    budget.record("poll", 0)
    assert budget.per_hour() == {}
    with pytest.raises(ValueError, match="positive"):
        CallBudget(window=0)


# ---- QuotaGate ----------------------------------------------------------------------------------


def test_gate_is_open_until_the_cloud_says_quota() -> None:
    gate = QuotaGate(clock=Clock())
    assert (gate.state, gate.closed, gate.admit(), gate.remaining()) == (OPEN, False, True, 0.0)
    assert gate.as_json() == {"state": "open", "code": None, "retry_at": None}


def test_closed_for_the_backoff_then_exactly_one_try() -> None:
    clock = Clock(100.0)
    gate = QuotaGate(backoff=900.0, clock=clock, wall=lambda: 1_700_000_000.0)
    assert gate.trip("quota exhausted: used up", 28841004) == 900.0
    assert (gate.closed, gate.state) == (True, CLOSED)
    assert gate.as_json() == {"state": "closed", "code": 28841004, "retry_at": 1_700_000_900}
    assert not gate.admit()
    assert not gate.admit(consume=False)  # not even a token call
    clock.now += 899.0
    assert gate.remaining() == pytest.approx(1.0)
    assert not gate.admit()
    clock.now += 1.0
    assert gate.admit(consume=False)  # a token call on the way does not use the try
    assert gate.state == CLOSED
    assert gate.admit()  # the one try
    assert gate.state == RETRYING
    assert not gate.admit()  # everybody else waits for its answer
    assert gate.admit(consume=False)
    gate.trip("quota exhausted: still", 28841004)  # refused again: another back-off
    assert (gate.state, gate.trips, gate.remaining()) == (CLOSED, 2, 900.0)
    clock.now += 900.0
    assert gate.admit()
    gate.clear()  # the try was answered: calls go out again
    assert (gate.state, gate.reason, gate.code, gate.retry_at) == (OPEN, "", None, None)
    assert [gate.admit(), gate.admit()] == [True, True]


def test_a_long_retry_after_wins_over_the_backoff() -> None:
    clock = Clock()
    gate = QuotaGate(backoff=900.0, clock=clock)
    assert gate.trip("quota exhausted: month", 429, retry_after=86400.0) == 86400.0
    assert gate.remaining() == 86400.0
    assert gate.trip("quota exhausted: month", 429, retry_after=5.0) == 900.0
    assert QuotaGate().backoff == QUOTA_BACKOFF_S == 900.0


# ---- the codes and the texts -------------------------------------------------------------------


def test_tuya_quota_and_expiry_codes() -> None:
    assert set(TUYA_QUOTA_CODES) == {28841001, 28841002, 28841003, 28841004,
                                     28841102, 28841103, 28841104}
    assert not set(TUYA_QUOTA_CODES) & set(TUYA_PERMISSION_CODES)
    assert set(TUYA_PERMISSION_CODES) == {28841101, 28841105, 28841106}
    assert {entry.prefix for entry in TUYA_QUOTA_CODES.values()} == set(QUOTA_PREFIXES)
    assert TUYA_QUOTA_CODES[28841004].prefix == "quota exhausted"
    assert TUYA_QUOTA_CODES[28841002].prefix == "service expired"


def test_tuya_detail_says_what_the_cloud_said_and_what_to_do() -> None:
    detail = tuya_quota_detail(28841004, "No permissions. Your quota of Trial Edition is used up.")
    assert detail.startswith("quota exhausted: No permissions. Your quota of Trial Edition is "
                             "used up. (code 28841004): ")
    assert "buy a resource pack at iot.tuya.com" in detail
    assert detail.endswith("the bridge makes no call for 15 min, then tries once")
    expired = tuya_quota_detail(28841002, "No permissions. Your subscription to cloud "
                                          "development plan has expired.", backoff=60)
    assert expired.startswith("service expired: ")
    assert "renew the trial" in expired
    assert expired.endswith("no call for 1 min, then tries once")
    assert [hub_state(False, d) for d in (detail, expired)] == ["quota_exhausted"] * 2


def test_retry_texts() -> None:
    assert retry_text(900) == "the bridge makes no call for 15 min, then tries once"
    assert retry_text(1.5) == "the bridge makes no call for 1.5 s, then tries once"
    assert retry_text(86400) == "the bridge makes no call for 24 h, then tries once"


@pytest.mark.parametrize(("code", "message", "quota"), [
    (2600, "The API calls of this month exceed the quota of your plan", True),
    (429, "Too many requests: the monthly API call quota is used up", True),
    (7001, "Your service is suspended: the account is in arrears", True),
    (7002, "API calls used up", True),
    (429, "Too many requests", False),  # a rate window, not a quota
    (104, "Server busy", False),
    (429, "Request frequency exceeds the limit", False),
    (2005, "AccessToken expired", False),
    (105, "Data package has expired", False),
    (2007, "RefreshToken expired: quota", False),  # exempt whatever it says
    (0, "Success", False),
])
def test_aqara_quota_is_recognised_by_its_text(code: int, message: str, quota: bool) -> None:
    assert aqara_quota_reason(code, message, exempt=frozenset({105, 2005, 2007})) is quota


def test_aqara_detail() -> None:
    detail = aqara_quota_detail("The API calls of this month exceed the quota", 2600)
    assert detail.startswith("quota exhausted: The API calls of this month exceed the quota "
                             "(code 2600); ")
    assert "100,000 calls a month" in detail
    assert "developer.aqara.com" in detail
    assert hub_state(False, detail) == "quota_exhausted"


def test_every_kind_of_call_is_named_and_shown_unmasked() -> None:
    """bridge/info masks the values of secret-looking keys (``token``, ``auth`` …): no kind of
    call may be named so, or its count would show as ``***``."""
    tuya = {tuya_kind(method, path) for method, path in [
        ("GET", "/v1.0/token"), ("GET", "/v1.0/token/abc"),
        ("GET", "/v1.0/users/u1/devices"), ("GET", "/v1.0/users/u1/homes"),
        ("GET", "/v1.0/homes/1/rooms"), ("GET", "/v1.0/homes/1/rooms/2/devices"),
        ("GET", "/v1.0/homes/1/devices"), ("GET", "/v1.0/devices/d1/status"),
        ("POST", "/v1.0/devices/d1/commands"),
        ("GET", "/v1.0/iot-03/devices/d1/specification"),
        ("GET", "/v1.0/iot-03/devices/d1/functions"),
        ("GET", "/v1.0/devices/d1/specifications"), ("GET", "/v2.0/cloud/other"),
    ]}
    assert tuya == {"login", "device_list", "homes", "status", "command", "spec", "other"}
    aqara = {aqara_kind(intent, background) for intent, background in [
        ("config.auth.refreshToken", False), ("query.device.info", False),
        ("spec.query.specdevice.config", False), ("spec.query.qlinkmodel.config", False),
        ("spec.config.trait.subscribe", False), ("spec.config.trait.unsubscribe", False),
        ("spec.query.trait", True), ("spec.query.trait", False), ("spec.write.trait", False),
        ("config.scene.run", False),
    ]}
    assert aqara == {"login", "device_list", "spec", "subscription", "poll", "values",
                     "command", "other"}
    budget = CallBudget(clock=Clock())
    for kind in tuya | aqara | {"poll", "management", "read"}:  # the kinds passed explicitly
        budget.record(kind)
    document = {"call_budget": budget.as_json(), "quota": QuotaGate().as_json()}
    assert redact_obj(document) == document
