"""Aqara Open API v3 backend (``type: aqara_cloud``): signed intent calls over HTTPS.

* Calls: ``POST <url>`` with ``{"intent", "data"}`` and the signed headers of
  :mod:`bridge.backends.aqara_cloud.sign`; answers are the envelope
  ``{"code", "message", "result"}``.
  Garbage (not JSON, not an envelope) is a protocol error, never a crash.
* Call budget: a client-side sliding-window limiter keeps the bridge within ``rate_limit``
  (default 300 calls per 300 s, the free tier) with a small margin; a tenth of the budget is kept
  for writes and reads that a user is waiting for, so polling can never starve them. A
  rate-limit answer (HTTP 429, with or without ``Retry-After``, or envelope code 429 or 104
  "Server busy") pauses every call for ``Retry-After`` (else 1, 2, 4 ... seconds up to the window)
  and retries the same call: nothing is lost. Every call is counted by kind in a sliding hour
  (:class:`~bridge.backends.call_budget.CallBudget`, ``summary()["call_budget"]``).
* Quota (INFERRED, no Aqara document gives a code): an answer whose text says the account's
  call quota is spent ("quota", "month", "suspended", "overdue", "used up" …, see
  :func:`~bridge.backends.call_budget.aqara_quota_reason`), or a rate-limit answer whose
  ``Retry-After`` is 15 minutes or more, closes the
  :class:`~bridge.backends.call_budget.QuotaGate`: the session ends with the detail ``quota
  exhausted: <what the cloud said>; <what to do>``, and for ``quota_backoff`` seconds (15
  minutes, or the ``Retry-After`` when longer) nothing goes to the cloud; a ``/get`` is
  answered with that detail at once. Then one session is tried.
* Tokens: an expired or refused access token (the codes of Aqara's table that both Aqara SDKs
  carry: 108 token expired, 109 token absent, 804 token failed, 2004 access token incorrect, 2005
  access token expired) triggers one single-flight ``config.auth.refreshToken`` and the failed
  call (a write too) is retried once with the new token; when the lifetime is known
  (``expiresIn`` of a refresh) the pair is renewed before it expires. A refused refresh token
  (2006 incorrect, 2007 expired) cannot heal by itself: the backend then stays in the one state
  "authentication failed: get a new refresh token" and calls the cloud no more until restarted.
  Refresh tokens are single-use, so the new pair is written to ``token_file`` when one is
  configured (and read back at start, unless the config's pair changed since).
* Snapshot after every (re)connect: ``query.device.info`` (paged), specs by id for Matter
  devices (``spec.query.specdevice.config``, 10 ids per call) and by model for the others
  (``spec.query.qlinkmodel.config``, 5 models per call, cached per model), the push subscription
  (``spec.config.trait.subscribe`` for every readable subscribable trait, when a callback is
  configured), then every readable value (``spec.query.trait``, 50 per call). Pushes arriving
  meanwhile are buffered and replayed after the snapshot.
* Changes: the HTTP callback receiver (aiohttp, ``callback.listen`` + ``callback.path``) takes
  trait pushes (``data[]`` items with ``subjectId`` and ``codePath``, values as strings or typed)
  and event messages (``eventType``: bind/unbind/online/offline/name change, in the documented
  schema of Aqara's push messages and the older variants: a rename's ``deviceName`` or ``name``;
  a gateway unbound or offline takes its ``subDids`` and the devices listed under it with it, at
  once; a gateway bound brings its ``subDids`` along: one ``query.device.info`` for all of
  them, then specs, subscription and values as in a snapshot, published at once); a push is
  accepted when its ``token`` header is one of this run's access tokens (DOC: every push carries
  the account's access token; ``sign`` only when signing is on), else only with a fresh,
  unreplayed ``sign`` keyed by the AppKey (INFERRED digests, see :mod:`.sign`). Polls
  of ``spec.query.trait`` every ``poll_interval`` seconds catch anything else; the device list is
  re-read every 10 minutes. Writes to traits without a push subscription are read back a moment
  later, so state follows the hub in polling mode too (never optimistically).
* Writes: ``spec.write.trait`` in chunks of at most 10 devices and 50 traits (seed 001: more than
  10 devices and the cloud ignores everything after the 50th trait), values in the cloud's string
  encoding; per-item ``code`` != 0 becomes a :class:`~bridge.model.WriteFailure`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Container, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bridge import jsonlimits
from bridge.backends.aqara_cloud.config import AqaraCloudBackendConfig
from bridge.backends.aqara_cloud.sign import (
    header,
    is_auth_intent,
    now_ms,
    push_signs,
    signed_headers,
    time_is_fresh,
)
from bridge.backends.aqara_events import device_event, is_event_trait
from bridge.backends.aqara_spec import SpecError, first, parse_device, parse_online
from bridge.backends.base import Backend, BackendError, EventSink
from bridge.backends.call_budget import (
    AQARA_QUOTA_RETRY_AFTER_S,
    QUOTA_BACKOFF_S,
    CallBudget,
    QuotaGate,
    aqara_quota_detail,
    aqara_quota_reason,
)
from bridge.coalesce import chunk
from bridge.codec import from_wire, to_string_wire
from bridge.logsetup import get_logger
from bridge.model import (
    Availability,
    BackendStatus,
    Device,
    DeviceAdded,
    DeviceRemoved,
    DeviceRenamed,
    Event,
    Snapshot,
    TraitAddress,
    TraitChanged,
    TraitSpec,
    WriteFailure,
    WriteItem,
)
from bridge.ratelimit import RateLimitedLog
from bridge.secrets import register_secret

log = get_logger("bridge.aqara_cloud")

MATTER_PREFIX = "aqara.matter."
MAX_SPEC_DIDS = 10
MAX_SPEC_MODELS = 5
MAX_QUERY_TRAITS = 50
MAX_WRITE_DEVICES = 10
MAX_WRITE_TRAITS = 50
SUBSCRIBE_DEVICES = 10
PAGE_SIZE = 50
RATE_CODES = frozenset({429, 104})
TOKEN_CODES = frozenset({108, 109, 804, 2004, 2005})
"""Access token expired, absent, failed, incorrect, expired (Aqara's code table): renew once."""
REFRESH_CODES = frozenset({2006, 2007})
"""Refresh token incorrect / expired: only a new token pair from the user helps."""
MAX_RATE_RETRIES = 12
DEVICE_REFRESH_S = 600.0
READBACK_DELAY_S = 1.0
_WRITE_CODE_TEXT = {
    602: "the device is offline",
    603: "the device is not in this account",
    717: "the device is not in this account",
    1003: "no such trait",
    1004: "the value was not accepted",
    1007: "the trait is not writable",
    1008: "no such trait",
    # the legacy SDK's property codes, still tolerated
    1530: "the trait is not writable",
    1531: "no such trait",
    1532: "the value was not accepted",
}
_REMOVED_EVENTS = frozenset({"gateway_unbind", "unbind_sub_gw", "subdevice_unbind"})
_ADDED_EVENTS = frozenset({"gateway_bind", "subdevice_bind"})
_ONLINE_EVENTS = {"gateway_online": True, "subdevice_online": True,
                  "gateway_offline": False, "subdevice_offline": False}


class AuthFailed(BackendError):
    """The cloud refuses our credentials; retrying soon will not help."""


class RefreshTokenDead(AuthFailed):
    """The refresh token is refused or missing: nothing but a new token pair helps."""


class QuotaExhausted(BackendError):
    """The account's call quota is spent (or the bridge waits after that): the message is the
    user's line (``quota exhausted: …; <what to do>``)."""


_NOT_QUOTA = frozenset({105, 106, 302}) | TOKEN_CODES | REFRESH_CODES
"""Codes whose texts never mean the quota, whatever they say ("expired" …)."""


def call_kind(intent: str, background: bool = False) -> str:
    """What an intent call is for, in the call budget."""
    if intent.startswith("config.auth."):
        return "login"  # not "token": bridge/info masks the values of token-like keys
    if intent == "query.device.info":
        return "device_list"
    if intent in ("spec.query.specdevice.config", "spec.query.qlinkmodel.config"):
        return "spec"
    if intent.startswith("spec.config.trait."):
        return "subscription"
    if intent == "spec.query.trait":
        return "poll" if background else "values"
    if intent == "spec.write.trait":
        return "command"
    return "other"


DEAD_REFRESH = "authentication failed: get a new refresh token"


@dataclass
class _Answer:
    code: int
    message: str
    result: Any = None
    rate_limited: bool = False
    retry_after: float | None = None
    quota: bool = False


@dataclass
class TokenPair:
    """The current credentials; ``expires_at`` (epoch seconds) only when the cloud told us."""

    access: str
    refresh: str | None
    expires_at: float | None = None
    lifetime: float | None = None


class CallLimiter:
    """At most ``calls`` calls in any ``window`` seconds (sliding window, with a safety margin).

    Background callers (polls) leave ``reserve`` calls of the window to foreground callers
    (snapshots, writes, reads). :meth:`hold` pauses everybody (after a rate-limit answer).
    """

    def __init__(self, calls: int, window: float) -> None:
        self.calls = calls
        self.window = window * 1.02 + 0.25  # the cloud's clock starts counting a little later
        self.reserve = calls // 10 if calls >= 10 else 0
        self._sent: deque[float] = deque()
        self._hold_until = 0.0

    def delay(self, background: bool = False, now: float | None = None) -> float:
        """Seconds until a call may start (0: now)."""
        now = time.monotonic() if now is None else now
        sent = self._sent
        while sent and sent[0] <= now - self.window:
            sent.popleft()
        limit = self.calls - (self.reserve if background else 0)
        wait = self._hold_until - now
        if len(sent) >= limit:
            wait = max(wait, sent[len(sent) - limit] + self.window - now)
        return max(wait, 0.0)

    def record(self, now: float | None = None) -> None:
        """Count one call as sent now."""
        self._sent.append(time.monotonic() if now is None else now)

    def hold(self, seconds: float) -> None:
        """Let no call start for ``seconds``."""
        self._hold_until = max(self._hold_until, time.monotonic() + seconds)

    async def acquire(self, background: bool = False) -> None:
        """Wait for a free slot and take it."""
        while True:
            wait = self.delay(background)
            if wait <= 0:
                self.record()
                return
            await asyncio.sleep(wait)


def parse_code_path(
    device_id: str, path: Any, known: Container[TraitAddress] = ()
) -> TraitAddress | None:
    """``"2.Output.OnOff"`` → the trait address (None when malformed).

    Trait codes may contain dots (``PM2.5Density``), so every split after the endpoint is tried
    against ``known``; without a match the split at the first dot after the endpoint wins.
    """
    if not isinstance(path, str):
        return None
    head, dot, rest = path.strip().partition(".")
    try:
        endpoint = int(head)
    except ValueError:
        return None
    if not dot:
        return None
    candidates = [
        TraitAddress(device_id, endpoint, rest[:i], rest[i + 1:])
        for i, char in enumerate(rest) if char == "." and 0 < i < len(rest) - 1
    ]
    for candidate in candidates:
        if candidate in known:
            return candidate
    return candidates[0] if candidates else None


def event_addresses(device: Device) -> list[TraitAddress]:
    """The code paths of the device's event traits (subscribed like traits)."""
    return [addr for source in device.events for path in source.hub_codes
            if (addr := parse_code_path(device.id, path)) is not None]


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _address(
    item: Mapping[str, Any], known: Container[TraitAddress] = ()
) -> TraitAddress | None:
    device_id = first(item, "deviceId", "subjectId", "did")
    if not isinstance(device_id, str):
        return None
    if "codePath" in item:
        return parse_code_path(device_id, item.get("codePath"), known)
    endpoint = _int(item.get("endpointId"))
    function = item.get("functionCode")
    trait = item.get("traitCode")
    if endpoint is None or not isinstance(function, str) or not isinstance(trait, str):
        return None
    return TraitAddress(device_id, endpoint, function, trait)


def _result_list(result: Any) -> list[Any]:
    """``result.data`` as a list (tolerating ``result`` being the list itself)."""
    data = result.get("data") if isinstance(result, Mapping) else result
    return data if isinstance(data, list) else []


def _fingerprint(*secrets: str | None) -> str:
    joined = "\0".join(s or "" for s in secrets)
    return hashlib.sha256(joined.encode()).hexdigest()


class AqaraCloudBackend(Backend):
    """One Aqara cloud account (one developer app, one user's token pair)."""

    kind = "aqara_cloud"

    def __init__(
        self,
        name: str,
        url: str,
        app_id: str,
        key_id: str,
        app_key: str,
        access_token: str,
        refresh_token: str | None = None,
        *,
        account: str | None = None,
        token_file: Path | None = None,
        callback_host: str | None = None,
        callback_port: int = 8089,
        callback_path: str = "/aqara/push",
        poll_interval: float = 30.0,
        rate_calls: int = 300,
        rate_window: float = 300.0,
        request_timeout: float = 10.0,
        reconnect_max_delay: float = 60.0,
        device_refresh: float = DEVICE_REFRESH_S,
        readback_delay: float = READBACK_DELAY_S,
        quota_backoff: float = QUOTA_BACKOFF_S,
    ) -> None:
        super().__init__(name)
        self.url = url
        self.app_id = app_id
        self.key_id = key_id
        self._app_key = app_key
        self.account = account
        self.token_file = token_file
        self.callback_host = callback_host
        self.callback_port = callback_port
        self.callback_path = callback_path
        self.poll_interval = poll_interval
        self.request_timeout = request_timeout
        self.reconnect_max_delay = reconnect_max_delay
        self.device_refresh = device_refresh
        self.readback_delay = readback_delay
        self.rate_calls = rate_calls
        self.rate_window = rate_window
        self.limiter = CallLimiter(rate_calls, rate_window)
        self.budget = CallBudget()
        """Calls made, by kind, in the last hour (``summary()["call_budget"]``)."""
        self.quota = QuotaGate(quota_backoff)
        self._config_fingerprint = _fingerprint(access_token, refresh_token)
        self._tokens = TokenPair(access_token, refresh_token)
        self._known_tokens: deque[str] = deque(maxlen=8)
        self._token_lock = asyncio.Lock()
        self._may_refresh = True
        self._stale_config_logged = False
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._sink: EventSink = lambda _event: None
        self._specs: dict[TraitAddress, TraitSpec] = {}
        self._values: dict[TraitAddress, Any] = {}
        self._times: dict[TraitAddress, int] = {}
        self._model_specs: dict[str, Mapping[str, Any]] = {}
        self._infos: dict[str, Mapping[str, Any]] = {}
        self._online: dict[str, bool] = {}
        self._subscribed: set[TraitAddress] = set()
        self._buffer: list[tuple[str, Any]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._nonces: deque[tuple[float, str]] = deque()
        self._seen_nonces: set[str] = set()
        self._poll_warned = False
        self._wake = asyncio.Event()
        self._broken: AuthFailed | None = None
        self._dead: RefreshTokenDead | None = None
        # counters for bridge/info and tests
        self.calls_sent = 0
        self.rate_limited = 0
        self.renewals = 0
        self.polls = 0
        self.pushes_received = 0
        self.pushes_rejected = 0
        self.garbage_received = 0
        self._warn = RateLimitedLog(log)
        self._once = RateLimitedLog(log, interval=math.inf)  # per device: said once is enough
        self._adding: set[str] = set()
        self._load_tokens()
        self._known_tokens.append(self._tokens.access)

    @classmethod
    def from_config(cls, spec: AqaraCloudBackendConfig) -> AqaraCloudBackend:
        """The backend for one ``type: aqara_cloud`` entry of the config."""
        callback = spec.callback
        return cls(
            spec.name, spec.api_url, spec.app_id, spec.key_id, spec.app_key.get_secret_value(),
            spec.access_token.get_secret_value(),
            spec.refresh_token.get_secret_value() if spec.refresh_token else None,
            account=spec.account, token_file=spec.token_file,
            callback_host=callback.host if callback else None,
            callback_port=callback.port if callback else 8089,
            callback_path=callback.path if callback else "/aqara/push",
            poll_interval=spec.poll_interval, rate_calls=spec.rate_limit.calls,
            rate_window=spec.rate_limit.per_seconds, request_timeout=spec.request_timeout,
            reconnect_max_delay=spec.reconnect_max_delay,
        )  # fmt: skip

    # ---- tokens ---------------------------------------------------------------------------

    @property
    def access_token(self) -> str:
        """The access token in use (for tests; never logged)."""
        return self._tokens.access

    @property
    def refresh_token(self) -> str | None:
        """The refresh token in use (for tests; never logged)."""
        return self._tokens.refresh

    def _load_tokens(self) -> None:
        """Take the pair from ``token_file`` when it was written for the config's current pair."""
        path = self.token_file
        if path is None or not path.exists():
            return
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("cannot read the token file; using the config's tokens",
                        backend=self.name, path=str(path), reason=str(exc))
            return
        if not isinstance(stored, dict) or not isinstance(stored.get("access_token"), str):
            log.warning("the token file holds no token pair; using the config's tokens",
                        backend=self.name, path=str(path))
            return
        if stored.get("config_fingerprint") != self._config_fingerprint:
            log.info("the config has a new token pair; the token file is ignored",
                     backend=self.name, path=str(path))
            return
        refresh = stored.get("refresh_token")
        expires = stored.get("expires_at")
        lifetime = stored.get("lifetime")
        self._tokens = TokenPair(
            stored["access_token"], refresh if isinstance(refresh, str) else None,
            float(expires) if isinstance(expires, int | float) else None,
            float(lifetime) if isinstance(lifetime, int | float) else None,
        )
        register_secret(self._tokens.access)
        register_secret(self._tokens.refresh)
        self._stale_config_logged = True  # the config's pair was used up before, and said so
        log.info("using the token pair from the token file", backend=self.name, path=str(path))

    def _save_tokens(self) -> None:
        path = self.token_file
        if path is None:
            return
        pair = self._tokens
        body = {
            "access_token": pair.access,
            "refresh_token": pair.refresh,
            "expires_at": pair.expires_at,
            "lifetime": pair.lifetime,
            "updated_at": int(time.time()),
            "config_fingerprint": self._config_fingerprint,
        }
        tmp = path.with_name(path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(body, handle)
            os.replace(tmp, path)
        except OSError as exc:
            log.error("cannot write the token file: the new token pair is only in memory",
                      backend=self.name, path=str(path), reason=exc.strerror or str(exc))

    def _refresh_due(self) -> float | None:
        """Epoch seconds at which the pair should be renewed (None: unknown lifetime)."""
        pair = self._tokens
        if pair.expires_at is None or pair.refresh is None:
            return None
        margin = min(3600.0, (pair.lifetime or 600.0) * 0.1)
        return pair.expires_at - margin

    async def _refresh_if_due(self) -> None:
        due = self._refresh_due()
        if due is not None and time.time() >= due and self._may_refresh:
            await self._refresh_tokens(self._tokens.access)

    async def _refresh_tokens(self, stale: str) -> None:
        """Renew the pair once, however many callers found ``stale`` refused."""
        async with self._token_lock:
            if self._tokens.access != stale:
                return  # somebody else renewed it meanwhile
            refresh = self._tokens.refresh
            if refresh is None:
                raise RefreshTokenDead(f"{DEAD_REFRESH} (the access token expired or was refused "
                                       "and no refresh_token is configured)")
            if not self._may_refresh:
                raise AuthFailed("the access token expired or was refused; `aqara-mqtt run` "
                                 "renews it by itself, but not `check` without token_file "
                                 "(refresh tokens are single-use)")
            try:
                result = await self.call("config.auth.refreshToken", {"refreshToken": refresh})
            except (AuthFailed, QuotaExhausted):
                raise
            except BackendError as exc:
                if exc.code in REFRESH_CODES or exc.code in TOKEN_CODES or exc.code == 302:
                    raise RefreshTokenDead(
                        f"{DEAD_REFRESH} (the Aqara cloud refused it: {exc.message}, code "
                        f"{exc.code}); get a new token pair (config.auth.getToken) and put it in "
                        "the config", exc.code) from None
                raise
            if not isinstance(result, Mapping) or not isinstance(result.get("accessToken"), str):
                raise BackendError("protocol error: config.auth.refreshToken gave no accessToken")
            access = str(result["accessToken"])
            new_refresh = result.get("refreshToken")
            expires_in = _int(result.get("expiresIn"))
            register_secret(access)
            if isinstance(new_refresh, str):
                register_secret(new_refresh)
            self._tokens = TokenPair(
                access, new_refresh if isinstance(new_refresh, str) else refresh,
                time.time() + expires_in if expires_in else None,
                float(expires_in) if expires_in else None,
            )
            self._known_tokens.append(access)
            self.renewals += 1
            self._wake.set()
            self._save_tokens()
            if not self._stale_config_logged:
                self._stale_config_logged = True
                if self.token_file is not None:
                    log.warning("aqara cloud tokens renewed: the refresh_token in the config file "
                                "is now used up (single-use); the current pair is kept in the "
                                "token file", backend=self.name, token_file=str(self.token_file))
                else:
                    log.warning("aqara cloud tokens renewed: the refresh_token in the config file "
                                "is now used up (single-use) and the new pair lives only in "
                                "memory; set token_file so a restart can use it",
                                backend=self.name)
            else:
                log.info("aqara cloud tokens renewed", backend=self.name,
                         expires_in=expires_in)

    # ---- calls ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[aiohttp.ClientSession]:
        session = aiohttp.ClientSession()
        self._http = session
        try:
            yield session
        finally:
            self._http = None
            await session.close()

    async def call(self, intent: str, data: Any, *, background: bool = False,
                   kind: str | None = None) -> Any:
        """One intent call; returns ``result``. Renews tokens and waits out rate limits.

        A refused credential (:class:`AuthFailed`) also ends the running session, whichever
        call ran into it, so ``bridge/info`` says what is wrong; so does a quota answer
        (:class:`QuotaExhausted`), after which no call goes out until the back-off is over.
        """
        if self._dead is not None:
            raise self._dead  # nothing but a new token pair helps: do not spend calls
        try:
            return await self._call(intent, data, background, kind or call_kind(intent, background))
        except AuthFailed as exc:
            self._broken = exc
            if isinstance(exc, RefreshTokenDead):
                self._dead = exc
            self._wake.set()
            raise

    async def _call(self, intent: str, data: Any, background: bool, kind: str) -> Any:
        auth = is_auth_intent(intent)
        renewed = False
        rate_waits = 0
        while True:
            token: str | None = None
            if not auth:
                await self._refresh_if_due()
                token = self._tokens.access
            if not self.quota.admit(consume=False):  # a peek: no limiter slot for a refusal
                raise QuotaExhausted(self.quota.reason, self.quota.code)
            await self.limiter.acquire(background)
            if not self.quota.admit(consume=not auth):  # a token renewal never is the one try
                raise QuotaExhausted(self.quota.reason, self.quota.code)
            try:
                answer = await self._post(intent, data, token, kind)
            except BackendError:
                if not auth:
                    self.quota.clear()  # no quota answer: the next call may try
                raise
            if answer.quota:
                raise self._quota_closed(intent, answer)
            if not auth:
                self.quota.clear()
            if answer.rate_limited:
                rate_waits += 1
                self.rate_limited += 1
                if rate_waits > MAX_RATE_RETRIES:
                    raise BackendError("the Aqara cloud keeps answering 'too many requests'",
                                       answer.code)
                wait = answer.retry_after
                if wait is None:
                    wait = min(float(2 ** (rate_waits - 1)), self.limiter.window)
                self.limiter.hold(wait)
                log.warning("rate limited by the Aqara cloud; waiting before retrying",
                            backend=self.name, intent=intent, wait=round(wait, 2))
                continue
            if answer.code in TOKEN_CODES and token is not None:
                if renewed:
                    raise AuthFailed(f"authentication failed: the Aqara cloud refused the renewed "
                                     f"access token ({answer.message}, code {answer.code})",
                                     answer.code)
                renewed = True
                log.info("access token refused; renewing it", backend=self.name,
                         code=answer.code)
                await self._refresh_tokens(token)
                continue
            if answer.code != 0:
                raise self._error(intent, answer)
            return answer.result

    def _quota_closed(self, intent: str, answer: _Answer) -> QuotaExhausted:
        """Close the gate after a quota answer; the session ends (``_steady`` raises)."""
        said = answer.message or "too many requests"
        if answer.retry_after is not None:
            said += f" (Retry-After: {answer.retry_after:g} s)"
        wait = max(self.quota.backoff, answer.retry_after or 0.0)
        detail = aqara_quota_detail(said, answer.code, wait)  # stable: not naming the intent
        first = not self.quota.closed
        self.quota.trip(detail, answer.code, answer.retry_after)
        if first:
            log.error("the Aqara cloud refuses for the account's call quota; no calls until the "
                      "back-off is over", backend=self.name, intent=intent, code=answer.code,
                      message=answer.message, backoff_s=round(wait))
        self._wake.set()
        return QuotaExhausted(detail, answer.code)

    def _error(self, intent: str, answer: _Answer) -> BackendError:
        if answer.code == 106:
            return AuthFailed("authentication failed: the Aqara cloud refused the request "
                              "signature (code 106 Invalid sign); check app_id, key_id and "
                              "app_key", 106)
        if answer.code == 105:
            return BackendError("the Aqara cloud says the request time is more than 5 minutes "
                                "off (code 105); check this machine's clock", 105)
        return BackendError(f"{answer.message or 'error'} ({intent})", answer.code)

    async def _post(self, intent: str, data: Any, token: str | None, kind: str) -> _Answer:
        session = self._http
        if session is None:
            raise BackendError("the Aqara cloud backend is not running")
        headers = signed_headers(self.app_id, self.key_id, self._app_key, token)
        body = json.dumps({"intent": intent, "data": data}, separators=(",", ":"),
                          ensure_ascii=False)
        self.calls_sent += 1
        self.budget.record(kind)
        try:
            async with session.post(
                self.url, data=body.encode(), headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.request_timeout),
            ) as response:
                raw = await response.read()
                status = response.status
                retry_header = response.headers.get("Retry-After")
        except TimeoutError:
            raise BackendError(f"the Aqara cloud did not answer {intent} within "
                               f"{self.request_timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise BackendError(f"the Aqara cloud is unreachable: {reason}") from None
        retry_after: float | None = None
        if retry_header is not None:
            with contextlib.suppress(ValueError):
                retry_after = max(0.0, float(retry_header.strip()))
        try:
            envelope = jsonlimits.loads(raw, jsonlimits.HUB_MAX_BYTES)
        except (ValueError, UnicodeDecodeError):
            envelope = None
        if status == 429:
            said = envelope.get("message") if isinstance(envelope, dict) else None
            text = str(said) if isinstance(said, str) and said else "too many requests"
            # INFERRED: a wait this long is no rate window but a spent quota
            quota = retry_after is not None and retry_after >= AQARA_QUOTA_RETRY_AFTER_S
            return _Answer(429, text, rate_limited=not quota, retry_after=retry_after,
                           quota=quota or aqara_quota_reason(429, text, exempt=_NOT_QUOTA))
        code = _int(envelope.get("code")) if isinstance(envelope, dict) else None
        if not isinstance(envelope, dict) or code is None:
            self.garbage_received += 1
            log.warning("the Aqara cloud sent an unusable answer", backend=self.name,
                        intent=intent, status=status, sample=raw[:120].decode("utf-8", "replace"))
            raise BackendError(f"protocol error: the answer to {intent} is not an Aqara envelope "
                               f"(HTTP {status})")
        message = str(envelope.get("message") or "")
        if aqara_quota_reason(code, message, exempt=_NOT_QUOTA):
            return _Answer(code, message, retry_after=retry_after, quota=True)
        if code in RATE_CODES:
            return _Answer(code, message, rate_limited=True, retry_after=retry_after)
        if code == 0 and status >= 400:
            raise BackendError(f"protocol error: {intent} answered HTTP {status}")
        return _Answer(code, message, envelope.get("result"))

    # ---- connection loop ------------------------------------------------------------------

    async def run(self, sink: EventSink) -> None:
        """Snapshot, then pushes and polls; reconnect with backoff until cancelled."""
        self._sink = sink
        self._may_refresh = True
        async with self._client():
            try:
                await self._run_loop()
            finally:
                await self._shutdown()

    async def _run_loop(self) -> None:
        delay = 1.0
        while True:
            started = time.monotonic()
            try:
                await self._session()
                reason = "session ended"
            except QuotaExhausted as exc:
                reason = exc.message
            except AuthFailed as exc:
                reason = exc.message
                delay = self.reconnect_max_delay  # a refused credential will not fix itself
            except BackendError as exc:
                reason = exc.message
            except OSError as exc:  # the push receiver could not listen
                reason = (f"cannot listen for pushes on {self.callback_host}:{self.callback_port}"
                          f": {exc.strerror or exc}")
            waiting = self.quota.remaining()  # > 0: a quota answer ended the session
            if waiting > 0:
                reason = self.quota.reason  # whatever else failed with it, this is why
            was_connected = self.connected
            if was_connected or self.detail != reason:
                log.warning("aqara cloud disconnected", backend=self.name, reason=reason)
            if was_connected and time.monotonic() - started > 1:
                delay = 1.0
            self.connected = False
            self.detail = reason
            self._emit(BackendStatus(False, reason))
            if self._dead is not None:
                log.error("aqara cloud stopped: it needs a new token pair in the config",
                          backend=self.name)
                # Reconnecting cannot help and would spend the account's call budget: stay
                # in this state until the daemon is stopped.
                await asyncio.get_running_loop().create_future()
            if waiting > 0:
                # not one call before the back-off is over; then the next session is the try
                await asyncio.sleep(waiting)
                delay = 1.0
                continue
            await asyncio.sleep(min(delay, self.reconnect_max_delay) * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.reconnect_max_delay)

    async def _shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._subscribed and self._http is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._unsubscribe_all(), 3.0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _session(self) -> None:
        await self._ensure_receiver()
        self._broken = None
        self._buffer = []
        try:
            devices = await self.snapshot()
            self.connected = True
            self.detail = "connected"
            log.info("aqara cloud connected", backend=self.name, devices=len(devices),
                     subscribed=len(self._subscribed), poll_interval=self.poll_interval)
            self._emit(BackendStatus(True, "connected"))
            self._emit(Snapshot(tuple(devices)))
            buffered, self._buffer = self._buffer, None
            for kind, item in buffered:
                if kind == "trait":
                    self._apply_push(*item)
                elif kind == "device_event":
                    self._emit(item)
                else:
                    self._handle_event(item)
            await self._steady()
        finally:
            self._buffer = None
            for task in list(self._tasks):
                task.cancel()

    async def _steady(self) -> None:
        loop = asyncio.get_running_loop()
        next_poll = loop.time() + self.poll_interval if self.poll_interval > 0 else math.inf
        next_list = loop.time() + self.device_refresh
        while True:
            self._wake.clear()  # set by a renewal, a refused credential or a quota answer
            self._raise_if_stopped()
            due = min(next_poll, next_list, loop.time() + 3600.0)
            renew = self._refresh_due()
            if renew is not None:
                due = min(due, loop.time() + max(renew - time.time(), 0.0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(due - loop.time(), 0.0))
            self._raise_if_stopped()
            await self._refresh_if_due()
            if loop.time() >= next_list:
                await self._refresh_devices()
                next_list = loop.time() + self.device_refresh
            if loop.time() >= next_poll:
                started = loop.time()
                await self._poll()
                took = loop.time() - started
                if took > self.poll_interval and not self._poll_warned:
                    self._poll_warned = True
                    log.warning("a poll of every trait takes longer than poll_interval (rate "
                                "limit); polls run back to back", backend=self.name,
                                seconds=round(took, 1), traits=len(self._readable()))
                next_poll = loop.time() + self.poll_interval

    def _raise_if_stopped(self) -> None:
        if self._broken is not None:
            raise self._broken
        if self.quota.closed:
            raise QuotaExhausted(self.quota.reason, self.quota.code)

    async def probe(self) -> int:
        """Sign one call and count the account's devices (for ``check``); raises on failure."""
        self._may_refresh = self.token_file is not None
        async with self._client():
            result = await self.call("query.device.info", {"pageNum": 1, "pageSize": 1})
        total = _int(result.get("totalCount")) if isinstance(result, Mapping) else None
        return total if total is not None else len(_result_list(result))

    # ---- snapshot -------------------------------------------------------------------------

    async def snapshot(self) -> list[Device]:
        """Every device with specs and current values, fetched now (and subscribed)."""
        infos = await self._list_devices()
        devices = await self._describe(infos)
        self._infos = {str(first(i, "did", "deviceId")): i for i in infos}
        self._specs = {addr: t.spec for d in devices for addr, t in d.iter_traits()}
        self._subscribed &= set(self._specs).union(*(event_addresses(d) for d in devices))
        for store in (self._values, self._times):
            for addr in [a for a in store if a not in self._specs]:
                del store[addr]
        self._online = {d.id: d.online for d in devices}
        return devices

    async def _list_devices(self, dids: Sequence[str] | None = None) -> list[Mapping[str, Any]]:
        infos: list[Mapping[str, Any]] = []
        page = 1
        while True:
            data: dict[str, Any] = {"pageNum": page, "pageSize": PAGE_SIZE}
            if dids:
                data["dids"] = list(dids)
            result = await self.call("query.device.info", data)
            listed = _result_list(result)
            entries = [e for e in listed
                       if isinstance(e, Mapping) and isinstance(first(e, "did", "deviceId"), str)]
            if len(entries) < len(listed):  # cannot be named, so not published
                self._warn.warning("no did", "the Aqara cloud lists devices without an id; "
                                   "skipping them", backend=self.name,
                                   skipped=len(listed) - len(entries))
            infos.extend(entries)
            total = _int(result.get("totalCount")) if isinstance(result, Mapping) else None
            if not entries or total is None or len(infos) >= total or page >= 1000:
                return infos
            page += 1

    async def _describe(self, infos: Sequence[Mapping[str, Any]]) -> list[Device]:
        """Devices with specs (by id for Matter, by model otherwise), subscribed, with values."""
        matter = [str(first(i, "did", "deviceId")) for i in infos
                  if str(i.get("model", "")).startswith(MATTER_PREFIX)]
        trees: dict[str, Mapping[str, Any]] = {}
        for start in range(0, len(matter), MAX_SPEC_DIDS):
            result = await self.call("spec.query.specdevice.config",
                                     {"dids": matter[start:start + MAX_SPEC_DIDS]})
            for obj in _result_list(result):
                if isinstance(obj, Mapping) and isinstance(first(obj, "deviceId", "did"), str):
                    trees[str(first(obj, "deviceId", "did"))] = obj
        models = list(dict.fromkeys(
            str(i.get("model")) for i in infos
            if i.get("model") and not str(i.get("model")).startswith(MATTER_PREFIX)
            and str(i.get("model")) not in self._model_specs))  # fmt: skip
        for start in range(0, len(models), MAX_SPEC_MODELS):
            result = await self.call("spec.query.qlinkmodel.config",
                                     {"models": models[start:start + MAX_SPEC_MODELS]})
            data = result.get("data") if isinstance(result, Mapping) else None
            if isinstance(data, Mapping):
                for model, obj in data.items():
                    if isinstance(obj, Mapping):
                        self._model_specs[str(model)] = obj
            elif isinstance(data, list):
                for obj in data:
                    if isinstance(obj, Mapping) and isinstance(obj.get("model"), str):
                        self._model_specs[str(obj["model"])] = obj
        devices = []
        for info in infos:
            device_id = str(first(info, "did", "deviceId"))
            model = str(info.get("model") or "")
            tree = trees.get(device_id) or self._model_specs.get(model)
            if tree is None:
                log.warning("the Aqara cloud gave no spec for this device; it has no traits",
                            backend=self.name, device=device_id, model=model)
                tree = {}
            try:
                device = parse_device({**tree, "deviceId": device_id}, self.name)
            except SpecError as exc:
                self._once.warning(("spec", device_id, str(exc)), "unusable device spec; the "
                                   "device has no traits", backend=self.name, device=device_id,
                                   reason=str(exc))
                device = parse_device({"deviceId": device_id}, self.name)
            device.name = str(first(info, "deviceName", "name", default=device_id))
            device.model = model or device.model
            device.online = parse_online(info.get("state"))
            for key, field in (("parentDid", "parent_did"), ("positionId", "position_id")):
                if info.get(key):
                    device.extra[field] = info[key]
            devices.append(device)
        specs = {addr: t.spec for d in devices for addr, t in d.iter_traits()}
        self._specs.update(specs)
        if self.callback_host is not None:
            await self._subscribe(devices)
        readable = [addr for addr, spec in specs.items() if spec.readable]
        values = await self._read_values(readable, specs)
        by_id = {d.id: d for d in devices}
        for addr, (value, stamp) in values.items():
            trait = by_id[addr.device_id].trait(*addr[1:])
            if trait is not None:
                trait.value = value
                trait.time = stamp
        for addr in readable:
            trait = by_id[addr.device_id].trait(*addr[1:])
            if trait is not None:
                self._values[addr] = trait.value
                if trait.time is not None:
                    self._times[addr] = trait.time
        return devices

    async def _subscribe(self, devices: Sequence[Device]) -> None:
        wanted = [(d.id, [a for a, t in d.iter_traits() if t.spec.readable and t.spec.subscribable]
                   + event_addresses(d)) for d in devices]
        wanted = [(d, addrs) for d, addrs in wanted if addrs]
        parts = [wanted[i:i + SUBSCRIBE_DEVICES] for i in range(0, len(wanted), SUBSCRIBE_DEVICES)]
        while parts:
            part = parts.pop(0)
            try:
                await self.call("spec.config.trait.subscribe", {"traits": [
                    {"subjectId": d, "codePaths": [a.path() for a in addrs],
                     "attach": f"aqara-mqtt:{self.name}"} for d, addrs in part]})
            except (AuthFailed, QuotaExhausted):
                raise
            except BackendError as exc:
                if exc.code is None:
                    raise  # transport trouble: the session starts over
                if len(part) > 1:  # find the device the cloud does not like
                    parts[:0] = [[one] for one in part]
                    continue
                log.warning("the Aqara cloud refused the push subscription of a device; it is "
                            "polled", backend=self.name, reason=exc.message, code=exc.code,
                            device=part[0][0])
                continue
            for _, addrs in part:
                self._subscribed.update(addrs)

    async def _unsubscribe_all(self) -> None:
        by_device: dict[str, list[str]] = {}
        for addr in self._subscribed:
            by_device.setdefault(addr.device_id, []).append(addr.path())
        items = list(by_device.items())
        for start in range(0, len(items), SUBSCRIBE_DEVICES):
            await self.call("spec.config.trait.unsubscribe", {"traits": [
                {"subjectId": d, "codePaths": paths} for d, paths in items[start:start + 10]]})
        self._subscribed.clear()

    async def _read_values(
        self, addresses: Sequence[TraitAddress], specs: Mapping[TraitAddress, TraitSpec],
        background: bool = False, kind: str | None = None,
    ) -> dict[TraitAddress, tuple[Any, int | None]]:
        """``{address: (model value, time)}`` via spec.query.trait, 50 traits per call."""
        out: dict[TraitAddress, tuple[Any, int | None]] = {}
        for start in range(0, len(addresses), MAX_QUERY_TRAITS):
            part = addresses[start:start + MAX_QUERY_TRAITS]
            result = await self.call("spec.query.trait", {"traits": [
                {"deviceId": a.device_id, "endpointId": a.endpoint_id,
                 "functionCode": a.function_code, "traitCode": a.trait_code} for a in part]},
                background=background, kind=kind)
            asked = set(part)
            for entry in _result_list(result):
                addr = _address(entry) if isinstance(entry, Mapping) else None
                spec = specs.get(addr) if addr is not None else None
                if addr is None or spec is None or addr not in asked:
                    continue
                try:
                    value = from_wire(spec, entry.get("value"))
                except ValueError as exc:
                    log.warning("the Aqara cloud sent an unusable value", backend=self.name,
                                device=addr.device_id, trait=addr.path(), reason=str(exc))
                    continue
                out[addr] = (value, _int(entry.get("time")))
        return out

    def _readable(self) -> list[TraitAddress]:
        return [addr for addr, spec in self._specs.items() if spec.readable]

    # ---- steady state ---------------------------------------------------------------------

    async def _poll(self) -> None:
        values = await self._read_values(self._readable(), self._specs, background=True)
        self.polls += 1
        for addr, (value, stamp) in values.items():
            self._offer(addr, value, stamp)

    def _offer(self, addr: TraitAddress, value: Any, stamp: int | None) -> None:
        """Emit a polled/read value when it differs from what we last reported."""
        known = self._times.get(addr)
        if stamp is not None and known is not None and stamp < known:
            return  # older than a push we already passed on
        old = self._values.get(addr)
        if stamp is not None:
            self._times[addr] = stamp
        if addr in self._values and old == value and type(old) is type(value):
            return
        self._values[addr] = value
        self._emit(TraitChanged(addr, value, stamp))
        self._reachability(addr, value)

    async def _refresh_devices(self) -> None:
        infos = await self._list_devices()
        current = {str(first(i, "did", "deviceId")): i for i in infos}
        for device_id in [d for d in self._infos if d not in current]:
            self._forget(device_id)
        new = [i for d, i in current.items() if d not in self._infos]
        for device_id, info in current.items():
            old = self._infos.get(device_id)
            if old is None:
                continue
            name = first(info, "deviceName", "name")
            if isinstance(name, str) and name != first(old, "deviceName", "name"):
                self._emit(DeviceRenamed(device_id, name))
            online = parse_online(info.get("state"))
            if self._online.get(device_id) != online:
                self._online[device_id] = online
                self._emit(Availability(device_id, online))
            self._infos[device_id] = info
        if new:
            await self._add(new)

    async def _add(self, infos: Sequence[Mapping[str, Any]]) -> None:
        devices = await self._describe(infos)
        for info, device in zip(infos, devices, strict=True):
            self._infos[device.id] = info
            self._online[device.id] = device.online
            self._emit(DeviceAdded(device))

    def _forget(self, device_id: str) -> None:
        self._infos.pop(device_id, None)
        self._online.pop(device_id, None)
        for store in (self._specs, self._values, self._times):
            for addr in [a for a in store if a.device_id == device_id]:
                del store[addr]
        self._subscribed = {a for a in self._subscribed if a.device_id != device_id}
        self._emit(DeviceRemoved(device_id))

    def _reachability(self, addr: TraitAddress, value: Any) -> None:
        if addr.function_code == "BasicInformation" and addr.trait_code == "Reachable" and (
                isinstance(value, bool) and self._online.get(addr.device_id) is not value):
            self._online[addr.device_id] = value
            self._emit(Availability(addr.device_id, value))

    # ---- reads and writes -----------------------------------------------------------------

    async def read(self, addresses: Sequence[TraitAddress]) -> dict[TraitAddress, Any]:
        """Current values of these traits, fresh from the cloud."""
        values = await self._read_values(list(addresses), self._specs, kind="read")
        for addr, (value, stamp) in values.items():
            self._values[addr] = value
            if stamp is not None:
                self._times[addr] = max(stamp, self._times.get(addr, stamp))
        return {addr: value for addr, (value, _) in values.items()}

    async def write(self, items: Sequence[WriteItem]) -> list[WriteFailure]:
        """``spec.write.trait`` per chunk (≤ 10 devices, ≤ 50 traits); failed items returned."""
        failures: list[WriteFailure] = []
        accepted: list[TraitAddress] = []
        for part in chunk(items, MAX_WRITE_TRAITS, MAX_WRITE_DEVICES):
            payload = []
            sendable = []
            for item in part:
                spec = self._specs.get(item.address)
                if spec is None:
                    failures.append(WriteFailure(item, None, "the trait is not known any more"))
                    continue
                d, e, f, t = item.address
                payload.append({"deviceId": d, "endpointId": e, "functionCode": f,
                                "traitCode": t, "value": to_string_wire(spec, item.value)})
                sendable.append(item)
            if not payload:
                continue
            try:
                result = await self.call("spec.write.trait", {"traits": payload})
            except BackendError as exc:
                failures += [WriteFailure(item, exc.code, exc.message) for item in sendable]
                continue
            entries = [e for e in _result_list(result) if isinstance(e, Mapping)]
            codes: dict[TraitAddress, Mapping[str, Any]] = {}
            for entry in entries:
                addr = _address(entry)
                if addr is not None:
                    codes[addr] = entry
            for item in sendable:
                found = codes.get(item.address)
                if found is None and entries:
                    failures.append(WriteFailure(item, None,
                                                 "the Aqara cloud did not acknowledge it"))
                    continue
                code = _int(found.get("code")) if found is not None else 0
                if code:
                    text = found.get("message") if found is not None else None
                    failures.append(WriteFailure(item, code, str(
                        text or _WRITE_CODE_TEXT.get(code, "refused by the Aqara cloud"))))
                else:
                    accepted.append(item.address)
        unconfirmed = [a for a in accepted if a not in self._subscribed]
        if unconfirmed and self.connected:
            self._spawn(self._readback(unconfirmed))
        return failures

    async def _readback(self, addresses: list[TraitAddress]) -> None:
        """Read written traits back (no push will report them), so state follows the hub."""
        await asyncio.sleep(self.readback_delay)
        try:
            values = await self._read_values(addresses, self._specs, kind="read")
        except BackendError as exc:
            log.info("could not read written traits back", backend=self.name, reason=exc.message)
            return
        for addr, (value, stamp) in values.items():
            self._offer(addr, value, stamp)

    # ---- push receiver --------------------------------------------------------------------

    @property
    def callback_url(self) -> str | None:
        """Where the receiver listens (for tests: ``http://host:port/path``)."""
        if self.callback_host is None:
            return None
        host = self.callback_host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.callback_port}{self.callback_path}"

    async def _ensure_receiver(self) -> None:
        if self.callback_host is None or self._runner is not None:
            return
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post(self.callback_path, self._on_push)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.callback_host, self.callback_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("listening for Aqara cloud pushes", backend=self.name, url=self.callback_url)

    def _push_authentic(self, headers: Mapping[str, str]) -> bool:
        """A push is genuine when its ``token`` is one this backend holds (DOC: Aqara sends the
        account's valid access token, a secret; ``sign`` is optional), or else when its ``sign``
        is one of the AppKey-keyed digests of :func:`push_signs`, fresh and not replayed. The
        inferred digest can only admit a push, never refuse one the token vouches for: a wrong
        inference must not 401 every push (Aqara suspends an address above 5 % failures)."""
        token = header(headers, "token") or ""
        if token and token in self._known_tokens:
            return True
        sign = (header(headers, "sign") or "").strip().lower()
        nonce = header(headers, "nonce") or ""
        stamp = header(headers, "time") or ""
        if not (sign and nonce and time_is_fresh(stamp, now_ms())):
            return False
        expected = push_signs(self.app_id, self.key_id, self._app_key,
                              appkey=header(headers, "appkey") or "", token=token, nonce=nonce,
                              time_ms=stamp)
        return sign in expected and self._fresh_nonce(nonce)

    def _fresh_nonce(self, nonce: str) -> bool:
        now = time.monotonic()
        while self._nonces and self._nonces[0][0] < now - 600:
            self._seen_nonces.discard(self._nonces.popleft()[1])
        if nonce in self._seen_nonces:
            return False
        self._nonces.append((now, nonce))
        self._seen_nonces.add(nonce)
        return True

    async def _on_push(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if not self._push_authentic(request.headers):
            self.pushes_rejected += 1
            log.warning("rejected a push that is not signed by the Aqara cloud",
                        backend=self.name, remote=request.remote)
            return web.json_response({"code": 401, "message": "unauthorized"}, status=401)
        try:
            message = jsonlimits.loads(raw, jsonlimits.HUB_MAX_BYTES)
        except (ValueError, UnicodeDecodeError):
            message = None
        if not isinstance(message, dict):
            self.garbage_received += 1
            self._warn.warning("garbage push", "the Aqara cloud pushed an unusable message",
                               backend=self.name, sample=raw[:120].decode("utf-8", "replace"),
                               total=self.garbage_received)
            return web.json_response({"code": 400, "message": "not a JSON object"}, status=400)
        self.pushes_received += 1
        if message.get("eventType"):
            if self._buffer is not None:
                self._buffer.append(("event", message))
            else:
                self._handle_event(message)
        else:
            data = message.get("data")
            for item in data if isinstance(data, list) else [data]:
                if isinstance(item, Mapping):
                    self._handle_trait_push(item)
        return web.json_response({"code": 0, "message": "Success"})

    def _handle_trait_push(self, item: Mapping[str, Any]) -> None:
        if _int(item.get("statusCode")) not in (None, 0):
            return  # a failed report (see "Trigger Results"): no value to trust, nothing to fire
        addr = _address(item, self._specs)
        if addr is not None and is_event_trait(addr.function_code, addr.trait_code):
            self._fire(addr, item)
            return
        spec = self._specs.get(addr) if addr is not None else None
        if addr is None or spec is None:
            return  # a device we have not described (yet): its snapshot carries the value
        try:
            value = from_wire(spec, item.get("value"))
        except ValueError as exc:
            self._warn.warning(("value", addr), "the Aqara cloud pushed an unusable value",
                               backend=self.name, device=addr.device_id, trait=addr.path(),
                               reason=str(exc))
            return
        stamp = _int(item.get("time"))
        if self._buffer is not None:
            self._buffer.append(("trait", (addr, value, stamp)))
        else:
            self._apply_push(addr, value, stamp)

    def _fire(self, addr: TraitAddress, item: Mapping[str, Any]) -> None:
        """A pushed button press or gesture (never stored; the core drops a repeated one)."""
        event = device_event(addr, item.get("value"), _int(item.get("time")))
        if event is None:
            return
        if self._buffer is not None:
            self._buffer.append(("device_event", event))
        else:
            self._emit(event)

    def _apply_push(self, addr: TraitAddress, value: Any, stamp: int | None) -> None:
        if addr not in self._specs:
            return
        known = self._times.get(addr)
        if stamp is not None and known is not None and stamp < known:
            return
        if stamp is not None:
            self._times[addr] = stamp
        self._values[addr] = value
        self._emit(TraitChanged(addr, value, stamp))
        self._reachability(addr, value)

    def _handle_event(self, message: Mapping[str, Any]) -> None:
        kind = str(message.get("eventType", "")).strip().lower()
        data = message.get("data")
        body: Mapping[str, Any] = data if isinstance(data, Mapping) else message
        device_id = first(body, "did", "deviceId", "subjectId")
        if not isinstance(device_id, str):
            return
        if kind in _REMOVED_EVENTS:
            # an unbound gateway takes its sub-devices with it
            for gone in [device_id, *self._sub_devices(device_id, body)]:
                if gone in self._infos:
                    self._forget(gone)
        elif kind in _ONLINE_EVENTS:
            online = _ONLINE_EVENTS[kind]
            self._set_online(device_id, online)
            if not online:  # an offline gateway cannot reach its sub-devices either
                for sub in self._sub_devices(device_id, body):
                    self._set_online(sub, False)
            elif kind == "gateway_online" and self._sub_devices(device_id, body):
                # each sub-device's own state is in the device list, not in this message
                self._spawn(self._safe_refresh_devices())
        elif kind == "dev_name_change":
            name = first(body, "deviceName", "name")
            if isinstance(name, str) and device_id in self._infos:
                self._infos[device_id] = {**self._infos[device_id], "deviceName": name}
                self._emit(DeviceRenamed(device_id, name))
        elif kind in _ADDED_EVENTS:
            # a bound gateway brings its sub-devices (``subDids``) along: described at once too
            new = [d for d in dict.fromkeys([device_id, *self._sub_devices(device_id, body)])
                   if d not in self._infos and d not in self._adding]
            if new:
                self._adding.update(new)  # repeated events while they are described: one call
                self._spawn(self._add_by_id(new))

    def _sub_devices(self, gateway: str, body: Mapping[str, Any]) -> list[str]:
        """The gateway's sub-devices: the message's ``subDids`` (documented schema) plus those
        the device list says hang off it (older messages carry no ``subDids``)."""
        listed = body.get("subDids")
        subs = [d for d in listed if isinstance(d, str)] if isinstance(listed, list) else []
        subs += [d for d, info in self._infos.items()
                 if info.get("parentDid") == gateway and d not in subs and d != gateway]
        return subs

    def _set_online(self, device_id: str, online: bool) -> None:
        if device_id in self._infos and self._online.get(device_id) is not online:
            self._online[device_id] = online
            self._emit(Availability(device_id, online))

    async def _safe_refresh_devices(self) -> None:
        try:
            await self._refresh_devices()
        except BackendError as exc:
            log.warning("could not re-read the device list", backend=self.name,
                        reason=exc.message)

    async def _add_by_id(self, device_ids: list[str]) -> None:
        try:
            listed = {str(first(i, "did", "deviceId")): i
                      for i in await self._list_devices(device_ids)}
            await self._add([listed[d] for d in device_ids
                             if d in listed and d not in self._infos])
        except BackendError as exc:
            log.warning("could not describe new devices", backend=self.name,
                        devices=device_ids, reason=exc.message)
        finally:
            self._adding.difference_update(device_ids)

    # ---- plumbing -------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        self._sink(event)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def summary(self) -> dict[str, Any]:
        """Connection facts for ``bridge/info``; never secrets."""
        out = super().summary()
        mode = ("push+poll" if self.poll_interval > 0 else "push") if self.callback_host else "poll"
        out.update({
            "api_url": self.url,
            "app_id": self.app_id,
            "key_id": self.key_id,
            "account": self.account,
            "mode": mode,
            "poll_interval": self.poll_interval,
            "callback": self.callback_url,
            "rate_limit": {"calls": self.rate_calls, "per_seconds": self.rate_window},
            "call_budget": self.budget.as_json(),
            "quota": self.quota.as_json(),
            "subscribed_traits": len(self._subscribed),
            "calls": self.calls_sent,
            "rate_limited": self.rate_limited,
            "renewals": self.renewals,
            "polls": self.polls,
            "pushes_received": self.pushes_received,
            "pushes_rejected": self.pushes_rejected,
        })  # fmt: skip
        return out
