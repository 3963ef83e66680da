"""The bridge's health in one word, from its hubs' connection states (pure, no IO).

| state | meaning |
|---|---|
| ``ok`` | every hub connected |
| ``starting`` | no hub has failed, at least one is still making its first connection |
| ``degraded`` | running, but a hub is not connected: ``auth_failed``, ``quota_exhausted``
  (a cloud's call quota is spent or its service expired: the backend waits before it calls
  again), ``unreachable`` or ``disconnected`` (lost, or a protocol error) |
| ``offline`` | the bridge is not connected to the broker (``bridge/state`` is ``offline``);
  only ``aqara-mqtt health`` reports it, the bridge cannot publish it |

``bridge/info`` carries ``health`` (state + one line per problem), ``aqara-mqtt health`` exits
with :data:`EXIT_CODES`, and systemd gets the same line as the unit's ``STATUS=``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

OK, STARTING, DEGRADED, OFFLINE = "ok", "starting", "degraded", "offline"

EXIT_CODES = {OK: 0, STARTING: 1, DEGRADED: 1, OFFLINE: 3}
"""``aqara-mqtt health`` exit codes (2 stays "bad config", as for every command)."""

NOT_STARTED = "not started"
"""A backend's ``detail`` before its first connection attempt ended (see ``Backend``)."""

QUOTA_PREFIXES = ("quota exhausted", "service expired")
"""How a cloud backend's ``detail`` starts when the cloud refuses for its call quota or an
expired plan (``quota exhausted: <what the cloud said> …; <what to do>``)."""


@dataclass(frozen=True, slots=True)
class HubHealth:
    """One hub; ``state`` is ``connected``, ``starting``, ``auth_failed``, ``quota_exhausted``,
    ``unreachable`` or ``disconnected``."""

    name: str
    state: str
    detail: str

    @property
    def problem(self) -> str:
        """``hub home: authentication failed: ...`` (the detail never holds secrets)."""
        return f"hub {self.name}: {self.detail}"


def hub_state(connected: bool, detail: str) -> str:
    """Classify a backend's ``connected``/``detail`` pair (as in ``bridge/info``)."""
    if connected:
        return "connected"
    text = detail.lower()
    if text == NOT_STARTED:
        return "starting"
    if text.startswith(("authentication failed", "permission denied")):
        return "auth_failed"
    if text.startswith(QUOTA_PREFIXES):
        return "quota_exhausted"
    if "unreachable" in text or text.startswith("cannot listen"):
        return "unreachable"
    return "disconnected"


@dataclass(frozen=True, slots=True)
class Health:
    """The bridge's overall state and each hub's."""

    state: str
    hubs: tuple[HubHealth, ...]

    @property
    def problems(self) -> list[str]:
        """One line per hub that is not connected."""
        return [hub.problem for hub in self.hubs if hub.state != "connected"]

    def line(self) -> str:
        """One line for people: ``ok: hub home connected`` / ``degraded: hub home: ...``."""
        if self.state == OK:
            names = ", ".join(hub.name for hub in self.hubs)
            return f"ok: {'hub' if len(self.hubs) == 1 else 'hubs'} {names} connected"
        if self.state == STARTING:
            waiting = ", ".join(h.name for h in self.hubs if h.state == "starting")
            return f"starting: connecting to hub {waiting}"
        return f"{self.state}: " + "; ".join(self.problems)

    def as_json(self) -> dict[str, Any]:
        """The ``health`` object of ``bridge/info``."""
        return {"state": self.state, "problems": self.problems,
                "hubs": {hub.name: hub.state for hub in self.hubs}}


def assess(backends: Iterable[Mapping[str, Any]]) -> Health:
    """Health from backend summaries (``{"name", "connected", "detail"}``, as in bridge/info)."""
    hubs = tuple(HubHealth(str(b["name"]), hub_state(bool(b["connected"]), str(b["detail"])),
                           str(b["detail"]))
                 for b in backends)
    states = {hub.state for hub in hubs}
    if states <= {"connected"}:
        return Health(OK, hubs)
    if states <= {"connected", "starting"}:
        return Health(STARTING, hubs)
    return Health(DEGRADED, hubs)


def from_info(info: Mapping[str, Any]) -> Health:
    """Health from a ``bridge/info`` document (what ``aqara-mqtt health`` reads)."""
    return assess(info.get("backends") or [])


def active_member(info: bytes) -> str | None:
    """The failover member a ``bridge/info`` document names active (None: none)."""
    try:
        document = json.loads(info) if info else None
    except ValueError:
        return None
    failover = document.get("failover") if isinstance(document, dict) else None
    member = failover.get("member") if isinstance(failover, dict) else None
    return member if isinstance(member, str) else None


def standby_health(member: str, standby: bytes | None, info: bytes) -> tuple[str, str] | None:
    """``aqara-mqtt health`` of a failover member that is not the active one: (state, line)
    from its retained ``bridge/standby/<member>``; None when it is the active member."""
    active = active_member(info)
    if active == member:
        return None
    try:
        document = json.loads(standby) if standby else None
    except ValueError:
        document = None
    named = f"active member {active}" if active else "no member is active"
    if not isinstance(document, dict):
        return OFFLINE, f"{OFFLINE}: member {member} is neither active nor standing by ({named})"
    if document.get("hub_reachable") is True:
        return OK, f"{OK} (standby): member {member} stands by; {named}"
    return DEGRADED, (f"{DEGRADED} (standby): member {member} stands by but cannot reach every "
                      f"hub; {named}")
