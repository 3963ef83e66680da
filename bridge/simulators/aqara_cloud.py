"""A simulator of the Aqara Open API v3 (intent style) for one developer app and one account.

One aiohttp server serves ``POST /v3.0/open/api``; trait pushes and event messages are POSTed to
:attr:`AqaraCloudSimulator.callback_url` (the console's "Message push" URL). It shares no code
with the bridge (it signs with its own MD5 code and keeps its own
:mod:`bridge.simulators.sample_home` devices), so a bug in the bridge cannot cancel out here.

Which variant it speaks (SEED = seed document 001, authoritative; DOC = vendor docs; 3P =
third-party clients; INFERRED = our choice; see protocols.md §2 for the sources):

* Transport (DOC/3P): ``POST /v3.0/open/api``, body ``{"intent": ..., "data": ...}``; every
  answer is the envelope ``{"code", "message", "msgDetails": null, "requestId": "", "result"}``
  (DOC) with HTTP status 200, except rate limiting (below). Every code comes from Aqara's code
  table as both Aqara SDKs (aqara-capi, aqara-iot-py-sdk) carry it; which code a situation gets
  is INFERRED where the table alone does not say. A body that is not a JSON object, or lacks a
  string ``intent``, gives 302 "Params error"; an unknown intent 306 "Request path not open".
* Headers and signature (3P): ``Appid``, ``Keyid``, ``Nonce``, ``Time``, ``Sign`` and, except on
  ``config.auth.*``, ``Accesstoken`` (header names case-insensitive). Checked in this order: a
  missing header → 305 "Header Params error" (a missing ``Accesstoken``: 109 "Token is
  absence"); an unknown Appid or a Keyid that is not the app's → 106 "Invalid sign"; ``Time``
  not an integer → 305; ``Time`` more than 5 minutes from the simulator's clock → 105 "Data
  package has expired"; ``Sign`` != lower-hex MD5(lower("Accesstoken=<t>&Appid=<a>&Keyid=<k>
  &Nonce=<n>&Time=<ms>" + AppKey)) recomputed from the *received* header values (the
  ``Accesstoken`` part dropped when the header is absent) → 106 "Invalid sign"; then, except on
  auth intents, an unknown (or replaced) access token → 2004 "AccessToken incorrect", an
  expired one → 2005 "AccessToken expired" (both selectable: :attr:`unknown_token_code`,
  :attr:`expired_token_code`, e.g. the table's 108 "Token has expired" or 804 "Token failed").
  Nonces are not checked for reuse.
* Rate limit (INFERRED shape; 300 calls per 5 minutes = the free tier per 3P notes): a sliding
  window of :attr:`rate_calls` calls per :attr:`rate_window` seconds per Appid, counting every
  call that is not itself rate-limited. Variant ``rate_limit_style="http"`` (default): HTTP 429,
  header ``Retry-After: <whole seconds>``, envelope code 429 "Too many requests". Variant
  ``"envelope"``: HTTP 200, envelope code 104 "Server busy" (legacy code), no ``Retry-After``.
  Nothing of a limited call is executed.
* Call quota (INFERRED throughout: no Aqara document gives its answer; the free tier's caps,
  100,000 calls a month and 2 million in all, are the console's): while
  :attr:`quota_exhausted` is True every call (auth intents too) is refused and not executed,
  after the rate check. ``quota_style="envelope"`` (default): HTTP 200, envelope code
  :data:`CODE_QUOTA` (a number of our own) with the message "The API calls of this month
  exceed the quota of your plan"; ``"http"``: HTTP 429 with ``Retry-After`` = the seconds until
  the quota refreshes (:attr:`quota_retry_after`, default one day) and envelope code 429 "Too
  many requests: the monthly API call quota is used up".
* Auth intents (DOC request fields; result fields 3P, ``expiresIn`` INFERRED as a string of
  seconds): ``config.auth.getAuthCode`` ``{account, accountType: 0, accessTokenValidity?}``
  (``1~24h``, ``1~30d``, ``1~10y``; default 7d) for the configured account, else 302; the code
  (6 digits, single use, 10 minutes) is in the result ``{"authCode"}`` as in the DOC example and
  in :attr:`auth_codes`. ``config.auth.getToken`` ``{authCode, account, accountType}`` →
  ``{accessToken, refreshToken, openId, expiresIn}``; a wrong code → 302.
  ``config.auth.refreshToken`` ``{refreshToken}`` → a new pair; the old access token and the old
  refresh token stop working (single use); an unknown or used refresh token → 2006
  "RefreshToken incorrect", an expired one → 2007 "RefreshToken expired".
  Refresh tokens live ``access lifetime + 30 days`` (DOC) unless :attr:`refresh_ttl` is set.
  :attr:`access_ttl` (seconds) overrides the requested validity (short lifetimes for tests).
* ``query.device.info`` (3P): ``{dids?, positionId?, pageNum = 1, pageSize = 30}``, ``pageSize``
  1..100 (INFERRED) else 302 → ``{"data": [{did, parentDid, positionId, createTime, timeZone,
  model, updateTime, modelType, state, firmwareVersion, deviceName}], "totalCount"}`` ordered by
  createTime; ``state`` 1 online / 0 offline.
* ``spec.query.specdevice.config`` (SEED): ``{dids}`` 1..10 ids else 302; only Matter devices
  (model prefix ``aqara.matter.``) are answered, others and unknown ids are left out (INFERRED).
  ``result.data`` = ``[{deviceId, model, types, endpoints: [{endpointId, endpointTypes,
  functions: [{functionId, functionCode, traits: [{traitId, traitCode, attribute: {readable,
  writable, subscribable, type, format, unit?, min?, max?, step?, enums?, defaultValue?},
  value (string), time}]}]}]}]``.
* ``spec.query.qlinkmodel.config`` (SEED): ``{models}`` 1..5 else 302 → ``result.data`` =
  ``{model: {model, types, endpoints}}`` for non-Matter models this account has (the first such
  device's spec, no values); unknown and Matter models are left out (INFERRED).
* ``spec.query.trait`` (SEED): ``{traits: [{deviceId, endpointId, functionCode, traitCode}]}``;
  only the first 50 are looked at; ``result.data`` = ``[{functionCode, endpointId, time,
  deviceId, value (string), traitCode}]`` for the known readable ones (others left out).
* ``spec.write.trait`` (SEED): ``{traits: [{deviceId, endpointId, functionCode, traitCode,
  value}]}``; with more than 10 distinct devices only the first 50 items are processed and the
  rest are ignored (absent from the result). ``result.data`` = one ``{functionCode, endpointId,
  deviceId, value, traitCode, code}`` per processed item, ``code`` 0 or (codes of the table, their
  use INFERRED): 603 "Device permission denied" (not in this account), 1008 "Resource attr not
  exist", 1007 "Resource write not support", 602 "Device is offline", 1004 "Resource value
  illegal". Values are the cloud's strings (``"1"``/``"0"``, decimal numbers,
  the enum value, JSON text for objects); typed JSON values are accepted too. Accepted items
  change the device state after the answer is sent (and push).
* ``spec.config.trait.subscribe`` (DOC): ``{traits: [{subjectId, codePaths: ["2.Output.OnOff",
  ...], attach?}]}`` → ``result: null``; an unknown device, a malformed/unknown code path or a
  trait that is not subscribable rejects the whole call with 302 (INFERRED). Subscribing again
  replaces ``attach``. ``spec.config.trait.unsubscribe`` (3P) ``{traits: [{subjectId,
  codePaths}]}`` → ``result: null``; unknown entries are ignored.
* Trait push (DOC field list, envelope INFERRED, protocols.md §2.7): on every value change of a
  subscribed trait, a POST to :attr:`callback_url` with body ``{"msgId", "openId", "msgType":
  "spec_report", "time": "<ms>", "data": [{subjectId, model, codePath, value (string), time:
  "<ms>", statusCode: 0, triggerSource: {"type": 1, "time": "<s>"}, attach}]}`` (changes queued
  together are sent in one message, at most :attr:`push_batch` items) and the headers of Aqara's
  Chinese push page (DOC): ``token`` (the account's newest access token, or :attr:`push_token`),
  ``time`` (ms) and ``nonce`` always; ``appkey`` and ``sign`` only with signing on
  (:attr:`push_signing`): ``documented`` signs the page's string ``appkey=..&nonce=..&time=..
  &token=..`` (its digest step is not in our copy: INFERRED as a request's, MD5 of the lower-cased
  string + AppKey), ``request`` signs a request's base with ``token`` as the access token (an
  earlier inference); ``appkey`` carries the Keyid (INFERRED). Any 2xx answer counts as
  delivered; otherwise the message is retried :attr:`push_retries` times after
  :attr:`push_retry_delay` seconds, then dropped and counted in :attr:`push_failed`.
* Event messages (DOC event names; bodies in the schema of Aqara's own ``aqara-msg-push``
  package): ``{"msgId", "openId", "eventType", "time", "data": {..., "time"}}``, sent to the same
  URL whether or not traits are subscribed. ``data`` per event: ``gateway_bind`` ``{did, model,
  subDids}`` (a gateway bound with sub-devices already paired to it names them there and they
  get no ``subdevice_bind`` of their own, INFERRED); ``subdevice_bind`` ``{did, model,
  parentDid, positionId}``; ``gateway_unbind`` ``{did, subDids, cause: 3}`` (the sub-devices
  are unbound with the gateway); ``unbind_sub_gw`` ``{did, parentDid, cause: 12}``;
  ``gateway_online``/``gateway_offline`` ``{did, subDids}`` (the sub-devices' ``state`` follows
  the gateway); ``subdevice_online`` ``{did, cause: 11}``; ``subdevice_offline`` ``{did, cause:
  12}``; ``dev_name_change`` ``{did, deviceName, model, parentDid, positionId}``. Every
  non-gateway, non-Matter device hangs off the account's first gateway (``parentDid``), except
  those bound with a gateway of their own.
* Momentary events (INFERRED, :mod:`bridge.simulators.event_devices`): a button press, a cube
  gesture or a vibration is a trait push of push-only event traits (``<ep>.Switch.
  MultiPressComplete`` = presses counted, ``LongPress``, ``LongRelease``, preceded by
  ``InitialPress``/``ShortRelease``; ``Cube.Gesture``, ``Vibration.VibrationEvent`` = the gesture's
  name) to whoever subscribed them. Tests fire one with :meth:`AqaraCloudSimulator.press`.
* Not implemented (306): positions, scenes, automations, the legacy resource intents,
  ``query.push.errorMsg``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import random
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from bridge.simulators.aqara_wire import endpoints_tree
from bridge.simulators.event_devices import PRESS_EVERY, event_choices, event_devices, press_values
from bridge.simulators.sample_home import (
    SimDevice,
    SimEndpoint,
    SimFunction,
    SimTrait,
    contact_sensor,
    ct_light,
    now_ms,
    sample_home,
    synthetic_devices,
)
from bridge.simulators.serving import serve_forever

__all__ = [
    "API_PATH",
    "MATTER_PREFIX",
    "AqaraCloudSimulator",
    "matter_devices",
    "relay_board",
    "sample_account",
    "serve",
]

API_PATH = "/v3.0/open/api"
MATTER_PREFIX = "aqara.matter."

CODE_OK = 0
CODE_BUSY = 104
CODE_PACKAGE_EXPIRED = 105
CODE_INVALID_SIGN = 106
CODE_TOKEN_EXPIRED = 108
CODE_TOKEN_ABSENT = 109
CODE_PARAMS = 302
CODE_HEADER = 305
CODE_PATH_NOT_OPEN = 306
CODE_RATE_LIMITED = 429
CODE_QUOTA = 2600  # INFERRED: a code of our own (the bridge reads the text, not the number)
CODE_OFFLINE = 602
CODE_NOT_YOURS = 603
CODE_TOKEN_FAILED = 804
CODE_VALUE_ILLEGAL = 1004
CODE_NOT_WRITABLE = 1007
CODE_NO_TRAIT = 1008
CODE_ACCESS_INCORRECT = 2004
CODE_ACCESS_EXPIRED = 2005
CODE_REFRESH_INCORRECT = 2006
CODE_REFRESH_EXPIRED = 2007
MESSAGES = {
    CODE_TOKEN_EXPIRED: "Token has expired",
    CODE_TOKEN_ABSENT: "Token is absence",
    CODE_TOKEN_FAILED: "Token failed",
    CODE_ACCESS_INCORRECT: "AccessToken incorrect",
    CODE_ACCESS_EXPIRED: "AccessToken expired",
    CODE_REFRESH_INCORRECT: "RefreshToken incorrect",
    CODE_REFRESH_EXPIRED: "RefreshToken expired",
}
"""The texts of Aqara's code table (as both Aqara SDKs carry it) for the token codes."""

MAX_SPEC_DIDS = 10
MAX_MODELS = 5
MAX_QUERY_TRAITS = 50
MAX_WRITE_DEVICES = 10
MAX_WRITE_TRAITS = 50
MAX_PAGE_SIZE = 100
MAX_SKEW_MS = 5 * 60 * 1000
AUTH_CODE_TTL_S = 600
REFRESH_EXTRA_S = 30 * 86400
POSITION_ID = "real1.home"

TraitKey = tuple[str, int, str, str]
_After = list[Callable[[], None]]
_VALIDITY = re.compile(r"^(\d+)([hdy])$")
_VALIDITY_RANGE = {"h": (1, 24, 3600), "d": (1, 30, 86400), "y": (1, 10, 365 * 86400)}


# ---- the sample account ---------------------------------------------------------------------


def matter_devices() -> list[SimDevice]:
    """Two Matter devices (ids ``matt.…``, models ``aqara.matter.…``) for the by-id spec path."""
    door = contact_sensor(
        "matt.2990fb3413ed87c9b7370000", "Matter Patio Door", create_time=1_735_700_000_000
    )
    door.model = "aqara.matter.4447_8194"  # the seed document's example model
    bulb = ct_light(
        "matt.2990fb3413ed884726370000", "Matter Desk Lamp", create_time=1_735_710_000_000
    )
    bulb.model = "aqara.matter.4447_8198"
    return [door, bulb]


def sample_account() -> list[SimDevice]:
    """The sample home (24 devices) plus :func:`matter_devices`: 26 devices."""
    return [*sample_home(), *matter_devices()]


def relay_board(
    device_id: str, name: str, channels: int, *, create_time: int = 1_735_689_600_000
) -> SimDevice:
    """A multi-channel relay: endpoints 1..N each with a writable ``Output.OnOff`` (all off)."""
    root = SimEndpoint(
        0,
        ["Root"],
        [
            SimFunction(
                "BasicInformation",
                [
                    SimTrait("FirmwareRevision", "STRING", "String", "1.0.4"),
                    SimTrait("Reachable", "BOOLEAN", "Bool", True),
                ],
            )
        ],
    )
    outputs = [
        SimEndpoint(
            ch,
            ["Switch"],
            [SimFunction("Output", [SimTrait("OnOff", "BOOLEAN", "Bool", False, writable=True)])],
        )
        for ch in range(1, channels + 1)
    ]
    return SimDevice(
        device_id, name, f"lumi.relay.c{channels}", ["Switch"], [root, *outputs], True, create_time
    )


# ---- helpers --------------------------------------------------------------------------------


def _is_gateway(dev: SimDevice) -> bool:
    return "gateway" in dev.model


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _sign(app_id: str, key_id: str, app_key: str, nonce: str, stamp: str, token: str) -> str:
    """The request signature, a deliberate twin of :mod:`bridge.backends.aqara_cloud.sign`
    written again from the Open API documentation: a signing bug in the backend fails the tests
    instead of being agreed with (simulators share no code with the backends)."""
    parts = [f"Appid={app_id}", f"Keyid={key_id}", f"Nonce={nonce}", f"Time={stamp}"]
    if token:
        parts.insert(0, f"Accesstoken={token}")
    text = ("&".join(parts) + app_key).lower().encode()
    return hashlib.md5(text, usedforsecurity=False).hexdigest()


def _number_text(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isfinite(value) and value.is_integer():
        return str(int(value))
    return repr(value)


def wire_value(trait: SimTrait) -> str:
    """The cloud's string encoding of a trait value (SEED: values travel as strings)."""
    value = trait.value
    if value is None:
        return ""
    if trait.type == "BOOLEAN":
        return "1" if value else "0"
    if trait.type == "NUMBER" and isinstance(value, int | float):
        return _number_text(value)
    if isinstance(value, str):
        return value
    return _dumps(value)


def _parse_value(trait: SimTrait, raw: Any) -> tuple[bool, Any]:
    """``(legal, stored value)`` for a write of ``raw`` (a wire string or typed JSON)."""
    kind = trait.type
    if kind == "BOOLEAN":
        if isinstance(raw, bool):
            return True, raw
        if isinstance(raw, str) and raw.strip().lower() in ("1", "0", "true", "false"):
            return True, raw.strip().lower() in ("1", "true")
        return False, raw
    if kind == "NUMBER":
        number: float
        if isinstance(raw, bool):
            return False, raw
        if isinstance(raw, int | float):
            number = raw
        elif isinstance(raw, str):
            try:
                number = (
                    float(raw.strip())
                    if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)", raw.strip())
                    else math.nan
                )
            except ValueError:
                return False, raw
        else:
            return False, raw
        if not math.isfinite(number):
            return False, raw
        if "int" in trait.format.lower():
            if not float(number).is_integer():
                return False, raw
            number = int(number)
        elif isinstance(number, float) and number.is_integer() and isinstance(trait.value, int):
            number = int(number)
        if trait.min is not None and number < trait.min:
            return False, raw
        if trait.max is not None and number > trait.max:
            return False, raw
        return True, number
    if kind == "ENUM":
        text = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
        if not isinstance(text, str):
            return False, raw
        return trait.enums is None or any(text == v for _, v in trait.enums), text
    if kind == "STRING":
        return isinstance(raw, str), raw
    if isinstance(raw, dict | list):
        return True, raw
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            return False, raw
        return isinstance(parsed, dict | list), parsed
    return False, raw


class _Fail(Exception):
    """A call answered with a non-zero envelope code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Token:
    value: str
    expires_at: float
    lifetime: int


@dataclass
class _Rec:
    key: TraitKey
    device: SimDevice
    trait: SimTrait


# ---- the simulator --------------------------------------------------------------------------


class AqaraCloudSimulator:
    """An in-process Aqara Open API: one app, one account, its devices, plus a control API.

    Tests read :attr:`received` (every request: ``{"intent", "data", "headers", "code", "at"}``,
    where ``code`` is the envelope code answered and ``at`` the ``time.monotonic()`` it came),
    :attr:`auth_codes`, the push counters
    (:attr:`push_attempts`, :attr:`push_delivered`, :attr:`push_failed`, :attr:`push_errors`),
    :attr:`pushed` (every delivered message body) and :attr:`rate_limited` (calls refused).
    ``latency`` seconds are added before every answer; with ``garbage`` every call is answered
    with a non-JSON body or a wrongly shaped one (and not executed).
    """

    def __init__(
        self,
        devices: list[SimDevice] | None = None,
        *,
        app_id: str = "sim-app-0001",
        key_id: str = "K.sim0001",
        app_key: str = "sim-app-key-0001",
        account: str = "user@example.com",
        open_id: str = "open-id-0001",
        host: str = "127.0.0.1",
        port: int = 0,
        access_ttl: float | None = None,
        refresh_ttl: float | None = None,
        rate_calls: int = 300,
        rate_window: float = 300.0,
        rate_limit_style: str = "http",
    ) -> None:
        self.app_id = app_id
        self.key_id = key_id
        self.app_key = app_key
        self.account = account
        self.open_id = open_id
        self.host = host
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.rate_calls = rate_calls
        self.rate_window = rate_window
        self.rate_limit_style = rate_limit_style
        self.latency = 0.0
        self.unknown_token_code = CODE_ACCESS_INCORRECT
        """Answer to an unknown or replaced access token (2004; 804 or 109 to try others)."""
        self.expired_token_code = CODE_ACCESS_EXPIRED
        """Answer to an expired access token (2005; 108 is the older code of the same table)."""
        self.garbage = False
        self.quota_exhausted = False
        """True: every call is refused for the account's call quota (see the module docstring)."""
        self.quota_style = "envelope"
        """``envelope`` (HTTP 200, :data:`CODE_QUOTA`) or ``http`` (HTTP 429, long Retry-After)."""
        self.quota_retry_after = 86400
        """Seconds in the ``Retry-After`` of the ``http`` quota answer."""
        self._corrupt: dict[str, str] = {}
        self.callback_url: str | None = None
        self.push_retries = 2
        self.push_retry_delay = 0.05
        self.push_batch = 20
        self.push_timeout = 5.0
        self.push_signing = "off"
        """``off`` (the page's default: no ``appkey``/``sign``), ``documented`` or ``request``."""
        self.push_token: str | None = None
        """The ``token`` header of pushes; None: the account's newest access token."""
        self.received: list[dict[str, Any]] = []
        self.auth_codes: dict[str, str] = {}
        self.pushed: list[dict[str, Any]] = []
        self.push_attempts = 0
        self.push_delivered = 0
        self.push_errors = 0
        self.push_failed = 0
        self.rate_limited = 0
        self.change_count = 0
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._devices: dict[str, SimDevice] = {}
        self._parents: dict[str, str] = {}  # sub-device -> the gateway it was bound with
        self._index: dict[TraitKey, _Rec] = {}
        self._access: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        self._pairs: dict[str, str] = {}  # refresh token -> its access token
        self._newest_token = ""
        self._code_expiry: dict[str, tuple[float, int]] = {}
        self._calls: dict[str, deque[float]] = {}
        self._subs: dict[tuple[str, str], str | None] = {}
        self._queue: deque[tuple[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._arrived = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._worker: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._random_task: asyncio.Task[None] | None = None
        self._seq = 0
        self._intents: dict[str, Callable[[Any], tuple[Any, _After]]] = {
            "config.auth.getAuthCode": self._i_get_auth_code,
            "config.auth.getToken": self._i_get_token,
            "config.auth.refreshToken": self._i_refresh_token,
            "query.device.info": self._i_device_info,
            "spec.query.specdevice.config": self._i_specdevice,
            "spec.query.qlinkmodel.config": self._i_qlinkmodel,
            "spec.query.trait": self._i_query_trait,
            "spec.write.trait": self._i_write_trait,
            "spec.config.trait.subscribe": self._i_subscribe,
            "spec.config.trait.unsubscribe": self._i_unsubscribe,
        }
        for dev in devices if devices is not None else sample_account():
            if dev.device_id in self._devices:
                raise ValueError(f"duplicate device id {dev.device_id}")
            self._insert(dev.clone())

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen (``port`` 0 picks a free one) and start the push worker."""
        app = web.Application()
        app.router.add_post(API_PATH, self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        self._session = aiohttp.ClientSession()
        self._worker = asyncio.create_task(self._push_worker())

    async def stop(self) -> None:
        """Stop random changes, the push worker and the server."""
        self.stop_random_changes()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        """The listening port (after :meth:`start`, or the fixed one asked for)."""
        if self._port is None:
            if self._requested_port:
                return self._requested_port
            raise RuntimeError("simulator not started")
        return self._port

    @property
    def url(self) -> str:
        """The API endpoint, ``http://host:port/v3.0/open/api``."""
        return f"http://{self.host}:{self.port}{API_PATH}"

    # ---- control API: tokens ------------------------------------------------------------------

    def issue_tokens(
        self, ttl: float | None = None, access_token: str | None = None
    ) -> tuple[str, str]:
        """A fresh ``(access token, refresh token)`` pair, as if the auth flow had run
        (``access_token`` picks the access token's value)."""
        lifetime = ttl if ttl is not None else (self.access_ttl or 7 * 86400)
        return self._new_pair(lifetime, access_token)

    def expire_tokens(self) -> None:
        """Every access token issued so far is now expired (2005 on use); refresh tokens stay."""
        past = time.time() - 1
        for token in self._access.values():
            token.expires_at = past

    def forget_access_tokens(self) -> None:
        """Every access token issued so far becomes unknown (2004 on use); refresh tokens stay."""
        self._access.clear()
        self._newest_token = ""

    @property
    def valid_access_tokens(self) -> list[str]:
        """Access tokens that currently work."""
        now = time.time()
        return [t.value for t in self._access.values() if t.expires_at > now]

    @property
    def valid_refresh_tokens(self) -> list[str]:
        """Refresh tokens that currently work."""
        now = time.time()
        return [t.value for t in self._refresh.values() if t.expires_at > now]

    # ---- control API: devices -----------------------------------------------------------------

    @property
    def devices(self) -> list[SimDevice]:
        """The live device objects (mutating them bypasses pushes)."""
        return list(self._devices.values())

    @property
    def subscriptions(self) -> dict[tuple[str, str], str | None]:
        """``{(subjectId, codePath): attach}`` of the account."""
        return dict(self._subs)

    def set_value(
        self, device_id: str, endpoint_id: int, function_code: str, trait_code: str, value: Any,
        *, push: bool = True,
    ) -> None:
        """A physical change (typed value, stored unvalidated); pushed if subscribed (and
        ``push``: with False the change is silent, as if its push got lost)."""
        rec = self._index[(device_id, endpoint_id, function_code, trait_code)]
        if push:
            self._apply(rec, value)
        else:
            rec.trait.value = value
            rec.trait.time = now_ms()
            self.change_count += 1

    def get_value(
        self, device_id: str, endpoint_id: int, function_code: str, trait_code: str
    ) -> Any:
        """The current (typed) value of a trait; KeyError if unknown."""
        return self._index[(device_id, endpoint_id, function_code, trait_code)].trait.value

    def corrupt_device(self, device_id: str, fault: str | None) -> None:
        """Describe a device wrongly (fault injection; None heals it): ``"no_device_id"`` drops
        its ``did`` from ``query.device.info``, ``"endpoint_id"`` gives its first endpoint a
        non-integer ``endpointId`` in the spec answers."""
        if fault not in (None, "no_device_id", "endpoint_id"):
            raise ValueError(f"unknown fault {fault!r}")
        if fault is None:
            self._corrupt.pop(device_id, None)
        else:
            self._corrupt[device_id] = fault

    def add_device(self, dev: SimDevice, sub_devices: Sequence[SimDevice] = ()) -> None:
        """Bind (a copy of) a device; sends ``gateway_bind`` or ``subdevice_bind``. A gateway
        may come with ``sub_devices`` already paired to it: bound with it and named in its
        ``gateway_bind``'s ``subDids``, with no event of their own."""
        if sub_devices and not _is_gateway(dev):
            raise ValueError(f"device {dev.device_id} is not a gateway")
        taken = set(self._devices)
        for device_id in [dev.device_id, *(sub.device_id for sub in sub_devices)]:
            if device_id in taken:
                raise ValueError(f"device {device_id} already exists")
            taken.add(device_id)
        self._insert(dev.clone())
        for sub in sub_devices:
            self._parents[sub.device_id] = dev.device_id
            self._insert(sub.clone())
        if _is_gateway(dev):
            extra: dict[str, Any] = {"model": dev.model, "subDids": self._children(dev.device_id)}
            self._event("gateway_bind", dev.device_id, extra)
        else:
            extra = {"model": dev.model, "parentDid": self._parent(dev), "positionId": POSITION_ID}
            self._event("subdevice_bind", dev.device_id, extra)

    def remove_device(self, device_id: str) -> None:
        """Unbind a device (its subscriptions go too); sends ``unbind_sub_gw``, or for a gateway
        ``gateway_unbind`` with its ``subDids``, which are unbound with it."""
        dev = self._devices[device_id]
        if _is_gateway(dev):
            subs = self._children(device_id)
            for sub in [device_id, *subs]:
                self._drop(sub)
            self._event("gateway_unbind", device_id, {"subDids": subs, "cause": 3})
        else:
            parent = self._parent(dev)
            self._drop(device_id)
            self._event("unbind_sub_gw", device_id, {"parentDid": parent, "cause": 12})

    def rename_device(self, device_id: str, name: str) -> None:
        """Rename a device; sends a ``dev_name_change`` event."""
        dev = self._devices[device_id]
        dev.name = name
        self._event("dev_name_change", device_id, {
            "deviceName": name, "model": dev.model, "parentDid": self._parent(dev),
            "positionId": POSITION_ID,
        })  # fmt: skip

    def set_online(self, device_id: str, online: bool, *, notify: bool = True) -> None:
        """Online/offline: updates ``state`` and ``Reachable`` (pushed) and sends an event;
        with ``notify`` False only ``state`` changes, silently. A gateway's sub-devices follow
        it (their ``state`` only) and are named in its event's ``subDids``."""
        dev = self._devices[device_id]
        dev.online = online
        subs = self._children(device_id) if _is_gateway(dev) else []
        for sub in subs:
            self._devices[sub].online = online
        if not notify:
            return
        for ep_id, fn_code, tr in dev.iter_traits():
            if fn_code == "BasicInformation" and tr.code == "Reachable":
                self._apply(self._index[(device_id, ep_id, fn_code, tr.code)], online)
        if _is_gateway(dev):
            kind = "gateway_online" if online else "gateway_offline"
            self._event(kind, device_id, {"subDids": subs})
        else:  # cause (DOC): 11 heartbeat back online, 12 offline without heartbeat
            kind = "subdevice_online" if online else "subdevice_offline"
            self._event(kind, device_id, {"cause": 11 if online else 12})

    async def push_idle(self, timeout: float = 10.0) -> None:
        """Wait until every queued push has been delivered or given up."""
        async with asyncio.timeout(timeout):
            while self._queue or not self._idle.is_set():
                await self._idle.wait()
                await asyncio.sleep(0)

    def intents(self, name: str) -> list[dict[str, Any]]:
        """The received requests of one intent (with envelope code 0 or not)."""
        return [r for r in self.received if r["intent"] == name]

    async def wait_requests(self, name: str, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` requests of intent ``name`` have arrived."""
        async with asyncio.timeout(timeout):
            while len(self.intents(name)) < count:
                self._arrived.clear()
                await self._arrived.wait()

    # ---- control API: random changes ----------------------------------------------------------

    def start_random_changes(self, rate: float, seed: int | None = None) -> None:
        """Change random readable BOOLEAN/NUMBER traits of online devices, ``rate`` per second;
        every :data:`PRESS_EVERY`-th change is a random button press or gesture instead."""
        self.stop_random_changes()
        if rate > 0:
            self._random_task = asyncio.get_running_loop().create_task(
                self._random_loop(rate, random.Random(seed))
            )

    def stop_random_changes(self) -> None:
        """Stop the random-change driver."""
        if self._random_task is not None:
            self._random_task.cancel()
            self._random_task = None

    async def _random_loop(self, rate: float, rng: random.Random) -> None:
        changes = 0
        while True:
            await asyncio.sleep(1.0 / rate)
            changes += 1
            if changes % PRESS_EVERY == 0:
                choices = [(d.device_id, ep, event) for d in self._devices.values() if d.online
                           for ep, event in event_choices(d)]
                if choices:
                    self.press(*choices[rng.randrange(len(choices))])
                    continue
            pool = [
                r for r in self._index.values()
                if r.device.online and r.trait.readable and r.trait.type in ("BOOLEAN", "NUMBER")
                and r.key[3] != "Reachable"
            ]  # fmt: skip
            if not pool:
                continue
            rec = pool[rng.randrange(len(pool))]
            tr = rec.trait
            if tr.type == "BOOLEAN":
                self._apply(rec, not tr.value)
            else:
                lo = tr.min if tr.min is not None else 0.0
                hi = tr.max if tr.max is not None else lo + 100.0
                new = rng.uniform(lo, hi)
                self._apply(rec, round(new) if "int" in tr.format.lower() else round(new, 1))

    # ---- state --------------------------------------------------------------------------------

    def _insert(self, dev: SimDevice) -> None:
        self._devices[dev.device_id] = dev
        stamp = now_ms()
        for ep_id, fn_code, tr in dev.iter_traits():
            if tr.time is None:
                tr.time = stamp
            key = (dev.device_id, ep_id, fn_code, tr.code)
            self._index[key] = _Rec(key, dev, tr)

    def _apply(self, rec: _Rec, value: Any, repeat: int = 1) -> None:
        rec.trait.value = value
        rec.trait.time = now_ms()
        self.change_count += 1
        path = f"{rec.key[1]}.{rec.key[2]}.{rec.key[3]}"
        sub = (rec.key[0], path)
        if rec.trait.subscribable and sub in self._subs and self.callback_url:
            item = {
                "subjectId": rec.key[0],
                "model": rec.device.model,
                "codePath": path,
                "value": wire_value(rec.trait),
                "time": str(rec.trait.time),
                "statusCode": 0,
                "triggerSource": {"type": 1, "time": str(rec.trait.time // 1000)},
                "attach": self._subs[sub],
            }  # fmt: skip
            for _ in range(repeat):
                self._enqueue("trait", item)

    def press(self, device_id: str, endpoint_id: int, event: str, repeat: int = 1) -> None:
        """Fire a button press or gesture (``single``, ``double``, ``hold``, ``shake``…) as
        pushes of its event traits, each item ``repeat`` times (as a push delivered twice).
        Raises KeyError / ValueError for an unknown device or event."""
        dev = self._devices[device_id]
        for function_code, trait_code, value in press_values(dev, endpoint_id, event):
            self._apply(self._index[(device_id, endpoint_id, function_code, trait_code)], value,
                        repeat)

    def _drop(self, device_id: str) -> None:
        dev = self._devices.pop(device_id)
        self._parents.pop(device_id, None)
        for ep_id, fn_code, tr in dev.iter_traits():
            self._index.pop((device_id, ep_id, fn_code, tr.code), None)
        for key in [k for k in self._subs if k[0] == device_id]:
            del self._subs[key]

    def _parent(self, dev: SimDevice) -> str:
        """The gateway a device hangs off: the one it was bound with, else the account's first
        gateway, except for gateways and Matter devices (which have none: ``""``)."""
        if dev.device_id in self._parents:
            return self._parents[dev.device_id]
        if _is_gateway(dev) or dev.device_id.startswith("matt."):
            return ""
        return next((d.device_id for d in self._devices.values() if _is_gateway(d)), "")

    def _children(self, gateway_id: str) -> list[str]:
        return [d.device_id for d in self._devices.values() if self._parent(d) == gateway_id]

    def _event(self, kind: str, device_id: str, extra: dict[str, Any]) -> None:
        if self.callback_url:
            self._enqueue("event", {"eventType": kind, "data": {"did": device_id, **extra}})

    def _enqueue(self, kind: str, body: Any) -> None:
        self._queue.append((kind, body))
        self._idle.clear()
        self._wake.set()

    def _new_pair(self, lifetime: float, value: str | None = None) -> tuple[str, str]:
        now = time.time()
        access = _Token(value or "at." + secrets.token_hex(16), now + lifetime, int(lifetime))
        refresh_life = (
            self.refresh_ttl if self.refresh_ttl is not None else lifetime + (REFRESH_EXTRA_S)
        )
        refresh = _Token("rt." + secrets.token_hex(16), now + refresh_life, int(refresh_life))
        self._access[access.value] = access
        self._refresh[refresh.value] = refresh
        self._pairs[refresh.value] = access.value
        self._newest_token = access.value
        return access.value, refresh.value

    # ---- pushes -------------------------------------------------------------------------------

    async def _push_worker(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            kind, body = self._queue.popleft()
            self._seq += 1
            stamp = str(now_ms())
            message: dict[str, Any] = {"msgId": f"msg-{self._seq}", "openId": self.open_id}
            if kind == "trait":
                items = [body]
                while self._queue and self._queue[0][0] == "trait" and len(items) < self.push_batch:
                    items.append(self._queue.popleft()[1])
                message.update({"msgType": "spec_report", "time": stamp, "data": items})
            else:
                message.update(
                    {
                        "eventType": body["eventType"],
                        "time": stamp,
                        "data": {**body["data"], "time": stamp},
                    }
                )
            await self._deliver(message)

    def _push_signature(self, token: str, nonce: str, stamp: str) -> dict[str, str]:
        if self.push_signing == "request":
            return {"sign": _sign(self.app_id, self.key_id, self.app_key, nonce, stamp, token)}
        if self.push_signing == "documented":
            text = f"appkey={self.key_id}&nonce={nonce}&time={stamp}&token={token}{self.app_key}"
            digest = hashlib.md5(text.lower().encode(), usedforsecurity=False).hexdigest()
            return {"appkey": self.key_id, "sign": digest}
        return {}

    async def _deliver(self, message: dict[str, Any]) -> None:
        raw = _dumps(message).encode()
        for attempt in range(self.push_retries + 1):
            url, session = self.callback_url, self._session
            if not url or session is None:
                self.push_failed += 1
                return
            nonce = secrets.token_hex(8)
            stamp = str(now_ms())
            token = self._newest_token if self.push_token is None else self.push_token
            headers = {"Content-Type": "application/json", "token": token, "time": stamp,
                       "nonce": nonce, **self._push_signature(token, nonce, stamp)}
            self.push_attempts += 1
            try:
                async with session.post(
                    url,
                    data=raw,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self.push_timeout),
                ) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        self.push_delivered += 1
                        self.pushed.append(message)
                        return
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass
            self.push_errors += 1
            if attempt < self.push_retries:
                await asyncio.sleep(self.push_retry_delay)
        self.push_failed += 1

    # ---- HTTP ---------------------------------------------------------------------------------

    @staticmethod
    def _envelope(code: int, message: str, result: Any = None) -> dict[str, Any]:
        return {
            "code": code,
            "message": message,
            "msgDetails": None,
            "requestId": "",
            "result": result,
        }

    def _rate_ok(self, app_id: str) -> float | None:
        """None when the call may go ahead (and is counted), else seconds until it may."""
        now = time.monotonic()
        calls = self._calls.setdefault(app_id, deque())
        while calls and calls[0] <= now - self.rate_window:
            calls.popleft()
        if len(calls) >= self.rate_calls:
            return max(calls[0] + self.rate_window - now, 0.001)
        calls.append(now)
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        headers = dict(request.headers.items())
        try:
            msg = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            msg = None
        intent = msg.get("intent") if isinstance(msg, dict) else None
        data = msg.get("data") if isinstance(msg, dict) else None
        record: dict[str, Any] = {"intent": intent, "data": data, "headers": headers, "code": None,
                                  "at": time.monotonic()}
        self.received.append(record)
        self._arrived.set()
        wait = self._rate_ok(headers.get("Appid", ""))
        if wait is not None:
            self.rate_limited += 1
            if self.rate_limit_style == "envelope":
                record["code"] = CODE_BUSY
                return web.json_response(self._envelope(CODE_BUSY, "Server busy"))
            record["code"] = CODE_RATE_LIMITED
            return web.json_response(
                self._envelope(CODE_RATE_LIMITED, "Too many requests"),
                status=429,
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        if self.quota_exhausted:
            return self._quota_reply(record)
        if self.garbage:
            record["code"] = "garbage"
            return self._garbage_reply()
        after: _After = []
        try:
            if not isinstance(msg, dict):
                raise _Fail(CODE_PARAMS, "Param not valid: the body must be a JSON object")
            if not isinstance(intent, str) or not intent:
                raise _Fail(CODE_PARAMS, "Param not valid: intent is required")
            handler = self._intents.get(intent)
            self._check_headers(intent, request)
            if handler is None:
                raise _Fail(CODE_PATH_NOT_OPEN, f"Request path not open: unknown intent {intent}")
            result, after = handler(data)
            body = self._envelope(CODE_OK, "Success", result)
        except _Fail as exc:
            body = self._envelope(exc.code, exc.message)
        record["code"] = body["code"]
        response = web.json_response(body, dumps=_dumps)
        for fn in after:
            fn()
        return response

    def _quota_reply(self, record: dict[str, Any]) -> web.Response:
        if self.quota_style == "http":
            record["code"] = CODE_RATE_LIMITED
            return web.json_response(
                self._envelope(CODE_RATE_LIMITED,
                               "Too many requests: the monthly API call quota is used up"),
                status=429, headers={"Retry-After": str(int(self.quota_retry_after))})
        record["code"] = CODE_QUOTA
        return web.json_response(self._envelope(
            CODE_QUOTA, "The API calls of this month exceed the quota of your plan"))

    def _garbage_reply(self) -> web.Response:
        self._seq += 1
        variant = self._seq % 3
        if variant == 0:
            return web.Response(body=b"<html>502 Bad Gateway</html>", content_type="text/html")
        if variant == 1:
            return web.Response(body=b"[1,2,3]", content_type="application/json")
        return web.json_response({"code": "zero", "result": "garbage"})

    def _check_headers(self, intent: str, request: web.Request) -> None:
        auth = intent.startswith("config.auth.")
        names = ["Appid", "Keyid", "Nonce", "Time", "Sign"] + ([] if auth else ["Accesstoken"])
        values: dict[str, str] = {}
        for name in names:
            value = request.headers.get(name)
            if not value:
                if name == "Accesstoken":
                    raise _Fail(CODE_TOKEN_ABSENT, MESSAGES[CODE_TOKEN_ABSENT])
                raise _Fail(CODE_HEADER, f"Header Params error: header {name} is missing")
            values[name] = value
        if values["Appid"] != self.app_id or values["Keyid"] != self.key_id:
            raise _Fail(CODE_INVALID_SIGN, "Invalid sign")
        try:
            stamp = int(values["Time"])
        except ValueError:
            raise _Fail(
                CODE_HEADER, "Header Params error: header Time must be ms since the epoch"
            ) from None
        if abs(now_ms() - stamp) > MAX_SKEW_MS:
            raise _Fail(CODE_PACKAGE_EXPIRED, "Data package has expired")
        token = request.headers.get("Accesstoken", "")
        expected = _sign(
            values["Appid"], values["Keyid"], self.app_key, values["Nonce"], values["Time"], token
        )
        if values["Sign"] != expected:
            raise _Fail(CODE_INVALID_SIGN, "Invalid sign")
        if not auth:
            known = self._access.get(token)
            if known is None:
                code = self.unknown_token_code
                raise _Fail(code, MESSAGES.get(code, "AccessToken incorrect"))
            if known.expires_at <= time.time():
                code = self.expired_token_code
                raise _Fail(code, MESSAGES.get(code, "AccessToken expired"))

    # ---- validation helpers -------------------------------------------------------------------

    @staticmethod
    def _obj(data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise _Fail(CODE_PARAMS, "Param not valid: data must be an object")
        return data

    @staticmethod
    def _str_list(data: dict[str, Any], key: str, limit: int | None) -> list[str]:
        value = data.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _Fail(CODE_PARAMS, f"Param not valid: {key} must be an array of strings")
        if not value:
            raise _Fail(CODE_PARAMS, f"Param not valid: {key} must not be empty")
        if limit is not None and len(value) > limit:
            raise _Fail(CODE_PARAMS, f"Param not valid: {key} size must be at most {limit}")
        return value

    @staticmethod
    def _items(data: Any, key: str) -> list[dict[str, Any]]:
        obj = AqaraCloudSimulator._obj(data)
        items = obj.get(key)
        if not isinstance(items, list) or not items:
            raise _Fail(CODE_PARAMS, f"Param not valid: {key} must be a non-empty array")
        if not all(isinstance(i, dict) for i in items):
            raise _Fail(CODE_PARAMS, f"Param not valid: {key} must hold objects")
        return items

    @staticmethod
    def _address(item: dict[str, Any], where: str) -> TraitKey:
        device = item.get("deviceId")
        endpoint = item.get("endpointId")
        function = item.get("functionCode")
        trait = item.get("traitCode")
        if not isinstance(device, str) or not device:
            raise _Fail(CODE_PARAMS, f"Param not valid: {where}.deviceId is required")
        if not isinstance(endpoint, int) or isinstance(endpoint, bool):
            raise _Fail(CODE_PARAMS, f"Param not valid: {where}.endpointId must be a number")
        if not isinstance(function, str) or not function:
            raise _Fail(CODE_PARAMS, f"Param not valid: {where}.functionCode is required")
        if not isinstance(trait, str) or not trait:
            raise _Fail(CODE_PARAMS, f"Param not valid: {where}.traitCode is required")
        return device, endpoint, function, trait

    def _key_of_path(self, device_id: str, path: Any) -> TraitKey | None:
        """The trait a code path names; trait codes may contain dots (``PM2.5Density``)."""
        if not isinstance(path, str):
            return None
        head, dot, rest = path.partition(".")
        if not dot or not head.isdigit():
            return None
        for i, char in enumerate(rest):
            if char == ".":
                key = (device_id, int(head), rest[:i], rest[i + 1:])
                if key in self._index:
                    return key
        return None

    # ---- spec output --------------------------------------------------------------------------

    def _spec(self, dev: SimDevice, values: bool) -> dict[str, Any]:
        endpoints = endpoints_tree(dev, wire_value if values else None)
        spec: dict[str, Any] = {
            "types": list(dev.types),
            "endpoints": endpoints,
            "model": dev.model,
        }
        if values:
            spec["deviceId"] = dev.device_id
        if self._corrupt.get(dev.device_id) == "endpoint_id" and endpoints:
            endpoints[0]["endpointId"] = "one"
        return spec

    def _info(self, dev: SimDevice) -> dict[str, Any]:
        firmware = next(
            (
                str(t.value)
                for _, f, t in dev.iter_traits()
                if f == "BasicInformation" and t.code == "FirmwareRevision"
            ),
            "",
        )
        gateway = _is_gateway(dev)
        info = {
            "did": dev.device_id,
            "parentDid": self._parent(dev),
            "positionId": POSITION_ID,
            "createTime": dev.create_time,
            "timeZone": "GMT+01:00",
            "model": dev.model,
            "updateTime": dev.create_time,
            "modelType": 1 if gateway else 3,
            "state": 1 if dev.online else 0,
            "firmwareVersion": firmware,
            "deviceName": dev.name,
        }
        if self._corrupt.get(dev.device_id) == "no_device_id":
            del info["did"]
        return info

    # ---- intents: data -> (result, after) ----------------------------------------------------

    def _i_get_auth_code(self, data: Any) -> tuple[Any, _After]:
        obj = self._obj(data)
        if obj.get("account") != self.account:
            raise _Fail(CODE_PARAMS, "Param not valid: account not found")
        if obj.get("accountType") not in (0, "0"):
            raise _Fail(CODE_PARAMS, "Param not valid: accountType must be 0")
        validity = obj.get("accessTokenValidity", "7d")
        match = _VALIDITY.match(validity) if isinstance(validity, str) else None
        if match is None:
            raise _Fail(CODE_PARAMS, "Param not valid: accessTokenValidity")
        low, high, unit = _VALIDITY_RANGE[match.group(2)]
        amount = int(match.group(1))
        if not low <= amount <= high:
            raise _Fail(CODE_PARAMS, "Param not valid: accessTokenValidity out of range")
        code = f"{secrets.randbelow(1_000_000):06d}"
        self.auth_codes[self.account] = code
        self._code_expiry[code] = (time.time() + AUTH_CODE_TTL_S, amount * unit)
        return {"authCode": code}, []

    def _i_get_token(self, data: Any) -> tuple[Any, _After]:
        obj = self._obj(data)
        code = obj.get("authCode")
        if obj.get("account") != self.account or not isinstance(code, str):
            raise _Fail(CODE_PARAMS, "Param not valid: account or authCode")
        entry = self._code_expiry.pop(code, None)
        if entry is None or entry[0] < time.time():
            raise _Fail(CODE_PARAMS, "Param not valid: authCode is invalid or expired")
        if self.auth_codes.get(self.account) == code:
            del self.auth_codes[self.account]
        lifetime = self.access_ttl if self.access_ttl is not None else entry[1]
        return self._token_result(lifetime), []

    def _i_refresh_token(self, data: Any) -> tuple[Any, _After]:
        obj = self._obj(data)
        value = obj.get("refreshToken")
        if not isinstance(value, str) or not value:
            raise _Fail(CODE_PARAMS, "Param not valid: refreshToken is required")
        known = self._refresh.pop(value, None)
        if known is None:
            raise _Fail(CODE_REFRESH_INCORRECT, MESSAGES[CODE_REFRESH_INCORRECT])
        if known.expires_at <= time.time():
            raise _Fail(CODE_REFRESH_EXPIRED, MESSAGES[CODE_REFRESH_EXPIRED])
        old_access = self._pairs.pop(value, None)
        old = self._access.pop(old_access, None) if old_access else None
        lifetime = (
            self.access_ttl
            if self.access_ttl is not None
            else (old.lifetime if old is not None else 7 * 86400)
        )
        return self._token_result(lifetime), []

    def _token_result(self, lifetime: float) -> dict[str, Any]:
        access, refresh = self._new_pair(lifetime)
        return {
            "expiresIn": str(int(lifetime)),
            "openId": self.open_id,
            "accessToken": access,
            "refreshToken": refresh,
        }

    def _i_device_info(self, data: Any) -> tuple[Any, _After]:
        obj = self._obj({} if data is None else data)
        page_num = obj.get("pageNum", 1)
        page_size = obj.get("pageSize", 30)
        for name, value in (("pageNum", page_num), ("pageSize", page_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise _Fail(CODE_PARAMS, f"Param not valid: {name} must be a positive integer")
        if page_size > MAX_PAGE_SIZE:
            raise _Fail(CODE_PARAMS, f"Param not valid: pageSize must be at most {MAX_PAGE_SIZE}")
        devices = sorted(self._devices.values(), key=lambda d: (d.create_time, d.device_id))
        if obj.get("dids"):
            wanted = set(self._str_list(obj, "dids", None))
            devices = [d for d in devices if d.device_id in wanted]
        page = devices[(page_num - 1) * page_size : page_num * page_size]
        return {"data": [self._info(d) for d in page], "totalCount": len(devices)}, []

    def _i_specdevice(self, data: Any) -> tuple[Any, _After]:
        dids = self._str_list(self._obj(data), "dids", MAX_SPEC_DIDS)
        out = [
            self._spec(self._devices[d], values=True)
            for d in dict.fromkeys(dids)
            if d in self._devices and self._devices[d].model.startswith(MATTER_PREFIX)
        ]
        return {"data": out}, []

    def _i_qlinkmodel(self, data: Any) -> tuple[Any, _After]:
        models = self._str_list(self._obj(data), "models", MAX_MODELS)
        out: dict[str, Any] = {}
        for model in models:
            if model.startswith(MATTER_PREFIX) or model in out:
                continue
            dev = next((d for d in self._devices.values() if d.model == model), None)
            if dev is not None:
                out[model] = self._spec(dev, values=False)
        return {"data": out}, []

    def _i_query_trait(self, data: Any) -> tuple[Any, _After]:
        items = self._items(data, "traits")[:MAX_QUERY_TRAITS]
        out = []
        for i, item in enumerate(items):
            key = self._address(item, f"traits[{i}]")
            rec = self._index.get(key)
            if rec is None or not rec.trait.readable:
                continue
            out.append(
                {
                    "functionCode": key[2],
                    "endpointId": key[1],
                    "time": rec.trait.time,
                    "deviceId": key[0],
                    "value": wire_value(rec.trait),
                    "traitCode": key[3],
                }
            )
        return {"data": out}, []

    def _i_write_trait(self, data: Any) -> tuple[Any, _After]:
        items = self._items(data, "traits")
        checked = []
        for i, item in enumerate(items):
            key = self._address(item, f"traits[{i}]")
            if "value" not in item:
                raise _Fail(CODE_PARAMS, f"Param not valid: traits[{i}].value is required")
            checked.append((key, item["value"]))
        if len({key[0] for key, _ in checked}) > MAX_WRITE_DEVICES:
            checked = checked[:MAX_WRITE_TRAITS]  # SEED: the excess is ignored
        out = []
        changes: list[tuple[_Rec, Any]] = []
        for key, raw in checked:
            dev = self._devices.get(key[0])
            rec = self._index.get(key)
            if dev is None:
                code = CODE_NOT_YOURS
            elif rec is None:
                code = CODE_NO_TRAIT
            elif not rec.trait.writable:
                code = CODE_NOT_WRITABLE
            elif not dev.online:
                code = CODE_OFFLINE
            else:
                legal, value = _parse_value(rec.trait, raw)
                code = CODE_OK if legal else CODE_VALUE_ILLEGAL
                if legal:
                    changes.append((rec, value))
            out.append(
                {
                    "functionCode": key[2],
                    "endpointId": key[1],
                    "deviceId": key[0],
                    "value": raw,
                    "traitCode": key[3],
                    "code": code,
                }
            )

        def later(rec: _Rec, value: Any) -> Callable[[], None]:
            return lambda: self._apply(rec, value)

        return {"data": out}, [later(rec, value) for rec, value in changes]

    def _i_subscribe(self, data: Any) -> tuple[Any, _After]:
        items = self._items(data, "traits")
        wanted: list[tuple[tuple[str, str], str | None]] = []
        for i, item in enumerate(items):
            subject = item.get("subjectId")
            paths = item.get("codePaths")
            attach = item.get("attach")
            if not isinstance(subject, str) or subject not in self._devices:
                raise _Fail(CODE_PARAMS, f"Param not valid: traits[{i}].subjectId not found")
            if not isinstance(paths, list) or not paths:
                raise _Fail(
                    CODE_PARAMS, f"Param not valid: traits[{i}].codePaths must be a non-empty array"
                )
            if attach is not None and not isinstance(attach, str):
                raise _Fail(CODE_PARAMS, f"Param not valid: traits[{i}].attach must be a string")
            for path in paths:
                key = self._key_of_path(subject, path)
                rec = self._index.get(key) if key is not None else None
                if rec is None or not rec.trait.subscribable:
                    raise _Fail(
                        CODE_PARAMS,
                        f"Param not valid: traits[{i}].codePaths {path!r} not subscribable",
                    )
                wanted.append(((subject, str(path)), attach))
        for sub, attach in wanted:
            self._subs[sub] = attach
        return None, []

    def _i_unsubscribe(self, data: Any) -> tuple[Any, _After]:
        for item in self._items(data, "traits"):
            subject = item.get("subjectId")
            paths = item.get("codePaths")
            if isinstance(subject, str) and isinstance(paths, list):
                for path in paths:
                    if isinstance(path, str):
                        self._subs.pop((subject, path), None)
        return None, []


async def serve(
    port: int,
    token: str | None,
    devices: int | None,
    rate: float,
    seed: int | None,
    host: str = "127.0.0.1",
    *,
    on_ready: Callable[[AqaraCloudSimulator], None] | None = None,
) -> None:
    """Run a simulator until cancelled: the sample account with the event devices (buttons, a
    cube, a vibration sensor), or N synthetic devices.

    Prints the app credentials and a token pair (``token`` names the access token when given)
    as a ready-to-paste backend entry.
    """
    devs = ([*sample_account(), *event_devices()] if devices is None
            else synthetic_devices(devices, seed or 0))
    sim = AqaraCloudSimulator(devs, host=host, port=port)

    def banner(started: AqaraCloudSimulator) -> str:
        access, refresh = started.issue_tokens(access_token=token or None)
        return (
            f"Aqara cloud simulator: {started.url} ({len(devs)} devices, {rate:g} changes/s)\n"
            f"  - {{type: aqara_cloud, url: '{started.url}', app_id: {started.app_id}, "
            f"key_id: {started.key_id}, app_key: {started.app_key}, access_token: {access}, "
            f"refresh_token: {refresh}, account: {started.account}}}"
        )

    await serve_forever(sim, banner, rate, seed, on_ready)
