"""A simulator of the Aqara Studio "Data Export API v1" hub (protocols.md §1, seed docs 000/001).

One aiohttp server serves ``GET /open/ws`` (WebSocket), ``POST /open/api/v1`` (HTTP) and
``POST /open/api/v1/auth/refresh-token``. It shares no code with the bridge (only its own
:mod:`bridge.simulators.sample_home` dataclasses).

Which variant it speaks, message by message (DOC = vendor docs, 3P = third-party client code,
INFERRED = our guess; see protocols.md for the sources):

* Auth (DOC): header ``Authorization: Bearer <T>``; a bare ``<T>`` is accepted too (DOC: a token
  copied from Studio may already carry the prefix, clients send it unchanged). Otherwise HTTP 401
  with body ``{"type":"ErrorMessage","version":"v1","msgId":"UNKNOWN","code":1001,
  "message":"Unauthorized: invalid or expired token"}`` — also for a refused WebSocket upgrade
  (status and body INFERRED; code 1001 from Aqara's agent skill). WS subprotocol
  ``aqara-studio-v1`` is echoed when offered and not required (3P/INFERRED).
* Envelope (DOC): requests ``{type, version:"v1", msgId, data}``; responses
  ``{type:"<X>Response", version, msgId (echo), code, message, data}``, ``code`` 0 and
  ``message`` "Success" on success. Parse failures (bad JSON, non-object, missing/non-string
  ``type``, unknown ``type``, missing/non-string ``msgId``, ``version`` != "v1") get
  ``ErrorMessage`` code 1000, msgId "UNKNOWN", message "Message parsing failed: <reason>" (seed
  doc 000). A well-formed request with bad ``data`` gets its own Response type with ``code`` 400,
  a message naming the field and ``data: null`` (INFERRED; 400 from Aqara's agent skill). Other
  whole-request refusals (2030, 1531, 1201 below) have the same shape. For the request types whose
  ``data`` is required (QueryDeviceHistoryDataRequest, Create/UpdateScriptAutomationRequest,
  GetScriptAutomationDetailsRequest, DeleteAutomationRequest) a missing ``data`` member is a
  parse failure (ErrorMessage 1000 "Message parsing failed: Field 'data' is required for type
  with serial name '<type>', but it was missing", INFERRED from the hub's kotlinx serializer);
  ``"data": null`` or a wrong type is a 400. Over HTTP every answer except 401 has HTTP status
  200 (INFERRED).
* GetDeviceInfoRequest (DOC request; response list key INFERRED): ``data`` = ``{totalCount,
  pageNum, pageSize, data: [{deviceId, deviceName, deviceTypesList, createTime, state, model}]}``;
  ``state`` 1 online / 0 offline; filter = non-empty intersection with ``deviceTypesList`` (an
  empty or absent list means no filter); ``orderBy`` "createTime asc" (default) or "createTime
  desc" (ties broken by deviceId); ``pageNum`` < 1 treated as 1; ``pageSize`` must be an integer in
  (0, 200], default 200. Absent ``data`` is treated as ``{}``.
* GetAllDeviceInfoRequest (3P): ``data`` ignored; response ``data`` = list of the same entries,
  createTime ascending.
* GetDevicesRequest (3P request; entries follow seed doc 001's spec-config shape, INFERRED for
  Studio): ``data`` absent, ``{}`` or ``{"deviceIds": null}`` = all devices (createTime
  ascending), else the listed ids in request order (unknown ids absent). Entry =
  ``{deviceId, name, model, deviceTypesList, state, endpoints:[{endpointId, endpointTypes,
  functions:[{functionId, functionCode, traits:[{traitId, traitCode, attribute:{readable,
  writable, subscribable, type, format, unit?, min?, max?, step?, enums?, defaultValue?},
  value, time}]}]}]}`` — the trait metadata key is ``attribute`` (seed 001), not the 3P
  ``parameter``. ``value`` is omitted for unreadable traits.
* Values (DOC: "typed per trait, not stringified"): JSON bool / number / string; ENUM = the enum
  entry's ``value`` string; OTHER = JSON object or array.
* GetTraitValueRequest (3P): ``data`` = ``[{deviceId, endpointId, functionCode, traitCodes}]``;
  response ``[{deviceId, endpointId, functionCode, traitCode, value, time}]``; unknown or
  unreadable traits are omitted.
* ExecuteTraitRequest (Aqara agent skill + 3P): ``data`` = ``[{deviceId, endpointId,
  functionCode, traitCode, value}]``, non-empty. Response ``data`` = ONLY the failed items, each the
  input item plus ``code``/``message``, checked in this order: 2030 device not found (skill), 1531
  trait not found, 1530 trait not writable, 602 device offline, 1532 value illegal (all four
  INFERRED). Illegal = wrong JSON type (booleans must be JSON booleans, numbers JSON numbers, ENUM
  an enum ``value`` string, OTHER an object/array), outside min/max, non-finite, or a fraction for
  an integer format (format containing "int"); ``step`` is not enforced. Successful items change
  the value (``time`` = now) and are pushed after the response is sent.
* SubscribeTraitValueRequest / UnsubscribeTraitValueRequest (names DOC, payload INFERRED =
  GetTraitValueRequest's). Subscribe response ``data`` = failed items ``{deviceId, endpointId,
  functionCode, traitCode, code, message}`` (2030 / 1531), ``[]`` if none (INFERRED);
  Unsubscribe response ``data`` = ``[]``. SubscribeAllRequest / UnsubscribeAllRequest (3P): no
  ``data``, response ``data: null``; UnsubscribeAll also drops the per-trait subscriptions.
  Subscriptions are per WebSocket connection; over HTTP these four answer code 400
  "subscriptions need the WebSocket channel" (INFERRED).
* Trait change push — the 3P-named variant ``TraitValueUpdate``: ``{"type":"TraitValueUpdate",
  "version":"v1","msgId":"push-<n>","data":{deviceId, endpointId, functionCode, traitCode,
  value, time}}``, sent once per connection subscribed to that trait or to all. Only
  ``subscribable`` traits push.
* ``objectEvent`` push (3P): ``{"type":"objectEvent","version":"v1","msgId":"event-<n>",
  "data":{"eventType": DEVICE_ADDED|DEVICE_REMOVED|DEVICE_ONLINE|DEVICE_OFFLINE|
  DEVICE_NAME_UPDATE, "data":{"deviceId", "name"?}}}`` (``name`` on ADDED and NAME_UPDATE), to
  every connection subscribed to all. ``set_online`` also updates ``BasicInformation.Reachable``
  and pushes that trait change.
* ``POST /open/api/v1/auth/refresh-token`` (path DOC; method, body and response INFERRED): with a
  valid Authorization → ``{"code":0,"message":"Success","data":{"token":"<new>",
  "expiresIn":604800}}``; the new token becomes valid and the old one stays valid.
* History (the store is :mod:`bridge.simulators.studio_history`): every value change (physical
  ``set_value``, random changes, ExecuteTraitRequest successes, automation writes,
  ``set_online``'s Reachable) is recorded per trait with its ``time`` (ms), the newest 10,000
  per trait; each trait's history starts with the value it had when the hub got it,
  timestamped with the device's ``createTime`` (or the trait's ``time`` if earlier). Tests add
  past samples with :meth:`StudioSimulator.record_history_at`.
* QueryDeviceHistoryDataRequest (type name DOC seed 000 + 3P; payload INFERRED): ``data`` =
  ``{deviceId, endpointId, functionCode, traitCode, startTime, endTime, pageNum?, pageSize?,
  orderBy?}`` — times integer ms, both bounds inclusive, ``startTime`` > ``endTime`` is a 400;
  ``pageNum`` integer >= 1 (default 1; < 1 is a 400, unlike GetDeviceInfoRequest);
  ``pageSize`` integer in (0, 200] (default 100); ``orderBy`` "time asc" | "time desc" (default
  desc). Response ``data`` = ``{totalCount, pageNum, pageSize, data: [{value, time}]}``
  (``totalCount`` = samples in the time range). Unknown device → code 2030 "device not found:
  <id>"; unknown or unreadable trait → code 1531 "trait not found: <fn>.<trait> on <id>
  endpoint <ep>" (or "trait not readable: ..."; INFERRED codes, as for ExecuteTraitRequest).
* QueryAutomationCapabilitiesRequest (DOC: ``data`` ``{}``) and
  QueryDeviceSupportedScriptAutomationConfigRequest (DOC: ``data`` ``""``): either ``data`` form
  (or none) is accepted by both. Response ``data`` (DOC field names; values INFERRED) =
  ``{"devices": [{deviceId, deviceName, endpoints: [{endpointName, endpointId, properties:
  [{functionCode, functionName, traitCode, traitName, valueType, semanticRole}]}]}]}``, devices
  by createTime ascending (offline ones too). ``valueType`` "boolean" | "number" | "string" |
  "enum" (OTHER traits are not listed); ``semanticRole`` ⊆ ["starter", "condition", "action"]:
  starter = readable and subscribable, condition = readable, action = writable. Names are
  derived from the codes ("CurrentLevel" → "Current Level"); ``endpointName`` = the endpoint's
  first type, suffixed with the id when the device has several endpoints of that type.
* CreateScriptAutomationRequest (type DOC; payload INFERRED): ``data`` = ``{"script": <the
  script object of protocols.md §1.5>, "enabled"?: bool (default true)}``. The response type is
  ``CreateScriptLinkageResponse`` (seed doc 000's table) with ``data`` ``{"automationId"}``; ids
  look like ``"L.880000000000000001"`` (INFERRED; never reused). The automation's name is
  ``script.metadata.name``.
* UpdateScriptAutomationRequest (INFERRED): ``data`` = ``{automationId, script?, name?,
  enabled?}`` with at least one of the last three; all checked before anything changes. A new
  script renames the automation to its ``metadata.name`` unless ``name`` is given; ``name`` is
  also written into the stored script's ``metadata.name``. Response ``data`` ``{automationId}``.
* GetScriptAutomationListRequest (INFERRED): ``data`` ``{pageNum?, pageSize?}`` (absent, null or
  ``""`` = defaults; same limits as history). Response ``data`` = ``{totalCount, pageNum,
  pageSize, data: [{automationId, name, enabled, createTime, updateTime}]}`` in creation order.
* GetScriptAutomationDetailsRequest (INFERRED): ``data`` ``{automationId}`` → ``{automationId,
  name, enabled, createTime, updateTime, script}``.
* DeleteAutomationRequest (INFERRED): ``data`` ``{"automationIds": [..]}`` (non-empty) or
  ``{"automationId": ".."}`` (both together: the union) → ``{"deleted": [ids]}``. All or
  nothing: any unknown id → code 1201 "automation not exist: <id>" (legacy Aqara linkage code).
  Update and details answer unknown ids the same way.
* Script validation and execution: see :mod:`bridge.simulators.studio_automations` (400 with
  the JSON path, e.g. ``Invalid parameter: script.automations[0].actions[0].traitCode: trait not
  found on lumi.x endpoint 2 (Output.OnOff)``). Rules fire on the edge of their starter's
  comparator after the triggering change; their writes behave like ExecuteTraitRequest
  successes (value, ``time``, history, pushes) and may cascade up to 8 levels deep.

* Momentary events (INFERRED, :mod:`bridge.simulators.event_devices`): a button press, a cube
  gesture or a vibration is pushed as ``TraitValueUpdate`` of push-only event traits
  (``Switch.MultiPressComplete`` = presses counted, ``Switch.LongPress``, ``Switch.LongRelease``,
  preceded by ``InitialPress``/``ShortRelease``; ``Cube.Gesture``, ``Vibration.VibrationEvent`` =
  the gesture's name), with ``time`` = the press. Tests fire one with :meth:`StudioSimulator.press`
  (``repeat`` > 1 delivers the same push again); random changes press a random button now and
  then.

WebSocket permessage-deflate is disabled (throughput; the real hub's setting is unknown).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import random
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from bridge.simulators.aqara_wire import endpoints_tree
from bridge.simulators.event_devices import PRESS_EVERY, event_choices, event_devices, press_values
from bridge.simulators.sample_home import (
    SimDevice,
    SimTrait,
    now_ms,
    sample_home,
    synthetic_devices,
)
from bridge.simulators.serving import serve_forever
from bridge.simulators.studio_automations import (
    Automation,
    AutomationEngine,
    RequestError,
    capabilities,
    check_value,
)
from bridge.simulators.studio_history import (
    HistoryStore,
    TraitSeries,
    history_response,
    parse_history_query,
)

__all__ = ["API_PATH", "REFRESH_PATH", "SUBPROTOCOL", "WS_PATH", "StudioSimulator", "serve"]

WS_PATH = "/open/ws"
API_PATH = "/open/api/v1"
REFRESH_PATH = "/open/api/v1/auth/refresh-token"
SUBPROTOCOL = "aqara-studio-v1"
TOKEN_LIFETIME_S = 604_800

CODE_PARSE_FAILED = 1000
CODE_UNAUTHORIZED = 1001
CODE_BAD_PARAMETER = 400
CODE_DEVICE_NOT_FOUND = 2030
CODE_TRAIT_NOT_FOUND = 1531
CODE_TRAIT_NOT_WRITABLE = 1530
CODE_DEVICE_OFFLINE = 602
CODE_VALUE_ILLEGAL = 1532

UNAUTHORIZED_BODY: dict[str, Any] = {
    "type": "ErrorMessage",
    "version": "v1",
    "msgId": "UNKNOWN",
    "code": CODE_UNAUTHORIZED,
    "message": "Unauthorized: invalid or expired token",
}

TraitKey = tuple[str, int, str, str]
"""``(deviceId, endpointId, functionCode, traitCode)``."""

_After = list[Callable[[], None]]
_MISSING: Any = object()
_SUBSCRIPTION_TYPES = frozenset(
    {
        "SubscribeTraitValueRequest",
        "UnsubscribeTraitValueRequest",
        "SubscribeAllRequest",
        "UnsubscribeAllRequest",
    }
)
_RESPONSE_TYPES = {"CreateScriptAutomationRequest": "CreateScriptLinkageResponse"}
_DATA_REQUIRED = frozenset(
    {
        "QueryDeviceHistoryDataRequest",
        "CreateScriptAutomationRequest",
        "UpdateScriptAutomationRequest",
        "GetScriptAutomationDetailsRequest",
        "DeleteAutomationRequest",
    }
)
_PUSH_HEAD = '{"type":"TraitValueUpdate","version":"v1","msgId":"push-'
_RANDOM_TICK_S = 0.01


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _value_json(value: Any) -> str:
    """JSON text of a trait value, with fast paths for the common scalar types."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is float:
        return repr(value) if math.isfinite(value) else "null"
    return _dumps(value)


def _is_integer_format(fmt: str) -> bool:
    return "int" in fmt.lower()


class _BadData(Exception):
    """A well-formed request whose ``data`` is wrong: answered with code 400."""


def _plain(fn: Callable[[Any], Any]) -> Callable[[Any, _Conn | None], tuple[Any, _After]]:
    """A handler from a ``data -> response data`` function (absent ``data`` passed as None)."""

    def handler(data: Any, conn: _Conn | None) -> tuple[Any, _After]:
        return fn(None if data is _MISSING else data), []

    return handler


class _Rec:
    """Index entry of one trait: address, owner, history series and pre-serialised address JSON."""

    __slots__ = ("_addr_json", "device", "key", "series", "trait")

    def __init__(self, key: TraitKey, device: SimDevice, trait: SimTrait) -> None:
        self.key = key
        self.device = device
        self.trait = trait
        self.series: TraitSeries | None = None  # the HistoryStore's, cached on first change
        self._addr_json: str | None = None

    @property
    def addr_json(self) -> str:
        """The push message from the end of ``msgId`` to the trait code (built on first use)."""
        if self._addr_json is None:
            key = self.key
            self._addr_json = (
                '","data":{"deviceId":' + _dumps(key[0]) + ',"endpointId":' + str(key[1])
                + ',"functionCode":' + _dumps(key[2]) + ',"traitCode":' + _dumps(key[3])
            )  # fmt: skip
        return self._addr_json


class _Catalog:
    """The live devices as the automation validator sees them."""

    __slots__ = ("_devices", "_index")

    def __init__(self, devices: dict[str, SimDevice], index: dict[TraitKey, _Rec]) -> None:
        self._devices = devices
        self._index = index

    def has_device(self, device_id: str) -> bool:
        return device_id in self._devices

    def trait(self, key: TraitKey) -> SimTrait | None:
        rec = self._index.get(key)
        return None if rec is None else rec.trait


@dataclass(frozen=True, slots=True)
class Execution:
    """An ExecuteTraitRequest as the hub received it: when (``time.monotonic``), on which
    WebSocket connection (:attr:`_Conn.serial`; 0: HTTP) and its items as sent."""

    at: float
    connection: int
    items: list[Any]


class _Conn:
    """One WebSocket connection: its outbound queue, writer task and subscriptions."""

    __slots__ = (
        "alive",
        "all",
        "done",
        "out",
        "serial",
        "tasks",
        "traits",
        "transport",
        "wake",
        "writer",
        "ws",
    )

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None,
                 serial: int) -> None:
        self.serial = serial
        """Which connection this is, counting from 1 since the simulator started."""
        self.ws = ws
        self.transport = transport
        self.out: deque[bytes | bytearray] = deque()  # bytearray = binary frame (garbage only)
        self.wake = asyncio.Event()
        self.done = asyncio.Event()
        self.traits: set[TraitKey] = set()
        self.all = False
        self.alive = True
        self.writer: asyncio.Task[None] | None = None
        self.tasks: set[asyncio.Task[None]] = set()


class StudioSimulator:
    """An in-process Aqara Studio hub: WebSocket + HTTP server plus a control API for tests.

    ``latency`` (seconds) is added before every response; with ``garbage`` true every request is
    answered with non-JSON bytes or wrongly shaped JSON (and not executed). ``received`` holds every
    parsed request object (WS and HTTP), ``executions`` every ExecuteTraitRequest with its time
    and connection, ``push_count`` counts push messages queued to
    connections (one per receiving connection) and ``change_count`` counts value changes.
    A connection whose outbound queue exceeds ``max_queue`` messages is dropped. With
    ``max_backlog``, random changes are not made while a connection subscribed to everything
    has more than that many messages queued (the benchmarks' hub: slowed by the client, as TCP
    flow control slows a real hub, instead of spending shared CPU on changes nobody can take).
    ``history_capacity`` bounds the samples kept per trait.
    """

    def __init__(
        self,
        token: str,
        devices: list[SimDevice] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_queue: int = 100_000,
        max_backlog: int | None = None,
        history_capacity: int = 10_000,
    ) -> None:
        self.token = token
        self.host = host
        self.latency: float = 0.0
        self.garbage: bool = False
        self.max_queue = max_queue
        self.max_backlog = max_backlog
        self.paused_ticks = 0
        """Random-change ticks skipped because a client was ``max_backlog`` behind."""
        self.received: list[dict[str, Any]] = []
        self.executions: list[Execution] = []
        """Every ExecuteTraitRequest that reached the hub, valid or not, in order."""
        self._serials = itertools.count(1)
        self.push_count = 0
        self.change_count = 0
        self._tokens: set[str] = {token}
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._devices: dict[str, SimDevice] = {}
        self._index: dict[TraitKey, _Rec] = {}
        self._conns: set[_Conn] = set()
        self._all_subs: set[_Conn] = set()
        self._trait_subs: dict[TraitKey, set[_Conn]] = {}
        self._push_seq = 0
        self._event_seq = 0
        self._garbage_seq = 0
        self._corrupt: dict[str, str] = {}
        self._random_task: asyncio.Task[None] | None = None
        self._motors: dict[tuple[str, int], asyncio.Task[None]] = {}
        self.motor_step_seconds = 0.1
        """A curtain moves 10 % per step (the whole way in about a second)."""
        self._random_pool: list[_Rec] | None = None
        self._press_pool: list[tuple[str, int, str]] | None = None
        self._history = HistoryStore(history_capacity)
        self._engine = AutomationEngine(_Catalog(self._devices, self._index))
        self._watched = self._engine.watched
        engine = self._engine
        self._handlers: dict[str, Callable[[Any, _Conn | None], tuple[Any, _After]]] = {
            "GetDeviceInfoRequest": self._h_device_info,
            "GetAllDeviceInfoRequest": self._h_all_device_info,
            "GetDevicesRequest": self._h_devices,
            "GetTraitValueRequest": self._h_trait_value,
            "ExecuteTraitRequest": self._h_execute,
            "SubscribeTraitValueRequest": self._h_subscribe,
            "UnsubscribeTraitValueRequest": self._h_unsubscribe,
            "SubscribeAllRequest": self._h_subscribe_all,
            "UnsubscribeAllRequest": self._h_unsubscribe_all,
            "QueryDeviceHistoryDataRequest": self._h_history,
            "QueryAutomationCapabilitiesRequest": self._h_capabilities,
            "QueryDeviceSupportedScriptAutomationConfigRequest": self._h_capabilities,
            "CreateScriptAutomationRequest": _plain(engine.api_create),
            "UpdateScriptAutomationRequest": _plain(engine.api_update),
            "GetScriptAutomationListRequest": _plain(engine.api_list),
            "GetScriptAutomationDetailsRequest": _plain(engine.api_details),
            "DeleteAutomationRequest": _plain(engine.api_delete),
        }
        for dev in devices if devices is not None else []:
            if dev.device_id in self._devices:
                raise ValueError(f"duplicate device id {dev.device_id}")
            self._insert(dev.clone())

    # ----------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start listening (on ``port``; 0 picks a free one)."""
        app = web.Application()
        app.router.add_get(WS_PATH, self._handle_ws)
        app.router.add_post(API_PATH, self._handle_http)
        app.router.add_post(REFRESH_PATH, self._handle_refresh)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop random changes, close every WebSocket (code 1001) and stop the server."""
        self.stop_random_changes()
        for motor in self._motors.values():
            motor.cancel()
        self._motors.clear()
        conns = list(self._conns)
        for conn in conns:
            self._retire(conn)
        if conns:
            await asyncio.gather(*(self._close_gracefully(c) for c in conns))
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _close_gracefully(self, conn: _Conn) -> None:
        try:
            await asyncio.wait_for(conn.ws.close(code=1001, message=b"hub shutting down"), 1.0)
        except Exception:  # includes TimeoutError
            if conn.transport is not None:
                conn.transport.abort()

    @property
    def port(self) -> int:
        """The listening port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("simulator not started")
        return self._port

    @property
    def url(self) -> str:
        """Base WebSocket URL ``ws://host:port`` (the endpoint is ``url + WS_PATH``)."""
        return f"ws://{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        """Base HTTP URL ``http://host:port`` (the endpoint is ``http_url + API_PATH``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_endpoint(self) -> str:
        """Full WebSocket endpoint URL."""
        return self.url + WS_PATH

    @property
    def api_endpoint(self) -> str:
        """Full HTTP API endpoint URL."""
        return self.http_url + API_PATH

    @property
    def connections(self) -> int:
        """Number of open WebSocket connections."""
        return len(self._conns)

    @property
    def tokens(self) -> frozenset[str]:
        """Every currently valid token (the initial one plus refreshed ones)."""
        return frozenset(self._tokens)

    # ----------------------------------------------------------------------------- control API

    @property
    def devices(self) -> list[SimDevice]:
        """The hub's live device objects (mutating them bypasses pushes)."""
        return list(self._devices.values())

    def get_device(self, device_id: str) -> SimDevice:
        """The live device object; KeyError if unknown."""
        return self._devices[device_id]

    def add_device(self, dev: SimDevice) -> None:
        """Add (a copy of) a device and push DEVICE_ADDED; ValueError if the id exists."""
        if dev.device_id in self._devices:
            raise ValueError(f"device {dev.device_id} already exists")
        self._insert(dev.clone())
        self._push_event("DEVICE_ADDED", dev.device_id, dev.name)

    def remove_device(self, device_id: str) -> None:
        """Remove a device and push DEVICE_REMOVED; KeyError if unknown."""
        dev = self._devices.pop(device_id)
        for ep_id, fn_code, tr in dev.iter_traits():
            key = (device_id, ep_id, fn_code, tr.code)
            self._index.pop(key, None)
            self._history.drop(key)
        self._random_pool = self._press_pool = None
        self._push_event("DEVICE_REMOVED", device_id)

    def rename_device(self, device_id: str, name: str) -> None:
        """Rename a device and push DEVICE_NAME_UPDATE; KeyError if unknown."""
        self._devices[device_id].name = name
        self._push_event("DEVICE_NAME_UPDATE", device_id, name)

    def corrupt_device(self, device_id: str, fault: str | None) -> None:
        """Describe a device wrongly in GetDevicesResponse (fault injection; None heals it).

        ``fault`` is ``"endpoint_id"`` (first endpoint's ``endpointId`` not an integer),
        ``"no_device_id"`` (``deviceId`` missing) or ``"endpoints"`` (``endpoints`` not a list).
        """
        if fault not in (None, "endpoint_id", "no_device_id", "endpoints"):
            raise ValueError(f"unknown fault {fault!r}")
        if fault is None:
            self._corrupt.pop(device_id, None)
        else:
            self._corrupt[device_id] = fault

    def push_raw(self, frame: str | bytes) -> int:
        """Send ``frame`` unchanged to every SubscribeAll connection (fault injection); how many."""
        payload = frame.encode() if isinstance(frame, str) else bytes(frame)
        subs = list(self._all_subs)
        for conn in subs:
            self._deliver(conn, payload)
        self.push_count += len(subs)
        return len(subs)

    def set_online(self, device_id: str, online: bool) -> None:
        """Set a device on/offline: updates Reachable (pushed) and pushes DEVICE_ONLINE/OFFLINE."""
        dev = self._devices[device_id]
        dev.online = online
        self._random_pool = None
        for ep_id, fn_code, tr in dev.iter_traits():
            if fn_code == "BasicInformation" and tr.code == "Reachable":
                self._apply(self._index[(device_id, ep_id, fn_code, tr.code)], online)
        self._push_event("DEVICE_ONLINE" if online else "DEVICE_OFFLINE", device_id)

    def set_value(
        self, device_id: str, endpoint_id: int, function_code: str, trait_code: str, value: Any
    ) -> None:
        """A physical change: store ``value`` unvalidated and push it; KeyError if unknown."""
        self._apply(self._index[(device_id, endpoint_id, function_code, trait_code)], value)

    def get_value(
        self, device_id: str, endpoint_id: int, function_code: str, trait_code: str
    ) -> Any:
        """The current value of a trait; KeyError if unknown."""
        return self._index[(device_id, endpoint_id, function_code, trait_code)].trait.value

    def record_history_at(
        self,
        device_id: str,
        endpoint_id: int,
        function_code: str,
        trait_code: str,
        value: Any,
        time_ms: int,
    ) -> None:
        """Add a history sample at ``time_ms`` (e.g. in the past); KeyError if unknown.

        Only the history changes: no current value, push or automation.
        """
        rec = self._index[(device_id, endpoint_id, function_code, trait_code)]
        self._series(rec).add(time_ms, value)

    def history(
        self, device_id: str, endpoint_id: int, function_code: str, trait_code: str
    ) -> list[tuple[int, Any]]:
        """A trait's retained history as ``(time, value)``, oldest first; KeyError if unknown."""
        return self._series(
            self._index[(device_id, endpoint_id, function_code, trait_code)]
        ).samples()

    @property
    def automations(self) -> Mapping[str, Automation]:
        """The stored script automations by id, in creation order (read-only view)."""
        return self._engine.automations

    @property
    def automation_engine(self) -> AutomationEngine:
        """The automation engine (for tests that create automations without the API)."""
        return self._engine

    @property
    def automation_runs(self) -> int:
        """Automation rules executed so far (one per rule firing)."""
        return self._engine.runs

    @property
    def automation_loops_stopped(self) -> int:
        """Rule firings not executed because the cascade was deeper than 8 levels."""
        return self._engine.loops_stopped

    @property
    def automation_write_failures(self) -> int:
        """Automation writes refused at run time (target gone, offline, unwritable, illegal)."""
        return self._engine.write_failures

    async def drop_connections(self) -> None:
        """Abort every WebSocket without a close frame; the server keeps accepting new ones."""
        conns = list(self._conns)
        for conn in conns:
            self._abort(conn)
        for conn in conns:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.done.wait(), 1.0)

    def press(self, device_id: str, endpoint_id: int, event: str, repeat: int = 1) -> None:
        """Fire a button press or gesture (``single``, ``double``, ``hold``, ``shake``…): its
        event traits are pushed, each ``repeat`` times (the same message again, as a hub that
        delivers twice). Raises KeyError / ValueError for an unknown device or event."""
        dev = self._devices[device_id]
        stamp = now_ms()
        for function_code, trait_code, value in press_values(dev, endpoint_id, event):
            rec = self._index[(device_id, endpoint_id, function_code, trait_code)]
            rec.trait.value = value
            rec.trait.time = stamp
            self.change_count += 1
            for _ in range(repeat):
                self._push_trait(rec)

    def _random_press(self, rng: random.Random) -> None:
        if self._press_pool is None:
            self._press_pool = [(d.device_id, ep, event) for d in self._devices.values()
                                for ep, event in event_choices(d)]
        choices = self._press_pool
        if choices:
            device_id, endpoint_id, event = choices[int(rng.random() * len(choices))]
            if self._devices[device_id].online:  # an offline button reaches no hub
                self.press(device_id, endpoint_id, event)

    def start_random_changes(self, rate: float, seed: int | None = None) -> None:
        """Change random readable+subscribable BOOLEAN/NUMBER/ENUM traits of online devices,
        and press a random button (or gesture) once every :data:`PRESS_EVERY` changes.

        ``rate`` changes per second, generated in batches every 10 ms. Replaces a running driver.
        Needs a running event loop.
        """
        self.stop_random_changes()
        if rate <= 0:
            return
        loop = asyncio.get_running_loop()
        self._random_task = loop.create_task(self._random_loop(rate, random.Random(seed)))

    def stop_random_changes(self) -> None:
        """Stop the random-change driver (no-op when not running)."""
        if self._random_task is not None:
            self._random_task.cancel()
            self._random_task = None

    # ----------------------------------------------------------------------------- state

    def _insert(self, dev: SimDevice) -> None:
        self._devices[dev.device_id] = dev
        t = now_ms()
        for ep_id, fn_code, tr in dev.iter_traits():
            key = (dev.device_id, ep_id, fn_code, tr.code)
            if tr.time is None:
                tr.time = t
            self._index[key] = _Rec(key, dev, tr)
        self._random_pool = self._press_pool = None

    def _apply(self, rec: _Rec, value: Any, cascade: bool = True) -> Any:
        """Store a value (``time`` = now), record it in the history and push it; the old value.

        With ``cascade`` (every change except an automation's own write, which the engine
        cascades itself) the automations watching the trait run afterwards.
        """
        trait = rec.trait
        old = trait.value
        t = now_ms()
        series = rec.series
        if series is None:
            series = self._series(rec)
        trait.value = value
        trait.time = t
        series.add(t, value)
        self.change_count += 1
        if trait.subscribable:
            self._push_trait(rec)
        if cascade:
            watched = self._watched
            if watched and rec.key in watched:
                self._engine.on_change(
                    rec.key, old, value, self._read_value, self._automation_write
                )
        return old

    def _series(self, rec: _Rec) -> TraitSeries:
        """A trait's history (created on first use).

        The seed sample is the value the trait had when the hub got it, timestamped with the
        earlier of its ``time`` and the device's ``createTime`` (the hub has known the value
        since the device joined), so samples injected "a minute ago" come after it.
        """
        series = rec.series
        if series is None:
            trait = rec.trait
            seed_time = rec.device.create_time
            if trait.time is not None:
                seed_time = min(seed_time, trait.time)
            series = rec.series = self._history.open(rec.key, seed_time, trait.value)
        return series

    def _read_value(self, key: TraitKey) -> Any:
        rec = self._index.get(key)
        return None if rec is None else rec.trait.value

    def _automation_write(self, key: TraitKey, value: Any) -> tuple[Any, Any] | None:
        """An automation's write, checked like an ExecuteTraitRequest item; (old, new) or None."""
        rec = self._index.get(key)
        if rec is None or not rec.trait.writable or not rec.device.online:
            return None
        legal, value = check_value(rec.trait, value)
        if not legal:
            return None
        return self._apply(rec, value, False), value

    def _push_trait(self, rec: _Rec) -> None:
        all_subs = self._all_subs
        per = self._trait_subs.get(rec.key)
        if not all_subs and not per:
            return
        self._push_seq += 1
        trait = rec.trait
        payload = (
            _PUSH_HEAD
            + str(self._push_seq)
            + rec.addr_json
            + ',"value":'
            + _value_json(trait.value)
            + ',"time":'
            + str(trait.time)
            + "}}"
        ).encode()
        sent = 0
        for conn in all_subs:
            self._deliver(conn, payload)
            sent += 1
        if per:
            for conn in per:
                if not conn.all:
                    self._deliver(conn, payload)
                    sent += 1
        self.push_count += sent

    def _push_event(self, event_type: str, device_id: str, name: str | None = None) -> None:
        if not self._all_subs:
            return
        self._event_seq += 1
        inner: dict[str, Any] = {"deviceId": device_id}
        if name is not None:
            inner["name"] = name
        payload = _dumps(
            {
                "type": "objectEvent",
                "version": "v1",
                "msgId": f"event-{self._event_seq}",
                "data": {"eventType": event_type, "data": inner},
            }
        ).encode()
        for conn in self._all_subs:
            self._deliver(conn, payload)
        self.push_count += len(self._all_subs)

    def _deliver(self, conn: _Conn, payload: bytes | bytearray) -> None:
        """Queue one message; never blocks. Overflow schedules an abort of the connection."""
        if not conn.alive:
            return
        out = conn.out
        out.append(payload)
        if len(out) > self.max_queue:
            conn.alive = False
            out.clear()
            # Not synchronously: callers may be iterating over the subscription sets.
            asyncio.get_running_loop().call_soon(self._abort, conn)
            return
        conn.wake.set()

    # ----------------------------------------------------------------------------- connections

    def _retire(self, conn: _Conn) -> None:
        """Forget a connection's subscriptions and stop its writer (idempotent)."""
        conn.alive = False
        self._conns.discard(conn)
        self._all_subs.discard(conn)
        for key in conn.traits:
            subs = self._trait_subs.get(key)
            if subs is not None:
                subs.discard(conn)
                if not subs:
                    del self._trait_subs[key]
        conn.traits.clear()
        conn.out.clear()
        conn.wake.set()

    def _abort(self, conn: _Conn) -> None:
        self._retire(conn)
        if conn.transport is not None:
            conn.transport.abort()

    async def _writer(self, conn: _Conn) -> None:
        ws, out, wake = conn.ws, conn.out, conn.wake
        text, binary = WSMsgType.TEXT, WSMsgType.BINARY
        try:
            while conn.alive:
                await wake.wait()
                wake.clear()
                while out and conn.alive:
                    item = out.popleft()
                    if type(item) is bytes:
                        await ws.send_frame(item, text)
                    else:
                        await ws.send_frame(bytes(item), binary)
        except Exception:  # connection gone
            self._abort(conn)

    def _authorized(self, header: str | None) -> bool:
        if not header:
            return False
        value = header.strip()
        if value[:7].lower() == "bearer ":
            value = value[7:].strip()
        return value in self._tokens

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request.headers.get("Authorization")):
            return web.json_response(UNAUTHORIZED_BODY, status=401)
        ws = web.WebSocketResponse(
            protocols=(SUBPROTOCOL,), compress=False, max_msg_size=64 * 1024 * 1024, timeout=1.0
        )
        await ws.prepare(request)
        conn = _Conn(ws, request.transport, next(self._serials))
        self._conns.add(conn)
        conn.writer = asyncio.create_task(self._writer(conn))
        try:
            async for msg in ws:
                if not conn.alive:
                    break
                if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                    if self.latency > 0:
                        task = asyncio.create_task(self._serve_ws_later(conn, msg.data))
                        conn.tasks.add(task)
                        task.add_done_callback(conn.tasks.discard)
                    else:
                        self._serve_ws(conn, msg.data)
        finally:
            self._retire(conn)
            for task in list(conn.tasks):
                task.cancel()
            conn.done.set()
        return ws

    def _serve_ws(self, conn: _Conn, raw: str | bytes) -> None:
        reply, after = self._process(raw, conn)
        self._deliver(conn, reply)
        for fn in after:
            fn()

    async def _serve_ws_later(self, conn: _Conn, raw: str | bytes) -> None:
        await asyncio.sleep(self.latency)
        if conn.alive:
            self._serve_ws(conn, raw)

    async def _handle_http(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request.headers.get("Authorization")):
            return web.json_response(UNAUTHORIZED_BODY, status=401)
        raw = await request.read()
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        reply, after = self._process(raw, None)
        for fn in after:
            fn()
        return web.Response(body=bytes(reply), content_type="application/json")

    async def _handle_refresh(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request.headers.get("Authorization")):
            return web.json_response(UNAUTHORIZED_BODY, status=401)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        new = secrets.token_urlsafe(24)
        self._tokens.add(new)
        return web.json_response(
            {"code": 0, "message": "Success", "data": {"token": new, "expiresIn": TOKEN_LIFETIME_S}}
        )

    # ----------------------------------------------------------------------------- protocol

    @staticmethod
    def _error(reason: str) -> bytes:
        return _dumps(
            {
                "type": "ErrorMessage",
                "version": "v1",
                "msgId": "UNKNOWN",
                "code": CODE_PARSE_FAILED,
                "message": f"Message parsing failed: {reason}",
            }
        ).encode()

    @staticmethod
    def _response(rtype: str, msg_id: str, code: int, message: str, data: Any) -> bytes:
        return _dumps(
            {
                "type": rtype,
                "version": "v1",
                "msgId": msg_id,
                "code": code,
                "message": message,
                "data": data,
            }
        ).encode()

    def _process(self, raw: str | bytes, conn: _Conn | None) -> tuple[bytes | bytearray, _After]:
        """Answer one request; ``after`` holds the state changes/pushes to run after replying."""
        try:
            msg = json.loads(raw)
        except json.JSONDecodeError as exc:
            msg = _MISSING
            reason = f"Unexpected JSON token at offset {exc.pos}: {exc.msg}"
        except (UnicodeDecodeError, ValueError) as exc:
            msg = _MISSING
            reason = f"invalid request bytes: {exc}"
        if isinstance(msg, dict):
            self.received.append(msg)
        if self.garbage:
            return self._garbage_reply(msg), []
        if msg is _MISSING:
            return self._error(reason), []
        if not isinstance(msg, dict):
            return self._error("expected a JSON object"), []
        rtype = msg.get("type")
        if not isinstance(rtype, str):
            return self._error("missing or non-string field 'type'"), []
        handler = self._handlers.get(rtype)
        if handler is None:
            return self._error(
                f"Serializer for subclass '{rtype}' is not found in the polymorphic scope of "
                "'WebSocketMessageRequest'"
            ), []
        msg_id = msg.get("msgId")
        if not isinstance(msg_id, str):
            return self._error("missing or non-string field 'msgId'"), []
        version = msg.get("version")
        if version != "v1":
            return self._error(f"unsupported version {version!r}, expected 'v1'"), []
        response_type = _RESPONSE_TYPES.get(rtype) or rtype[: -len("Request")] + "Response"
        if conn is None and rtype in _SUBSCRIPTION_TYPES:
            return self._response(
                response_type,
                msg_id,
                CODE_BAD_PARAMETER,
                "subscriptions need the WebSocket channel",
                None,
            ), []
        data = msg.get("data", _MISSING)
        if data is _MISSING and rtype in _DATA_REQUIRED:
            return self._error(
                f"Field 'data' is required for type with serial name '{rtype}', but it was missing"
            ), []
        try:
            data, after = handler(data, conn)
        except _BadData as exc:
            return self._response(
                response_type, msg_id, CODE_BAD_PARAMETER, f"Invalid parameter: {exc}", None
            ), []
        except RequestError as exc:
            message = exc.message
            if exc.code == CODE_BAD_PARAMETER:
                message = f"Invalid parameter: {message}"
            return self._response(response_type, msg_id, exc.code, message, None), []
        return self._response(response_type, msg_id, 0, "Success", data), after

    def _garbage_reply(self, msg: Any) -> bytes | bytearray:
        self._garbage_seq += 1
        variant = self._garbage_seq % 4
        if variant == 1:
            return b"this is not JSON }{"
        if variant == 2:
            return bytearray(b"\x00\x9f\xffgarbage\x00")
        if variant == 3:
            return b"[1,2,3]"
        msg_id = msg.get("msgId") if isinstance(msg, dict) else None
        rtype = msg.get("type") if isinstance(msg, dict) else None
        rtype = rtype.replace("Request", "Response") if isinstance(rtype, str) else 42
        return _dumps(
            {"type": rtype, "version": "v1", "msgId": msg_id, "code": "zero", "data": "garbage"}
        ).encode()

    # -- validation helpers

    @staticmethod
    def _want_str(item: dict[str, Any], key: str, where: str) -> str:
        value = item.get(key)
        if not isinstance(value, str):
            raise _BadData(f"{where}.{key} is required and must be a string")
        return value

    @staticmethod
    def _want_int(item: dict[str, Any], key: str, where: str) -> int:
        value = item.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise _BadData(f"{where}.{key} is required and must be an integer")
        return value

    @staticmethod
    def _want_str_list(value: Any, where: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _BadData(f"{where} must be an array of strings")
        return value

    def _trait_items(self, data: Any) -> list[tuple[str, int, str, list[str]]]:
        """Validate ``[{deviceId, endpointId, functionCode, traitCodes}]``."""
        if not isinstance(data, list):
            raise _BadData("data must be an array")
        items = []
        for i, item in enumerate(data):
            where = f"data[{i}]"
            if not isinstance(item, dict):
                raise _BadData(f"{where} must be an object")
            items.append(
                (
                    self._want_str(item, "deviceId", where),
                    self._want_int(item, "endpointId", where),
                    self._want_str(item, "functionCode", where),
                    self._want_str_list(item.get("traitCodes"), f"{where}.traitCodes"),
                )
            )
        return items

    @staticmethod
    def _device_info(dev: SimDevice) -> dict[str, Any]:
        return {
            "deviceId": dev.device_id,
            "deviceName": dev.name,
            "deviceTypesList": list(dev.types),
            "createTime": dev.create_time,
            "state": 1 if dev.online else 0,
            "model": dev.model,
        }

    def _sorted_devices(self, descending: bool = False) -> list[SimDevice]:
        return sorted(
            self._devices.values(), key=lambda d: (d.create_time, d.device_id), reverse=descending
        )

    def _device_spec(self, dev: SimDevice) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "deviceId": dev.device_id,
            "name": dev.name,
            "model": dev.model,
            "deviceTypesList": list(dev.types),
            "state": 1 if dev.online else 0,
            "endpoints": endpoints_tree(dev, lambda tr: tr.value),
        }
        if dev.space is not None:  # as in Aqara's GetAllDevicesWithSpace cache
            spec["space"] = {"spaceId": f"space.{sum(map(ord, dev.space))}", "name": dev.space}
        fault = self._corrupt.get(dev.device_id)
        if fault == "no_device_id":
            del spec["deviceId"]
        elif fault == "endpoints":
            spec["endpoints"] = "not a list"
        elif fault == "endpoint_id" and spec["endpoints"]:
            spec["endpoints"][0]["endpointId"] = "one"
        return spec

    # -- handlers: (data, conn) -> (response data, after-callbacks)

    def _h_device_info(self, data: Any, conn: _Conn | None) -> tuple[Any, _After]:
        if data is _MISSING or data is None:
            data = {}
        if not isinstance(data, dict):
            raise _BadData("data must be an object")
        types = data.get("deviceTypesList")
        if types is not None:
            types = self._want_str_list(types, "data.deviceTypesList")
        order = data.get("orderBy")
        if order is not None and order not in ("createTime asc", "createTime desc"):
            raise _BadData("data.orderBy must be 'createTime asc' or 'createTime desc'")
        page_num = data.get("pageNum")
        if page_num is None:
            page_num = 1
        elif not isinstance(page_num, int) or isinstance(page_num, bool):
            raise _BadData("data.pageNum must be an integer")
        page_num = max(page_num, 1)
        page_size = data.get("pageSize")
        if page_size is None:
            page_size = 200
        elif not isinstance(page_size, int) or isinstance(page_size, bool):
            raise _BadData("data.pageSize must be an integer")
        if not 0 < page_size <= 200:
            raise _BadData("data.pageSize must be in (0, 200]")
        devs = self._sorted_devices(descending=order == "createTime desc")
        if types:
            wanted = set(types)
            devs = [d for d in devs if wanted.intersection(d.types)]
        page = devs[(page_num - 1) * page_size : page_num * page_size]
        return {
            "totalCount": len(devs),
            "pageNum": page_num,
            "pageSize": page_size,
            "data": [self._device_info(d) for d in page],
        }, []

    def _h_all_device_info(self, data: Any, conn: _Conn | None) -> tuple[Any, _After]:
        return [self._device_info(d) for d in self._sorted_devices()], []

    def _h_devices(self, data: Any, conn: _Conn | None) -> tuple[Any, _After]:
        if data is _MISSING or data is None:
            data = {}
        if not isinstance(data, dict):
            raise _BadData("data must be an object")
        ids = data.get("deviceIds")
        if ids is None:
            devs = self._sorted_devices()
        else:
            ids = self._want_str_list(ids, "data.deviceIds")
            devs = [self._devices[i] for i in dict.fromkeys(ids) if i in self._devices]
        return [self._device_spec(d) for d in devs], []

    def _h_trait_value(self, data: Any, conn: _Conn | None) -> tuple[Any, _After]:
        out = []
        for device_id, ep_id, fn_code, codes in self._trait_items(data):
            for code in codes:
                rec = self._index.get((device_id, ep_id, fn_code, code))
                if rec is None or not rec.trait.readable:
                    continue
                out.append(
                    {
                        "deviceId": device_id,
                        "endpointId": ep_id,
                        "functionCode": fn_code,
                        "traitCode": code,
                        "value": rec.trait.value,
                        "time": rec.trait.time,
                    }
                )
        return out, []

    def _h_execute(self, data: Any, conn: _Conn | None) -> tuple[Any, _After]:
        self.executions.append(Execution(time.monotonic(), conn.serial if conn else 0,
                                         data if isinstance(data, list) else []))
        if not isinstance(data, list):
            raise _BadData("data must be an array")
        if not data:
            raise _BadData("data must not be empty")
        checked = []
        for i, item in enumerate(data):
            where = f"data[{i}]"
            if not isinstance(item, dict):
                raise _BadData(f"{where} must be an object")
            key = (
                self._want_str(item, "deviceId", where),
                self._want_int(item, "endpointId", where),
                self._want_str(item, "functionCode", where),
                self._want_str(item, "traitCode", where),
            )
            if "value" not in item:
                raise _BadData(f"{where}.value is required")
            checked.append((item, key))
        failed: list[dict[str, Any]] = []
        changes: list[tuple[_Rec, Any]] = []
        for item, key in checked:
            dev = self._devices.get(key[0])
            rec = self._index.get(key)
            if dev is None:
                code, message = CODE_DEVICE_NOT_FOUND, "device not found"
            elif rec is None:
                code, message = CODE_TRAIT_NOT_FOUND, "trait not found"
            elif not rec.trait.writable:
                code, message = CODE_TRAIT_NOT_WRITABLE, "trait not writable"
            elif not dev.online:
                code, message = CODE_DEVICE_OFFLINE, "device offline"
            else:
                legal, value = check_value(rec.trait, item["value"])
                if legal:
                    changes.append((rec, value))
                    continue
                code, message = CODE_VALUE_ILLEGAL, "value illegal"
            failed.append({**item, "code": code, "message": message})

        def apply(rec: _Rec, value: Any) -> Callable[[], None]:
            def run() -> None:
                self._apply(rec, value)
                self._actuate(rec)
            return run

        return failed, [apply(rec, value) for rec, value in changes]

    def _actuate(self, rec: _Rec) -> None:
        """A written target sets the device moving, as a real motor does: a curtain's current
        position follows its target step by step, with ``OperationalStatus`` Opening/Closing
        while it moves and Stopped when it is there."""
        device_id, endpoint_id, function_code, trait_code = rec.key
        if (function_code, trait_code) != ("WindowCovering", "TargetPositionPercentage"):
            return
        current = self._index.get((device_id, endpoint_id, function_code,
                                   "CurrentPositionPercentage"))
        if current is None:
            return
        motor = self._motors.pop((device_id, endpoint_id), None)
        if motor is not None:
            motor.cancel()
        status = self._index.get((device_id, endpoint_id, function_code, "OperationalStatus"))
        self._motors[(device_id, endpoint_id)] = asyncio.get_running_loop().create_task(
            self._move(rec, current, status))

    async def _move(self, target: _Rec, current: _Rec, status: _Rec | None) -> None:
        goal = target.trait.value
        position = current.trait.value
        if not isinstance(goal, int | float) or not isinstance(position, int | float):
            return
        if status is not None and position != goal:
            self._apply(status, "1" if goal > position else "2")  # Opening / Closing
        while position != goal:
            await asyncio.sleep(self.motor_step_seconds)
            position = min(goal, position + 10) if goal > position else max(goal, position - 10)
            self._apply(current, position)
        if status is not None and status.trait.value != "0":
            self._apply(status, "0")  # Stopped

    def _h_history(self, data: Any, conn: _Conn | None) -> tuple[Any, _After]:
        try:
            query = parse_history_query(data)
        except ValueError as exc:
            raise _BadData(str(exc)) from None
        if query.device_id not in self._devices:
            raise RequestError(CODE_DEVICE_NOT_FOUND, f"device not found: {query.device_id}")
        rec = self._index.get(query.key)
        if rec is None or not rec.trait.readable:
            problem = "trait not found" if rec is None else "trait not readable"
            raise RequestError(
                CODE_TRAIT_NOT_FOUND,
                f"{problem}: {query.function_code}.{query.trait_code} "
                f"on {query.device_id} endpoint {query.endpoint_id}",
            )
        return history_response(query, self._series(rec)), []

    def _h_capabilities(self, data: Any, conn: _Conn | None) -> tuple[Any, _After]:
        if not (data is _MISSING or data is None or data == "" or isinstance(data, dict)):
            raise _BadData("data must be an object or an empty string")
        return capabilities(self._sorted_devices()), []

    def _h_subscribe(self, data: Any, conn: _Conn | None) -> tuple[Any, _After]:
        assert conn is not None
        failed = []
        for device_id, ep_id, fn_code, codes in self._trait_items(data):
            for code in codes:
                key = (device_id, ep_id, fn_code, code)
                if key in self._index:
                    conn.traits.add(key)
                    self._trait_subs.setdefault(key, set()).add(conn)
                    continue
                known = device_id in self._devices
                failed.append(
                    {
                        "deviceId": device_id,
                        "endpointId": ep_id,
                        "functionCode": fn_code,
                        "traitCode": code,
                        "code": CODE_TRAIT_NOT_FOUND if known else CODE_DEVICE_NOT_FOUND,
                        "message": "trait not found" if known else "device not found",
                    }
                )
        return failed, []

    def _h_unsubscribe(self, data: Any, conn: _Conn | None) -> tuple[Any, _After]:
        assert conn is not None
        for device_id, ep_id, fn_code, codes in self._trait_items(data):
            for code in codes:
                key = (device_id, ep_id, fn_code, code)
                conn.traits.discard(key)
                subs = self._trait_subs.get(key)
                if subs is not None:
                    subs.discard(conn)
                    if not subs:
                        del self._trait_subs[key]
        return [], []

    def _h_subscribe_all(self, data: Any, conn: _Conn | None) -> tuple[Any, _After]:
        assert conn is not None
        conn.all = True
        self._all_subs.add(conn)
        return None, []

    def _h_unsubscribe_all(self, data: Any, conn: _Conn | None) -> tuple[Any, _After]:
        assert conn is not None
        conn.all = False
        self._all_subs.discard(conn)
        for key in conn.traits:
            subs = self._trait_subs.get(key)
            if subs is not None:
                subs.discard(conn)
                if not subs:
                    del self._trait_subs[key]
        conn.traits.clear()
        return None, []

    # ----------------------------------------------------------------------------- random

    def _pool(self) -> list[_Rec]:
        if self._random_pool is None:
            self._random_pool = [
                rec
                for rec in self._index.values()
                if rec.device.online
                and rec.trait.readable
                and rec.trait.subscribable
                and rec.trait.type in ("BOOLEAN", "NUMBER", "ENUM")
                and rec.key[3] != "Reachable"
            ]
        return self._random_pool

    @staticmethod
    def _random_value(tr: SimTrait, rng: random.Random) -> Any:
        kind = tr.type
        if kind == "BOOLEAN":
            return not tr.value
        if kind == "ENUM":
            values = [v for _, v in tr.enums or []]
            others = [v for v in values if v != tr.value] or values
            return others[int(rng.random() * len(others))] if others else tr.value
        lo = tr.min if tr.min is not None else 0.0
        hi = tr.max if tr.max is not None else lo + 100.0
        current = tr.value if isinstance(tr.value, int | float) else lo
        span = hi - lo
        new = min(hi, max(lo, current + (rng.random() - 0.5) * 0.1 * span))
        if tr.step:
            new = lo + round((new - lo) / tr.step) * tr.step
            new = min(hi, max(lo, new))
        if _is_integer_format(tr.format):
            return round(new)
        return round(new, 2)

    async def _random_loop(self, rate: float, rng: random.Random) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        carry = 0.0
        max_batch = int(rate * 0.25) + 1
        presses = 0
        while True:
            await asyncio.sleep(_RANDOM_TICK_S)
            now = loop.time()
            due = rate * (now - last) + carry
            last = now
            count = int(due)
            carry = due - count
            count = min(count, max_batch)
            if self.max_backlog is not None and any(
                    len(conn.out) > self.max_backlog for conn in self._all_subs):
                self.paused_ticks += 1
                continue
            pool = self._pool()
            if not count or not pool:
                continue
            size = len(pool)
            rand = rng.random
            for _ in range(count):
                rec = pool[int(rand() * size)]
                self._apply(rec, self._random_value(rec.trait, rng))
            presses += count
            if presses >= PRESS_EVERY:
                presses = 0
                self._random_press(rng)


async def serve(
    port: int,
    token: str,
    devices: int | None,
    rate: float,
    seed: int | None,
    host: str = "127.0.0.1",
    *,
    on_ready: Callable[[StudioSimulator], None] | None = None,
    traits: int | None = None,
) -> None:
    """Run a simulator until cancelled: the sample home with the event devices (buttons, a cube,
    a vibration sensor; ``devices`` None) or N synthetic devices (each with ``traits`` traits
    when given).

    ``rate`` > 0 starts random changes at that many per second. Prints one line with the URLs;
    ``on_ready`` is called with the running simulator (handy with ``port`` 0).
    """
    devs = ([*sample_home(), *event_devices()] if devices is None
            else synthetic_devices(devices, seed or 0, traits))
    sim = StudioSimulator(token, devs, host=host, port=port)

    def banner(started: StudioSimulator) -> str:
        return (f"Aqara Studio simulator: {started.ws_endpoint} and {started.api_endpoint} "
                f"({len(devs)} devices, {rate:g} changes/s)")

    await serve_forever(sim, banner, rate, seed, on_ready)
