"""Aqara Studio Data Export API v1 backend: one WebSocket, requests correlated by ``msgId``.

After every connect it subscribes to all trait changes first, then takes a snapshot, buffering
pushes that arrive meanwhile and replaying them after the snapshot, so no change is lost and no
stale snapshot value overwrites a newer push. Pushes are recognised tolerantly: any message whose
``msgId`` is not ours and whose ``data`` (object or list) carries ``traitCode`` is a trait change,
whatever its ``type`` (the official name is undocumented; ``TraitValueUpdate`` is third-party).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from bridge import jsonlimits
from bridge.backends.aqara_events import device_event, is_event_trait
from bridge.backends.aqara_spec import SpecError, first, parse_device, parse_online
from bridge.backends.base import NOT_ACTIVE, Backend, BackendError, EventSink
from bridge.backends.studio.config import StudioBackendConfig
from bridge.backends.studio.mgmt import (
    automation_request,
    automation_result,
    history_request,
    history_result,
)
from bridge.backends.studio.push_buffer import PushBuffer, trait_address
from bridge.codec import from_wire, to_studio_wire
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
    TraitSpec,
    WriteFailure,
    WriteItem,
)
from bridge.ratelimit import RateLimitedLog

log = get_logger("bridge.studio")

SNAPSHOT_CHUNK = 50
"""Devices per GetDevicesRequest, so one answer stays well below the WebSocket frame limit."""

MAX_BUFFERED_PUSHES = 10_000
"""Pushes kept while a snapshot is taken (a trait's counted once: its latest); on overflow they are
dropped and the snapshot is taken again (a fresh snapshot serves the same end)."""

SNAPSHOT_RETRIES = 3
"""Snapshots taken again after a buffer overflow; the last attempt keeps every push (coalesced
per trait), so none is lost however busy the hub is."""
READ_BUDGET = 100
"""Hub messages handled per event-loop turn: then the reader yields, so a flood from the hub
cannot starve the MQTT side (its acknowledgements, the parked messages, the /set commands)."""

RECEIVE_QUEUE = 1024
"""Frames the WebSocket buffers before it stops reading the socket: beyond them the hub is slowed
by TCP flow control instead of our memory growing."""


def auth_header(token: str) -> str:
    """The Authorization value: the token as copied from Studio may already carry ``Bearer``."""
    return token if token[:7].lower() == "bearer " else f"Bearer {token}"


WRITING_REQUESTS = frozenset({"ExecuteTraitRequest", "CreateScriptAutomationRequest",
                              "UpdateScriptAutomationRequest", "DeleteAutomationRequest"})
"""Requests that change the hub: sent only while :attr:`Backend.may_write` allows it."""

class StudioBackend(Backend):
    """A connection to one Aqara Studio hub."""

    kind = "studio"

    def __init__(
        self,
        name: str,
        ws_url: str,
        token: str,
        request_timeout: float = 10.0,
        ping_interval: float = 30.0,
        reconnect_max_delay: float = 60.0,
        max_buffered: int = MAX_BUFFERED_PUSHES,
    ) -> None:
        super().__init__(name)
        self.ws_url = ws_url
        self._auth = auth_header(token)
        self.request_timeout = request_timeout
        self.ping_interval = ping_interval
        self.reconnect_max_delay = reconnect_max_delay
        self._ws: ClientConnection | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._pending_types: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._specs = SpecIndex()
        self._sink: EventSink = lambda _event: None
        self._buffer: PushBuffer | None = None
        self.max_buffered = max_buffered
        self.buffer_overflows = 0
        self._describing: dict[str, bool] = {}
        """Devices being described now -> whether another description was asked meanwhile."""
        self._warn = RateLimitedLog(log)
        self._tasks: set[asyncio.Task[None]] = set()
        self.garbage_received = 0
        self._malformed: dict[str, str] = {}
        """Devices skipped as malformed, by id, with the reason last logged."""
        self.turns_yielded = 0
        """Times the reader gave the loop back after :data:`READ_BUDGET` messages."""

    @classmethod
    def from_config(cls, spec: StudioBackendConfig) -> StudioBackend:
        """The backend for one ``type: studio`` entry of the config."""
        return cls(spec.name, spec.ws_url, spec.token.get_secret_value(),
                   request_timeout=spec.request_timeout, ping_interval=spec.ping_interval,
                   reconnect_max_delay=spec.reconnect_max_delay)

    # ---- connection loop ------------------------------------------------------------------

    async def run(self, sink: EventSink) -> None:
        """Connect, snapshot, stream pushes; reconnect with backoff and jitter until cancelled."""
        self._sink = sink
        delay = 1.0
        while True:
            started = time.monotonic()
            try:
                await self._session()
                reason = "connection closed by the hub"
            except Exception as exc:
                reason, refused = classify_error(exc)
                if refused:  # a refused token will not fix itself quickly
                    delay = self.reconnect_max_delay
            self._fail_pending(reason)
            if self.connected or self.detail != reason:
                log.warning("studio hub disconnected", backend=self.name, reason=reason)
            if self.connected and time.monotonic() - started > 1:
                delay = 1.0  # a session that worked: start the backoff over
            self.connected = False
            self.detail = reason
            self._emit(BackendStatus(False, reason))
            await asyncio.sleep(min(delay, self.reconnect_max_delay) * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.reconnect_max_delay)

    def _connect(self) -> connect:
        return connect(
            self.ws_url,
            additional_headers={"Authorization": self._auth},
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_interval,
            open_timeout=self.request_timeout,
            max_size=jsonlimits.HUB_MAX_BYTES,
            max_queue=RECEIVE_QUEUE,
        )

    async def probe(self) -> int:
        """Connect once and count the hub's devices (for ``check``); raises on failure."""
        try:
            async with self._connect() as ws:
                self._ws = ws
                reader = asyncio.create_task(self._read_loop(ws))
                try:
                    listing = await self.call("GetAllDeviceInfoRequest", None)
                finally:
                    reader.cancel()
                    self._ws = None
        except Exception as exc:
            reason, _ = classify_error(exc)
            raise BackendError(reason) from None
        return len(listing) if isinstance(listing, list) else 0

    async def _session(self) -> None:
        async with self._connect() as ws:
            self._ws = ws
            reader = asyncio.create_task(self._read_loop(ws))
            reader.add_done_callback(lambda _task: self._fail_pending("connection closed"))
            try:
                self._buffer = PushBuffer(self.max_buffered)
                await self.call("SubscribeAllRequest", None)
                devices = await self._snapshot_buffered()
                self.connected = True
                self.detail = "connected"
                log.info("studio hub connected", backend=self.name, devices=len(devices))
                self._emit(BackendStatus(True, "connected"))
                self._emit(Snapshot(tuple(devices)))
                buffered, self._buffer = self._buffer, None
                for message in buffered.drain():
                    self._handle_push(message)
                await reader
            finally:
                self._buffer = None
                self._ws = None
                reader.cancel()
                for task in list(self._tasks):
                    task.cancel()

    async def _snapshot_buffered(self) -> list[Device]:
        """A snapshot while pushes are buffered; taken again when the buffer overflowed, the
        last time with a buffer that keeps every trait's latest push."""
        attempt = 0
        while True:
            devices = await self.snapshot()
            assert self._buffer is not None
            if not self._buffer.overflowed:
                return devices
            self.buffer_overflows += 1
            attempt += 1
            log.warning("too many pushes during the snapshot; they were dropped, taking it again",
                        backend=self.name, limit=self.max_buffered, attempt=attempt)
            self._buffer = PushBuffer(self.max_buffered if attempt < SNAPSHOT_RETRIES else None)

    def _fail_pending(self, reason: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BackendError(f"hub connection lost: {reason}"))
        self._pending.clear()

    async def _read_loop(self, ws: ClientConnection) -> None:
        handled = 0
        async for raw in ws:
            handled += 1
            if handled >= READ_BUDGET:  # queued frames do not make ``async for`` yield
                handled = 0
                self.turns_yielded += 1
                await asyncio.sleep(0)
                await self.pace()
            try:
                message = jsonlimits.loads(raw, jsonlimits.HUB_MAX_BYTES)
            except ValueError:  # JsonLimitError too: a nested frame is garbage, not a crash
                message = None
            if not isinstance(message, dict):
                self.garbage_received += 1
                self._warn.warning("garbage", "studio hub sent an unparsable message",
                                   backend=self.name, sample=str(raw)[:120],
                                   total=self.garbage_received)
                continue
            future = self._pending.pop(str(message.get("msgId")), None)
            if future is not None:
                if not future.done():
                    future.set_result(message)
            elif message.get("type") == "ErrorMessage":
                self._fail_unattributed(message)
            elif self._buffer is not None:
                self._buffer.add(message)
            else:
                self._handle_push(message)

    def _fail_unattributed(self, message: Mapping[str, Any]) -> None:
        """An ErrorMessage without our msgId (the hub could not parse the request): fail the
        request it names, or the only one pending, instead of letting it time out."""
        text = str(message.get("message") or "hub error")
        log.warning("studio hub reported an error", backend=self.name,
                    code=message.get("code"), message=text[:200])
        named = [m for m, t in self._pending_types.items() if f"'{t}'" in text]
        if not named and len(self._pending) == 1:
            named = list(self._pending)
        for msg_id in named:
            future = self._pending.pop(msg_id, None)
            if future is not None and not future.done():
                future.set_exception(BackendError(text[:300], message.get("code")))

    # ---- requests -------------------------------------------------------------------------

    async def call(self, request_type: str, data: Any, timeout: float | None = None) -> Any:
        """Send one request and return its response ``data``; hub errors raise BackendError."""
        ws = self._ws
        if ws is None:
            raise BackendError("the Studio hub is not connected")
        if request_type in WRITING_REQUESTS and not self.may_write():
            raise BackendError(NOT_ACTIVE, "not_active")
        msg_id = f"aqara-mqtt-{next(self._ids)}"
        envelope: dict[str, Any] = {"type": request_type, "version": "v1", "msgId": msg_id}
        if data is not None:
            envelope["data"] = data
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        self._pending_types[msg_id] = request_type
        try:
            await ws.send(json.dumps(envelope, separators=(",", ":")))
            async with asyncio.timeout(timeout or self.request_timeout):
                response = await future
        except TimeoutError:
            waited = timeout or self.request_timeout
            reason = f"the hub did not answer {request_type} within {waited:g} s"
            raise BackendError(reason, "timeout") from None
        except ConnectionClosed:
            raise BackendError("the hub connection closed") from None
        finally:
            self._pending.pop(msg_id, None)
            self._pending_types.pop(msg_id, None)
        code = response.get("code", 0)
        if code not in (0, "0", None):
            raise BackendError(str(response.get("message") or "hub error"), code)
        return response.get("data")

    async def _fetch_devices(self, device_ids: Sequence[str] | None) -> list[Device]:
        """Devices with specs and values; all of them when ``device_ids`` is None."""
        if device_ids is None:
            listing = await self.call("GetAllDeviceInfoRequest", None)
            if not isinstance(listing, list):
                raise BackendError("GetAllDeviceInfoResponse data is not a list")
            states = {
                str(first(d, "deviceId", "did")): parse_online(first(d, "state", "online"))
                for d in listing
                if isinstance(d, Mapping) and isinstance(first(d, "deviceId", "did"), str)
            }
            device_ids = list(states)
        else:
            states = {}
        devices: list[Device] = []
        for start in range(0, len(device_ids), SNAPSHOT_CHUNK):
            chunk = list(device_ids[start:start + SNAPSHOT_CHUNK])
            data = await self.call("GetDevicesRequest", {"deviceIds": chunk})
            if not isinstance(data, list):
                raise BackendError("GetDevicesResponse data is not a list")
            for obj in data:
                try:
                    device = parse_device(obj, self.name)
                except SpecError as exc:  # one bad device must not take the others offline
                    self._skip_malformed(obj, chunk, str(exc))
                    continue
                self._malformed.pop(device.id, None)
                if device.id in states and first(obj, "state", "online") is None:
                    device.online = states[device.id]
                devices.append(device)
        await self._fill_missing_values(devices)
        return devices

    def _skip_malformed(self, obj: Any, requested: Sequence[str], reason: str) -> None:
        """Log a device the hub describes unusably, once per device and reason."""
        device_id = first(obj, "deviceId", "did") if isinstance(obj, Mapping) else None
        if not isinstance(device_id, str):
            device_id = "?"
        key = device_id if device_id != "?" else f"? among {len(requested)} requested"
        if self._malformed.get(key) != reason:
            self._malformed[key] = reason
            log.warning("studio hub describes a device unusably; skipping it", backend=self.name,
                        device=device_id, reason=reason)

    async def _fill_missing_values(self, devices: list[Device]) -> None:
        """Ask GetTraitValueRequest for readable traits the device tree gave no value for."""
        missing = [addr for d in devices for addr, t in d.iter_traits()
                   if t.value is None and t.spec.readable]
        if not missing:
            return
        specs = {addr: t.spec for d in devices for addr, t in d.iter_traits()}
        values = await self._read_values(missing, specs)
        by_id = {d.id: d for d in devices}
        for addr, value in values.items():
            trait = by_id[addr.device_id].trait(addr.endpoint_id, addr.function_code,
                                                addr.trait_code)
            if trait is not None:
                trait.value = value

    async def _read_values(
        self, addresses: Sequence[TraitAddress], specs: Mapping[TraitAddress, TraitSpec]
    ) -> dict[TraitAddress, Any]:
        groups: dict[tuple[str, int, str], list[str]] = {}
        for addr in addresses:
            groups.setdefault(addr[:3], []).append(addr.trait_code)
        query = [{"deviceId": d, "endpointId": e, "functionCode": f, "traitCodes": codes}
                 for (d, e, f), codes in groups.items()]
        data = await self.call("GetTraitValueRequest", query)
        values: dict[TraitAddress, Any] = {}
        for entry in data if isinstance(data, list) else ():
            where = trait_address(entry) if isinstance(entry, Mapping) else None
            spec = specs.get(where) if where else None
            if where is None or spec is None:
                continue
            addr = where
            try:
                values[addr] = from_wire(spec, entry.get("value"))
            except ValueError as exc:
                self._warn.warning(("value", addr), "studio hub sent an unusable value",
                                   backend=self.name, trait=addr.path(), device=addr.device_id,
                                   reason=str(exc))
        return values

    async def read(self, addresses: Sequence[TraitAddress]) -> dict[TraitAddress, Any]:
        """Current values of these traits, fresh from the hub."""
        return await self._read_values(addresses, self._specs)

    async def write(self, items: Sequence[WriteItem]) -> list[WriteFailure]:
        """One ExecuteTraitRequest for the batch; the hub answers with the failed items only."""
        payload = []
        for item in items:
            d, e, f, t = item.address
            payload.append({"deviceId": d, "endpointId": e, "functionCode": f, "traitCode": t,
                            "value": to_studio_wire(self._specs[item.address], item.value)})
        try:
            data = await self.call("ExecuteTraitRequest", payload)
        except BackendError as exc:
            return [WriteFailure(item, exc.code, exc.message) for item in items]
        by_address = {item.address: item for item in items}
        failures: list[WriteFailure] = []
        for failed in data if isinstance(data, list) else ():
            where = trait_address(failed) if isinstance(failed, Mapping) else None
            refused = by_address.get(where) if where else None
            if refused is not None:
                failures.append(WriteFailure(refused, failed.get("code"),
                                             str(failed.get("message") or "refused by the hub")))
        return failures

    async def snapshot(self) -> list[Device]:
        """Every device, fetched now; the trait specs used for decoding are refreshed too."""
        devices = await self._fetch_devices(None)
        self._specs = SpecIndex(devices)
        return devices

    async def request(self, command: str, args: Mapping[str, Any]) -> Any:
        """History and script automations (validated arguments from the management API)."""
        if command == "history":
            wire = history_request(args)
            data = await self.call(wire.type, wire.data)
            return history_result(data, args["spec"], args["page"], args["page_size"])
        wire = automation_request(command, args)
        return automation_result(command, await self.call(wire.type, wire.data), args)

    # ---- pushes ---------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        self._sink(event)

    def _handle_push(self, message: Mapping[str, Any]) -> None:
        data = message.get("data")
        if message.get("type") == "objectEvent" and isinstance(data, Mapping):
            self._handle_object_event(data)
            return
        items = data if isinstance(data, list) else [data]
        for item in items:
            if isinstance(item, Mapping) and "traitCode" in item:
                self._handle_trait_push(item)

    def _handle_trait_push(self, item: Mapping[str, Any]) -> None:
        addr = trait_address(item)
        if addr is not None and is_event_trait(addr.function_code, addr.trait_code):
            stamp = item.get("time")
            event = device_event(addr, item.get("value"),
                                 stamp if isinstance(stamp, int) else None)
            if event is not None:
                self._sink(event)
            return
        spec = self._specs.get(addr) if addr else None
        if addr is None or spec is None:
            return  # a device we have not described yet; its snapshot carries the value
        try:
            value = from_wire(spec, item.get("value"))
        except ValueError as exc:
            self._warn.warning(("value", addr), "studio hub pushed an unusable value",
                               backend=self.name, device=addr.device_id, trait=addr.path(),
                               reason=str(exc))
            return
        stamp = item.get("time")
        self._sink(TraitChanged(addr, value, stamp if isinstance(stamp, int) else None))

    def _handle_object_event(self, data: Mapping[str, Any]) -> None:
        kind = str(data.get("eventType", "")).upper()
        inner = data.get("data")
        body: Mapping[str, Any] = inner if isinstance(inner, Mapping) else data
        device_id = first(body, "deviceId", "objectId", "did")
        if not isinstance(device_id, str):
            return
        if kind in ("DEVICE_REMOVED", "DEVICE_DELETED", "DEVICE_DELETE"):
            self._specs.drop(device_id)
            self._emit(DeviceRemoved(device_id))
        elif kind in ("DEVICE_ONLINE", "DEVICE_OFFLINE"):
            self._emit(Availability(device_id, kind == "DEVICE_ONLINE"))
        elif kind == "DEVICE_NAME_UPDATE" and isinstance(first(body, "name", "deviceName"), str):
            self._emit(DeviceRenamed(device_id, str(first(body, "name", "deviceName"))))
        elif kind in ("DEVICE_ADDED", "DEVICE_ADD", "DEVICE_NAME_UPDATE",
                      "DEVICE_TRAIT_PARAMETER_UPDATE"):
            if device_id in self._describing:  # coalesced: one more description afterwards
                self._describing[device_id] = True
            else:
                self._describing[device_id] = False
                self._spawn(self._describe(device_id, added=kind.startswith("DEVICE_ADD")))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _describe(self, device_id: str, added: bool) -> None:
        """Fetch a device's description, once more if it changed again meanwhile."""
        try:
            while True:
                self._describing[device_id] = False
                try:
                    devices = await self._fetch_devices([device_id])
                except BackendError as exc:
                    log.warning("could not describe device", backend=self.name,
                                device=device_id, reason=exc.message)
                    return
                for device in devices:
                    self._specs.put(device)
                    self._emit(DeviceAdded(device) if added else DeviceUpdated(device))
                if not self._describing.get(device_id):
                    return
        finally:
            self._describing.pop(device_id, None)


class SpecIndex(Mapping[TraitAddress, TraitSpec]):
    """Trait specs by address, looked up in the devices themselves: the devices are shared
    with the core, so decoding pushes costs no second per-trait index."""

    def __init__(self, devices: Iterable[Device] = ()) -> None:
        self._devices = {device.id: device for device in devices}

    def put(self, device: Device) -> None:
        """Add or replace a device."""
        self._devices[device.id] = device

    def drop(self, device_id: str) -> None:
        """Forget a device."""
        self._devices.pop(device_id, None)

    def __getitem__(self, address: TraitAddress) -> TraitSpec:
        device = self._devices.get(address.device_id)
        trait = None if device is None else device.trait(
            address.endpoint_id, address.function_code, address.trait_code)
        if trait is None:
            raise KeyError(address)
        return trait.spec

    def __iter__(self) -> Iterator[TraitAddress]:
        return (address for device in self._devices.values()
                for address, _ in device.iter_traits())

    def __len__(self) -> int:
        return sum(len(device.iter_traits()) for device in self._devices.values())


def classify_error(exc: BaseException) -> tuple[str, bool]:
    """A log-ready reason for a failed session, and whether the hub refused our token."""
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status in (401, 403):
            return (f"authentication failed: the hub refused the token (HTTP {status}); "
                    "get a new token in Aqara Studio > Developer", True)
        return f"protocol error: WebSocket upgrade answered HTTP {status}", False
    if isinstance(exc, BackendError):
        return f"protocol error: {exc.message}", False
    if isinstance(exc, InvalidHandshake | websockets.InvalidURI):
        return f"protocol error: {exc}", False
    if isinstance(exc, ConnectionClosed):
        return "connection lost", False
    if isinstance(exc, ConnectionRefusedError):  # asyncio says "Connect call failed (…)"
        return "hub unreachable: connection refused", False
    if isinstance(exc, TimeoutError):
        return "hub unreachable: no answer (timeout)", False
    if isinstance(exc, OSError):
        return f"hub unreachable: {exc.strerror or exc}", False
    # anything else is a bug, but one hub answer must not take the daemon down: log, reconnect
    log.error("unexpected error in the studio session", exc_info=exc)
    return f"internal error: {type(exc).__name__}: {exc}", False

