"""The cloud call budget (sans-IO): what a cloud backend spends, and the door the cloud closes.

Cloud accounts are billed or capped by API calls (Tuya's Trial Edition: a monthly resource pack;
the Aqara Open API's free tier: 300 calls per 5 minutes, 100,000 a month). Two small pieces, no
IO and no clock of their own (both take ``now``; the defaults read ``time.monotonic``):

* :class:`CallBudget` counts calls by kind (``login``, ``device_list``, ``poll``, ``command`` …)
  in a sliding hour: one bucket per minute, at most 60 buckets, each holding at most
  :data:`MAX_KINDS` kinds, so memory is bounded however many calls are made. ``per_hour()`` is
  the count of the last 60 minutes, whole minutes (the current minute counts from its start:
  at most one minute more than an exact hour).
* :class:`QuotaGate` is the state after the cloud said the quota is spent or the service
  expired: closed for ``backoff`` seconds (or the cloud's ``Retry-After`` when longer), then
  exactly one call is let through (``retrying``); its answer opens the gate (:meth:`clear`) or
  closes it again (:meth:`trip`). While closed nothing goes to the cloud: the backend answers
  every caller with the reason instead.

The quota codes of each cloud, and the text a user sees, are in :data:`TUYA_QUOTA_CODES` and
:func:`tuya_quota_detail` (Tuya) and :func:`aqara_quota_reason` (Aqara, INFERRED).
"""

from __future__ import annotations

import re
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.health import QUOTA_PREFIXES

WINDOW_S = 3600.0
"""The budget window: one hour."""
BUCKETS = 60
"""Minute buckets per window."""
MAX_KINDS = 32
"""Distinct kinds counted; any further kind is counted as ``other``."""
QUOTA_BACKOFF_S = 900.0
"""After a quota answer: no call for 15 minutes, then one."""
QUOTA, EXPIRED = QUOTA_PREFIXES
"""``quota exhausted`` / ``service expired``: how the detail starts (health reads it)."""


class CallBudget:
    """Calls per kind in a sliding hour (bounded memory: minute buckets), and since start."""

    def __init__(self, window: float = WINDOW_S, buckets: int = BUCKETS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if window <= 0 or buckets <= 0:
            raise ValueError("window and buckets must be positive")
        self.window = window
        self.width = window / buckets
        self._clock = clock
        self._buckets: deque[tuple[int, Counter[str]]] = deque(maxlen=buckets)
        self.since_start: Counter[str] = Counter()

    def _kind(self, kind: str) -> str:
        if kind in self.since_start or len(self.since_start) < MAX_KINDS:
            return kind
        return "other"

    def record(self, kind: str, count: int = 1, now: float | None = None) -> None:
        """Count ``count`` calls of ``kind`` made now."""
        if count <= 0:
            return
        now = self._clock() if now is None else now
        index = int(now // self.width)
        kind = self._kind(kind)
        if not self._buckets or self._buckets[-1][0] < index:
            self._buckets.append((index, Counter()))
        self._buckets[-1][1][kind] += count  # a clock that stepped back counts in the newest
        self.since_start[kind] += count

    def per_hour(self, now: float | None = None) -> dict[str, int]:
        """Calls of the last window by kind (kinds with none left out), largest first."""
        now = self._clock() if now is None else now
        oldest = int(now // self.width) - (self._buckets.maxlen or 0) + 1
        total: Counter[str] = Counter()
        for index, counts in self._buckets:
            if index >= oldest:
                total.update(counts)
        return dict(total.most_common())

    def total(self, now: float | None = None) -> int:
        """Calls of the last window, all kinds."""
        return sum(self.per_hour(now).values())

    def as_json(self, now: float | None = None) -> dict[str, Any]:
        """``{"window_s", "total", "by_kind", "since_start"}`` for ``bridge/info``."""
        last = self.per_hour(now)
        return {"window_s": int(self.window), "total": sum(last.values()), "by_kind": last,
                "since_start": dict(self.since_start.most_common())}


OPEN, CLOSED, RETRYING = "open", "closed", "retrying"


class QuotaGate:
    """No cloud call while the quota is spent: closed for ``backoff`` s, then one try.

    ``admit()`` before every call: True when the call may go out (always while open; once when
    the back-off is over, which turns the state to ``retrying``). After the call: :meth:`trip`
    when the cloud answered with a quota code again, else :meth:`clear`.
    """

    def __init__(self, backoff: float = QUOTA_BACKOFF_S,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.backoff = backoff
        self._clock = clock
        self._wall = wall
        self.state = OPEN
        self.reason = ""
        """The user's text (``quota exhausted: …``) while not open."""
        self.code: int | str | None = None
        self.until = 0.0
        """Monotonic time the back-off ends."""
        self.retry_at: float | None = None
        """Wall-clock time (epoch s) of the next try, for people."""
        self.trips = 0

    @property
    def closed(self) -> bool:
        """True from the first quota answer until a call succeeds again."""
        return self.state != OPEN

    def trip(self, reason: str, code: int | str | None = None,
             retry_after: float | None = None, now: float | None = None) -> float:
        """The cloud refused for quota: close for the back-off (or ``retry_after``, if longer);
        returns the seconds to wait."""
        now = self._clock() if now is None else now
        wait = max(self.backoff, retry_after or 0.0)
        self.state = CLOSED
        self.reason = reason
        self.code = code
        self.until = now + wait
        self.retry_at = self._wall() + wait
        self.trips += 1
        return wait

    def remaining(self, now: float | None = None) -> float:
        """Seconds until the next try (0 when open or due)."""
        if self.state != CLOSED:
            return 0.0
        now = self._clock() if now is None else now
        return max(self.until - now, 0.0)

    def admit(self, now: float | None = None, *, consume: bool = True) -> bool:
        """May a call go out now? Once the back-off is over, the one call that consumes the
        try turns the state to ``retrying`` and later ones wait for its answer; a call that
        does not consume it (a token call made on the way) may go whenever the back-off is
        over."""
        if self.state == OPEN:
            return True
        if self.remaining(now) > 0:
            return False
        if not consume:
            return True
        if self.state == CLOSED:
            self.state = RETRYING
            return True
        return False

    def clear(self) -> None:
        """A call was answered without a quota code: calls go out again."""
        if self.state != OPEN:
            self.state = OPEN
            self.reason = ""
            self.code = None
            self.retry_at = None

    def as_json(self) -> dict[str, Any]:
        """``{"state", "code", "retry_at"}`` for ``bridge/info`` (the reason is the detail)."""
        return {"state": self.state, "code": self.code,
                "retry_at": int(self.retry_at) if self.retry_at is not None else None}


# ---- Tuya ----------------------------------------------------------------------------------------

_TUYA_CONSOLE = "iot.tuya.com (Cloud > Cloud Services > IoT Core"


@dataclass(frozen=True, slots=True)
class QuotaCode:
    """One code of a cloud's table that closes the door, with what to tell the user."""

    prefix: str
    """How the detail starts (one of :data:`bridge.health.QUOTA_PREFIXES`)."""
    meaning: str
    advice: str


TUYA_QUOTA_CODES: Mapping[int, QuotaCode] = {
    # Sources: the codes and their texts as Tuya's cloud answers them, quoted in public issue
    # threads (3P): 28841002 "No permissions. Your subscription to cloud development plan has
    # expired." (jasonacox/tinytuya#475, #660; home-assistant.io PR #24683 documents it for
    # Tuya's own integration: "extend the trial period of Tuya IoT Core Service"), 28841004
    # "No permissions. Your quota of Trial Edition is used up." / "Please upgrade to the
    # official version: Your quota of Trial Edition is used up." (rospogrigio/localtuya#2079,
    # Xenomes/Domoticz-TinyTUYA-Plugin#114, EnzoD86/tuya-smart-ir-ac#98). The rest of the
    # 2884xxxx table (28841001/3, 28841102/3/4) as two independent public clients carry it;
    # Tuya's "Global Error Codes" page has an "IoT Core error codes" section that lists them,
    # which the stored copy does not let us read (so: 3P, not DOC).
    28841001: QuotaCode(EXPIRED, "the project has no cloud development plan (IoT Core)",
                        f"subscribe to the IoT Core service at {_TUYA_CONSOLE}) and authorise "
                        "the project for it"),
    28841002: QuotaCode(EXPIRED, "the IoT Core trial (cloud development plan) expired",
                        f"renew the trial (free) or buy a plan at {_TUYA_CONSOLE}), then "
                        "authorise the project again on its Service API tab"),
    28841003: QuotaCode(EXPIRED, "the cloud development plan has an unpaid bill",
                        f"pay the bill at {_TUYA_CONSOLE})"),
    28841004: QuotaCode(QUOTA, "the Trial Edition's API call quota is used up",
                        f"wait for the monthly refresh or buy a resource pack at "
                        f"{_TUYA_CONSOLE}); then lower the call rate (push on, a longer "
                        "poll_interval)"),
    28841102: QuotaCode(EXPIRED, "the subscription to this API expired",
                        f"renew it at {_TUYA_CONSOLE})"),
    28841103: QuotaCode(EXPIRED, "this API has an unpaid bill",
                        f"pay the bill at {_TUYA_CONSOLE})"),
    28841104: QuotaCode(QUOTA, "the quota of this API is used up",
                        f"wait for the refresh or buy a resource pack at {_TUYA_CONSOLE})"),
}
"""Tuya codes after which retrying soon only spends calls that are refused anyway."""

TUYA_PERMISSION_CODES: Mapping[int, str] = {
    # 28841101 "No permissions. This API is not subscribed." (3P clients quoting the answer);
    # 28841105 "No permissions. This project is not authorized to call this API" (Tuya's own
    # tuya-home-assistant wiki, "Error code and Troubleshooting"); 28841106 as the 3P tables.
    # Not a quota: the project lacks the API; subscribing to it fixes this at once.
    28841101: "the project is not subscribed to this API",
    28841105: "the project is not authorised to call this API",
    28841106: "the project is not subscribed to this API",
}
"""Tuya codes of an API the project lacks: a setup problem, reported like a permission."""


def tuya_quota_detail(code: int, message: str, backoff: float = QUOTA_BACKOFF_S) -> str:
    """The user's line for a Tuya quota code: ``quota exhausted: <cloud's text> (code N):
    <meaning>; <advice>; the bridge makes no call for <backoff>, then tries once``."""
    entry = TUYA_QUOTA_CODES[code]
    return (f"{entry.prefix}: {message} (code {code}): {entry.meaning}; {entry.advice}; "
            f"{retry_text(backoff)}")


def retry_text(backoff: float) -> str:
    """``the bridge makes no call for 15 min, then tries once`` (stable: no countdown)."""
    if backoff >= 7200:
        span = f"{backoff / 3600:.3g} h"
    elif backoff >= 60:
        span = f"{backoff / 60:.3g} min"
    else:
        span = f"{backoff:.3g} s"
    return f"the bridge makes no call for {span}, then tries once"


# ---- Aqara ---------------------------------------------------------------------------------------

AQARA_QUOTA_RETRY_AFTER_S = 900.0
"""INFERRED: a rate-limit answer asking to wait this long or longer is a spent quota (the free
tier's rate window is 5 minutes; a monthly cap can only ask for much longer)."""
_AQARA_QUOTA_TEXT = re.compile(
    r"quota|month|suspend|arrears|overdue|used\s+up|exhausted"
    r"|balance\s+is\s+insufficient|insufficient\s+balance", re.IGNORECASE)
"""INFERRED: words of a spent quota, never of a mere rate window ("too many requests",
"frequency exceeds the limit" stay rate limits)."""


def aqara_quota_reason(code: int, message: str, *, exempt: frozenset[int] = frozenset()) -> bool:
    """INFERRED: does an Aqara answer say the account's call quota is spent?

    No Aqara document gives a code for it (the v3 code table is not published; the console
    states the free tier's caps: 300 calls per 5 minutes, 100,000 a month, 2 million in all),
    so the answer is recognised by its text: "quota", "month(ly)", "suspended", "arrears",
    "overdue", "used up", "exhausted", "insufficient balance". Codes in ``exempt`` (the token
    table, whose texts say "expired") never count."""
    if code == 0 or code in exempt:
        return False
    return bool(_AQARA_QUOTA_TEXT.search(message or ""))


AQARA_QUOTA_ADVICE = ("the Aqara developer account's free tier allows 100,000 calls a month (300 "
                      "per 5 minutes); wait for the next month or upgrade the project at "
                      "developer.aqara.com; then lower the call rate (a callback for "
                      "push, a longer poll_interval)")


def aqara_quota_detail(message: str, code: int | str | None,
                       backoff: float = QUOTA_BACKOFF_S) -> str:
    """``quota exhausted: <cloud's text> (code N); <advice>; <retry>``."""
    said = f"{message} (code {code})" if code is not None else message
    return f"{QUOTA}: {said}; {AQARA_QUOTA_ADVICE}; {retry_text(backoff)}"

