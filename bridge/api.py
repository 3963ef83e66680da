"""The management API: ``<base>/bridge/request/<command>`` → ``<base>/bridge/response/<command>``.

Every request is a JSON object (an empty payload means ``{}``); its ``transaction`` (any JSON
value) is echoed. Arguments are validated with pydantic before anything reaches a hub, and a bad
field is named in the error. The response goes to ``<base>/bridge/response/<command>`` and, when
the request carried an MQTT 5 response topic, there too with the same correlation data.
Commands are documented in ``docs/api.md``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bridge import health, jsonlimits, payloads
from bridge.backends.base import Backend, BackendError
from bridge.core import Bridge
from bridge.entries import DeviceEntry
from bridge.logsetup import get_logger, set_level
from bridge.messages import IncomingMessage, Origin
from bridge.mqtt import MqttLink

log = get_logger("bridge.api")


class Controls(Protocol):
    """What the API may operate on (the running daemon)."""

    bridge: Bridge
    mqtt: MqttLink

    def request_restart(self) -> None: ...


class ApiError(Exception):
    """A request that cannot be served; ``code`` is machine-readable."""

    def __init__(self, code: str | int | None, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ---- argument schemas ---------------------------------------------------------------------------


class Args(BaseModel):
    """Base of every command's arguments: unknown keys are errors, types are strict."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class NoArgs(Args):
    pass


class BackendArg(Args):
    backend: str | None = Field(None, min_length=1)


class Paging(Args):
    page: int = Field(1, ge=1)
    page_size: int = Field(100, ge=1, le=200)


class DevicesArgs(Paging):
    type: str | None = Field(None, min_length=1)
    backend: str | None = Field(None, min_length=1)


class DeviceArg(Args):
    device: str = Field(min_length=1)


class RenameArgs(DeviceArg):
    name: str = Field(min_length=1, max_length=256)


class HistoryArgs(DeviceArg, Paging):
    endpoint: int = Field(ge=0)
    function: str = Field(min_length=1)
    trait: str = Field(min_length=1)
    start: int | str
    end: int | str | None = None
    order: Literal["asc", "desc"] = "desc"


class AutomationListArgs(BackendArg, Paging):
    pass


class AutomationIdArgs(BackendArg):
    id: str = Field(min_length=1)


class AutomationCreateArgs(BackendArg):
    script: dict[str, Any]
    enabled: bool = True


class AutomationUpdateArgs(AutomationIdArgs):
    script: dict[str, Any] | None = None
    name: str | None = Field(None, min_length=1)
    enabled: bool | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> AutomationUpdateArgs:
        if self.script is None and self.name is None and self.enabled is None:
            raise ValueError("give at least one of script, name, enabled")
        return self


class OptionsArgs(Args):
    log_level: Literal["debug", "info", "warning", "error"] | None = None
    write_window_ms: int | None = Field(None, ge=0, le=5000)
    publish_unchanged: bool | None = None


def _field_errors(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "request"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def _millis(value: int | str, field: str) -> int:
    """Epoch milliseconds from an integer or an ISO 8601 timestamp."""
    if isinstance(value, int):
        return value
    try:
        return int(datetime.fromisoformat(value).timestamp() * 1000)
    except ValueError:
        raise ApiError("invalid_request",
                       f"{field}: not epoch milliseconds or an ISO 8601 time") from None


# ---- the dispatcher -----------------------------------------------------------------------------

Handler = Callable[["Api", Any], Awaitable[Any]]


class Api:
    """Validates requests, runs them as tasks, and answers every one of them."""

    def __init__(self, controls: Controls, request_timeout: float = 30.0) -> None:
        self.controls = controls
        self.bridge = controls.bridge
        self.request_timeout = request_timeout
        self._tasks: set[asyncio.Task[None]] = set()

    def handle(self, command: str, message: IncomingMessage) -> None:
        """Entry point from the core for ``bridge/request/<command>`` (synchronous)."""
        origin = Origin.of(message)
        transaction = None
        try:
            body = (jsonlimits.loads(message.payload, jsonlimits.MQTT_MAX_BYTES)
                    if message.payload.strip() else {})
            if not isinstance(body, dict):
                raise ApiError("invalid_request", "request: the payload must be a JSON object")
            transaction = body.pop("transaction", None)
            handler, args = self._validate(command, body)
        except jsonlimits.JsonLimitError as exc:
            self._answer(command, origin, None, ApiError("invalid_request",
                                                         f"request: the payload is {exc}"))
            return
        except ValueError:
            self._answer(command, origin, None, ApiError("invalid_request",
                                                         "request: the payload is not JSON"))
            return
        except ApiError as exc:
            self._answer(command, origin, transaction, exc)
            return
        task = asyncio.get_running_loop().create_task(
            self._run(command, origin, transaction, handler, args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def canonical(self, command: str) -> str:
        """The command's name (``device/rename``) also when it was written with ``_`` for the
        separator (``device_rename``), as on brokers whose topics cannot hold a ``.`` (NATS):
        a name that is a command as written stays what it is (``health_check``)."""
        if command in COMMANDS or "_" not in command:
            return command
        if command in _UNDERSCORED:
            return _UNDERSCORED[command]
        for kind in {b.kind for b in self.bridge.backends.values()}:
            if command.startswith(kind + "_"):
                return kind + "/" + command[len(kind) + 1:].replace("_", "/")
        return command

    def _validate(self, command: str, body: dict[str, Any]) -> tuple[Handler, Any]:
        command = self.canonical(command)
        entry = COMMANDS.get(command)
        if entry is not None:
            schema, handler = entry
            try:
                return handler, schema.model_validate(body)
            except ValidationError as exc:
                raise ApiError("invalid_request", _field_errors(exc)) from None
        backend = self._backend_for_prefix(command)
        if backend is None:
            raise ApiError("unknown_command", f"unknown command '{command}'; see docs/api.md")
        return _backend_command(backend, command), body

    def _backend_for_prefix(self, command: str) -> Backend | None:
        kind = command.split("/", 1)[0]
        return next((b for b in self.bridge.backends.values() if b.kind == kind), None)

    async def _run(self, command: str, origin: Origin, transaction: Any, handler: Handler,
                   args: Any) -> None:
        try:
            async with asyncio.timeout(self.request_timeout):
                data = await handler(self, args)
        except TimeoutError:
            self._answer(command, origin, transaction, ApiError(
                "timeout", f"no answer within {self.request_timeout:g} s"))
        except ApiError as exc:
            self._answer(command, origin, transaction, exc)
        except BackendError as exc:
            self._answer(command, origin, transaction, ApiError(exc.code, exc.message))
        else:
            self._answer(command, origin, transaction, None, data)

    def _answer(self, command: str, origin: Origin, transaction: Any, error: ApiError | None,
                data: Any = None) -> None:
        if error is None:
            body = payloads.response("ok", data=data, transaction=transaction)
        else:
            body = payloads.response("error", error_code=error.code,
                                     error_message=error.message, transaction=transaction)
            self.bridge.report("warning", f"request {command} failed: {error.message}", origin)
        topic = self.bridge.topics.response_to(origin.topic)
        if origin.response_topic != topic:  # mosquitto_rr -e names this very topic: send once
            self.bridge.publish_json(topic, payloads.dumps(body))
        self.bridge.respond(origin, body)

    # ---- helpers for handlers -----------------------------------------------------------

    def device(self, ref: str) -> DeviceEntry:
        entry = self.bridge.find_device(ref)
        if entry is None:
            raise ApiError("unknown_device", f"device: no device '{ref}'")
        return entry

    def backend(self, name: str | None, kind: str = "studio") -> Backend:
        if name is not None:
            found = self.bridge.backends.get(name)
            if found is None:
                raise ApiError("unknown_backend", f"backend: no backend named '{name}'")
            return found
        for candidate in self.bridge.backends.values():
            if candidate.kind == kind:
                return candidate
        raise ApiError("unsupported", f"no {kind} backend is configured")


def _backend_command(backend: Backend, command: str) -> Handler:
    async def run(_api: Api, args: Mapping[str, Any]) -> Any:
        return await backend.request(command, args)

    return run


# ---- command handlers ---------------------------------------------------------------------------


async def _devices(api: Api, args: DevicesArgs) -> Any:
    entries = [
        e for e in api.bridge.devices.values()
        if (args.type is None or args.type in e.device.types)
        and (args.backend is None or e.backend.name == args.backend)
    ]
    start = (args.page - 1) * args.page_size
    return {
        "total": len(entries), "page": args.page, "page_size": args.page_size,
        "devices": [api.bridge.describe(e) for e in entries[start:start + args.page_size]],
    }


async def _device(api: Api, args: DeviceArg) -> Any:
    entry = api.device(args.device)
    return {**api.bridge.describe(entry), "available": bool(entry.available),
            "state": payloads.device_state(entry.device)}


async def _rename(api: Api, args: RenameArgs) -> Any:
    entry = api.device(args.device)
    try:
        api.bridge.rename(entry, args.name)
    except ValueError as exc:
        raise ApiError("invalid_request", f"name: {exc}") from None
    return {"id": entry.device.id, "friendly_name": entry.friendly_name,
            "topic": api.bridge.topics.device(entry.topic_name)}


async def _refresh(api: Api, args: DeviceArg) -> Any:
    entry = api.device(args.device)
    await api.bridge.refresh(entry, [a for a, t in entry.device.iter_traits() if t.spec.readable])
    return payloads.device_state(entry.device)


async def _resync(api: Api, args: BackendArg) -> Any:
    backends = [api.backend(args.backend)] if args.backend else list(
        api.bridge.backends.values())
    counts = {}
    for backend in backends:
        counts[backend.name] = await api.bridge.resync(backend)
    return {"devices": counts}


async def _history(api: Api, args: HistoryArgs) -> Any:
    entry = api.device(args.device)
    trait = entry.device.trait(args.endpoint, args.function, args.trait)
    if trait is None:
        raise ApiError("invalid_request",
                       f"trait: device '{args.device}' has no trait "
                       f"{args.endpoint}.{args.function}.{args.trait}")
    start = _millis(args.start, "start")
    end = _millis(args.end, "end") if args.end is not None else int(time.time() * 1000)
    if start > end:
        raise ApiError("invalid_request", "start: must not be after end")
    return await entry.backend.request("history", {
        "device_id": entry.device.id, "endpoint_id": args.endpoint,
        "function_code": args.function, "trait_code": args.trait, "start": start, "end": end,
        "page": args.page, "page_size": args.page_size, "order": args.order,
        "spec": trait.spec,
    })


def _automation(command: str) -> Handler:
    async def run(api: Api, args: BackendArg) -> Any:
        backend = api.backend(args.backend)
        return await backend.request(command, args.model_dump(exclude={"backend"}))

    return run


async def _health(api: Api, _args: NoArgs) -> Any:
    mqtt = api.controls.mqtt
    backends = [
        {**b.summary(), "devices": sum(1 for e in api.bridge.devices.values() if e.backend is b)}
        for b in api.bridge.backends.values()
    ]
    return {
        "healthy": mqtt.connected and all(b.connected for b in api.bridge.backends.values()),
        "health": health.assess(backends).as_json(),
        "uptime_s": round(time.time() - api.bridge.started_at, 1),
        "mqtt": {"connected": mqtt.connected, "protocol": mqtt.version,
                 "outstanding": mqtt.outstanding, "parked": mqtt.parked,
                 "parked_peak": mqtt.parked_peak, "dropped": mqtt.dropped,
                 "denied_publishes": mqtt.denied},
        "backends": backends,
        "devices": len(api.bridge.devices),
        "events_handled": api.bridge.events_handled,
        "pending_writes": api.bridge.pending_writes(),
    }


RESTART_ONLY = ["mqtt", "backends", "devices", "homeassistant", "log.format"]


async def _options(api: Api, args: OptionsArgs) -> Any:
    bridge = api.bridge
    applied: dict[str, Any] = {}
    if args.log_level is not None:
        set_level(args.log_level)
        applied["log_level"] = args.log_level
    changes: dict[str, Any] = {}
    if args.write_window_ms is not None:
        changes["write_window"] = args.write_window_ms / 1000
        applied["write_window_ms"] = args.write_window_ms
    if args.publish_unchanged is not None:
        changes["publish_unchanged"] = args.publish_unchanged
        applied["publish_unchanged"] = args.publish_unchanged
    if changes:
        bridge.options = replace(bridge.options, **changes)
    return {"applied": applied, "restart_required_for": RESTART_ONLY,
            "options": {"log_level": args.log_level,
                        "write_window_ms": round(bridge.options.write_window * 1000),
                        "publish_unchanged": bridge.options.publish_unchanged}}


async def _restart(api: Api, _args: NoArgs) -> Any:
    asyncio.get_running_loop().call_later(0.2, api.controls.request_restart)
    return {"restarting": True}


COMMANDS: dict[str, tuple[type[Args], Handler]] = {
    "devices": (DevicesArgs, _devices),
    "device": (DeviceArg, _device),
    "device/rename": (RenameArgs, _rename),
    "device/refresh": (DeviceArg, _refresh),
    "resync": (BackendArg, _resync),
    "history": (HistoryArgs, _history),
    "automation/capabilities": (BackendArg, _automation("automation/capabilities")),
    "automation/list": (AutomationListArgs, _automation("automation/list")),
    "automation/get": (AutomationIdArgs, _automation("automation/get")),
    "automation/create": (AutomationCreateArgs, _automation("automation/create")),
    "automation/update": (AutomationUpdateArgs, _automation("automation/update")),
    "automation/delete": (AutomationIdArgs, _automation("automation/delete")),
    "health_check": (NoArgs, _health),
    "options": (OptionsArgs, _options),
    "restart": (NoArgs, _restart),
}
"""Every built-in command with its argument schema; ``<kind>/...`` goes to that backend."""

_UNDERSCORED = {name.replace("/", "_"): name for name in COMMANDS if "/" in name}
"""``device_rename`` → ``device/rename``: the commands of several words, spelled without dots."""
