"""The health states from backend summaries (pure)."""

from __future__ import annotations

import pytest

from bridge.health import (
    DEGRADED,
    EXIT_CODES,
    OFFLINE,
    OK,
    STARTING,
    active_member,
    assess,
    from_info,
    hub_state,
    standby_health,
)


def hub(name: str, connected: bool, detail: str) -> dict[str, object]:
    return {"name": name, "type": "studio", "connected": connected, "detail": detail}


@pytest.mark.parametrize(("connected", "detail", "state"), [
    (True, "connected", "connected"),
    (False, "not started", "starting"),
    (False, "authentication failed: the hub refused the token (HTTP 401); get a new token",
     "auth_failed"),
    (False, "permission denied (code 1106): no access", "auth_failed"),
    (False, "hub unreachable: Connection refused", "unreachable"),
    (False, "the Aqara cloud is unreachable: timeout", "unreachable"),
    (False, "Tuya cloud unreachable: Cannot connect", "unreachable"),
    (False, "cannot listen for pushes on 0.0.0.0:8089: Address in use", "unreachable"),
    (False, "protocol error: WebSocket upgrade answered HTTP 500", "disconnected"),
    (False, "connection lost", "disconnected"),
    (False, "quota exhausted: No permissions. Your quota of Trial Edition is used up. (code "
     "28841004): …; buy a resource pack at iot.tuya.com", "quota_exhausted"),
    (False, "service expired: No permissions. Your subscription to cloud development plan has "
     "expired. (code 28841002): …; renew the trial", "quota_exhausted"),
    (False, "Quota exhausted: The API calls of this month exceed the quota (code 2600)",
     "quota_exhausted"),
    (False, "Tuya cloud error: the quota word later in the line (code 1)", "disconnected"),
])
def test_hub_states(connected: bool, detail: str, state: str) -> None:
    assert hub_state(connected, detail) == state


def test_every_hub_connected_is_ok() -> None:
    health = assess([hub("home", True, "connected"), hub("cloud", True, "connected")])
    assert health.state == OK
    assert health.line() == "ok: hubs home, cloud connected"
    assert health.as_json() == {"state": "ok", "problems": [],
                                "hubs": {"home": "connected", "cloud": "connected"}}


def test_a_hub_still_connecting_is_starting() -> None:
    health = assess([hub("home", True, "connected"), hub("cloud", False, "not started")])
    assert health.state == STARTING
    assert health.line() == "starting: connecting to hub cloud"


def test_one_failed_hub_degrades_and_is_named() -> None:
    health = assess([
        hub("home", False, "authentication failed: the hub refused the token (HTTP 401)"),
        hub("cloud", False, "not started"),
        hub("tuya", True, "connected"),
    ])
    assert health.state == DEGRADED
    assert health.problems == [
        "hub home: authentication failed: the hub refused the token (HTTP 401)",
        "hub cloud: not started"]
    assert health.line().startswith("degraded: hub home: authentication failed")
    assert health.as_json()["hubs"] == {"home": "auth_failed", "cloud": "starting",
                                        "tuya": "connected"}


def test_from_bridge_info() -> None:
    info = {"version": "0", "backends": [hub("home", False, "hub unreachable: timeout")]}
    assert from_info(info).line() == "degraded: hub home: hub unreachable: timeout"


def test_exit_codes_tell_the_states_apart() -> None:
    assert EXIT_CODES == {OK: 0, STARTING: 1, DEGRADED: 1, OFFLINE: 3}


# ---- failover members ----------------------------------------------------------------------------

INFO_A = b'{"failover": {"member": "a", "generation": 3}}'


def test_the_active_member_gets_the_usual_health() -> None:
    assert active_member(INFO_A) == "a"
    assert active_member(b"") is None
    assert active_member(b"not json") is None
    assert standby_health("a", None, INFO_A) is None


def test_a_standby_reports_ok_standby_or_degraded_or_offline() -> None:
    reach = b'{"member": "b", "role": "standby", "hub_reachable": true}'
    blind = b'{"member": "b", "role": "standby", "hub_reachable": false}'
    assert standby_health("b", reach, INFO_A) == (
        OK, "ok (standby): member b stands by; active member a")
    assert standby_health("b", blind, INFO_A) == (
        DEGRADED, "degraded (standby): member b stands by but cannot reach every hub; "
        "active member a")
    assert standby_health("b", b"offline", b"") == (
        OFFLINE, "offline: member b is neither active nor standing by (no member is active)")


def test_a_spent_quota_is_its_own_kind_of_degraded() -> None:
    detail = ("quota exhausted: No permissions. Your quota of Trial Edition is used up. (code "
              "28841004): the Trial Edition's API call quota is used up; the bridge makes no "
              "call for 15 min, then tries once")
    health = assess([hub("home", True, "connected"),
                     {"name": "tuya", "type": "tuya", "connected": False, "detail": detail}])
    assert health.state == DEGRADED
    assert EXIT_CODES[health.state] == 1
    assert health.as_json()["hubs"] == {"home": "connected", "tuya": "quota_exhausted"}
    assert health.problems == [f"hub tuya: {detail}"]
    assert health.line() == f"degraded: hub tuya: {detail}"
