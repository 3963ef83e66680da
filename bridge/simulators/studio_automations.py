"""Script automations of the Studio simulator (sans-IO): validator, comparators, store and engine.

Serves the automation requests of :mod:`bridge.simulators.studio`; the module does no I/O. The
script JSON is Aqara's (protocols.md §1.5); every request and response shape around it is
INFERRED (see the ``studio`` module docstring for the list).

Script subset understood (anything else is refused with code 400 and a message naming the JSON
path, e.g. ``script.automations[0].actions[0].traitCode: trait not found on lumi.x endpoint 2
(Output.OnOff)``):

* ``metadata``: ``name`` (non-empty string), ``description``? (string), ``scope``? (array,
  unused).
* ``automations``: non-empty array of ``{name, starters, conditions?, actions}``.
* starter / condition: ``{"type": "property.event", "source": {"type": "device.property",
  deviceId, endpointId, functionCode, traitCode}, <comparator>: <comparand>}`` with exactly one
  comparator of :data:`COMPARATORS`. The trait must exist, be readable (starters: also
  subscribable) and not be OTHER-typed; ordering comparators need a NUMBER trait; the comparand
  must have the trait's wire type (ENUM: one of its enum ``value`` strings). ``data.ref``
  sources are refused as unsupported.
* action: ``{"type": "device.trait.write", functionCode, traitCode, targets: [{deviceId,
  endpointIds: [int, ...]}], value}``; every target trait must exist, be writable and accept
  ``value`` (the ExecuteTraitRequest checks of :func:`check_value`).

Running: a value change of a trait fires every rule (one entry of ``automations``) of every
enabled automation with a starter on that trait whose comparator is false (or unknown, i.e.
``None``) for the previous value and true for the new one, provided all its ``conditions`` hold
for the current values. Its writes are applied after the triggering change, breadth first; a
write is checked like an ExecuteTraitRequest item at run time (missing, unwritable, offline or
illegal targets are skipped and counted). Changes made by rules are cascade level 1, changes
they cause level 2, and so on: a rule that would write at a level deeper than
:data:`MAX_CASCADE_DEPTH` is not run and counted in ``loops_stopped``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from bridge.simulators.sample_home import SimDevice, SimTrait, now_ms

__all__ = [
    "CODE_AUTOMATION_NOT_FOUND",
    "CODE_BAD_PARAMETER",
    "COMPARATORS",
    "MAX_CASCADE_DEPTH",
    "NUMERIC_COMPARATORS",
    "Automation",
    "AutomationEngine",
    "AutomationNotFound",
    "BadRequest",
    "Comparison",
    "CompiledScript",
    "RequestError",
    "Rule",
    "ScriptError",
    "StaticCatalog",
    "TraitCatalog",
    "Write",
    "capabilities",
    "check_value",
    "compare",
    "same_value",
    "validate_script",
]

TraitKey = tuple[str, int, str, str]
"""``(deviceId, endpointId, functionCode, traitCode)`` (the same alias as in ``studio``)."""

CODE_BAD_PARAMETER = 400
CODE_AUTOMATION_NOT_FOUND = 1201  # legacy Aqara code for "linkage not exist"
MAX_CASCADE_DEPTH = 8
COMPARATORS = ("is", "isNot", "greaterThan", "greaterThanOrEqual", "lessThan", "lessThanOrEqual")
NUMERIC_COMPARATORS = frozenset(COMPARATORS[2:])
VALUE_TYPES = {"BOOLEAN": "boolean", "NUMBER": "number", "STRING": "string", "ENUM": "enum"}
"""Trait ``type`` → capability ``valueType``; OTHER traits take no part in automations."""

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 200
_ID_BASE = 880_000_000_000_000_000
_UNSET: Any = object()


# --------------------------------------------------------------------------------------------
# Errors


class RequestError(Exception):
    """A request the hub refuses: answered with ``code`` and ``message`` and ``data: null``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class BadRequest(RequestError):
    """Wrong request ``data`` (code 400); the message names the field."""

    def __init__(self, message: str) -> None:
        super().__init__(CODE_BAD_PARAMETER, message)


class ScriptError(BadRequest):
    """An invalid script: ``path`` is the JSON path of the offending item."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class AutomationNotFound(RequestError):
    """An unknown automation id (code 1201)."""

    def __init__(self, automation_id: str) -> None:
        super().__init__(CODE_AUTOMATION_NOT_FOUND, f"automation not exist: {automation_id}")
        self.automation_id = automation_id


# --------------------------------------------------------------------------------------------
# Values and comparators


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite JSON number (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def check_value(tr: SimTrait, value: Any) -> tuple[bool, Any]:
    """``(legal, normalised value)`` for a write of ``value`` to ``tr`` (ExecuteTrait rules).

    Illegal = wrong JSON type, outside min/max, non-finite or a fraction for an integer format
    (a whole float is normalised to ``int`` there); ``step`` is not enforced.
    """
    kind = tr.type
    if kind == "BOOLEAN":
        return isinstance(value, bool), value
    if kind == "NUMBER":
        if not is_number(value):
            return False, value
        if "int" in tr.format.lower():
            if not float(value).is_integer():
                return False, value
            value = int(value)
        if tr.min is not None and value < tr.min:
            return False, value
        if tr.max is not None and value > tr.max:
            return False, value
        return True, value
    if kind == "ENUM":
        if not isinstance(value, str):
            return False, value
        return tr.enums is None or any(value == v for _, v in tr.enums), value
    if kind == "STRING":
        return isinstance(value, str), value
    return isinstance(value, dict | list), value


def same_value(a: Any, b: Any) -> bool:
    """JSON equality: booleans never equal numbers, ``1 == 1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if is_number(a) and is_number(b):
        return bool(a == b)
    if type(a) is not type(b) and not (isinstance(a, dict | list) and isinstance(b, dict | list)):
        return False
    return bool(a == b)


def compare(op: str, operand: Any, value: Any) -> bool:
    """Whether ``value`` satisfies ``<op> operand``; an unknown value (None) never does.

    Ordering comparators are false unless both sides are numbers. ValueError for unknown ops.
    """
    if op not in COMPARATORS:
        raise ValueError(f"unknown comparator {op!r}")
    if value is None:
        return False
    if op == "is":
        return same_value(value, operand)
    if op == "isNot":
        return not same_value(value, operand)
    if not is_number(value) or not is_number(operand):
        return False
    if op == "greaterThan":
        return bool(value > operand)
    if op == "greaterThanOrEqual":
        return bool(value >= operand)
    if op == "lessThan":
        return bool(value < operand)
    return bool(value <= operand)


def _comparand_fits(tr: SimTrait, operand: Any) -> bool:
    kind = tr.type
    if kind == "BOOLEAN":
        return isinstance(operand, bool)
    if kind == "NUMBER":
        return is_number(operand)
    if kind == "ENUM":
        return isinstance(operand, str) and (
            tr.enums is None or any(operand == v for _, v in tr.enums)
        )
    return isinstance(operand, str)  # STRING


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------------------------
# Catalog: what the validator may look at


class TraitCatalog(Protocol):
    """The hub's devices as the validator sees them."""

    def has_device(self, device_id: str) -> bool:
        """Whether the device exists."""
        ...

    def trait(self, key: TraitKey) -> SimTrait | None:
        """The trait at that address, or None."""
        ...


class StaticCatalog:
    """A :class:`TraitCatalog` over a fixed list of devices (for tests and tools)."""

    def __init__(self, devices: Iterable[SimDevice]) -> None:
        self._devices = {d.device_id: d for d in devices}
        self._traits: dict[TraitKey, SimTrait] = {
            (d.device_id, ep, fn, tr.code): tr
            for d in self._devices.values()
            for ep, fn, tr in d.iter_traits()
        }

    def has_device(self, device_id: str) -> bool:
        """Whether the device exists."""
        return device_id in self._devices

    def trait(self, key: TraitKey) -> SimTrait | None:
        """The trait at that address, or None."""
        return self._traits.get(key)


# --------------------------------------------------------------------------------------------
# Compiled scripts


@dataclass(frozen=True, slots=True)
class Comparison:
    """A starter or condition: ``<trait> <op> <operand>``."""

    key: TraitKey
    op: str
    operand: Any

    def holds(self, value: Any) -> bool:
        """Whether ``value`` satisfies the comparison (None = unknown = false)."""
        return compare(self.op, self.operand, value)


@dataclass(frozen=True, slots=True)
class Write:
    """One trait write of an action (one per target endpoint), value already normalised."""

    key: TraitKey
    value: Any


@dataclass(frozen=True, slots=True)
class Rule:
    """One entry of the script's ``automations``."""

    name: str
    starters: tuple[Comparison, ...]
    conditions: tuple[Comparison, ...]
    writes: tuple[Write, ...]


@dataclass(frozen=True, slots=True)
class CompiledScript:
    """A validated script."""

    name: str
    rules: tuple[Rule, ...]


def _obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScriptError(path, "is required and must be an object")
    return value


def _items(value: Any, path: str, *, required: bool = True) -> list[Any]:
    if value is None and not required:
        return []
    if not isinstance(value, list) or (required and not value):
        raise ScriptError(path, "is required and must be a non-empty array")
    return value


def _text(item: dict[str, Any], key: str, path: str, *, non_empty: bool = False) -> str:
    value = item.get(key)
    if not isinstance(value, str) or (non_empty and not value.strip()):
        what = "a non-empty string" if non_empty else "a string"
        raise ScriptError(f"{path}.{key}", f"is required and must be {what}")
    return value


def _integer(item: dict[str, Any], key: str, path: str) -> int:
    value = item.get(key)
    if not _is_int(value):
        raise ScriptError(f"{path}.{key}", "is required and must be an integer")
    assert isinstance(value, int)
    return value


def _comparison(item: Any, path: str, catalog: TraitCatalog, *, starter: bool) -> Comparison:
    item = _obj(item, path)
    kind = item.get("type")
    if kind != "property.event":
        raise ScriptError(f"{path}.type", f"must be 'property.event' (got {_show(kind)})")
    sp = f"{path}.source"
    source = _obj(item.get("source"), sp)
    source_type = source.get("type")
    if source_type == "data.ref":
        raise ScriptError(
            f"{sp}.type", "data.ref sources are not supported by this hub; use device.property"
        )
    if source_type != "device.property":
        raise ScriptError(f"{sp}.type", f"must be 'device.property' (got {_show(source_type)})")
    device_id = _text(source, "deviceId", sp)
    endpoint_id = _integer(source, "endpointId", sp)
    function_code = _text(source, "functionCode", sp)
    key = (device_id, endpoint_id, function_code, _text(source, "traitCode", sp))
    if not catalog.has_device(device_id):
        raise ScriptError(f"{sp}.deviceId", f"device not found: {device_id}")
    tr = catalog.trait(key)
    where = f"on {device_id} endpoint {endpoint_id} ({function_code}.{key[3]})"
    if tr is None:
        raise ScriptError(f"{sp}.traitCode", f"trait not found {where}")
    if tr.type not in VALUE_TYPES:
        raise ScriptError(f"{sp}.traitCode", f"{tr.type} traits are not supported in automations")
    if not tr.readable:
        raise ScriptError(f"{sp}.traitCode", f"trait is not readable {where}")
    if starter and not tr.subscribable:
        raise ScriptError(f"{sp}.traitCode", f"trait is not subscribable {where}")
    found = [op for op in COMPARATORS if op in item]
    if len(found) != 1:
        raise ScriptError(
            path,
            f"needs exactly one comparator of {', '.join(COMPARATORS)} "
            f"(found {', '.join(found) or 'none'})",
        )
    op = found[0]
    operand = item[op]
    if op in NUMERIC_COMPARATORS and tr.type != "NUMBER":
        raise ScriptError(f"{path}.{op}", f"needs a NUMBER trait, {key[2]}.{key[3]} is {tr.type}")
    if not _comparand_fits(tr, operand):
        raise ScriptError(
            f"{path}.{op}", f"{_show(operand)} does not fit the {tr.type} trait {key[2]}.{key[3]}"
        )
    return Comparison(key, op, operand)


def _writes(item: Any, path: str, catalog: TraitCatalog) -> list[Write]:
    item = _obj(item, path)
    kind = item.get("type")
    if kind != "device.trait.write":
        raise ScriptError(f"{path}.type", f"must be 'device.trait.write' (got {_show(kind)})")
    function_code = _text(item, "functionCode", path)
    trait_code = _text(item, "traitCode", path)
    if "value" not in item:
        raise ScriptError(f"{path}.value", "is required")
    value = item["value"]
    writes: list[Write] = []
    for ti, target in enumerate(_items(item.get("targets"), f"{path}.targets")):
        tp = f"{path}.targets[{ti}]"
        target = _obj(target, tp)
        device_id = _text(target, "deviceId", tp)
        endpoints = _items(target.get("endpointIds"), f"{tp}.endpointIds")
        if not all(_is_int(e) for e in endpoints):
            raise ScriptError(f"{tp}.endpointIds", "must be an array of integers")
        if not catalog.has_device(device_id):
            raise ScriptError(f"{tp}.deviceId", f"device not found: {device_id}")
        for endpoint_id in endpoints:
            key = (device_id, endpoint_id, function_code, trait_code)
            where = f"on {device_id} endpoint {endpoint_id} ({function_code}.{trait_code})"
            tr = catalog.trait(key)
            if tr is None:
                raise ScriptError(f"{path}.traitCode", f"trait not found {where}")
            if tr.type not in VALUE_TYPES:
                raise ScriptError(
                    f"{path}.traitCode", f"{tr.type} traits are not supported in automations"
                )
            if not tr.writable:
                raise ScriptError(f"{path}.traitCode", f"trait is not writable {where}")
            legal, normalised = check_value(tr, value)
            if not legal:
                raise ScriptError(
                    f"{path}.value",
                    f"{_show(value)} is illegal for the {tr.type} trait {where}",
                )
            writes.append(Write(key, normalised))
    return writes


def _rule(item: Any, path: str, catalog: TraitCatalog) -> Rule:
    item = _obj(item, path)
    name = _text(item, "name", path, non_empty=True)
    starters = tuple(
        _comparison(s, f"{path}.starters[{i}]", catalog, starter=True)
        for i, s in enumerate(_items(item.get("starters"), f"{path}.starters"))
    )
    conditions_raw = item.get("conditions")
    if conditions_raw is not None and not isinstance(conditions_raw, list):
        raise ScriptError(f"{path}.conditions", "must be an array")
    conditions = tuple(
        _comparison(c, f"{path}.conditions[{i}]", catalog, starter=False)
        for i, c in enumerate(conditions_raw or [])
    )
    writes: list[Write] = []
    for i, action in enumerate(_items(item.get("actions"), f"{path}.actions")):
        writes += _writes(action, f"{path}.actions[{i}]", catalog)
    return Rule(name, starters, conditions, tuple(writes))


def validate_script(script: Any, catalog: TraitCatalog, path: str = "script") -> CompiledScript:
    """Validate a script against the hub's devices; ScriptError naming the JSON path."""
    if not isinstance(script, dict):
        raise ScriptError(path, "is required and must be an object")
    mp = f"{path}.metadata"
    metadata = _obj(script.get("metadata"), mp)
    name = _text(metadata, "name", mp, non_empty=True)
    if metadata.get("description") is not None and not isinstance(metadata["description"], str):
        raise ScriptError(f"{mp}.description", "must be a string")
    if metadata.get("scope") is not None and not isinstance(metadata["scope"], list):
        raise ScriptError(f"{mp}.scope", "must be an array")
    ap = f"{path}.automations"
    rules = tuple(
        _rule(a, f"{ap}[{i}]", catalog) for i, a in enumerate(_items(script.get("automations"), ap))
    )
    return CompiledScript(name, rules)


# --------------------------------------------------------------------------------------------
# Stored automations


@dataclass(frozen=True, slots=True)
class Automation:
    """A stored script automation (replaced, never mutated, on update)."""

    automation_id: str
    name: str
    enabled: bool
    create_time: int
    update_time: int
    script: dict[str, Any]
    compiled: CompiledScript

    def summary(self) -> dict[str, Any]:
        """The GetScriptAutomationListResponse entry."""
        return {
            "automationId": self.automation_id,
            "name": self.name,
            "enabled": self.enabled,
            "createTime": self.create_time,
            "updateTime": self.update_time,
        }

    def details(self) -> dict[str, Any]:
        """The GetScriptAutomationDetailsResponse ``data`` (a copy of the script)."""
        return {**self.summary(), "script": copy.deepcopy(self.script)}


Reader = Callable[[TraitKey], Any]
"""The current value of a trait, None when unknown (also for a trait that no longer exists)."""

Writer = Callable[[TraitKey, Any], tuple[Any, Any] | None]
"""Apply a rule's write like an ExecuteTraitRequest item: ``(old, new)`` or None if refused.

Must not call :meth:`AutomationEngine.on_change` itself: the engine cascades on its own.
"""

_Entry = tuple[Automation, int, Rule, Comparison]


def _page_args(data: Any) -> tuple[int, int]:
    if data is None or data == "":
        data = {}
    if not isinstance(data, dict):
        raise BadRequest("data must be an object")
    page_num = data.get("pageNum")
    if page_num is None:
        page_num = 1
    elif not _is_int(page_num) or page_num < 1:
        raise BadRequest("data.pageNum must be an integer >= 1")
    page_size = data.get("pageSize")
    if page_size is None:
        page_size = DEFAULT_PAGE_SIZE
    elif not _is_int(page_size) or not 0 < page_size <= MAX_PAGE_SIZE:
        raise BadRequest(f"data.pageSize must be an integer in (0, {MAX_PAGE_SIZE}]")
    return page_num, page_size


def _want_id(data: dict[str, Any]) -> str:
    value = data.get("automationId")
    if not isinstance(value, str) or not value:
        raise BadRequest("data.automationId is required and must be a non-empty string")
    return value


def _want_bool(data: dict[str, Any], key: str) -> bool:
    value = data.get(key)
    if not isinstance(value, bool):
        raise BadRequest(f"data.{key} must be a boolean")
    return value


class AutomationEngine:
    """The hub's script automations: storage, the request handlers and the runner.

    ``catalog`` is consulted when a script is validated; ``clock`` gives ``createTime`` /
    ``updateTime`` (ms). Counters: ``runs`` (rules executed), ``loops_stopped`` (rules not run
    because the cascade was too deep) and ``write_failures`` (writes refused at run time).
    """

    def __init__(
        self,
        catalog: TraitCatalog,
        *,
        clock: Callable[[], int] = now_ms,
        max_depth: int = MAX_CASCADE_DEPTH,
    ) -> None:
        self.catalog = catalog
        self.clock = clock
        self.max_depth = max_depth
        self.runs = 0
        self.loops_stopped = 0
        self.write_failures = 0
        self._seq = 0
        self._automations: dict[str, Automation] = {}
        self._by_trait: dict[TraitKey, list[_Entry]] = {}
        self._queue: deque[tuple[TraitKey, Any, Any, int]] = deque()
        self._running = False

    # -- storage

    @property
    def automations(self) -> Mapping[str, Automation]:
        """Every automation by id, in creation order (read-only)."""
        return MappingProxyType(self._automations)

    @property
    def watched(self) -> Mapping[TraitKey, list[_Entry]]:
        """Starter traits of enabled automations (a live view: cheap ``key in watched`` test)."""
        return self._by_trait

    def get(self, automation_id: str) -> Automation:
        """An automation; AutomationNotFound if unknown."""
        found = self._automations.get(automation_id)
        if found is None:
            raise AutomationNotFound(automation_id)
        return found

    def create(self, script: Any, enabled: bool = True) -> Automation:
        """Validate and store a script; ScriptError if invalid."""
        compiled = validate_script(script, self.catalog)
        self._seq += 1
        now = self.clock()
        auto = Automation(
            f"L.{_ID_BASE + self._seq}",
            compiled.name,
            enabled,
            now,
            now,
            copy.deepcopy(script),
            compiled,
        )
        self._automations[auto.automation_id] = auto
        self._reindex()
        return auto

    def update(
        self,
        automation_id: str,
        *,
        script: Any = _UNSET,
        name: str | None = None,
        enabled: bool | None = None,
    ) -> Automation:
        """Replace the script and/or rename and/or enable/disable; all checked before changing.

        A new script renames the automation to its ``metadata.name`` unless ``name`` is given; a
        new ``name`` is also written into the stored script's ``metadata.name``.
        """
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise BadRequest("data.name must be a non-empty string")
        compiled = None if script is _UNSET else validate_script(script, self.catalog)
        old = self.get(automation_id)
        new_script = old.script if compiled is None else copy.deepcopy(script)
        new_compiled = old.compiled if compiled is None else compiled
        if name is not None:
            new_script = copy.deepcopy(new_script)
            new_script["metadata"]["name"] = name
            new_compiled = dataclasses.replace(new_compiled, name=name)
        auto = dataclasses.replace(
            old,
            name=new_compiled.name,
            enabled=old.enabled if enabled is None else enabled,
            update_time=self.clock(),
            script=new_script,
            compiled=new_compiled,
        )
        self._automations[automation_id] = auto
        self._reindex()
        return auto

    def delete(self, automation_ids: Iterable[str]) -> list[str]:
        """Delete automations (all or none); AutomationNotFound naming the first unknown id."""
        ids = list(dict.fromkeys(automation_ids))
        for automation_id in ids:
            if automation_id not in self._automations:
                raise AutomationNotFound(automation_id)
        for automation_id in ids:
            del self._automations[automation_id]
        self._reindex()
        return ids

    def _reindex(self) -> None:
        index = self._by_trait
        index.clear()
        for auto in self._automations.values():
            if not auto.enabled:
                continue
            for i, rule in enumerate(auto.compiled.rules):
                for starter in rule.starters:
                    index.setdefault(starter.key, []).append((auto, i, rule, starter))

    # -- request handlers: request ``data`` -> response ``data``; RequestError on refusal

    def api_create(self, data: Any) -> dict[str, Any]:
        """CreateScriptAutomationRequest."""
        if not isinstance(data, dict):
            raise BadRequest("data must be an object")
        if "script" not in data:
            raise BadRequest("data.script is required and must be an object")
        enabled = True if "enabled" not in data else _want_bool(data, "enabled")
        return {"automationId": self.create(data["script"], enabled).automation_id}

    def api_update(self, data: Any) -> dict[str, Any]:
        """UpdateScriptAutomationRequest."""
        if not isinstance(data, dict):
            raise BadRequest("data must be an object")
        automation_id = _want_id(data)
        if not any(k in data for k in ("script", "name", "enabled")):
            raise BadRequest("data must contain at least one of script, name, enabled")
        name = data.get("name", None)
        if "name" in data and (not isinstance(name, str) or not name.strip()):
            raise BadRequest("data.name must be a non-empty string")
        enabled = _want_bool(data, "enabled") if "enabled" in data else None
        script = data.get("script", _UNSET)
        self.update(automation_id, script=script, name=name, enabled=enabled)
        return {"automationId": automation_id}

    def api_list(self, data: Any) -> dict[str, Any]:
        """GetScriptAutomationListRequest (creation order)."""
        page_num, page_size = _page_args(data)
        autos = list(self._automations.values())
        page = autos[(page_num - 1) * page_size : page_num * page_size]
        return {
            "totalCount": len(autos),
            "pageNum": page_num,
            "pageSize": page_size,
            "data": [a.summary() for a in page],
        }

    def api_details(self, data: Any) -> dict[str, Any]:
        """GetScriptAutomationDetailsRequest."""
        if not isinstance(data, dict):
            raise BadRequest("data must be an object")
        return self.get(_want_id(data)).details()

    def api_delete(self, data: Any) -> dict[str, Any]:
        """DeleteAutomationRequest: ``automationIds`` and/or ``automationId``."""
        if not isinstance(data, dict):
            raise BadRequest("data must be an object")
        ids: list[str] = []
        if "automationIds" in data:
            many = data["automationIds"]
            if (
                not isinstance(many, list)
                or not many
                or not all(isinstance(i, str) and i for i in many)
            ):
                raise BadRequest("data.automationIds must be a non-empty array of strings")
            ids += many
        if "automationId" in data:
            ids.append(_want_id(data))
        if not ids:
            raise BadRequest("data.automationIds (or data.automationId) is required")
        return {"deleted": self.delete(ids)}

    # -- running

    def on_change(self, key: TraitKey, old: Any, new: Any, read: Reader, write: Writer) -> None:
        """A trait changed from ``old`` to ``new`` (already applied): run what it triggers.

        Re-entrant calls (from inside ``write``) are queued at level 0 of the running cascade.
        """
        self._queue.append((key, old, new, 0))
        if self._running:
            return
        self._running = True
        queue = self._queue
        try:
            while queue:
                changed, before, after, depth = queue.popleft()
                for rule in self._fired(changed, before, after, read):
                    if depth >= self.max_depth:
                        self.loops_stopped += 1
                        continue
                    self.runs += 1
                    for w in rule.writes:
                        result = write(w.key, w.value)
                        if result is None:
                            self.write_failures += 1
                        elif w.key in self._by_trait:
                            queue.append((w.key, result[0], result[1], depth + 1))
        finally:
            queue.clear()
            self._running = False

    def _fired(self, key: TraitKey, old: Any, new: Any, read: Reader) -> list[Rule]:
        entries = self._by_trait.get(key)
        if not entries:
            return []
        fired: list[Rule] = []
        seen: set[tuple[str, int]] = set()
        for auto, index, rule, starter in entries:
            ident = (auto.automation_id, index)
            if ident in seen or not starter.holds(new) or starter.holds(old):
                continue
            if all(c.holds(read(c.key)) for c in rule.conditions):
                seen.add(ident)
                fired.append(rule)
        return fired


# --------------------------------------------------------------------------------------------
# Capabilities


_WORD = re.compile(r"[A-Z0-9.]+(?![a-z])|[A-Z]?[a-z0-9]+")


def _words(code: str) -> str:
    """``"CurrentLevel"`` → ``"Current Level"`` (display names are INFERRED from codes)."""
    return " ".join(_WORD.findall(code)) or code


def _roles(tr: SimTrait) -> list[str]:
    roles = []
    if tr.readable and tr.subscribable:
        roles.append("starter")
    if tr.readable:
        roles.append("condition")
    if tr.writable:
        roles.append("action")
    return roles


def capabilities(devices: Iterable[SimDevice]) -> dict[str, Any]:
    """The QueryAutomationCapabilitiesResponse ``data`` for ``devices`` (in the given order).

    Only BOOLEAN/NUMBER/STRING/ENUM traits with at least one role are listed; endpoints without
    such traits and devices without such endpoints are left out.
    """
    out = []
    for dev in devices:
        names = [ep.types[0] if ep.types else "Endpoint" for ep in dev.endpoints]
        endpoints = []
        for ep, base in zip(dev.endpoints, names, strict=True):
            props = [
                {
                    "functionCode": fn.code,
                    "functionName": _words(fn.code),
                    "traitCode": tr.code,
                    "traitName": _words(tr.code),
                    "valueType": VALUE_TYPES[tr.type],
                    "semanticRole": roles,
                }
                for fn in ep.functions
                for tr in fn.traits
                if tr.type in VALUE_TYPES and (roles := _roles(tr))
            ]
            if props:
                name = base if names.count(base) == 1 else f"{base} {ep.endpoint_id}"
                endpoints.append(
                    {"endpointName": name, "endpointId": ep.endpoint_id, "properties": props}
                )
        if endpoints:
            out.append({"deviceId": dev.device_id, "deviceName": dev.name, "endpoints": endpoints})
    return {"devices": out}
