"""The Studio simulator's automation validator/comparators/engine and its history store."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from bridge.simulators.sample_home import SimTrait, sample_home
from bridge.simulators.studio_automations import (
    COMPARATORS,
    MAX_CASCADE_DEPTH,
    AutomationEngine,
    AutomationNotFound,
    BadRequest,
    ScriptError,
    StaticCatalog,
    capabilities,
    check_value,
    compare,
    same_value,
    validate_script,
)
from bridge.simulators.studio_history import (
    HistoryQuery,
    HistoryStore,
    TraitSeries,
    history_response,
    parse_history_query,
)

SWITCH = "lumi1.54ef448a0b73"  # eps 2 and 3: Output.OnOff (writable BOOLEAN)
LIGHT = "lumi1.54ef44d1e6a0"  # ep 1: Output.OnOff, LevelControl.CurrentLevel (Uint8 0..100)
THERMO = "lumi1.54ef448cc210"  # ep 1: Thermostat.SetTemperature (5..30), HeaterCoolerMode enum
LOCK = "aqara.lock.7f3e9a01c2"  # ep 1: DoorLock.LockState (read-only enum)
HUB = "lumi1.54ef44100000"  # ep 0: Diagnostics.NetworkStatus (OTHER)

Key = tuple[str, int, str, str]
S2: Key = (SWITCH, 2, "Output", "OnOff")
S3: Key = (SWITCH, 3, "Output", "OnOff")
LEVEL: Key = (LIGHT, 1, "LevelControl", "CurrentLevel")
TEMP: Key = (THERMO, 1, "TemperatureMeasurement", "CurrentTemperature")
MODE: Key = (THERMO, 1, "Thermostat", "HeaterCoolerMode")


def src(key: Key) -> dict[str, Any]:
    return {
        "type": "device.property",
        "deviceId": key[0],
        "endpointId": key[1],
        "functionCode": key[2],
        "traitCode": key[3],
    }


def when(key: Key, op: str, operand: Any) -> dict[str, Any]:
    return {"type": "property.event", "source": src(key), op: operand}


def write(key: Key, value: Any, *more_endpoints: int) -> dict[str, Any]:
    return {
        "type": "device.trait.write",
        "functionCode": key[2],
        "traitCode": key[3],
        "targets": [{"deviceId": key[0], "endpointIds": [key[1], *more_endpoints]}],
        "value": value,
    }


def rule(
    name: str,
    starters: list[dict[str, Any]],
    actions: list[dict[str, Any]],
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "starters": starters, "actions": actions}
    if conditions is not None:
        out["conditions"] = conditions
    return out


def script(*rules: dict[str, Any], name: str = "Test") -> dict[str, Any]:
    return {"metadata": {"name": name, "description": "d", "scope": []}, "automations": list(rules)}


SIMPLE = script(rule("r", [when(S2, "is", True)], [write(S3, False)]))


@pytest.fixture
def catalog() -> StaticCatalog:
    return StaticCatalog(sample_home())


class FakeHub:
    """Current values plus a writer that records writes (like the simulator's, sans pushes)."""

    def __init__(self, values: dict[Key, Any] | None = None) -> None:
        self.values: dict[Key, Any] = dict(values or {})
        self.writes: list[tuple[Key, Any]] = []
        self.refuse: set[Key] = set()

    def read(self, key: Key) -> Any:
        return self.values.get(key)

    def write(self, key: Key, value: Any) -> tuple[Any, Any] | None:
        if key in self.refuse:
            return None
        old = self.values.get(key)
        self.values[key] = value
        self.writes.append((key, value))
        return old, value

    def change(self, engine: AutomationEngine, key: Key, value: Any) -> None:
        """A change from outside: apply it, then let the engine react (as the simulator does)."""
        old = self.values.get(key)
        self.values[key] = value
        if key in engine.watched:
            engine.on_change(key, old, value, self.read, self.write)


# ------------------------------------------------------------------------------ comparators


@pytest.mark.parametrize(
    ("op", "operand", "value", "expected"),
    [
        ("is", True, True, True),
        ("is", True, False, False),
        ("is", True, 1, False),  # booleans never equal numbers
        ("is", 1, True, False),
        ("is", 20, 20.0, True),
        ("is", "1", "1", True),
        ("is", "1", 1, False),
        ("isNot", True, False, True),
        ("isNot", True, True, False),
        ("isNot", "2", "1", True),
        ("isNot", True, None, False),  # unknown never satisfies
        ("is", True, None, False),
        ("greaterThan", 20, 20.5, True),
        ("greaterThan", 20, 20, False),
        ("greaterThanOrEqual", 20, 20, True),
        ("greaterThanOrEqual", 20, 19.99, False),
        ("lessThan", 20, 19, True),
        ("lessThan", 20, 20, False),
        ("lessThanOrEqual", 20, 20.0, True),
        ("lessThanOrEqual", 20, 21, False),
        ("greaterThan", 0, True, False),  # a boolean is not a number
        ("greaterThan", 0, "5", False),
        ("lessThan", 10, float("nan"), False),
        ("greaterThan", 0, None, False),
    ],
)
def test_compare(op: str, operand: Any, value: Any, expected: bool) -> None:
    assert compare(op, operand, value) is expected


def test_compare_rejects_unknown_operators() -> None:
    with pytest.raises(ValueError, match="comparator"):
        compare("between", 1, 2)


def test_same_value() -> None:
    assert same_value({"a": [1, 2]}, {"a": [1, 2]})
    assert not same_value([1], {"a": 1})
    assert not same_value(False, 0)
    assert same_value(3, 3.0)
    assert not same_value("3", 3)


def test_check_value_follows_execute_trait_rules() -> None:
    level = SimTrait("CurrentLevel", "NUMBER", "Uint8", 5, min=0, max=100, writable=True)
    assert check_value(level, 50.0) == (True, 50)
    assert isinstance(check_value(level, 50.0)[1], int)
    assert check_value(level, 50.5)[0] is False
    assert check_value(level, 101)[0] is False
    assert check_value(level, True)[0] is False
    mode = SimTrait("Mode", "ENUM", "Enum8", "1", enums=[("Heat", "1"), ("Cool", "2")])
    assert check_value(mode, "2") == (True, "2")
    assert check_value(mode, "Cool")[0] is False
    assert check_value(SimTrait("S", "STRING", "String", ""), "x") == (True, "x")
    assert check_value(SimTrait("O", "OTHER", "Json", {}), {"a": 1})[0] is True


# ------------------------------------------------------------------------------ validator


def test_validate_compiles_rules(catalog: StaticCatalog) -> None:
    doc = script(
        rule(
            "warm",
            [when(TEMP, "greaterThan", 25), when(S2, "is", True)],
            [write(S2, False, 3), write(LEVEL, 40.0)],
            conditions=[when(MODE, "isNot", "0")],
        ),
        rule("second", [when(LEVEL, "lessThanOrEqual", 10)], [write(MODE, "2")]),
        name="Cool down",
    )
    compiled = validate_script(doc, catalog)
    assert compiled.name == "Cool down"
    first, second = compiled.rules
    assert first.name == "warm"
    assert [(s.key, s.op, s.operand) for s in first.starters] == [
        (TEMP, "greaterThan", 25),
        (S2, "is", True),
    ]
    assert [(c.key, c.op) for c in first.conditions] == [(MODE, "isNot")]
    assert [(w.key, w.value) for w in first.writes] == [(S2, False), (S3, False), (LEVEL, 40)]
    assert isinstance(first.writes[2].value, int)  # normalised for the integer format
    assert second.conditions == ()


def _bad(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = copy.deepcopy(SIMPLE)
    mutate(doc)
    return doc


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        target: Any = doc
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return mutate


def _delete(path: list[Any]) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        target: Any = doc
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return mutate


A0 = ["automations", 0]
ST0 = [*A0, "starters", 0]
AC0 = [*A0, "actions", 0]
INVALID: list[tuple[Any, str]] = [
    ("not an object", "script: "),
    (_bad(_delete(["metadata"])), "script.metadata: "),
    (_bad(_set(["metadata", "name"], "  ")), "script.metadata.name: "),
    (_bad(_set(["metadata", "name"], 5)), "script.metadata.name: "),
    (_bad(_set(["metadata", "scope"], "all")), "script.metadata.scope: "),
    (_bad(_set(["metadata", "description"], 1)), "script.metadata.description: "),
    (_bad(_set(["automations"], [])), "script.automations: "),
    (_bad(_delete(["automations"])), "script.automations: "),
    (_bad(_set(["automations", 0], "x")), "script.automations[0]: "),
    (_bad(_delete([*A0, "name"])), "script.automations[0].name: "),
    (_bad(_set([*A0, "starters"], [])), "script.automations[0].starters: "),
    (_bad(_delete([*A0, "actions"])), "script.automations[0].actions: "),
    (_bad(_set([*A0, "conditions"], {})), "script.automations[0].conditions: "),
    (_bad(_set([*ST0, "type"], "time.schedule")), "script.automations[0].starters[0].type: "),
    (_bad(_delete([*ST0, "source"])), "script.automations[0].starters[0].source: "),
    (
        _bad(_set([*ST0, "source"], {"type": "data.ref", "from": "/metadata/scope"})),
        "script.automations[0].starters[0].source.type: data.ref sources are not supported",
    ),
    (
        _bad(_set([*ST0, "source", "type"], "device.event")),
        "script.automations[0].starters[0].source.type: ",
    ),
    (
        _bad(_set([*ST0, "source", "endpointId"], "2")),
        "script.automations[0].starters[0].source.endpointId: ",
    ),
    (
        _bad(_set([*ST0, "source", "deviceId"], "lumi.nope")),
        "script.automations[0].starters[0].source.deviceId: device not found: lumi.nope",
    ),
    (
        _bad(_set([*ST0, "source", "endpointId"], 7)),
        f"script.automations[0].starters[0].source.traitCode: trait not found on {SWITCH} "
        "endpoint 7 (Output.OnOff)",
    ),
    (
        _bad(_set([*ST0, "source"], src((HUB, 0, "Diagnostics", "NetworkStatus")))),
        "script.automations[0].starters[0].source.traitCode: OTHER traits are not supported",
    ),
    (
        _bad(_delete([*ST0, "is"])),
        "script.automations[0].starters[0]: needs exactly one comparator",
    ),
    (
        _bad(_set([*ST0, "isNot"], False)),
        "script.automations[0].starters[0]: needs exactly one comparator",
    ),
    (_bad(_set([*ST0, "is"], 1)), "script.automations[0].starters[0].is: 1 does not fit"),
    (
        _bad(_set([*A0, "starters"], [{**when(S2, "greaterThan", 1)}])),
        "script.automations[0].starters[0].greaterThan: needs a NUMBER trait",
    ),
    (
        _bad(_set([*A0, "starters"], [when(TEMP, "lessThan", "20")])),
        "script.automations[0].starters[0].lessThan: ",
    ),
    (
        _bad(_set([*A0, "starters"], [when(MODE, "is", "Heat")])),
        "script.automations[0].starters[0].is: ",
    ),
    (
        _bad(_set([*A0, "conditions"], [when(S2, "is", "yes")])),
        "script.automations[0].conditions[0].is: ",
    ),
    (_bad(_set([*AC0, "type"], "scene.run")), "script.automations[0].actions[0].type: "),
    (_bad(_delete([*AC0, "value"])), "script.automations[0].actions[0].value: "),
    (_bad(_delete([*AC0, "traitCode"])), "script.automations[0].actions[0].traitCode: "),
    (_bad(_set([*AC0, "targets"], [])), "script.automations[0].actions[0].targets: "),
    (
        _bad(_set([*AC0, "targets", 0, "endpointIds"], [])),
        "script.automations[0].actions[0].targets[0].endpointIds: ",
    ),
    (
        _bad(_set([*AC0, "targets", 0, "endpointIds"], [True])),
        "script.automations[0].actions[0].targets[0].endpointIds: ",
    ),
    (
        _bad(_set([*AC0, "targets", 0, "deviceId"], "lumi.x")),
        "script.automations[0].actions[0].targets[0].deviceId: device not found: lumi.x",
    ),
    (
        _bad(_set([*AC0, "targets", 0, "endpointIds"], [3, 2, 1])),
        f"script.automations[0].actions[0].traitCode: trait not found on {SWITCH} endpoint 1 "
        "(Output.OnOff)",
    ),
    (
        _bad(_set([*A0, "actions"], [write((LOCK, 1, "DoorLock", "LockState"), "1")])),
        f"script.automations[0].actions[0].traitCode: trait is not writable on {LOCK} endpoint 1 "
        "(DoorLock.LockState)",
    ),
    (
        _bad(_set([*AC0, "value"], "false")),
        'script.automations[0].actions[0].value: "false" is illegal for the BOOLEAN trait '
        f"on {SWITCH} endpoint 3 (Output.OnOff)",
    ),
    (
        _bad(_set([*A0, "actions"], [write(S3, True), write(LEVEL, 101)])),
        "script.automations[0].actions[1].value: 101 is illegal",
    ),
]


@pytest.mark.parametrize(("doc", "message"), INVALID)
def test_validate_rejects_with_the_json_path(
    catalog: StaticCatalog, doc: Any, message: str
) -> None:
    with pytest.raises(ScriptError) as info:
        validate_script(doc, catalog)
    assert str(info.value).startswith(message), str(info.value)
    assert info.value.code == 400
    assert info.value.message == f"{info.value.path}: {info.value.reason}"


def test_validate_the_documented_example(catalog: StaticCatalog) -> None:
    """protocols.md §1.5's script, with the sample home's ids."""
    doc = {
        "metadata": {"name": "Switch-Controlled Lighting", "description": "...", "scope": []},
        "automations": [
            {
                "name": "Switch Turns On Light",
                "starters": [
                    {
                        "type": "property.event",
                        "source": {
                            "type": "device.property",
                            "deviceId": SWITCH,
                            "endpointId": 2,
                            "functionCode": "Output",
                            "traitCode": "OnOff",
                        },
                        "is": True,
                    }
                ],
                "actions": [
                    {
                        "type": "device.trait.write",
                        "functionCode": "Output",
                        "traitCode": "OnOff",
                        "targets": [{"deviceId": LIGHT, "endpointIds": [1]}],
                        "value": True,
                    }
                ],
            }
        ],
    }
    compiled = validate_script(doc, catalog)
    assert compiled.rules[0].writes[0].key == (LIGHT, 1, "Output", "OnOff")


# ------------------------------------------------------------------------------ store + API


def _clock() -> Callable[[], int]:
    ticks = iter(range(1000, 10**6, 10))
    return lambda: next(ticks)


def test_store_create_update_delete(catalog: StaticCatalog) -> None:
    engine = AutomationEngine(catalog, clock=_clock())
    created = engine.api_create({"script": SIMPLE})
    auto_id = created["automationId"]
    assert auto_id.startswith("L.")
    auto = engine.get(auto_id)
    assert (auto.name, auto.enabled, auto.create_time, auto.update_time) == (
        "Test",
        True,
        1000,
        1000,
    )
    assert S2 in engine.watched

    second_doc = {**SIMPLE, "metadata": {"name": "Two"}}
    second = engine.api_create({"script": second_doc, "enabled": False})["automationId"]
    assert second != auto_id
    listing = engine.api_list(None)
    assert listing["totalCount"] == 2
    assert [e["name"] for e in listing["data"]] == ["Test", "Two"]
    assert listing["data"][1] == {
        "automationId": second,
        "name": "Two",
        "enabled": False,
        "createTime": 1010,
        "updateTime": 1010,
    }
    assert engine.api_list({"pageNum": 2, "pageSize": 1})["data"][0]["automationId"] == second

    assert engine.api_update({"automationId": auto_id, "name": "Renamed"}) == {
        "automationId": auto_id
    }
    details = engine.api_details({"automationId": auto_id})
    assert details["name"] == "Renamed"
    assert details["script"]["metadata"]["name"] == "Renamed"
    assert details["updateTime"] == 1020
    assert details["createTime"] == 1000

    engine.api_update({"automationId": auto_id, "enabled": False})
    assert S2 not in engine.watched
    new_script = script(rule("x", [when(LEVEL, "greaterThan", 50)], [write(S2, True)]), name="New")
    engine.api_update({"automationId": auto_id, "script": new_script, "enabled": True})
    auto = engine.get(auto_id)
    assert (auto.name, auto.enabled) == ("New", True)
    assert set(engine.watched) == {LEVEL}
    assert engine.api_details({"automationId": auto_id})["script"] == new_script

    # The stored script is a copy: mutating the caller's object changes nothing.
    new_script["metadata"]["name"] = "mutated"
    assert engine.get(auto_id).script["metadata"]["name"] == "New"

    with pytest.raises(AutomationNotFound) as info:
        engine.api_delete({"automationIds": [auto_id, "L.nope"]})
    assert (info.value.code, info.value.message) == (1201, "automation not exist: L.nope")
    assert len(engine.automations) == 2  # all or nothing
    assert engine.api_delete({"automationIds": [auto_id], "automationId": second}) == {
        "deleted": [auto_id, second]
    }
    assert engine.automations == {}
    assert engine.watched == {}
    with pytest.raises(AutomationNotFound):
        engine.api_details({"automationId": auto_id})
    with pytest.raises(AutomationNotFound):
        engine.api_update({"automationId": auto_id, "enabled": True})


@pytest.mark.parametrize(
    ("method", "data", "field"),
    [
        ("api_create", [], "data"),
        ("api_create", {}, "data.script"),
        ("api_create", {"script": SIMPLE, "enabled": "yes"}, "data.enabled"),
        ("api_create", {"script": "{}"}, "script"),
        ("api_update", {"name": "x"}, "data.automationId"),
        ("api_update", {"automationId": "L.1"}, "at least one of script, name, enabled"),
        ("api_update", {"automationId": "L.1", "name": ""}, "data.name"),
        ("api_update", {"automationId": "L.1", "enabled": 1}, "data.enabled"),
        ("api_update", {"automationId": "L.1", "script": {}}, "script.metadata"),
        ("api_list", [], "data"),
        ("api_list", {"pageNum": 0}, "data.pageNum"),
        ("api_list", {"pageSize": 201}, "data.pageSize"),
        ("api_details", {}, "data.automationId"),
        ("api_details", "L.1", "data"),
        ("api_delete", {}, "data.automationIds"),
        ("api_delete", {"automationIds": []}, "data.automationIds"),
        ("api_delete", {"automationIds": [1]}, "data.automationIds"),
        ("api_delete", {"automationId": 5}, "data.automationId"),
    ],
)
def test_api_bad_data(catalog: StaticCatalog, method: str, data: Any, field: str) -> None:
    engine = AutomationEngine(catalog)
    with pytest.raises(BadRequest) as info:
        getattr(engine, method)(data)
    assert info.value.code == 400
    assert field in info.value.message


def test_update_checks_everything_before_changing(catalog: StaticCatalog) -> None:
    engine = AutomationEngine(catalog)
    auto_id = engine.create(SIMPLE).automation_id
    bad = script(rule("r", [when(S2, "is", True)], [write(S3, "on")]))
    with pytest.raises(ScriptError):
        engine.api_update({"automationId": auto_id, "script": bad, "enabled": False})
    assert engine.get(auto_id).enabled is True


# ------------------------------------------------------------------------------ running


def _engine(catalog: StaticCatalog, *scripts: dict[str, Any]) -> AutomationEngine:
    engine = AutomationEngine(catalog)
    for doc in scripts:
        engine.create(doc)
    return engine


def test_fires_on_the_edge_only(catalog: StaticCatalog) -> None:
    engine = _engine(catalog, SIMPLE)
    hub = FakeHub({S2: False, S3: True})
    hub.change(engine, S2, True)
    assert hub.writes == [(S3, False)]
    assert engine.runs == 1
    hub.values[S3] = True
    hub.change(engine, S2, True)  # still true: no edge
    assert engine.runs == 1
    hub.change(engine, S2, False)
    hub.change(engine, S2, True)
    assert engine.runs == 2
    assert hub.writes == [(S3, False), (S3, False)]


def test_unknown_previous_value_counts_as_false(catalog: StaticCatalog) -> None:
    engine = _engine(catalog, SIMPLE)
    hub = FakeHub({S2: None})
    hub.change(engine, S2, True)
    assert engine.runs == 1


def test_numeric_threshold_crossing(catalog: StaticCatalog) -> None:
    doc = script(rule("hot", [when(TEMP, "greaterThanOrEqual", 25)], [write(S2, True)]))
    engine = _engine(catalog, doc)
    hub = FakeHub({TEMP: 20.0, S2: False})
    for value in (24.9, 25, 26, 24, 30):
        hub.change(engine, TEMP, value)
    assert engine.runs == 2  # at 25 and again at 30 after dropping below


def test_conditions_must_hold(catalog: StaticCatalog) -> None:
    doc = script(
        rule(
            "r",
            [when(S2, "is", True)],
            [write(LEVEL, 10)],
            conditions=[when(MODE, "is", "1"), when(TEMP, "lessThan", 22)],
        )
    )
    engine = _engine(catalog, doc)
    hub = FakeHub({S2: False, MODE: "2", TEMP: 20.0, LEVEL: 80})
    hub.change(engine, S2, True)
    assert hub.writes == []
    hub.values[MODE] = "1"
    hub.change(engine, S2, False)
    hub.change(engine, S2, True)
    assert hub.writes == [(LEVEL, 10)]
    hub.values[TEMP] = 23.0
    hub.change(engine, S2, False)
    hub.change(engine, S2, True)
    assert len(hub.writes) == 1
    del hub.values[TEMP]  # unknown: the condition does not hold
    hub.change(engine, S2, False)
    hub.change(engine, S2, True)
    assert len(hub.writes) == 1


def test_disabled_automations_do_not_fire(catalog: StaticCatalog) -> None:
    engine = AutomationEngine(catalog)
    auto_id = engine.create(SIMPLE, enabled=False).automation_id
    hub = FakeHub({S2: False})
    hub.change(engine, S2, True)
    assert (engine.runs, hub.writes) == (0, [])
    engine.update(auto_id, enabled=True)
    hub.change(engine, S2, False)
    hub.change(engine, S2, True)
    assert engine.runs == 1


def test_a_rule_fires_once_per_change_and_starters_are_alternatives(
    catalog: StaticCatalog,
) -> None:
    doc = script(
        rule(
            "r",
            [when(TEMP, "greaterThan", 20), when(TEMP, "greaterThan", 10), when(S2, "is", True)],
            [write(S3, True)],
        )
    )
    engine = _engine(catalog, doc)
    hub = FakeHub({TEMP: 5.0, S2: False})
    hub.change(engine, TEMP, 25.0)  # two starters become true together: one run
    assert engine.runs == 1
    hub.change(engine, S2, True)  # another starter
    assert engine.runs == 2


def test_cascade_follows_writes_breadth_first(catalog: StaticCatalog) -> None:
    doc = script(
        rule("a", [when(S2, "is", True)], [write(S3, True), write(LEVEL, 5)]),
        rule("b", [when(S3, "is", True)], [write(MODE, "3")]),
        rule("c", [when(LEVEL, "lessThan", 10)], [write(MODE, "4")]),
    )
    engine = _engine(catalog, doc)
    hub = FakeHub({S2: False, S3: False, LEVEL: 50, MODE: "1"})
    hub.change(engine, S2, True)
    assert hub.writes == [(S3, True), (LEVEL, 5), (MODE, "3"), (MODE, "4")]
    assert engine.runs == 3


def test_loop_guard_stops_deep_cascades(catalog: StaticCatalog) -> None:
    flip = script(
        rule("on→off", [when(S2, "is", True)], [write(S2, False)]),
        rule("off→on", [when(S2, "is", False)], [write(S2, True)]),
    )
    engine = _engine(catalog, flip)
    hub = FakeHub({S2: False})
    hub.change(engine, S2, True)
    assert engine.runs == MAX_CASCADE_DEPTH
    assert engine.loops_stopped == 1
    assert len(hub.writes) == MAX_CASCADE_DEPTH
    assert hub.values[S2] is True  # 8 flips after the first change
    # The next change starts a fresh cascade.
    hub.change(engine, S2, False)
    assert engine.runs == 2 * MAX_CASCADE_DEPTH
    assert engine.loops_stopped == 2


def test_refused_writes_are_counted_and_do_not_cascade(catalog: StaticCatalog) -> None:
    doc = script(
        rule("a", [when(S2, "is", True)], [write(S3, True)]),
        rule("b", [when(S3, "is", True)], [write(LEVEL, 1)]),
    )
    engine = _engine(catalog, doc)
    hub = FakeHub({S2: False, S3: False})
    hub.refuse.add(S3)
    hub.change(engine, S2, True)
    assert (engine.runs, engine.write_failures, hub.writes) == (1, 1, [])


def test_reentrant_changes_are_queued(catalog: StaticCatalog) -> None:
    engine = _engine(catalog, SIMPLE, script(rule("b", [when(LEVEL, "is", 1)], [write(MODE, "2")])))
    hub = FakeHub({S2: False, LEVEL: 0})

    def writer(key: Key, value: Any) -> tuple[Any, Any] | None:
        result = hub.write(key, value)
        hub.change(engine, LEVEL, 1)  # a change reported while the engine is running
        return result

    engine.on_change(S2, False, True, hub.read, writer)
    assert hub.writes == [(S3, False), (MODE, "2")]


# ------------------------------------------------------------------------------ capabilities


def test_capabilities_roles_and_shape() -> None:
    devices = sample_home()
    data = capabilities(devices)
    by_id = {d["deviceId"]: d for d in data["devices"]}
    switch = by_id[SWITCH]
    assert switch["deviceName"] == "Living Room Wall Switch"
    names = {e["endpointId"]: e["endpointName"] for e in switch["endpoints"]}
    assert names == {0: "Root", 1: "Public", 2: "Switch 2", 3: "Switch 3"}
    ep2 = next(e for e in switch["endpoints"] if e["endpointId"] == 2)
    assert ep2["properties"] == [
        {
            "functionCode": "Output",
            "functionName": "Output",
            "traitCode": "OnOff",
            "traitName": "On Off",
            "valueType": "boolean",
            "semanticRole": ["starter", "condition", "action"],
        }
    ]
    lock_props = {p["traitCode"]: p for e in by_id[LOCK]["endpoints"] for p in e["properties"]}
    assert lock_props["LockState"]["valueType"] == "enum"
    assert lock_props["LockState"]["semanticRole"] == ["starter", "condition"]
    hub_props = [p["traitCode"] for e in by_id[HUB]["endpoints"] for p in e["properties"]]
    assert "NetworkStatus" not in hub_props  # OTHER
    assert "FirmwareRevision" in hub_props
    value_types = {
        p["valueType"] for d in data["devices"] for e in d["endpoints"] for p in e["properties"]
    }
    assert value_types == {"boolean", "number", "string", "enum"}
    assert [d["deviceId"] for d in data["devices"]] == [d.device_id for d in devices]


def test_every_listed_property_validates_in_its_roles(catalog: StaticCatalog) -> None:
    """What capabilities offers, the validator accepts (in the offered roles)."""
    for dev in capabilities(sample_home())["devices"]:
        for ep in dev["endpoints"]:
            for prop in ep["properties"]:
                key = (dev["deviceId"], ep["endpointId"], prop["functionCode"], prop["traitCode"])
                tr = catalog.trait(key)
                assert tr is not None
                sample = {"boolean": True, "string": "x", "number": tr.min or 0}.get(
                    prop["valueType"], tr.enums[0][1] if tr.enums else ""
                )
                rules = []
                if "starter" in prop["semanticRole"]:
                    rules.append(rule("s", [when(key, "is", sample)], [write(S2, True)]))
                if "condition" in prop["semanticRole"]:
                    rules.append(
                        rule(
                            "c",
                            [when(S3, "is", True)],
                            [write(S2, True)],
                            [when(key, "is", sample)],
                        )
                    )
                if "action" in prop["semanticRole"]:
                    rules.append(rule("a", [when(S3, "is", True)], [write(key, sample)]))
                validate_script(script(*rules), catalog)


def test_comparator_list_is_the_documented_one() -> None:
    assert COMPARATORS == (
        "is",
        "isNot",
        "greaterThan",
        "greaterThanOrEqual",
        "lessThan",
        "lessThanOrEqual",
    )


# ------------------------------------------------------------------------------ history


def test_series_orders_and_bounds_samples() -> None:
    series = TraitSeries(capacity=5)
    for t in (10, 20, 30):
        series.add(t, t)
    series.add(15, "late")
    series.add(20, "same time, after")
    assert series.samples() == [
        (10, 10),
        (15, "late"),
        (20, 20),
        (20, "same time, after"),
        (30, 30),
    ]
    for t in range(40, 200, 10):
        series.add(t, t)
    assert len(series) == 5
    assert [t for t, _ in series.samples()] == [150, 160, 170, 180, 190]


def test_series_pages() -> None:
    series = TraitSeries()
    for t in range(1, 11):
        series.add(t * 100, t)
    assert series.page(200, 700, 1, 4, descending=True) == (
        6,
        [(700, 7), (600, 6), (500, 5), (400, 4)],
    )
    assert series.page(200, 700, 2, 4, descending=True) == (6, [(300, 3), (200, 2)])
    assert series.page(200, 700, 3, 4, descending=True) == (6, [])
    assert series.page(200, 700, 2, 4, descending=False) == (6, [(600, 6), (700, 7)])
    assert series.page(150, 199, 1, 4, descending=False) == (0, [])
    assert series.page(0, 10**13, 1, 200, descending=False)[0] == 10


def test_history_store_and_response() -> None:
    store = HistoryStore(capacity=3)
    key = (SWITCH, 2, "Output", "OnOff")
    assert store.get(key) is None
    series = store.open(key, 5, False)
    assert store.open(key, 99, True) is series  # seeded once
    series.add(6, True)
    query = HistoryQuery(*key, start_time=0, end_time=10)
    assert history_response(query, series) == {
        "totalCount": 2,
        "pageNum": 1,
        "pageSize": 100,
        "data": [{"value": True, "time": 6}, {"value": False, "time": 5}],
    }
    store.drop(key)
    assert store.get(key) is None
    with pytest.raises(ValueError, match="capacity"):
        HistoryStore(0)


def test_parse_history_query() -> None:
    base = {
        "deviceId": SWITCH,
        "endpointId": 2,
        "functionCode": "Output",
        "traitCode": "OnOff",
        "startTime": 1,
        "endTime": 2,
    }
    query = parse_history_query(base)
    assert (query.page_num, query.page_size, query.descending) == (1, 100, True)
    assert query.key == (SWITCH, 2, "Output", "OnOff")
    query = parse_history_query({**base, "orderBy": "time asc", "pageNum": 3, "pageSize": 200})
    assert (query.page_num, query.page_size, query.descending) == (3, 200, False)
    for bad, field in [
        ([], "data"),
        ({**base, "deviceId": None}, "data.deviceId"),
        ({**base, "endpointId": True}, "data.endpointId"),
        ({**base, "startTime": "1"}, "data.startTime"),
        ({**base, "endTime": 1.5}, "data.endTime"),
        ({**base, "startTime": 3}, "data.startTime must not be after data.endTime"),
        ({**base, "pageNum": 0}, "data.pageNum"),
        ({**base, "pageSize": 0}, "data.pageSize"),
        ({**base, "pageSize": 201}, "data.pageSize"),
        ({**base, "orderBy": "value asc"}, "data.orderBy"),
    ]:
        with pytest.raises(ValueError, match="^" + field.replace(".", r"\.")):
            parse_history_query(bad)
