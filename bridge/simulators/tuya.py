"""A simulator of the Tuya cloud OpenAPI and its message service (protocols.md §3, seed doc 002).

One aiohttp server serves the signed REST API and the Pulsar-style WebSocket consumer. It shares
no code with the bridge: its signing and message crypto are its own
(:mod:`bridge.simulators.tuya_wire`, a deliberate twin of the backend's, pinned by the same
published test vectors). The vendors' own clients (tuya-connector-python, tinytuya,
tuya-iot-py-sdk) are run against it in ``tests/witness``.

Which variant it speaks (DOC = vendor docs, SEED = seed document 002, 3P = third-party client
code, INFERRED = our guess; see protocols.md for the sources):

* Envelope (DOC): success ``{"success": true, "t": <ms>, "result": …, "tid": "<hex>"}``; failure
  ``{"success": false, "code": <int>, "msg": "<text>", "t": <ms>, "tid": …}``; HTTP status 200 in
  both cases (DOC/3P). A path no route knows answers ``1108 uri path invalid``.
* Signing (DOC, NEW algorithm only): headers ``client_id``, ``sign``, ``t`` (ms), ``sign_method:
  HMAC-SHA256``, optional ``nonce``, ``access_token`` (business APIs) and ``Signature-Headers``
  (``:``-separated names whose ``name:value\\n`` lines enter the string to sign). The string to
  sign uses the raw body's SHA-256 and the path with the query sorted by key (decoded values).
  Checks in this order (order INFERRED): a path no route knows → ``1108 uri path invalid``
  (token-like paths too, whatever their headers); a missing header (an ``access_token`` header
  that is there but empty is not missing: it is a token, and invalid) → ``1105 missing the
  header``; unknown client_id → ``1005 clientId invalid``; ``sign_method`` other than
  HMAC-SHA256 → ``1004``; ``t`` not a number or more than 5 minutes away from the server's
  clock → ``1013 request time is invalid``; a wrong sign → ``1004 sign invalid``; then for
  business APIs an unknown, replaced or expired access token → ``1010 token invalid`` (as Tuya
  answers all three; the code both Tuya SDKs renew on and the text tinytuya looks for; the
  documented table's ``1011`` is not used).
* Tokens (DOC): ``GET /v1.0/token?grant_type=1`` → ``{uid, access_token, expire_time (s),
  refresh_token}``; another grant type → ``1003 grant type invalid``. ``GET
  /v1.0/token/{refresh_token}`` → a new pair; the refresh token is single-use and the old access
  token stops working (DOC); an unknown refresh token → ``1012 token status is invalid``
  (INFERRED). The lifetime is a constructor argument (``token_lifetime``, default 7200 s).
* Home actions: every action of seed 002 through the REST paths of protocols.md §3.2 (DOC) and the
  INFERRED room paths (``GET /v1.0/homes/{h}/rooms`` = home.roomInfos, ``POST
  /v1.0/homes/{h}/room`` = home.addRoom, ``PUT``/``DELETE /v1.0/homes/{h}/rooms/{r}``); room
  device changes on ``/v1.0/homes/{h}/rooms/{r}/devices`` (POST add, PUT replace, DELETE remove
  with the JSON body ``{"device_ids": [...]}`` as DOC "Delete Devices from Room" gives it, the
  ids also as one comma-separated string, as that page's table describes them; the older query
  form ``?device_ids=a,b`` is accepted too); members on
  ``/v1.0/homes/{h}/members[/{uid}]``; homes of a user on ``GET /v1.0/users/{uid}/homes``. The
  same actions are also reachable as ``POST /v1.0/action`` with ``{"action": "home.add",
  "params": {…}}`` (the mini-program style; transport INFERRED), including ``home.roomList`` and
  ``home.memberInfos`` as aliases (DOC page names). Request fields and result shapes are the
  seed's (``home.devices``/``home.roomDevices`` list status values as strings, as in the seed's
  samples; mutations answer ``true``, ``home.add`` the home_id, ``home.addRoom`` the room_id).
  Adding a member (not in seed 002; INFERRED from the REST page): ``POST
  /v1.0/homes/{h}/members`` with ``{"app_schema"?, "member": {"country_code",
  "member_account", "admin"?, "name"?}}`` (a flat body works too) for a known app account;
  ``home.addMember`` on the action endpoint.
  Errors: a missing field → ``1100 param is empty``; a wrong type → ``1109 param is illegal``;
  coordinates out of range → ``1101 params range invalid``; an unknown home, room, device, user or
  account → ``1000 data not exist``; removing the owner → ``1106 permission deny`` (INFERRED).
  Deleting a home unbinds its devices (INFERRED); deleting a room leaves its devices room-less.
* Devices: ``GET /v1.0/users/{uid}/devices`` (devices of every home the user belongs to and
  the devices others shared with the user; ``from=home`` / ``from=sharing`` (DOC private cloud)
  only the ones or the others, another ``from`` → ``1109``; a list, status values typed).
  Paged two ways (:attr:`TuyaSimulator.page_scheme`), pages of at most min(``page_size``,
  :attr:`TuyaSimulator.page_size`) devices: ``last_id`` (the default; the form INFERRED): with
  ``page_size`` and/or ``last_id`` the page after the device named ``last_id``, an unknown
  ``last_id`` → ``1109``; ``page_no`` (DOC, private-cloud edition "Get User's Device List":
  ``page_no`` 1 = the first page, ``page_size``; ``last_id`` is no parameter there and is
  ignored): with ``page_size`` and/or ``page_no`` that page. ``GET
  /v1.0/devices/status?device_ids=a,b`` (``[{id, status}]``) and ``GET
  /v1.0/devices/factory-infos?device_ids=a,b`` (``[{id, uuid, sn, mac}]``; 3P tinytuya; no ids
  → ``1100``), ``GET /v1.0/devices/{id}``, ``GET /v1.0[/iot-03]/devices/{id}/status``
  (``[{code, value}]``), ``GET /v1.0/iot-03/devices/{id}/functions`` and
  ``/v1.0/devices/{id}/functions`` (``{category, functions: [{code, name, desc, type,
  values}]}``), ``GET /v1.0/iot-03/devices/{id}/specification`` and
  ``/v1.[01]/devices/{id}/specifications`` (``{category, functions: [...], status: [...]}``,
  ``values`` a JSON string). ``POST /v1.0[/iot-03]/devices/{id}/commands`` with
  ``{"commands": [{code, value}]}`` checks every item against the functions first (all or
  nothing): an unknown code or a bad value (wrong type, Integer outside min/max, Enum outside the
  range, String over maxlen) → ``2008 command or value not support`` (3P code); an offline device
  → ``2001 device is offline`` (INFERRED). Integer values are the raw scaled integers.
  Applied values are reported on the message service (curtain: ``percent_control`` also moves
  ``percent_state``, ``control`` open/close sets ``work_state``).
* Message service (3P tuya-connector-python ``openpulsar.py``): WebSocket
  ``/ws/v2/consumer/persistent/{access_id}/out/{topic}/{access_id}-sub`` (``topic`` = ``event``
  unless configured), headers ``username`` = access id and ``password`` = ``md5hex(access_id +
  md5hex(secret))[8:24]``, else HTTP 401 (INFERRED); HTTP 503 while
  :attr:`TuyaSimulator.push_enabled` is False. Frames ``{"messageId", "payload", "publishTime",
  "redeliveryCount", "properties": {}}`` (Pulsar WS fields); ``payload`` = base64 of
  ``{"protocol", "pv": "2.0", "t", "sign", "data"}`` where ``data`` = base64 AES-128-ECB(key =
  secret[8:24], PKCS7) of the message JSON, or with :attr:`TuyaSimulator.push_encryption`
  ``"aes_gcm"`` base64(12-byte nonce + AES-128-GCM ciphertext + tag) announced by ``"properties":
  {"em": "aes_gcm"}`` (Tuya's Pulsar SDKs), and ``sign`` is an md5 over the fields (algorithm
  INFERRED; nobody checks it). Two formats (:attr:`TuyaSimulator.push_format`):
  ``legacy`` (the default): protocol 4 (DOC): ``{"dataId", "devId", "productKey", "status":
  [{"code", "value", "t", "<n>": "<value as text>"}]}``; protocol 20 (DOC): ``{"devId",
  "productKey", "bizCode": "online"|"offline"|"nameUpdate"|"bindUser"|"delete", "bizData":
  {"time"} | {"name"} | {"uid"} (INFERRED for bindUser/delete), "ts"}``. ``current``, the IoT
  Core protocols Tuya documents since 2023-06-20 (DOC message-type: protocol numbers and
  bizCodes; the field names 3P, from public IoT Core consumers): protocol 1000 ``{"bizCode":
  "devicePropertyMessage", "bizData": {"dataId", "devId", "productId", "properties": [{"code",
  "value", "dpId", "time"}]}, "ts"}``; protocol 1001 ``{"bizCode": "deviceOnline" |
  "deviceOffline" | "deviceNameUpdate" | "deviceBindSpace" | "deviceUnbindSpace", "bizData":
  {"devId", "productId", "uid", "time" | "name"}, "ts"}`` (``name``: INFERRED, as in
  nameUpdate). The consumer acks with ``{"messageId"}``; a message not acked within
  ``ackTimeoutMillis`` (query parameter, default 3000; 0 disables) is sent again with
  ``redeliveryCount`` + 1, and unacked messages of a closed consumer go to the next one first.
  Subscription type Failover: the first connected consumer gets the messages. Messages published
  while no consumer is connected wait for one (persistent topic).
* Quota and expiry (:attr:`TuyaSimulator.quota_code`, ``None`` by default): when set to one of
  :data:`QUOTA_MESSAGES`' codes, every business call that passes the signature and token checks
  is answered ``{"success": false, "code": <code>, "msg": <text>}`` and not executed; token
  calls are still answered (INFERRED: the reports of these errors come from calls made with a
  token, e.g. tinytuya's device listing after its token call). The texts are the ones Tuya's
  cloud sends as quoted in public issue threads (3P: 28841002, 28841004, 28841101, 28841105)
  or, for the rest of the 2884xxxx table, as public clients name them (INFERRED wording). The
  message service keeps serving (INFERRED). Every REST request is recorded with its
  ``time.monotonic()`` (``at``) so tests can see when the cloud was called.
* Momentary events (3P/INFERRED, :func:`bridge.simulators.tuya_home.event_devices`): a press or a
  gesture is a status report (protocol 4 or 1000) of an Enum DP (``switch<n>_value`` =
  ``single_click`` / ``double_click`` / ``long_press``, ``cube_action``, ``shock_state``); the
  device's status keeps the last value. Tests fire one with :meth:`TuyaSimulator.press`
  (``repeat`` > 1 publishes the report again with the same ``dataId``, as a new message);
  random changes press now and then.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import itertools
import json
import random
import re
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from bridge.simulators import tuya_wire
from bridge.simulators.event_devices import PRESS_EVERY
from bridge.simulators.serving import serve_forever
from bridge.simulators.tuya_home import (
    QUIET,
    SimDp,
    SimHome,
    SimRoom,
    SimTuyaDevice,
    TuyaWorld,
    event_devices,
    is_event_dp,
    sample_world,
    synthetic_plugs,
)

__all__ = ["DEFAULT_CLIENT_ID", "DEFAULT_SECRET", "TuyaError", "TuyaSimulator", "serve"]

DEFAULT_CLIENT_ID = "sim1KAD46OrT9HafiKdsX"
DEFAULT_SECRET = "sim4OHBOnWOqaEC1mWXOpVL3yV50s0qGSRC"
DEVELOPER_UID = "bay1600000000000devUs"
PUSH_FORMATS = ("legacy", "current")
PAGE_SCHEMES = ("last_id", "page_no")
TIME_WINDOW_MS = 5 * 60 * 1000
SIGN_METHOD = "HMAC-SHA256"

MESSAGES = {
    500: "system error",
    1000: "data not exist",
    1003: "grant type invalid",
    1004: "sign invalid",
    1005: "clientId invalid",
    1010: "token invalid",
    1012: "token status is invalid",
    1013: "request time is invalid",
    1100: "param is empty",
    1101: "params range invalid",
    1105: "missing the header",
    1106: "permission deny",
    1108: "uri path invalid",
    1109: "param is illegal, please check it",
    2001: "device is offline",
    2008: "command or value not support",
}

QUOTA_MESSAGES = {
    28841001: "No permissions. Your project has not subscribed to the cloud development plan.",
    28841002: "No permissions. Your subscription to cloud development plan has expired.",
    28841003: "No permissions. Your cloud development plan has an overdue bill.",
    28841004: "No permissions. Your quota of Trial Edition is used up.",
    28841101: "No permissions. This API is not subscribed.",
    28841102: "No permissions. Your subscription to this API has expired.",
    28841103: "No permissions. This API has an overdue bill.",
    28841104: "No permissions. The quota of this API is used up.",
    28841105: "No permissions. This project is not authorized to call this API.",
}
"""The project's plan and API subscription codes (see the module docstring for sources)."""
MESSAGES.update(QUOTA_MESSAGES)


class TuyaError(Exception):
    """An error answer: ``code`` and ``msg`` as Tuya sends them."""

    def __init__(self, code: int, detail: str = "") -> None:
        self.code = code
        self.msg = MESSAGES.get(code, "error") + (f": {detail}" if detail else "")
        super().__init__(self.msg)


# ---- routes -------------------------------------------------------------------------------------

_ID = r"(?P<{}>[^/]+)"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (
        method,
        re.compile(
            pattern.format(
                home_id=_ID.format("home_id"),
                room_id=_ID.format("room_id"),
                uid=_ID.format("uid"),
                device_id=_ID.format("device_id"),
                refresh=_ID.format("refresh_token"),
            )
        ),
        action,
    )
    for method, pattern, action in [
        ("GET", "/v1.0/token", "token.get"),
        ("GET", "/v1.0/token/{refresh}", "token.refresh"),
        ("POST", "/v1.0/action", "action"),
        ("GET", "/v1.0/users/{uid}/devices", "user.devices"),
        ("GET", "/v1.0/users/{uid}/homes", "home.memberHomeList"),
        # batch paths first: "status" and "factory-infos" are no device ids
        ("GET", "/v1.0/devices/status", "devices.status"),
        ("GET", "/v1.0/devices/factory-infos", "devices.factoryInfos"),
        ("GET", "/v1.0/devices/{device_id}", "device.info"),
        ("GET", "/v1.0/devices/{device_id}/status", "device.status"),
        ("GET", "/v1.0/iot-03/devices/{device_id}/status", "device.status"),
        ("GET", "/v1.0/devices/{device_id}/functions", "device.functions"),
        ("GET", "/v1.0/iot-03/devices/{device_id}/functions", "device.functions"),
        ("GET", "/v1.0/devices/{device_id}/specifications", "device.specification"),
        ("GET", "/v1.1/devices/{device_id}/specifications", "device.specification"),
        ("GET", "/v1.0/iot-03/devices/{device_id}/specification", "device.specification"),
        ("POST", "/v1.0/devices/{device_id}/commands", "device.commands"),
        ("POST", "/v1.0/iot-03/devices/{device_id}/commands", "device.commands"),
        ("POST", "/v1.0/home/create-home", "home.add"),
        ("GET", "/v1.0/homes/{home_id}", "home.infos"),
        ("PUT", "/v1.0/homes/{home_id}", "home.edit"),
        ("DELETE", "/v1.0/homes/{home_id}", "home.delete"),
        ("GET", "/v1.0/homes/{home_id}/devices", "home.devices"),
        ("POST", "/v1.0/homes/{home_id}/room", "home.addRoom"),
        ("GET", "/v1.0/homes/{home_id}/rooms", "home.roomInfos"),
        ("PUT", "/v1.0/homes/{home_id}/rooms/{room_id}", "home.editRoom"),
        ("DELETE", "/v1.0/homes/{home_id}/rooms/{room_id}", "home.deleteRoom"),
        ("GET", "/v1.0/homes/{home_id}/rooms/{room_id}/devices", "home.roomDevices"),
        ("POST", "/v1.0/homes/{home_id}/rooms/{room_id}/devices", "home.roomAddDevices"),
        ("PUT", "/v1.0/homes/{home_id}/rooms/{room_id}/devices", "home.roomEditDevices"),
        ("DELETE", "/v1.0/homes/{home_id}/rooms/{room_id}/devices", "home.roomDeleteDevices"),
        ("GET", "/v1.0/homes/{home_id}/members", "home.memberList"),
        ("POST", "/v1.0/homes/{home_id}/members", "home.addMember"),
        ("PUT", "/v1.0/homes/{home_id}/members/{uid}", "home.memberAuthority"),
        ("DELETE", "/v1.0/homes/{home_id}/members/{uid}", "home.deleteMember"),
    ]
]
ACTION_ALIASES = {"home.roomList": "home.roomInfos", "home.memberInfos": "home.memberHomeList"}
PUSH_PATH = "/ws/v2/consumer/persistent/{access_id}/out/{topic}/{subscription}"


# ---- parameter checks (the simulator's own, independent of the bridge) --------------------------


def _need(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    if value is None or value == "" or value == []:
        raise TuyaError(1100, name)
    return value


def _int_param(params: dict[str, Any], name: str) -> int:
    value = _need(params, name)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TuyaError(1109, name)
    return value


def _str_param(params: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = _need(params, name) if required else params.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise TuyaError(1109, name)
    return value


def _num_param(params: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TuyaError(1109, name)
    if not low <= value <= high:
        raise TuyaError(1101, name)
    return float(value)


def _bool_param(params: dict[str, Any], name: str, required: bool = True) -> bool | None:
    value = params.get(name)
    if value is None:
        if required:
            raise TuyaError(1100, name)
        return None
    if not isinstance(value, bool):
        raise TuyaError(1109, name)
    return value


def _query_ids(query: dict[str, str]) -> list[str]:
    ids = [part for part in query.get("device_ids", "").split(",") if part]
    if not ids:
        raise TuyaError(1100, "device_ids")
    return ids


def _positive(text: str, name: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise TuyaError(1109, name)
    return int(text)


def _ids_param(params: dict[str, Any], name: str) -> list[str]:
    """A list of ids: a JSON array or one comma-separated string (DOC tables describe both)."""
    value = _need(params, name)
    if isinstance(value, str):
        value = [part for part in value.split(",") if part]
    if not value or not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise TuyaError(1109, name)
    return list(value)


def _text(value: Any) -> str:
    """A status value as the seed's home listings show it: a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _mask(account: str) -> str:
    return account[:2] + "*" * 6 + account[-3:] if len(account) > 5 else "***"


# ---- message service ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Message:
    message_id: str
    protocol: int
    data: dict[str, Any]
    t: int
    redelivery: int = 0
    sent_at: float = 0.0


@dataclass(eq=False, slots=True)
class _Consumer:
    ws: web.WebSocketResponse
    ack_timeout: float
    transport: asyncio.Transport | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    unacked: dict[str, _Message] = field(default_factory=dict)
    writer: asyncio.Task[None] | None = None


class TuyaSimulator:
    """The Tuya cloud for tests: signed REST API, home/room/member actions, device commands and a
    message-service consumer endpoint. See the module docstring for the variants it speaks."""

    def __init__(
        self,
        client_id: str = DEFAULT_CLIENT_ID,
        secret: str = DEFAULT_SECRET,
        world: TuyaWorld | None = None,
        *,
        token_lifetime: int = 7200,
        push_topic: str = "event",
        push_format: str = "legacy",
        page_scheme: str = "last_id",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        tuya_wire.message_key(secret)  # refuses a secret too short for the message service
        if push_format not in PUSH_FORMATS:
            raise ValueError(f"push_format must be one of {PUSH_FORMATS}")
        if page_scheme not in PAGE_SCHEMES:
            raise ValueError(f"page_scheme must be one of {PAGE_SCHEMES}")
        self.client_id = client_id
        self.secret = secret
        self.world = world if world is not None else sample_world()
        self.token_lifetime = token_lifetime
        self.push_topic = push_topic
        self.host = host
        self._port = port
        self.clock_offset_ms = 0
        """Added to the server's clock (to test the 5-minute ``t`` window)."""
        self.push_enabled = True
        """False: new message-service consumers are refused with HTTP 503."""
        self.push_encryption = "aes_ecb"
        """``aes_gcm``: messages are AES-GCM, announced by ``"em": "aes_gcm"`` (newer projects)."""
        self.push_format = push_format
        """``legacy``: protocols 4 and 20; ``current``: the IoT Core protocols 1000 and 1001."""
        self.page_size = 100
        """The most devices per page of ``GET /v1.0/users/{uid}/devices``."""
        self.page_scheme = page_scheme
        """How that listing pages: ``last_id`` (INFERRED) or ``page_no`` (DOC private cloud)."""
        self.quota_code: int | None = None
        """A :data:`QUOTA_MESSAGES` code: every business call is refused with it (None: off)."""
        self.received: list[dict[str, Any]] = []
        """Every REST request: method, path, query, body, action, code (0 = success), at
        (``time.monotonic()`` when it arrived)."""
        self.stats: Counter[str] = Counter()
        self.issued_tokens: list[str] = []
        """Every access and refresh token handed out (to check they never leak)."""
        self._access: dict[str, float] = {}
        self._refresh: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._home_ids = itertools.count(3190001)
        self._room_ids = itertools.count(1410001)
        self._backlog: deque[_Message] = deque()
        self._consumers: list[_Consumer] = []
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._redeliver_task: asyncio.Task[None] | None = None
        self._random_task: asyncio.Task[None] | None = None
        self._actions: dict[str, Callable[[dict[str, Any]], Any]] = {
            "home.add": self._home_add,
            "home.edit": self._home_edit,
            "home.delete": self._home_delete,
            "home.infos": self._home_infos,
            "home.devices": self._home_devices,
            "home.addRoom": self._add_room,
            "home.editRoom": self._edit_room,
            "home.deleteRoom": self._delete_room,
            "home.roomInfos": self._room_infos,
            "home.roomDevices": self._room_devices,
            "home.roomAddDevices": self._room_add_devices,
            "home.roomEditDevices": self._room_edit_devices,
            "home.roomDeleteDevices": self._room_delete_devices,
            "home.memberList": self._member_list,
            "home.addMember": self._add_member,
            "home.memberAuthority": self._member_authority,
            "home.deleteMember": self._delete_member,
            "home.memberHomeList": self._member_home_list,
        }

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on ``host:port`` (port 0: a free one)."""
        app = web.Application()
        app.router.add_get(
            "/ws/v2/consumer/persistent/{access_id}/out/{topic}/{subscription}", self._handle_ws
        )
        app.router.add_route("*", "/{tail:.*}", self._handle_http)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self._port).start()
        self._redeliver_task = asyncio.create_task(self._redeliver_loop())

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        self.stop_random_changes()
        if self._redeliver_task is not None:
            self._redeliver_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._redeliver_task
        await self.drop_push_connections()
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("simulator not started")
        return int(self._runner.addresses[0][1])

    @property
    def url(self) -> str:
        """The OpenAPI base URL (``url`` in the backend config)."""
        return f"http://{self.host}:{self.port}"

    @property
    def push_url(self) -> str:
        """The message-service base URL (``push_url`` in the backend config)."""
        return f"ws://{self.host}:{self.port}/"

    def now_ms(self) -> int:
        """The server's clock in milliseconds."""
        return int(time.time() * 1000) + self.clock_offset_ms

    # ---- control API for tests --------------------------------------------------------------

    def device(self, device_id: str) -> SimTuyaDevice:
        """The simulated device (KeyError if unknown)."""
        return self.world.devices[device_id]

    def get_status(self, device_id: str, code: str) -> Any:
        """A DP's current raw value."""
        return self.world.devices[device_id].status[code]

    def set_status(self, device_id: str, code: str, value: Any) -> None:
        """A physical change on the device: store the raw value and report it (protocol 4 or
        1000)."""
        self.set_statuses(device_id, {code: value})

    def set_statuses(self, device_id: str, values: dict[str, Any]) -> None:
        """Several DPs changed at once: one status report."""
        device = self.world.devices[device_id]
        for code in values:
            if device.dp(code) is None:
                raise KeyError(f"{device_id} has no DP {code!r}")
        device.status.update(values)
        device.update_time = int(time.time())
        self._report_status(device, list(values))

    def press(self, device_id: str, code: str, value: str, repeat: int = 1) -> None:
        """A button press or gesture (``press(remote, "switch2_value", "double_click")``): one
        status report of that event DP, published ``repeat`` times with the same ``dataId`` (as
        a report the message service delivers again). The status keeps the last value."""
        device = self.world.devices[device_id]
        dp = device.dp(code)
        if dp is None or value not in dp.values.get("range", ()):
            raise ValueError(f"{device_id} cannot report {code}={value!r}")
        device.status[code] = value
        report = self._status_report(device, [code])
        for _ in range(repeat):
            if report is not None:
                self._publish(report[0], copy.deepcopy(report[1]))

    def set_online(self, device_id: str, online: bool) -> None:
        """The device goes online/offline: protocol 20 ``online``/``offline`` (1001
        ``deviceOnline``/``deviceOffline``)."""
        device = self.world.devices[device_id]
        device.online = online
        codes = ("online", "deviceOnline") if online else ("offline", "deviceOffline")
        self._device_message(device, codes, {"time": self.now_ms()})

    def rename_device(self, device_id: str, name: str) -> None:
        """Rename in the app: protocol 20 ``nameUpdate`` (1001 ``deviceNameUpdate``)."""
        device = self.world.devices[device_id]
        device.name = name
        self._device_message(device, ("nameUpdate", "deviceNameUpdate"), {"name": name})

    def bind_device(self, device: SimTuyaDevice) -> None:
        """Pair a new device in the app: protocol 20 ``bindUser`` (1001 ``deviceBindSpace``)."""
        self.world.devices[device.id] = device
        self._device_message(device, ("bindUser", "deviceBindSpace"), {"uid": device.owner_uid})

    def remove_device(self, device_id: str) -> None:
        """Remove the device in the app: protocol 20 ``delete`` (1001 ``deviceUnbindSpace``)."""
        device = self.world.devices.pop(device_id)
        self._device_message(device, ("delete", "deviceUnbindSpace"),
                             {"uid": device.owner_uid})

    def publish_message(self, protocol: int, data: dict[str, Any]) -> None:
        """Put any message on the message service as it is (e.g. a late, stale report)."""
        self._publish(protocol, data)

    def add_device(self, device: SimTuyaDevice) -> None:
        """Bind a new device without a message (the bridge sees it on its next listing)."""
        self.world.devices[device.id] = device

    def expire_tokens(self) -> None:
        """Every access token issued so far expires now (the next business call gets 1010)."""
        for token in self._access:
            self._access[token] = 0.0

    def revoke_tokens(self) -> None:
        """Every access and refresh token becomes unknown (1010 / 1012)."""
        self._access.clear()
        self._refresh.clear()

    async def drop_push_connections(self) -> None:
        """Cut every message-service consumer without a close frame (a network drop); their
        unacked messages will be redelivered to the next consumer."""
        consumers = list(self._consumers)
        for consumer in consumers:
            self._retire(consumer)
            if consumer.transport is not None:
                consumer.transport.abort()
        for consumer in consumers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(consumer.done.wait(), 1.0)

    @property
    def push_connections(self) -> int:
        """Connected message-service consumers."""
        return len(self._consumers)

    @property
    def pending_messages(self) -> int:
        """Messages published but not acked yet (queued or in flight)."""
        return len(self._backlog) + sum(len(c.unacked) for c in self._consumers)

    def business_calls(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Every REST request other than a token call received at ``time.monotonic()`` ≥
        ``since`` (a signed call the project's quota pays for)."""
        return [r for r in self.received
                if r["at"] >= since and not str(r["action"] or "").startswith("token.")]

    def requests_to(self, action: str) -> list[dict[str, Any]]:
        """The received REST requests for one action (``device.commands``, ``home.add``...)."""
        return [r for r in self.received if r["action"] == action]

    def start_random_changes(self, rate: float, seed: int | None = None) -> None:
        """About ``rate`` random sensor/power changes per second (for demos and benchmarks); every
        :data:`PRESS_EVERY`-th is a random button press or gesture of an event device instead."""
        self.stop_random_changes()
        if rate > 0:
            self._random_task = asyncio.create_task(self._random_changes(rate, random.Random(seed)))

    def stop_random_changes(self) -> None:
        """Stop :meth:`start_random_changes`."""
        if self._random_task is not None:
            self._random_task.cancel()
            self._random_task = None

    async def _random_changes(self, rate: float, rng: random.Random) -> None:
        candidates = [
            (d.id, dp)
            for d in self.world.devices.values()
            for dp in d.dps
            if dp.type == "Integer" and not dp.function
        ]
        presses = [(d.id, dp.code, value) for d in self.world.devices.values() for dp in d.dps
                   if is_event_dp(dp.code)
                   for value in dp.values.get("range", ()) if value != QUIET]
        changes = 0
        while candidates:
            await asyncio.sleep(rng.expovariate(rate))
            changes += 1
            if presses and changes % PRESS_EVERY == 0:
                device_id, code, value = rng.choice(presses)
                if device_id in self.world.devices:
                    self.press(device_id, code, value)
                continue
            device_id, dp = rng.choice(candidates)
            if device_id in self.world.devices:
                low, high = int(dp.values.get("min", 0)), int(dp.values.get("max", 100))
                self.set_status(device_id, dp.code, rng.randint(low, high))

    # ---- HTTP -------------------------------------------------------------------------------

    async def _handle_http(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        query = list(request.query.items())
        record: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "query": dict(query),
            "body": None,
            "action": None,
            "code": 0,
            "at": time.monotonic(),
        }
        self.received.append(record)
        self.stats["requests"] += 1
        try:
            if raw:
                try:
                    record["body"] = json.loads(raw)
                except ValueError:
                    record["body"] = raw.decode("utf-8", "replace")
            route = self._route(request.method, request.path)
            if route is None:  # before any token check: also for token-like paths (INFERRED)
                raise TuyaError(1108, f"{request.method} {request.path}")
            action, args = route
            record["action"] = action
            self._authenticate(request, raw, query, action.startswith("token."))
            if self.quota_code is not None and not action.startswith("token."):
                raise TuyaError(self.quota_code)  # after the checks: a signed, known caller
            if raw and isinstance(record["body"], str):
                raise TuyaError(1109, "body is not JSON")
            result = self._dispatch(action, args, dict(query), record["body"])
        except TuyaError as exc:
            record["code"] = exc.code
            self.stats["errors"] += 1
            return self._answer({"success": False, "code": exc.code, "msg": exc.msg})
        return self._answer({"success": True, "result": result})

    def _answer(self, body: dict[str, Any]) -> web.Response:
        body["t"] = self.now_ms()
        body["tid"] = secrets.token_hex(16)
        return web.json_response(body, dumps=lambda o: json.dumps(o, ensure_ascii=False))

    @staticmethod
    def _route(method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        for route_method, pattern, action in _ROUTES:
            match = pattern.fullmatch(path)
            if match and route_method == method:
                args: dict[str, Any] = {}
                for name, value in match.groupdict().items():
                    args[name] = (
                        int(value) if name in ("home_id", "room_id") and value.isdigit() else value
                    )
                return action, args
        return None

    def _authenticate(
        self, request: web.Request, raw: bytes, query: list[tuple[str, str]], token_api: bool
    ) -> None:
        headers = request.headers
        for name in ["client_id", "sign", "t", "sign_method"]:
            if not headers.get(name):
                raise TuyaError(1105, name)
        if not token_api and "access_token" not in headers:
            raise TuyaError(1105, "access_token")  # present but empty: an invalid token, below
        if headers["client_id"] != self.client_id:
            raise TuyaError(1005)
        if headers["sign_method"].upper() != SIGN_METHOD:
            raise TuyaError(1004, "sign_method must be HMAC-SHA256")
        t = headers["t"]
        access_token = "" if token_api else headers["access_token"]
        names = [n for n in headers.get("Signature-Headers", "").split(":") if n]
        to_sign = tuya_wire.to_sign(request.method, raw, request.path, query, headers, names)
        expected = tuya_wire.request_sign(
            self.client_id, self.secret, t, headers.get("nonce", ""), to_sign, access_token
        )
        if not t.isdigit() or abs(int(t) - self.now_ms()) > TIME_WINDOW_MS:
            raise TuyaError(1013)
        if not secrets.compare_digest(headers["sign"].upper(), expected):
            raise TuyaError(1004)
        if not token_api:
            # Tuya answers an unknown, a replaced and an expired token alike: 1010 "token
            # invalid" (what tuya-connector-python and tuya-iot-py-sdk renew on, and the text
            # tinytuya looks for).
            expires = self._access.get(access_token)
            if expires is None or expires <= time.time():
                raise TuyaError(1010)

    def _dispatch(self, action: str, args: dict[str, Any], query: dict[str, str], body: Any) -> Any:
        if action == "token.get":
            if query.get("grant_type") != "1":
                raise TuyaError(1003)
            self.stats["tokens_issued"] += 1
            return self._issue_token()
        if action == "token.refresh":
            old = self._refresh.pop(str(args["refresh_token"]), None)
            if old is None:
                raise TuyaError(1012)
            self._access.pop(old, None)
            self.stats["tokens_refreshed"] += 1
            return self._issue_token()
        if body is not None and not isinstance(body, dict):
            raise TuyaError(1109, "body must be a JSON object")
        params: dict[str, Any] = dict(body or {})
        if action == "action":
            name = params.get("action")
            inner = params.get("params") or {}
            name = ACTION_ALIASES.get(str(name), name)
            if not isinstance(name, str) or name not in self._actions:
                raise TuyaError(1108, f"unknown action {name!r}")
            if not isinstance(inner, dict):
                raise TuyaError(1109, "params")
            return self._actions[name](dict(inner))
        params.update(args)
        if action == "home.roomDeleteDevices" and "device_ids" in query:
            params["device_ids"] = [part for part in query["device_ids"].split(",") if part]
        if action.startswith("home."):
            return self._actions[action](params)
        if action == "user.devices":
            return self._user_devices(str(args["uid"]), query)
        if action in ("devices.status", "devices.factoryInfos"):
            devices = [self._device(i) for i in _query_ids(query)]
            if action == "devices.status":
                return [{"id": d.id, "status": self._status(d)} for d in devices]
            return [{"id": d.id, "uuid": d.id, "sn": "", "mac": ""} for d in devices]
        device = self._device(str(args["device_id"]))
        if action == "device.info":
            return self._device_json(device, typed=True)
        if action == "device.status":
            return self._status(device)
        if action == "device.functions":
            return {
                "category": device.category,
                "functions": [
                    {
                        "code": d.code,
                        "name": d.code,
                        "desc": "",
                        "type": d.type,
                        "values": d.values_json(),
                    }
                    for d in device.dps
                    if d.function
                ],
            }
        if action == "device.specification":
            return {
                "category": device.category,
                "functions": [
                    {"code": d.code, "type": d.type, "values": d.values_json()}
                    for d in device.dps
                    if d.function
                ],
                "status": [
                    {"code": d.code, "type": d.type, "values": d.values_json()}
                    for d in device.dps
                    if d.status
                ],
            }
        return self._commands(device, params)

    def _issue_token(self) -> dict[str, Any]:
        access = secrets.token_hex(16)
        refresh = secrets.token_hex(16)
        self.issued_tokens += [access, refresh]
        self._access[access] = time.time() + self.token_lifetime
        self._refresh[refresh] = access
        return {
            "uid": DEVELOPER_UID,
            "access_token": access,
            "expire_time": self.token_lifetime,
            "refresh_token": refresh,
        }

    # ---- devices ------------------------------------------------------------------------------

    def _device(self, device_id: str) -> SimTuyaDevice:
        device = self.world.devices.get(device_id)
        if device is None:
            raise TuyaError(1000, f"device {device_id}")
        return device

    def _device_json(self, device: SimTuyaDevice, typed: bool) -> dict[str, Any]:
        status = [
            {
                "code": d.code,
                "value": copy.deepcopy(device.status[d.code])
                if typed
                else _text(device.status[d.code]),
            }
            for d in device.dps
            if d.status and d.code in device.status
        ]
        doc: dict[str, Any] = {
            "id": device.id,
            "uuid": device.id,
            "uid": device.owner_uid,
            "name": device.name,
            "ip": device.ip,
            "sub": device.sub,
            "status": status,
            "category": device.category,
            "online": device.online,
            "time_zone": device.time_zone,
            "local_key": device.local_key,
            "owner_id": str(device.home_id) if device.home_id is not None else "",
            "product_id": device.product_id,
        }
        if typed:
            doc.update(
                {
                    "product_name": device.product_name,
                    "create_time": device.create_time,
                    "active_time": device.create_time,
                    "update_time": device.update_time,
                }
            )
        return doc

    @staticmethod
    def _status(device: SimTuyaDevice) -> list[dict[str, Any]]:
        return [{"code": c, "value": copy.deepcopy(v)} for c, v in device.status.items()]

    def _user_devices(self, uid: str, query: dict[str, str]) -> list[dict[str, Any]]:
        if uid not in self.world.users:
            raise TuyaError(1000, f"user {uid}")
        source = query.get("from")
        if source not in (None, "home", "sharing"):
            raise TuyaError(1109, "from")
        homes = {h.home_id for h in self.world.homes.values() if uid in h.members}
        shared = self.world.shared.get(uid, set())
        devices = [d for d in self.world.devices.values()
                   if (source != "sharing" and d.home_id in homes)
                   or (source != "home" and d.id in shared and d.home_id not in homes)]
        size = min(_positive(query.get("page_size", str(self.page_size)), "page_size"),
                   self.page_size)
        if self.page_scheme == "page_no" and ("page_size" in query or "page_no" in query):
            number = _positive(query.get("page_no", "1"), "page_no")  # last_id: not a param
            devices = devices[(number - 1) * size : number * size]
        elif self.page_scheme == "last_id" and ("page_size" in query or "last_id" in query):
            ids = [d.id for d in devices]
            last = query.get("last_id", "")
            if last and last not in ids:
                raise TuyaError(1109, "last_id")
            start = ids.index(last) + 1 if last else 0
            devices = devices[start : start + size]
        return [self._device_json(d, typed=True) for d in devices]

    @staticmethod
    def _valid_value(dp: SimDp, value: Any) -> bool:
        kind = dp.type
        if kind == "Boolean":
            return isinstance(value, bool)
        if kind in ("Integer", "Bitmap"):
            if isinstance(value, bool) or not isinstance(value, int):
                return False
            low, high = dp.values.get("min"), dp.values.get("max")
            return (low is None or value >= low) and (high is None or value <= high)
        if kind == "Enum":
            return isinstance(value, str) and value in dp.values.get("range", [])
        if kind in ("String", "Raw"):
            maxlen = dp.values.get("maxlen")
            return isinstance(value, str) and (maxlen is None or len(value) <= int(maxlen))
        if kind == "Json":
            if isinstance(value, dict | list):
                return True
            if isinstance(value, str):
                try:
                    json.loads(value)
                except ValueError:
                    return False
                return True
            return False
        return True

    def _commands(self, device: SimTuyaDevice, body: dict[str, Any]) -> bool:
        commands = body.get("commands")
        if commands is None or commands == []:
            raise TuyaError(1100, "commands")
        if not isinstance(commands, list):
            raise TuyaError(1109, "commands")
        changes: dict[str, Any] = {}
        for item in commands:
            if not isinstance(item, dict) or not isinstance(item.get("code"), str):
                raise TuyaError(1109, "commands")
            dp = device.dp(item["code"])
            if dp is None or not dp.function:
                raise TuyaError(2008, f"code {item['code']}")
            if not self._valid_value(dp, item.get("value")):
                raise TuyaError(2008, f"value of {item['code']}")
            value = item["value"]
            if dp.type == "Json" and not isinstance(value, str):
                value = json.dumps(value, separators=(",", ":"))
            changes[dp.code] = value
        if not device.online:
            raise TuyaError(2001)
        self.stats["commands"] += 1
        if device.category in ("qt", "cl"):
            if "percent_control" in changes:
                changes["percent_state"] = changes["percent_control"]
            if changes.get("control") in ("open", "close"):
                changes["work_state"] = "opening" if changes["control"] == "open" else "closing"
        device.status.update(changes)
        device.update_time = int(time.time())
        loop = asyncio.get_running_loop()
        loop.call_soon(self._report_status, device, list(changes))  # after the answer
        return True

    # ---- homes, rooms, members ----------------------------------------------------------------

    def _home(self, params: dict[str, Any]) -> SimHome:
        home_id = _int_param(params, "home_id")
        home = self.world.homes.get(home_id)
        if home is None:
            raise TuyaError(1000, f"home {home_id}")
        return home

    def _room(self, home: SimHome, params: dict[str, Any]) -> SimRoom:
        room_id = _int_param(params, "room_id")
        room = home.room(room_id)
        if room is None:
            raise TuyaError(1000, f"room {room_id}")
        return room

    @staticmethod
    def _home_json(home: SimHome) -> dict[str, Any]:
        return {
            "home_id": home.home_id,
            "name": home.name,
            "geo_name": home.geo_name,
            "lon": home.lon,
            "lat": home.lat,
        }

    def _home_add(self, params: dict[str, Any]) -> int:
        uid = _str_param(params, "uid")
        spec = _need(params, "home")
        if not isinstance(spec, dict):
            raise TuyaError(1109, "home")
        name = _str_param(spec, "name")
        geo = _str_param(spec, "geo_name", required=False)
        lon = _num_param(spec, "lon", -180, 180)
        lat = _num_param(spec, "lat", -90, 90)
        rooms = params.get("rooms") or []
        if not isinstance(rooms, list) or not all(isinstance(r, str) and r for r in rooms):
            raise TuyaError(1109, "rooms")
        if uid not in self.world.users:
            raise TuyaError(1000, f"user {uid}")
        home = SimHome(
            next(self._home_ids),
            str(name),
            geo or "",
            lon or 0.0,
            lat or 0.0,
            str(uid),
            [SimRoom(next(self._room_ids), r) for r in rooms],
            {str(uid): True},
        )
        self.world.homes[home.home_id] = home
        return home.home_id

    def _home_edit(self, params: dict[str, Any]) -> bool:
        home = self._home(params)
        name = _str_param(params, "name", required=False)
        geo = _str_param(params, "geo_name", required=False)
        lon = _num_param(params, "lon", -180, 180)
        lat = _num_param(params, "lat", -90, 90)
        home.name = name if name is not None else home.name
        home.geo_name = geo if geo is not None else home.geo_name
        home.lon = lon if lon is not None else home.lon
        home.lat = lat if lat is not None else home.lat
        return True

    def _home_delete(self, params: dict[str, Any]) -> bool:
        home = self._home(params)
        del self.world.homes[home.home_id]
        for device_id in [d.id for d in self.world.devices.values() if d.home_id == home.home_id]:
            del self.world.devices[device_id]
        return True

    def _home_infos(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._home_json(self._home(params))

    def _home_devices(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        home = self._home(params)
        return [
            self._device_json(d, typed=False)
            for d in self.world.devices.values()
            if d.home_id == home.home_id
        ]

    def _add_room(self, params: dict[str, Any]) -> int:
        home = self._home(params)
        name = _str_param(params, "name")
        room = SimRoom(next(self._room_ids), str(name))
        home.rooms.append(room)
        return room.room_id

    def _edit_room(self, params: dict[str, Any]) -> bool:
        home = self._home(params)
        room = self._room(home, params)
        room.name = str(_str_param(params, "name"))
        return True

    def _delete_room(self, params: dict[str, Any]) -> bool:
        home = self._home(params)
        room = self._room(home, params)
        home.rooms.remove(room)
        for device in self.world.devices.values():
            if device.home_id == home.home_id and device.room_id == room.room_id:
                device.room_id = None
        return True

    def _room_infos(self, params: dict[str, Any]) -> dict[str, Any]:
        home = self._home(params)
        doc = self._home_json(home)
        doc["rooms"] = [{"room_id": r.room_id, "name": r.name} for r in home.rooms]
        return doc

    def _room_devices(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        home = self._home(params)
        room = self._room(home, params)
        return [
            self._device_json(d, typed=False)
            for d in self.world.devices.values()
            if d.home_id == home.home_id and d.room_id == room.room_id
        ]

    def _home_device_list(self, home: SimHome, params: dict[str, Any]) -> list[SimTuyaDevice]:
        devices = []
        for device_id in _ids_param(params, "device_ids"):
            device = self.world.devices.get(device_id)
            if device is None:
                raise TuyaError(1000, f"device {device_id}")
            if device.home_id != home.home_id:
                raise TuyaError(1109, f"device {device_id} is not in home {home.home_id}")
            devices.append(device)
        return devices

    def _room_add_devices(self, params: dict[str, Any]) -> bool:
        home = self._home(params)
        room = self._room(home, params)
        for device in self._home_device_list(home, params):
            device.room_id = room.room_id
        return True

    def _room_edit_devices(self, params: dict[str, Any]) -> bool:
        home = self._home(params)
        room = self._room(home, params)
        wanted = self._home_device_list(home, params)
        for device in self.world.devices.values():
            if device.home_id == home.home_id and device.room_id == room.room_id:
                device.room_id = None
        for device in wanted:
            device.room_id = room.room_id
        return True

    def _room_delete_devices(self, params: dict[str, Any]) -> bool:
        home = self._home(params)
        room = self._room(home, params)
        devices = self._home_device_list(home, params)
        for device in devices:
            if device.room_id != room.room_id:
                raise TuyaError(1109, f"device {device.id} is not in room {room.room_id}")
        for device in devices:
            device.room_id = None
        return True

    def _member_list(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        home = self._home(params)
        out = []
        for uid, admin in home.members.items():
            user = self.world.users[uid]
            out.append(
                {
                    "country_code": user.country_code,
                    "member_account": _mask(user.account),
                    "uid": uid,
                    "admin": admin,
                    "name": home.member_names.get(uid, user.name),
                }
            )
        return out

    def _add_member(self, params: dict[str, Any]) -> bool:
        home = self._home(params)
        member = params.get("member", params)
        if not isinstance(member, dict):
            raise TuyaError(1109, "member")
        country = _str_param(member, "country_code")
        account = _str_param(member, "member_account")
        admin = _bool_param(member, "admin", required=False)
        name = _str_param(member, "name", required=False)
        _str_param(params, "app_schema", required=False)
        user = next(
            (
                u
                for u in self.world.users.values()
                if u.country_code == country and u.account == account
            ),
            None,
        )
        if user is None:
            raise TuyaError(1000, "no user with this account")
        if user.uid in home.members:
            raise TuyaError(1109, "already a member")
        home.members[user.uid] = bool(admin)
        if name is not None:
            home.member_names[user.uid] = name
        return True

    def _member(self, home: SimHome, params: dict[str, Any]) -> str:
        uid = str(_str_param(params, "uid"))
        if uid not in home.members:
            raise TuyaError(1000, f"member {uid}")
        return uid

    def _member_authority(self, params: dict[str, Any]) -> bool:
        home = self._home(params)
        uid = self._member(home, params)
        admin = _bool_param(params, "admin")
        if uid == home.owner_uid and not admin:
            raise TuyaError(1106, "the owner stays an administrator")
        home.members[uid] = bool(admin)
        return True

    def _delete_member(self, params: dict[str, Any]) -> bool:
        home = self._home(params)
        uid = self._member(home, params)
        if uid == home.owner_uid:
            raise TuyaError(1106, "the owner cannot be removed")
        del home.members[uid]
        return True

    def _member_home_list(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        uid = str(_str_param(params, "uid"))
        if uid not in self.world.users:
            raise TuyaError(1000, f"user {uid}")
        return [self._home_json(h) for h in self.world.homes.values() if uid in h.members]

    # ---- message service ----------------------------------------------------------------------

    def _report_status(self, device: SimTuyaDevice, codes: list[str]) -> None:
        report = self._status_report(device, codes)
        if report is not None:
            self._publish(*report)

    def _status_report(self, device: SimTuyaDevice,
                       codes: list[str]) -> tuple[int, dict[str, Any]] | None:
        """The protocol and message reporting these DPs (None when none of them reports):
        protocol 4 ``status`` items, or 1000 ``devicePropertyMessage`` properties."""
        stamp = self.now_ms()
        current = self.push_format == "current"
        items = []
        for code in codes:
            dp = device.dp(code)
            if dp is None or not dp.status or code not in device.status:
                continue
            value = copy.deepcopy(device.status[code])
            index = device.dps.index(dp) + 1
            if current:
                items.append({"code": code, "value": value, "dpId": index, "time": stamp})
            else:
                items.append({"code": code, "value": value, "t": stamp, str(index): _text(value)})
        if not items:
            return None
        data_id = secrets.token_hex(12)
        if current:
            return 1000, {"bizCode": "devicePropertyMessage", "ts": stamp,
                          "bizData": {"dataId": data_id, "devId": device.id,
                                      "productId": device.product_id, "properties": items}}
        return 4, {"dataId": data_id, "devId": device.id, "productKey": device.product_id,
                   "status": items}

    def _device_message(self, device: SimTuyaDevice, codes: tuple[str, str],
                        biz: dict[str, Any]) -> None:
        """A device management message: protocol 20 with ``codes[0]`` and the device at the top
        level, or 1001 with ``codes[1]`` and the device inside ``bizData``."""
        if self.push_format == "current":
            inner = {"devId": device.id, "productId": device.product_id,
                     "uid": device.owner_uid, **biz}
            self._publish(1001, {"bizCode": codes[1], "bizData": inner, "ts": self.now_ms()})
        else:
            self._publish(20, {"devId": device.id, "productKey": device.product_id,
                               "bizCode": codes[0], "bizData": biz, "ts": self.now_ms()})

    def _publish(self, protocol: int, data: dict[str, Any]) -> None:
        number = next(self._ids)
        message_id = base64.b64encode(f"CAAQ{number:08d}".encode()).decode()
        self._backlog.append(_Message(message_id, protocol, data, self.now_ms()))
        self.stats["push_published"] += 1
        self._pump()

    def _frame(self, message: _Message) -> str:
        payload_sign = hashlib.md5(
            f"pv=2.0||protocol={message.protocol}||t={message.t}||{self.secret[8:24]}".encode()
        ).hexdigest()
        return tuya_wire.frame(
            self.secret,
            message.message_id,
            message.data,
            protocol=message.protocol,
            t=message.t,
            sign=payload_sign,
            encryption=self.push_encryption,
            extra={
                "publishTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "redeliveryCount": message.redelivery,
            },
        )

    def _pump(self) -> None:
        if not self._consumers:
            return
        consumer = self._consumers[0]
        while self._backlog:
            message = self._backlog.popleft()
            self._send(consumer, message)

    def _send(self, consumer: _Consumer, message: _Message) -> None:
        message.sent_at = time.monotonic()
        consumer.unacked[message.message_id] = message
        consumer.queue.put_nowait(self._frame(message))
        self.stats["push_delivered"] += 1

    async def _writer(self, consumer: _Consumer) -> None:
        while True:
            frame = await consumer.queue.get()
            if frame is None:
                return
            try:
                await consumer.ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                return

    def _retire(self, consumer: _Consumer) -> None:
        if consumer not in self._consumers:
            return
        self._consumers.remove(consumer)
        consumer.queue.put_nowait(None)
        for message in reversed(list(consumer.unacked.values())):
            message.redelivery += 1
            self._backlog.appendleft(message)
        consumer.unacked.clear()
        self._pump()

    async def _redeliver_loop(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            for consumer in list(self._consumers):
                if consumer.ack_timeout <= 0:
                    continue
                for message in list(consumer.unacked.values()):
                    if now - message.sent_at >= consumer.ack_timeout:
                        message.redelivery += 1
                        self.stats["push_redelivered"] += 1
                        self._send(consumer, message)

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        access_id = request.match_info["access_id"]
        topic = request.match_info["topic"]
        subscription = request.match_info["subscription"]
        if (
            request.headers.get("username") != self.client_id
            or request.headers.get("password") != tuya_wire.password(self.client_id, self.secret)
            or access_id != self.client_id
        ):
            self.stats["push_refused"] += 1
            raise web.HTTPUnauthorized(text="authentication failed")
        if topic != self.push_topic or subscription != f"{access_id}-sub":
            raise web.HTTPNotFound(text="topic not found")
        if not self.push_enabled:
            self.stats["push_refused"] += 1
            raise web.HTTPServiceUnavailable(text="message service unavailable")
        try:
            ack_timeout = int(request.query.get("ackTimeoutMillis", "3000")) / 1000
        except ValueError:
            ack_timeout = 3.0
        ws = web.WebSocketResponse(autoping=True, heartbeat=None)
        await ws.prepare(request)
        transport = request.transport
        consumer = _Consumer(ws, ack_timeout,
                             transport if isinstance(transport, asyncio.Transport) else None)
        consumer.writer = asyncio.create_task(self._writer(consumer))
        self._consumers.append(consumer)
        self.stats["push_connections"] += 1
        self._pump()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    ack = json.loads(msg.data)
                except ValueError:
                    continue
                if (
                    isinstance(ack, dict)
                    and consumer.unacked.pop(str(ack.get("messageId")), None) is not None
                ):
                    self.stats["push_acked"] += 1
        finally:
            self._retire(consumer)
            if consumer.writer is not None:
                consumer.writer.cancel()
            consumer.done.set()
        return ws


async def serve(
    port: int,
    host: str = "127.0.0.1",
    client_id: str = DEFAULT_CLIENT_ID,
    secret: str | None = None,
    devices: int | None = None,
    rate: float = 0.0,
    seed: int | None = None,
) -> None:
    """Run the simulator until cancelled (``aqara-mqtt simulate tuya``)."""
    world = sample_world()
    for device in [*event_devices(), *synthetic_plugs(devices or 0)]:
        world.devices[device.id] = device
    simulator = TuyaSimulator(client_id, secret or DEFAULT_SECRET, world, host=host, port=port)

    def banner(started: TuyaSimulator) -> str:
        return (
            f"Tuya cloud simulator on {started.url} ({len(world.devices)} devices)\n"
            "backend config:\n"
            f"  - {{type: tuya, name: tuya, url: '{started.url}', "
            f"push_url: '{started.push_url}', client_id: '{client_id}', "
            f"secret: '<the secret>', uid: '{next(iter(world.users))}'}}\n"
            + (f"  (secret: the default simulator secret, {DEFAULT_SECRET})\n"
               if secret is None else "")
        )

    await serve_forever(simulator, banner, rate, seed)
