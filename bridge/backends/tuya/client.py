"""Tuya cloud backend: signed OpenAPI calls, the message service for changes, polling as fallback.

One session = a token, a snapshot and three tasks:

* the **push** consumer (message service over WebSocket): each frame is decrypted
  (:mod:`bridge.backends.tuya.sign`), mapped (:mod:`bridge.backends.tuya.model`) and acked; a
  message redelivered after a lost ack is recognised by its id, and a status item older than one
  already applied (its ``t``) is skipped, so a late redelivery never rolls a value back.
  Both message formats are read: the legacy protocols 4 (status) and 20 (device events) and
  the IoT Core protocols 1000 (``devicePropertyMessage``) and 1001 (``deviceOnline`` ...) that
  Tuya documents since its IoT Core upgrade of 2023-06-20 (:data:`MESSAGE_ACTIONS`); a
  protocol or ``bizCode`` it does not know is logged once per process, by its keys only;
* the **poll** loop: while the push channel is down (or ``push: false``) it lists the user's
  devices with their status every ``poll_interval`` seconds (once at once when push drops) and
  reports what changed; while push is up it sleeps. The listing is paged by ``last_id`` or by
  ``page_no``, whichever the cloud follows (:func:`read_pages`);
* the **token** keeper: refreshes the access token before it expires. A call answered ``1010``
  (Tuya's answer to an expired *and* to an unknown token, "token invalid", which both Tuya SDKs
  renew on) or ``1011`` gets exactly one renewal, a new token (``grant_type=1``, which works
  whatever happened to the old pair), shared by every call that was refused with the same token;
  then the call is retried once. ``1013`` (clock skew) adopts the cloud's clock and retries once;
* the **call budget**: every call is counted by kind (:class:`~bridge.backends.call_budget.
  CallBudget`, ``summary()["call_budget"]``). A quota or expiry code of Tuya's table
  (:data:`~bridge.backends.call_budget.TUYA_QUOTA_CODES`: 28841004 "Your quota of Trial Edition
  is used up", 28841002 "Your subscription to cloud development plan has expired" …), answered
  to any call, closes the :class:`~bridge.backends.call_budget.QuotaGate`: the session ends, the
  detail says ``quota exhausted: …`` / ``service expired: …`` with what to do, and for
  ``quota_backoff`` seconds (15 minutes) nothing at all goes to the cloud (no poll, no token, no
  message service; a ``/get`` or management command is answered with that detail at once);
  then one session is tried, whose first call either opens the gate again or closes it for
  another back-off.

Devices are those of every home of the configured ``uid``; ``Device.extra`` carries ``home``,
``home_id``, ``room``, ``room_id``, ``category`` and ``product_id``. After a management command that
changes homes, rooms or members (:mod:`bridge.backends.tuya.actions`) the structure is read again:
devices whose home or room changed are re-announced (``DeviceUpdated``), new and gone devices are
added/removed, and when no device changed a ``Snapshot`` announces the new :meth:`homes`.
With ``rooms_in_topics`` every device gets the friendly name ``<room>_<device>`` (lower case,
words joined by ``_``; ``<home>_<device>`` when it is in no room) through
``extra["friendly_name"]``, which the core uses when the config's ``devices:`` section names no
device; the topic is chosen when the device is first seen, so a device moved to another room keeps
its topic until the bridge restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import random
import re
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import websockets
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from bridge import jsonlimits
from bridge.backends.base import Backend, BackendError, EventSink
from bridge.backends.call_budget import (
    QUOTA_BACKOFF_S,
    TUYA_PERMISSION_CODES,
    TUYA_QUOTA_CODES,
    CallBudget,
    QuotaGate,
    tuya_quota_detail,
)
from bridge.backends.tuya.actions import TUYA_COMMANDS, rest_call, validate
from bridge.backends.tuya.config import TuyaBackendConfig
from bridge.backends.tuya.events import device_event, is_event_dp
from bridge.backends.tuya.model import (
    ENDPOINT_ID,
    DpSpec,
    TuyaSpec,
    build_device,
    from_tuya,
    function_for,
    parse_spec,
    status_map,
    to_tuya,
)
from bridge.backends.tuya.sign import (
    API_HOSTS,
    PUSH_HOSTS,
    SIGN_METHOD,
    decode_push_frame,
    pulsar_password,
    sign_request,
)
from bridge.logsetup import get_logger
from bridge.model import (
    Availability,
    BackendStatus,
    Device,
    DeviceAdded,
    DeviceRemoved,
    DeviceRenamed,
    DeviceUpdated,
    Event,
    Snapshot,
    TraitAddress,
    TraitChanged,
    WriteFailure,
    WriteItem,
)
from bridge.ratelimit import RateLimitedLog
from bridge.secrets import register_secret

log = get_logger("bridge.tuya")

CREDENTIAL_CODES = frozenset({1001, 1004, 1005})
"""Codes meaning the project's credentials are wrong: retrying soon will not help."""
TOKEN_CODES = frozenset({1010, 1011})
"""The access token is refused (1010 "token invalid": expired or unknown; 1011): renew once."""
SPEC_PATHS = (
    "/v1.0/iot-03/devices/{id}/specification",
    "/v1.0/devices/{id}/specifications",
    "/v1.0/iot-03/devices/{id}/functions",
)
"""Where a device's DP description is asked for, in order, until one answers."""
SEEN_MESSAGES = 4096
"""Message ids remembered to recognise redeliveries."""
PAGE_SIZE = 100
"""Devices asked for per page of the user's device list."""
MAX_PAGES = 100
"""A bound on the pages of one listing (10,000 devices), against a cloud that never ends it."""


class TuyaApiError(BackendError):
    """The cloud answered ``success: false``: ``code`` and ``msg`` as Tuya sent them."""


class QuotaExhausted(TuyaApiError):
    """The project's quota is spent or its service expired (or the bridge waits after that):
    the message is the user's line (``quota exhausted: …; <what to do>``)."""


def call_kind(method: str, path: str) -> str:
    """What a call is for, in the call budget: ``login`` (token calls), ``device_list``, ``status``,
    ``command``, ``spec``, ``homes`` (the structure: homes, rooms, their devices) or ``other``."""
    if path.startswith("/v1.0/token"):
        return "login"  # not "token": bridge/info masks the values of token-like keys
    if method == "POST" and path.endswith("/commands"):
        return "command"
    if path.endswith(("/specification", "/specifications", "/functions")):
        return "spec"
    if "/devices/" in path and path.endswith("/status"):
        return "status"
    if path.startswith("/v1.0/users/") and path.endswith("/devices"):
        return "device_list"
    if path.startswith(("/v1.0/homes/", "/v1.0/users/")):
        return "homes"
    return "other"


@dataclass(slots=True)
class _Token:
    access: str
    refresh: str
    expires_at: float
    """``time.monotonic()`` when the access token expires."""
    lifetime: float


def _slug(text: str) -> str:
    return re.sub(r"\W+", "_", text.lower()).strip("_")


class TuyaBackend(Backend):
    """The devices of one Tuya app user's homes, through one cloud project."""

    kind = "tuya"

    def __init__(
        self,
        name: str,
        *,
        api_url: str,
        client_id: str,
        secret: str,
        uid: str,
        push_url: str | None = None,
        push: bool = True,
        push_topic: str = "event",
        poll_interval: float = 30.0,
        request_timeout: float = 10.0,
        reconnect_max_delay: float = 60.0,
        rooms_in_topics: bool = False,
        quota_backoff: float = QUOTA_BACKOFF_S,
    ) -> None:
        super().__init__(name)
        self.api_url = api_url.rstrip("/")
        self.push_url = push_url
        self.client_id = client_id
        self._secret = secret
        self.uid = uid
        self.push_enabled = push and push_url is not None
        self.push_topic = push_topic
        self.poll_interval = poll_interval
        self.request_timeout = request_timeout
        self.reconnect_max_delay = reconnect_max_delay
        self.rooms_in_topics = rooms_in_topics
        self.push_connected = False
        self.push_detail = "disabled" if not self.push_enabled else "not started"
        self.garbage_received = 0
        self._warn = RateLimitedLog(log)
        self._resyncing = False
        self._resync_again = False
        self.polls = 0
        self.push_messages = 0
        self._http: aiohttp.ClientSession | None = None
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()
        self._sync_lock = asyncio.Lock()
        self._time_offset_ms = 0
        self._sink: EventSink = lambda _event: None
        self._spec_cache: dict[str, TuyaSpec] = {}
        self._specs: dict[str, TuyaSpec] = {}
        self._infos: dict[str, dict[str, Any]] = {}
        self._values: dict[str, dict[str, Any]] = {}
        self._extras: dict[str, dict[str, Any]] = {}
        self._last_t: dict[tuple[str, str], int] = {}
        self._homes: list[dict[str, Any]] = []
        self._overlay: dict[str, dict[str, Any]] | None = None
        """Values reported while a sync runs: they win over the sync's (older) listing."""
        self._seen: deque[str] = deque(maxlen=SEEN_MESSAGES)
        self._seen_set: set[str] = set()
        self._push_changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.budget = CallBudget()
        """Calls made, by kind, in the last hour (``summary()["call_budget"]``)."""
        self.quota = QuotaGate(quota_backoff)
        self._quota_hit = asyncio.Event()

    @classmethod
    def from_config(cls, spec: TuyaBackendConfig) -> TuyaBackend:
        """The backend for one ``type: tuya`` entry of the config."""
        api_url = spec.url or API_HOSTS[spec.region or "eu"]
        push_url = spec.push_url or (PUSH_HOSTS[spec.region] if spec.region else None)
        return cls(spec.name, api_url=api_url, push_url=push_url, client_id=spec.client_id,
                   secret=spec.secret.get_secret_value(), uid=spec.uid, push=spec.push,
                   push_topic=spec.push_topic, poll_interval=spec.poll_interval,
                   request_timeout=spec.request_timeout,
                   reconnect_max_delay=spec.reconnect_max_delay,
                   rooms_in_topics=spec.rooms_in_topics)

    # ---- HTTP and signing -----------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.request_timeout))
        return self._http

    async def _close_http(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def call(self, method: str, path: str, query: Mapping[str, str] | None = None,
                   body: Any = None, *, auth: bool = True, retry: bool = True,
                   kind: str | None = None) -> Any:
        """One signed OpenAPI call; returns ``result``; TuyaApiError when the cloud refuses.

        While the quota gate is closed nothing is sent: :class:`QuotaExhausted` at once. A
        token call never uses up the one try after a back-off (it is not what the quota
        answer was about), a business call does."""
        token = await self._access_token() if auth else ""
        if not self.quota.admit(consume=auth):
            raise QuotaExhausted(self.quota.reason, self.quota.code)
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode("utf-8")
        t = str(int(time.time() * 1000) + self._time_offset_ms)
        nonce = uuid.uuid4().hex
        headers = {
            "client_id": self.client_id,
            "sign": sign_request(client_id=self.client_id, secret=self._secret, method=method,
                                 path=path, query=query, body=raw, t=t, nonce=nonce,
                                 access_token=token),
            "t": t,
            "sign_method": SIGN_METHOD,
            "nonce": nonce,
            "lang": "en",
        }
        if auth:
            headers["access_token"] = token
        if body is not None:
            headers["Content-Type"] = "application/json"
        self.budget.record(kind or call_kind(method, path))
        try:
            async with self._client().request(
                method, self.api_url + path, params=dict(query) if query else None,
                data=raw if body is not None else None, headers=headers,
            ) as response:
                status = response.status
                text = await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                reason = f"no answer within {self.request_timeout:g} s"
            if auth:
                self.quota.clear()  # no quota answer: the next call may try
            raise BackendError(f"Tuya cloud unreachable: {reason}") from None
        try:
            envelope = jsonlimits.loads(text, jsonlimits.HUB_MAX_BYTES)
        except ValueError:
            envelope = None
        quota = envelope.get("code") if isinstance(envelope, dict) else None
        if isinstance(quota, int) and quota in TUYA_QUOTA_CODES:
            raise self._quota_closed(quota, str(envelope.get("msg") or ""))
        if auth:
            self.quota.clear()  # answered, and not for the quota: calls go out again
        if not isinstance(envelope, dict):
            raise BackendError(f"Tuya cloud answered HTTP {status} without a JSON envelope")
        if envelope.get("success") is True:
            return envelope.get("result")
        code = envelope.get("code")
        msg = str(envelope.get("msg") or "request refused")
        if retry and auth and code in TOKEN_CODES:
            self._drop_token(token)
            return await self.call(method, path, query, body, auth=auth, retry=False, kind=kind)
        if retry and code == 1013 and isinstance(envelope.get("t"), int):
            self._time_offset_ms = envelope["t"] - int(time.time() * 1000)
            log.warning("adopting the Tuya cloud's clock", backend=self.name,
                        offset_ms=self._time_offset_ms)
            return await self.call(method, path, query, body, auth=auth, retry=False, kind=kind)
        raise TuyaApiError(msg, code if isinstance(code, int | str) else None)

    def _quota_closed(self, code: int, msg: str) -> QuotaExhausted:
        """Close the gate after a quota answer and end the session (its watcher raises)."""
        detail = tuya_quota_detail(code, msg or "refused", self.quota.backoff)
        first = not self.quota.closed
        wait = self.quota.trip(detail, code)
        if first:
            log.error("tuya cloud refuses for the project's quota or plan; no calls until the "
                      "back-off is over", backend=self.name, code=code, message=msg,
                      backoff_s=round(wait))
        self._quota_hit.set()
        return QuotaExhausted(detail, code)

    # ---- tokens -----------------------------------------------------------------------------

    async def _access_token(self) -> str:
        async with self._token_lock:
            token = self._token
            if token is None:
                token = await self._login()
            elif token.expires_at - self._refresh_margin(token) <= time.monotonic():
                token = await self._refresh(token)
            return token.access

    @staticmethod
    def _refresh_margin(token: _Token) -> float:
        return min(60.0, token.lifetime * 0.2)

    def _store_token(self, result: Any) -> _Token:
        if not isinstance(result, Mapping) or not isinstance(result.get("access_token"), str):
            raise BackendError("the Tuya token answer has no access_token")
        access = str(result["access_token"])
        refresh = str(result.get("refresh_token") or "")
        lifetime = result.get("expire_time")
        seconds = float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else 7200
        register_secret(access)
        register_secret(refresh)
        self._token = _Token(access, refresh, time.monotonic() + seconds, seconds)
        return self._token

    async def _login(self) -> _Token:
        result = await self.call("GET", "/v1.0/token", {"grant_type": "1"}, auth=False)
        log.info("tuya token obtained", backend=self.name)
        return self._store_token(result)

    async def _refresh(self, token: _Token) -> _Token:
        if token.refresh:
            try:
                result = await self.call("GET", f"/v1.0/token/{token.refresh}", auth=False)
            except TuyaApiError as exc:
                if exc.code in CREDENTIAL_CODES or isinstance(exc, QuotaExhausted):
                    raise
                log.info("tuya token refresh refused; logging in again", backend=self.name,
                         code=exc.code)
            else:
                log.info("tuya token refreshed", backend=self.name)
                return self._store_token(result)
        return await self._login()

    def _drop_token(self, used: str) -> None:
        token = self._token
        if token is not None and token.access == used:  # else someone already replaced it
            self._token = None

    async def _token_keeper(self) -> None:
        while True:
            token = self._token
            wait = 1.0
            if token is not None:
                wait = token.expires_at - self._refresh_margin(token) - time.monotonic()
            await asyncio.sleep(max(wait, 0.05))
            await self._access_token()

    # ---- session loop -----------------------------------------------------------------------

    async def run(self, sink: EventSink) -> None:
        """Connect, snapshot, stream changes; reconnect with backoff until cancelled."""
        self._sink = sink
        delay = 1.0
        try:
            while True:
                started = time.monotonic()
                try:
                    await self._session()
                    reason = "session ended"
                except Exception as exc:
                    reason, refused = classify_error(exc)
                    if refused:
                        delay = self.reconnect_max_delay
                waiting = self.quota.remaining()  # > 0: a quota answer ended the session
                if waiting > 0:
                    reason = self.quota.reason  # whatever else failed with it, this is why
                if self.connected or self.detail != reason:
                    log.warning("tuya cloud disconnected", backend=self.name, reason=reason)
                if self.connected and time.monotonic() - started > 1:
                    delay = 1.0
                self.connected = False
                self.detail = reason
                self._emit(BackendStatus(False, reason))
                if waiting > 0:
                    # not one call (token, poll, message service) before the back-off is over;
                    # then the next session is the one try
                    await asyncio.sleep(waiting)
                    delay = 1.0
                    continue
                await asyncio.sleep(min(delay, self.reconnect_max_delay)
                                    * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.reconnect_max_delay)
        finally:
            await self._close_http()

    async def _session(self) -> None:
        tasks: list[asyncio.Task[None]] = []
        self._quota_hit.clear()
        try:
            await self._access_token()
            async with self._sync_lock:
                devices = await self._sync()
            self.connected = True
            self.detail = "connected"
            log.info("tuya cloud connected", backend=self.name, devices=len(devices),
                     homes=len(self._homes))
            self._emit(BackendStatus(True, "connected"))
            self._emit(Snapshot(tuple(devices)))
            tasks.append(asyncio.create_task(self._poll_loop(), name=f"{self.name}:poll"))
            tasks.append(asyncio.create_task(self._token_keeper(), name=f"{self.name}:token"))
            tasks.append(asyncio.create_task(self._quota_watch(), name=f"{self.name}:quota"))
            if self.push_enabled:
                tasks.append(asyncio.create_task(self._push_loop(), name=f"{self.name}:push"))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks + list(self._tasks):
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)  # a cancellation of ours still propagates
                for task in tasks:
                    if not task.cancelled():
                        task.exception()  # retrieved: the first one was raised above
            if self.push_enabled:
                self.push_connected = False
                self.push_detail = "not connected"

    async def _quota_watch(self) -> None:
        """End the session when any call (a write, a resync) ran into a quota answer."""
        await self._quota_hit.wait()
        raise QuotaExhausted(self.quota.reason, self.quota.code)

    async def probe(self) -> int:
        """Log in once and count the user's devices (for ``check``); raises on failure."""
        try:
            listing = await self._user_devices()
        except Exception as exc:
            reason, _ = classify_error(exc)
            raise BackendError(reason) from None
        finally:
            await self._close_http()
        return len(listing)

    # ---- snapshot and structure -------------------------------------------------------------

    async def _optional(self, path: str) -> Any:
        """A call whose failure only loses detail (INFERRED paths): None when refused."""
        try:
            return await self.call("GET", path)
        except QuotaExhausted:
            raise
        except TuyaApiError as exc:
            log.warning("tuya call refused; continuing without it", backend=self.name,
                        path=path, code=exc.code, message=exc.message)
            return None

    async def _user_devices(self, kind: str = "device_list") -> list[Mapping[str, Any]]:
        """Every device of the user: ``GET /v1.0/users/{uid}/devices``, page by page (each page
        counted as ``kind``: ``poll`` for the poll loop's listings)."""
        path = f"/v1.0/users/{self.uid}/devices"
        return await read_pages(lambda query: self.call("GET", path, query, kind=kind),
                                self.name)

    async def _sync(self) -> list[Device]:
        """Read homes, rooms, devices, specs and status; return the model devices.

        The caller holds ``_sync_lock``.
        """
        self._overlay = {}
        try:
            return await self._sync_inner()
        finally:
            self._overlay = None

    async def _sync_inner(self) -> list[Device]:
        homes_raw = await self.call("GET", f"/v1.0/users/{self.uid}/homes")
        homes: list[dict[str, Any]] = []
        placement: dict[str, dict[str, Any]] = {}
        home_infos: dict[str, dict[str, Any]] = {}
        for home in homes_raw if isinstance(homes_raw, list) else []:
            if not isinstance(home, Mapping) or home.get("home_id") is None:
                continue
            home_id = home["home_id"]
            entry: dict[str, Any] = {
                "home_id": home_id, "name": home.get("name"),
                "geo_name": home.get("geo_name"), "lon": home.get("lon"),
                "lat": home.get("lat"), "rooms": [], "device_ids": [],
            }
            rooms_raw = await self._optional(f"/v1.0/homes/{home_id}/rooms")
            rooms = rooms_raw.get("rooms") if isinstance(rooms_raw, Mapping) else rooms_raw
            for room in rooms if isinstance(rooms, list) else []:
                if not isinstance(room, Mapping) or room.get("room_id") is None:
                    continue
                room_id = room["room_id"]
                listed = await self._optional(f"/v1.0/homes/{home_id}/rooms/{room_id}/devices")
                ids = [str(d["id"]) for d in _device_list(listed)]
                entry["rooms"].append({"room_id": room_id, "name": room.get("name"),
                                       "device_ids": ids})
                for device_id in ids:
                    placement[device_id] = {"home": entry["name"], "home_id": home_id,
                                            "room": room.get("name"), "room_id": room_id}
            for info in _device_list(await self.call("GET", f"/v1.0/homes/{home_id}/devices")):
                device_id = str(info["id"])
                entry["device_ids"].append(device_id)
                home_infos.setdefault(device_id, dict(info))
                placement.setdefault(device_id, {"home": entry["name"], "home_id": home_id,
                                                 "room": None, "room_id": None})
            homes.append(entry)
        infos = {str(d["id"]): dict(d) for d in await self._user_devices()}
        for device_id, info in home_infos.items():
            infos.setdefault(device_id, info)
        devices: list[Device] = []
        specs: dict[str, TuyaSpec] = {}
        for device_id, info in infos.items():
            specs[device_id] = await self._spec(device_id, info)
        self._homes = homes
        self._infos = infos
        self._specs = specs
        self._values = {i: status_map(info.get("status")) for i, info in infos.items()}
        for device_id, pushed in (self._overlay or {}).items():  # newer than the listing
            if device_id in self._values:
                self._values[device_id].update(pushed)
        self._extras = {}
        for device_id, info in infos.items():
            self._extras[device_id] = self._extra(info, specs[device_id],
                                                  placement.get(device_id))
            devices.append(self._device(device_id))
        return devices

    def _extra(self, info: Mapping[str, Any], spec: TuyaSpec,
               place: Mapping[str, Any] | None) -> dict[str, Any]:
        extra: dict[str, Any] = {"home": None, "home_id": None, "room": None, "room_id": None}
        extra.update(place or {})
        extra["category"] = spec.category or info.get("category")
        extra["product_id"] = info.get("product_id")
        if self.rooms_in_topics:
            prefix = extra["room"] or extra["home"]
            name = str(info.get("name") or info.get("id"))
            slug = _slug(f"{prefix} {name}") if prefix else _slug(name)
            if slug and slug != "bridge":
                extra["friendly_name"] = slug
        return extra

    async def _spec(self, device_id: str, info: Mapping[str, Any]) -> TuyaSpec:
        key = str(info.get("product_id") or device_id)
        cached = self._spec_cache.get(key)
        if cached is not None:
            return cached
        spec: TuyaSpec | None = None
        for template in SPEC_PATHS:
            try:
                result = await self.call("GET", template.format(id=device_id))
            except QuotaExhausted:
                raise
            except TuyaApiError:
                continue
            spec = parse_spec(result)
            if spec.dps:
                break
        if spec is None or not spec.dps:
            spec = _guess_spec(info)
            log.warning("no DP description for a device; values are read-only guesses",
                        backend=self.name, device=device_id)
        if not spec.category:
            spec.category = str(info.get("category") or "")
        self._spec_cache[key] = spec
        return spec

    def _device(self, device_id: str) -> Device:
        """A fresh model device from the current state (never shared with the core)."""
        device, bad = build_device(self._infos[device_id], self._specs[device_id], self.name,
                                   self._values.get(device_id, {}),
                                   self._extras.get(device_id))
        for code in bad:
            log.warning("tuya sent an unusable value", backend=self.name, device=device_id,
                        code=code)
        return device

    async def snapshot(self) -> list[Device]:
        """Every device, read now (homes, rooms, specs and status too)."""
        async with self._sync_lock:
            return await self._sync()

    def homes(self) -> list[dict[str, Any]]:
        """Homes of the user with their rooms and device ids (published on ``bridge/homes``)."""
        return copy.deepcopy(self._homes)

    async def resync(self) -> None:
        """Read the structure and devices again and announce what changed."""
        async with self._sync_lock:
            before = {i: (dict(e), self._infos[i].get("name")) for i, e in self._extras.items()}
            devices = await self._sync()
            self._announce(before, devices)

    def _announce(self, before: Mapping[str, tuple[dict[str, Any], Any]],
                  devices: list[Device]) -> None:
        announced = False
        for device in devices:
            old = before.get(device.id)
            if old is None:
                self._emit(DeviceAdded(device))
                announced = True
            elif old != (device.extra, self._infos[device.id].get("name")):
                self._emit(DeviceUpdated(device))
                announced = True
        for device_id in before.keys() - {d.id for d in devices}:
            self._last_t = {k: v for k, v in self._last_t.items() if k[0] != device_id}
            self._emit(DeviceRemoved(device_id))
            announced = True
        if not announced:
            self._emit(Snapshot(tuple(devices)))

    # ---- values -----------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        self._sink(event)

    def _address(self, device_id: str, spec: TuyaSpec, code: str) -> TraitAddress:
        return TraitAddress(device_id, ENDPOINT_ID, function_for(code, spec.category), code)

    def _apply(self, device_id: str, values: Mapping[str, Any],
               stamps: Mapping[str, int] | None = None) -> None:
        """Store reported raw values and emit a TraitChanged for each (stale pushes skipped)."""
        spec = self._specs.get(device_id)
        if spec is None:
            return
        current = self._values.setdefault(device_id, {})
        for code, raw in values.items():
            dp = spec.dps.get(code)
            if dp is None or not dp.readable or is_event_dp(dp):
                continue  # an event DP's value is the last press: never state
            stamp = (stamps or {}).get(code)
            if stamp is not None:
                last = self._last_t.get((device_id, code))
                if last is not None and stamp < last:
                    continue
                self._last_t[(device_id, code)] = stamp
            try:
                value = from_tuya(dp, raw)
            except ValueError as exc:
                self._warn.warning(("value", device_id, code), "tuya sent an unusable value",
                                   backend=self.name, device=device_id, code=code,
                                   reason=str(exc))
                continue
            current[code] = raw
            if self._overlay is not None:
                self._overlay.setdefault(device_id, {})[code] = raw
            self._emit(TraitChanged(self._address(device_id, spec, code), value, stamp))

    def _set_online(self, device_id: str, online: bool) -> None:
        info = self._infos.get(device_id)
        if info is None or info.get("online") is online:
            return
        info["online"] = online
        self._emit(Availability(device_id, online))

    async def _poll_once(self) -> None:
        listing = await self._user_devices("poll")
        if self._push_ok():
            return  # push came back meanwhile: it is newer than this answer, which could roll back
        self.polls += 1
        ids = {str(d["id"]) for d in listing}
        if ids != set(self._infos):
            await self.resync()
            return
        for info in listing:
            device_id = str(info["id"])
            fresh = status_map(info.get("status"))
            known = self._values.get(device_id, {})
            self._apply(device_id, {c: v for c, v in fresh.items() if known.get(c) != v})
            online = info.get("online")
            if isinstance(online, bool):
                self._set_online(device_id, online)

    def _push_ok(self) -> bool:
        return self.push_enabled and self.push_connected

    async def _poll_loop(self) -> None:
        while True:
            self._push_changed.clear()
            if self._push_ok():
                await self._push_changed.wait()
                if not self._push_ok():
                    await self._poll_once()  # catch up at once when push drops
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._push_changed.wait()
            if not self._push_ok():
                await self._poll_once()

    async def read(self, addresses: Sequence[TraitAddress]) -> dict[TraitAddress, Any]:
        """Current values of these traits, fresh from ``/v1.0/devices/{id}/status``."""
        wanted: dict[str, list[TraitAddress]] = {}
        for address in addresses:
            wanted.setdefault(address.device_id, []).append(address)
        out: dict[TraitAddress, Any] = {}
        for device_id, group in wanted.items():
            spec = self._specs.get(device_id)
            if spec is None:
                continue
            raw = status_map(await self.call("GET", f"/v1.0/devices/{device_id}/status"))
            for address in group:
                dp = spec.dps.get(address.trait_code)
                if dp is None or address.trait_code not in raw:
                    continue
                try:
                    out[address] = from_tuya(dp, raw[address.trait_code])
                except ValueError:
                    continue
                self._values.setdefault(device_id, {})[dp.code] = raw[dp.code]
        return out

    async def _refresh_device(self, device_id: str) -> None:
        """Read one device's status and report changes (after a write while push is down)."""
        try:
            raw = status_map(await self.call("GET", f"/v1.0/devices/{device_id}/status"))
        except BackendError as exc:
            log.warning("could not read a device after a write", backend=self.name,
                        device=device_id, reason=exc.message)
            return
        known = self._values.get(device_id, {})
        self._apply(device_id, {c: v for c, v in raw.items() if known.get(c) != v})

    async def write(self, items: Sequence[WriteItem]) -> list[WriteFailure]:
        """One ``commands`` call per device; a refused call fails all of that device's items."""
        groups: dict[str, list[WriteItem]] = {}
        for item in items:
            groups.setdefault(item.address.device_id, []).append(item)
        results = await asyncio.gather(*(self._write_device(d, g) for d, g in groups.items()))
        return [failure for group in results for failure in group]

    async def _write_device(self, device_id: str, items: list[WriteItem]) -> list[WriteFailure]:
        spec = self._specs.get(device_id)
        failures: list[WriteFailure] = []
        commands: list[dict[str, Any]] = []
        sent: list[WriteItem] = []
        for item in items:
            dp: DpSpec | None = spec.dps.get(item.address.trait_code) if spec else None
            if dp is None or not dp.writable:
                failures.append(WriteFailure(item, None, "not a writable DP of this device"))
                continue
            try:
                commands.append({"code": dp.code, "value": to_tuya(dp, item.value)})
            except ValueError as exc:
                failures.append(WriteFailure(item, None, str(exc)))
                continue
            sent.append(item)
        if not commands:
            return failures
        try:
            await self.call("POST", f"/v1.0/devices/{device_id}/commands",
                            body={"commands": commands})
        except BackendError as exc:
            return failures + [WriteFailure(item, exc.code, exc.message) for item in sent]
        if not self._push_ok():
            self._spawn(self._refresh_device(device_id))
        return failures

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- management -------------------------------------------------------------------------

    async def request(self, command: str, args: Mapping[str, Any]) -> Any:
        """Run a ``tuya/...`` management command (see :data:`TUYA_COMMANDS`)."""
        params = validate(command, args, {"uid": self.uid})
        call = rest_call(command, params)
        result = await self.call(call.method, call.path, call.query or None, call.body,
                                 kind="management")
        if TUYA_COMMANDS[command].mutates and self.connected:
            try:
                await self.resync()
            except BackendError as exc:
                log.warning("could not read the homes again after a change", backend=self.name,
                            command=command, reason=exc.message)
        return result

    def summary(self) -> dict[str, Any]:
        """Connection facts for ``bridge/info``; never secrets."""
        out = super().summary()
        out.update({
            "api_url": self.api_url,
            "uid": self.uid,
            "push": ("connected" if self.push_connected else self.push_detail)
            if self.push_enabled else "disabled",
            "push_url": self.push_url if self.push_enabled else None,
            "homes": len(self._homes),
            "devices": len(self._infos),
            "poll_interval": self.poll_interval,
            "call_budget": self.budget.as_json(),
            "quota": self.quota.as_json(),
        })
        return out

    # ---- message service --------------------------------------------------------------------

    def _push_endpoint(self) -> str:
        base = self.push_url or ""
        if not base.endswith("/"):
            base += "/"
        return (f"{base}ws/v2/consumer/persistent/{self.client_id}/out/{self.push_topic}/"
                f"{self.client_id}-sub?ackTimeoutMillis=3000&subscriptionType=Failover")

    def _set_push(self, connected: bool, detail: str) -> None:
        changed = connected != self.push_connected or detail != self.push_detail
        self.push_connected = connected
        self.push_detail = detail
        if changed:
            if connected:
                log.info("tuya message service connected", backend=self.name)
            else:
                log.warning("tuya message service down; polling", backend=self.name,
                            reason=detail, poll_interval=self.poll_interval)
            self._push_changed.set()
            if self.connected:
                self._emit(BackendStatus(True, self.detail))

    async def _push_loop(self) -> None:
        delay = 0.5
        headers = {"username": self.client_id,
                   "password": pulsar_password(self.client_id, self._secret)}
        while True:
            try:
                async with connect(self._push_endpoint(), additional_headers=headers,
                                   ping_interval=30, ping_timeout=30,
                                   open_timeout=self.request_timeout, max_queue=None) as ws:
                    self._set_push(True, "connected")
                    delay = 0.5
                    async for raw in ws:
                        message_id = self._on_frame(raw)
                        if message_id is not None:
                            await ws.send(json.dumps({"messageId": message_id}))
                reason = "closed by the message service"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = classify_push_error(exc)
            self._set_push(False, reason)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.reconnect_max_delay)

    def _on_frame(self, raw: str | bytes) -> str | None:
        """Handle one frame; the message id to ack (garbage with an id is acked too)."""
        try:
            message_id, payload, data = decode_push_frame(self._secret, raw)
        except ValueError as exc:
            self.garbage_received += 1
            self._warn.warning("garbage", "tuya message service sent an unusable frame",
                               backend=self.name, reason=str(exc.args[0]),
                               total=self.garbage_received)
            return str(exc.args[1]) if len(exc.args) > 1 else None
        if message_id in self._seen_set:
            return message_id  # a redelivery of something already applied
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(message_id)
        self._seen_set.add(message_id)
        self.push_messages += 1
        if not isinstance(data, Mapping):
            return message_id
        self._on_message(payload.get("protocol"), data)
        return message_id

    def _on_message(self, protocol: Any, data: Mapping[str, Any]) -> None:
        """Apply one decrypted message, legacy (4, 20) or IoT Core (1000, 1001) alike."""
        message = read_message(protocol, data)
        if message is None:
            report_unknown(self.name, protocol, data)
        elif message.action == "status":
            self._on_status(message)
        elif message.action in ("online", "offline"):
            self._set_online(message.device_id, message.action == "online")
        elif message.action == "rename":
            info = self._infos.get(message.device_id)
            if info is not None and message.name is not None:
                info["name"] = message.name
                self._emit(DeviceRenamed(message.device_id, message.name))
        elif message.action == "resync":
            self._want_resync()

    def _on_status(self, message: PushMessage) -> None:
        device_id = message.device_id
        if device_id not in self._specs:
            if not self._resyncing:
                log.info("status of a device not known yet; reading the homes again",
                         backend=self.name, device=device_id)
            self._want_resync()
            return
        self._fire(device_id, message.data_id, message.values, message.stamps)
        self._apply(device_id, message.values, message.stamps)

    def _fire(self, device_id: str, data_id: Any, values: Mapping[str, Any],
              stamps: Mapping[str, int]) -> None:
        """The presses and gestures of one pushed status report (``dataId`` identifies the
        report, so the core drops a redelivery)."""
        dps = self._specs[device_id].dps
        for code, raw in values.items():
            dp = dps.get(code)
            if dp is not None and is_event_dp(dp):
                event = device_event(device_id, ENDPOINT_ID, dp, raw, stamps.get(code),
                                     str(data_id) if data_id is not None else None)
                if event is not None:
                    self._emit(event)

    def _want_resync(self) -> None:
        """One resync at a time: what asks meanwhile gets one more afterwards, not one each
        (a storm of pushes for an unknown device is one or two reads of the homes)."""
        if self._resyncing:
            self._resync_again = True
        else:
            self._resyncing = True
            self._spawn(self._safe_resync())

    async def _safe_resync(self) -> None:
        try:
            while True:
                self._resync_again = False
                try:
                    await self.resync()
                except BackendError as exc:
                    log.warning("could not read the homes again", backend=self.name,
                                reason=exc.message)
                if not self._resync_again:
                    return
        finally:
            self._resyncing = False


# ---- messages -----------------------------------------------------------------------------------

MESSAGE_ACTIONS: dict[int, dict[str, str]] = {
    # Legacy protocol 20 (DOC message-type, "Legacy protocol numbers"): the device is ``devId``
    # at the top level. p2pSignal: 3P tuya-iot-python-sdk (a camera's signalling, no state).
    20: {"online": "online", "offline": "offline", "nameUpdate": "rename",
         "dpNameUpdate": "resync", "bindUser": "resync", "delete": "resync",
         "p2pSignal": "ignore"},
    # IoT Core protocol 1000, device reports (DOC message-type, "IoT Core protocol numbers",
    # since the 2023-06-20 upgrade): ``bizData: {devId, dataId?, productId, properties: [{code,
    # value, dpId, time}]}`` (field names 3P: public IoT Core consumers). INFERRED: a
    # deviceQueryPropertyMessage (the answer to a property query) has the same properties.
    # Thing-model events and action results have no place in the model: ignored.
    1000: {"devicePropertyMessage": "status", "deviceQueryPropertyMessage": "status",
           "deviceEventMessage": "ignore", "deviceActionResponseMessage": "ignore"},
    # IoT Core protocol 1001, device management (DOC message-type): the device is
    # ``bizData.devId``. Mirrors of protocol 20: deviceOnline/deviceOffline = online/offline
    # (``bizData.time``), deviceNameUpdate = nameUpdate (INFERRED: the new name is
    # ``bizData.name`` as in nameUpdate), deviceBindSpace = bindUser, deviceUnbindSpace =
    # delete (read the homes again, which adds or removes the device). INFERRED: a
    # deviceTransfer (the device moved to another space) is read again the same way;
    # deviceFreeze/deviceUnFreeze change no state the bridge shows.
    1001: {"deviceOnline": "online", "deviceOffline": "offline",
           "deviceNameUpdate": "rename", "deviceBindSpace": "resync",
           "deviceUnbindSpace": "resync", "deviceTransfer": "resync",
           "deviceFreeze": "ignore", "deviceUnFreeze": "ignore"},
}
"""What each known ``bizCode`` of each protocol does; protocol 4 is a status report."""

_reported: set[tuple[Any, Any]] = set()
"""(protocol, bizCode) of every message already logged as not understood, in this process."""


@dataclass(frozen=True, slots=True)
class PushMessage:
    """One message of the message service, read: what happened to which device."""

    action: str
    """``status``, ``online``, ``offline``, ``rename``, ``resync`` or ``ignore``."""
    device_id: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    """``status``: raw DP values by code."""
    stamps: dict[str, int] = field(default_factory=dict)
    """``status``: each value's report time (ms), where the message gives one."""
    data_id: Any = None
    name: str | None = None
    """``rename``: the new name."""


def _status_items(raw: Any, stamp_key: str) -> tuple[dict[str, Any], dict[str, int]] | None:
    if not isinstance(raw, list):
        return None
    values: dict[str, Any] = {}
    stamps: dict[str, int] = {}
    for item in raw:
        if isinstance(item, Mapping) and isinstance(item.get("code"), str):
            values[item["code"]] = item.get("value")
            stamp = item.get(stamp_key)
            if isinstance(stamp, int) and not isinstance(stamp, bool):
                stamps[item["code"]] = stamp
    return values, stamps


def read_message(protocol: Any, data: Mapping[str, Any]) -> PushMessage | None:
    """A decrypted message of protocol 4, 20, 1000 or 1001; None when it is of an unknown
    protocol or ``bizCode``, or lacks what its kind needs (a device id, its status list)."""
    biz = data.get("bizData")
    biz = biz if isinstance(biz, Mapping) else {}
    code = data.get("bizCode")
    action: str | None = "status"
    items, stamp_key = biz.get("properties"), "time"
    if protocol == 4:  # DOC: {dataId, devId, productKey, status: [{code, value, t, "<dpId>"}]}
        items, stamp_key = data.get("status"), "t"
    else:
        actions = MESSAGE_ACTIONS.get(protocol) if isinstance(protocol, int) else None
        action = actions.get(code) if actions and isinstance(code, str) else None
    if action is None:
        return None
    if action == "ignore":
        return PushMessage(action)
    device_id = data.get("devId") or biz.get("devId")
    if not isinstance(device_id, str) or not device_id:
        return None
    if action == "status":
        read = _status_items(items, stamp_key)
        if read is None:
            return None
        return PushMessage(action, device_id, *read, data.get("dataId", biz.get("dataId")))
    if action == "rename":
        name = biz.get("name")
        return PushMessage(action, device_id, name=name) if isinstance(name, str) else None
    return PushMessage(action, device_id)


def report_unknown(backend: str, protocol: Any, data: Mapping[str, Any]) -> bool:
    """Log a message not understood, once per (protocol, ``bizCode``) and process, with its
    shape: the names of its keys and of ``bizData``'s, never a value. Whether it logged."""
    code = data.get("bizCode")
    kind = protocol if isinstance(protocol, int) else str(protocol)[:20]
    key = (kind, code[:64] if isinstance(code, str) else None)
    if key in _reported:
        return False
    _reported.add(key)
    biz = data.get("bizData")
    log.warning("tuya message service sent a message the bridge does not understand; "
                "ignoring messages of its kind (logged once)", backend=backend,
                protocol=key[0], biz_code=key[1], keys=_names(data),
                biz_data_keys=_names(biz) if isinstance(biz, Mapping) else None)
    return True


def _names(data: Mapping[Any, Any]) -> list[str]:
    return sorted(str(k)[:64] for k in data)[:40]


# ---- listings -----------------------------------------------------------------------------------

_listing_warn = RateLimitedLog(log)
"""Listings are read on every poll: a lasting discrepancy is logged once a minute, not each time."""


async def read_pages(fetch: Callable[[dict[str, str]], Awaitable[Any]],
                     backend: str) -> list[Mapping[str, Any]]:
    """Every device of a paged listing, however the cloud pages it.

    Tuya documents ``GET /v1.0/users/{uid}/devices`` with ``page_no`` (1 = the first page) and
    ``page_size``, answering a plain list (DOC, private-cloud edition "Get User's Device List");
    the public cloud's listings page with ``last_id`` and may answer ``{devices | list, total,
    last_id, has_more}`` (DOC for ``GET /v1.0/devices``; INFERRED for this path). So the first
    page is asked for with ``page_size`` alone, the next with ``last_id`` (the answer's, else
    the page's last device id); when that brings back a page with nothing new (the cloud
    ignores ``last_id``), ``page_no`` takes over from page 2. The listing ends on an empty
    page, ``has_more: false``, a page with no new id, or a page shorter than the longest
    before it (INFERRED: a cloud may cap pages below ``page_size``, so the first page tells
    the real size; ``has_more: true`` overrides). A ``total`` announced by the answer that
    differs from the count read is logged, and so is a listing cut at :data:`MAX_PAGES` (at most
    once a minute per backend each).
    """
    devices: dict[str, Mapping[str, Any]] = {}
    query = {"page_size": str(PAGE_SIZE)}
    by_number = False  # the cloud ignored last_id: page_no from page 2 on
    number = 1  # the page_no of the page just read
    longest = 0
    total: int | None = None
    for request in range(MAX_PAGES):
        raw = await fetch(query)
        meta: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        if isinstance(meta.get("total"), int) and not isinstance(meta["total"], bool):
            total = meta["total"]
        page = _device_list(raw)
        fresh = [d for d in page if str(d["id"]) not in devices]
        devices.update((str(d["id"]), d) for d in fresh)
        more = meta.get("has_more")
        if not page or more is False:
            break
        if request == 1 and not fresh:  # the first page again: last_id means nothing here
            by_number = True
        elif not fresh or (more is not True and len(page) < longest):
            break
        longest = max(longest, len(page))
        if by_number:
            number += 1
            query = {"page_size": str(PAGE_SIZE), "page_no": str(number)}
        else:
            last = meta.get("last_id") or page[-1]["id"]
            query = {"page_size": str(PAGE_SIZE), "last_id": str(last)}
    else:
        _listing_warn.warning((backend, "cut"), "tuya device listing cut: too many pages",
                              backend=backend, pages=MAX_PAGES, devices=len(devices))
    if total is not None and total != len(devices):
        _listing_warn.warning((backend, "total"), "tuya device listing: the count read differs "
                              "from the total announced", backend=backend, read=len(devices),
                              total=total)
    return list(devices.values())


def _device_list(raw: Any) -> list[Mapping[str, Any]]:
    """Device objects from a listing: a list, or ``{"devices": [...]}`` / ``{"list": [...]}``."""
    if isinstance(raw, Mapping):
        raw = raw.get("devices", raw.get("list"))
    if not isinstance(raw, list):
        return []
    return [d for d in raw if isinstance(d, Mapping) and d.get("id") not in (None, "")]


def _guess_spec(info: Mapping[str, Any]) -> TuyaSpec:
    """Read-only DPs typed from the values seen, for a device whose spec nobody answers."""
    spec = TuyaSpec(str(info.get("category") or ""))
    for code, value in status_map(info.get("status")).items():
        if isinstance(value, bool):
            kind = "Boolean"
        elif isinstance(value, int):
            kind = "Integer"
        elif isinstance(value, dict | list):
            kind = "Json"
        else:
            kind = "String"
        spec.dps[code] = DpSpec(code, kind, {}, readable=True, writable=False)
    return spec


def classify_error(exc: BaseException) -> tuple[str, bool]:
    """A log-ready reason for a failed session, and whether the cloud refused the credentials."""
    if isinstance(exc, QuotaExhausted):
        return exc.message, False  # the back-off is the quota gate's, not the reconnect delay
    if isinstance(exc, TuyaApiError):
        if exc.code in CREDENTIAL_CODES:
            return (f"authentication failed: the Tuya cloud refused the project's credentials: "
                    f"{exc.message} (code {exc.code}); check client_id and secret", True)
        if exc.code == 1106:
            return (f"permission denied (code 1106): {exc.message}; is the app account of uid "
                    "linked to the cloud project?", True)
        if isinstance(exc.code, int) and exc.code in TUYA_PERMISSION_CODES:
            return (f"permission denied (code {exc.code}): {exc.message}: "
                    f"{TUYA_PERMISSION_CODES[exc.code]}; subscribe the cloud project to the API "
                    "at iot.tuya.com (Cloud > Development > the project > Service API)", True)
        return f"Tuya cloud error: {exc.message} (code {exc.code})", False
    if isinstance(exc, BackendError):
        return exc.message, False
    if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError):
        return f"Tuya cloud unreachable: {exc or type(exc).__name__}", False
    raise exc


def classify_push_error(exc: BaseException) -> str:
    """Why the message-service connection failed, for ``bridge/info``."""
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status in (401, 403):
            return (f"message service refused the credentials (HTTP {status}); is the message "
                    "service enabled for the project?")
        return f"message service answered HTTP {status}"
    if isinstance(exc, ConnectionClosed):
        return "message service connection lost"
    if isinstance(exc, InvalidHandshake | websockets.InvalidURI):
        return f"message service protocol error: {exc}"
    if isinstance(exc, OSError | TimeoutError):
        return f"message service unreachable: {getattr(exc, 'strerror', None) or exc or 'timeout'}"
    return f"message service error: {type(exc).__name__}: {exc}"
