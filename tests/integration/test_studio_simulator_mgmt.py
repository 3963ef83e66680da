"""The Studio simulator's history and script-automation requests over real sockets."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bridge.simulators.sample_home import now_ms, sample_home
from bridge.simulators.studio import StudioSimulator
from tests import studio_client
from tests.studio_client import NO_DATA, Client

pytestmark = pytest.mark.integration

TOKEN = "sim-mgmt-token"
SWITCH = "lumi1.54ef448a0b73"  # double rocker, eps 2 and 3 Output.OnOff (writable)
LIGHT = "lumi1.54ef44d1e6a0"  # ep 1 Output.OnOff (on), LevelControl.CurrentLevel 80
THERMO = "lumi1.54ef448cc210"  # ep 1 Thermostat.* and TemperatureMeasurement.CurrentTemperature
LOCK = "aqara.lock.7f3e9a01c2"
T0 = 1_700_000_000_000

Key = tuple[str, int, str, str]
S2: Key = (SWITCH, 2, "Output", "OnOff")
S3: Key = (SWITCH, 3, "Output", "OnOff")
LIGHT_ON: Key = (LIGHT, 1, "Output", "OnOff")
LEVEL: Key = (LIGHT, 1, "LevelControl", "CurrentLevel")
TEMP: Key = (THERMO, 1, "TemperatureMeasurement", "CurrentTemperature")
MODE: Key = (THERMO, 1, "Thermostat", "HeaterCoolerMode")


@pytest.fixture
async def sim() -> AsyncIterator[StudioSimulator]:
    s = StudioSimulator(TOKEN, sample_home())
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def connect(sim: StudioSimulator) -> contextlib.AbstractAsyncContextManager[Client]:
    return studio_client.connect(sim, f"Bearer {TOKEN}")


async def http_request(sim: StudioSimulator, rtype: str, data: Any) -> dict[str, Any]:
    body = {"type": rtype, "version": "v1", "msgId": "h-1", "data": data}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            sim.api_endpoint, json=body, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as resp,
    ):
        assert resp.status == 200
        return dict(json.loads(await resp.read()))


def addr(key: Key) -> dict[str, Any]:
    return {"deviceId": key[0], "endpointId": key[1], "functionCode": key[2], "traitCode": key[3]}


def hist(key: Key, start: int = 0, end: int | None = None, **extra: Any) -> dict[str, Any]:
    return {**addr(key), "startTime": start, "endTime": now_ms() + 60_000 if end is None else end,
            **extra}  # fmt: skip


def when(key: Key, op: str, operand: Any) -> dict[str, Any]:
    return {
        "type": "property.event",
        "source": {"type": "device.property", **addr(key)},
        op: operand,
    }


def write(key: Key, value: Any) -> dict[str, Any]:
    return {
        "type": "device.trait.write",
        "functionCode": key[2],
        "traitCode": key[3],
        "targets": [{"deviceId": key[0], "endpointIds": [key[1]]}],
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


def script(*rules: dict[str, Any], name: str = "Test automation") -> dict[str, Any]:
    return {"metadata": {"name": name, "description": "", "scope": []}, "automations": list(rules)}


SWITCH_TURNS_OFF_LIGHT = script(
    rule("Switch turns the light off", [when(S2, "is", True)], [write(LIGHT_ON, False)])
)


async def create(client: Client, doc: dict[str, Any], enabled: bool | None = None) -> str:
    data: dict[str, Any] = {"script": doc}
    if enabled is not None:
        data["enabled"] = enabled
    reply = await client.ok(
        "CreateScriptAutomationRequest", data, response_type="CreateScriptLinkageResponse"
    )
    assert set(reply) == {"automationId"}
    automation_id = reply["automationId"]
    assert isinstance(automation_id, str)
    return automation_id


# ------------------------------------------------------------------------------------ history


async def test_history_records_changes_from_every_source(sim: StudioSimulator) -> None:
    seed_time = sim.history(*S2)[0][0]
    assert seed_time == sim.get_device(SWITCH).create_time  # known since the device joined
    sim.set_value(*S2, True)
    async with connect(sim) as client:
        item = {**addr(S2), "value": False}
        assert await client.ok("ExecuteTraitRequest", [item]) == []
        await create(client, script(rule("r", [when(S3, "is", False)], [write(S2, True)])))
        sim.set_value(*S3, False)  # automation writes S2 = True

        page = await client.ok("QueryDeviceHistoryDataRequest", hist(S2))
        assert set(page) == {"totalCount", "pageNum", "pageSize", "data"}
        assert (page["totalCount"], page["pageNum"], page["pageSize"]) == (4, 1, 100)
        assert [s["value"] for s in page["data"]] == [True, False, True, False]  # newest first
        times = [s["time"] for s in page["data"]]
        assert times == sorted(times, reverse=True)
        assert times[-1] == seed_time
        assert all(set(s) == {"value", "time"} for s in page["data"])

        asc = await client.ok("QueryDeviceHistoryDataRequest", hist(S2, orderBy="time asc"))
        assert asc["data"] == list(reversed(page["data"]))
        desc = await client.ok("QueryDeviceHistoryDataRequest", hist(S2, orderBy="time desc"))
        assert desc["data"] == page["data"]

        # A trait that never changed has its initial value.
        never = await client.ok("QueryDeviceHistoryDataRequest", hist(MODE))
        assert [s["value"] for s in never["data"]] == ["1"]
    assert [v for _, v in sim.history(*S2)] == [False, True, False, True]


async def test_history_injected_samples_paging_and_time_range(sim: StudioSimulator) -> None:
    for i in range(25):
        sim.record_history_at(*TEMP, 15.0 + i, T0 + i * 1000)
    sim.record_history_at(*TEMP, "out of order", T0 + 500)
    assert sim.get_value(*TEMP) == 20.8  # injection does not change the current value
    async with connect(sim) as client:
        window = hist(TEMP, T0 + 5000, T0 + 14_000, pageSize=4)  # samples 5..14 inclusive
        pages = [
            await client.ok("QueryDeviceHistoryDataRequest", {**window, "pageNum": n})
            for n in (1, 2, 3, 4)
        ]
        assert [p["totalCount"] for p in pages] == [10] * 4
        assert [p["pageNum"] for p in pages] == [1, 2, 3, 4]
        assert [[s["value"] for s in p["data"]] for p in pages] == [
            [29.0, 28.0, 27.0, 26.0],
            [25.0, 24.0, 23.0, 22.0],
            [21.0, 20.0],
            [],
        ]
        assert pages[0]["data"][0]["time"] == T0 + 14_000

        asc = await client.ok(
            "QueryDeviceHistoryDataRequest", {**window, "orderBy": "time asc", "pageNum": 3}
        )
        assert [s["value"] for s in asc["data"]] == [28.0, 29.0]

        early = await client.ok("QueryDeviceHistoryDataRequest", hist(TEMP, T0, T0 + 1000))
        assert [s["value"] for s in early["data"]] == [16.0, "out of order", 15.0]
        point = await client.ok("QueryDeviceHistoryDataRequest", hist(TEMP, T0 + 3000, T0 + 3000))
        assert point["data"] == [{"value": 18.0, "time": T0 + 3000}]
        empty = await client.ok("QueryDeviceHistoryDataRequest", hist(TEMP, 0, T0 - 1))
        assert (empty["totalCount"], empty["data"]) == (0, [])

        everything = await client.ok("QueryDeviceHistoryDataRequest", hist(TEMP, pageSize=200))
        assert everything["totalCount"] == 27  # 26 injected + the initial value
        assert everything["data"][0]["value"] == 20.8

    with pytest.raises(KeyError):
        sim.record_history_at(SWITCH, 9, "Output", "OnOff", True, T0)


async def test_history_is_bounded_per_trait() -> None:
    sim = StudioSimulator(TOKEN, sample_home(), history_capacity=5)
    await sim.start()
    try:
        for i in range(12):
            sim.set_value(*LEVEL, i)
        async with connect(sim) as client:
            page = await client.ok("QueryDeviceHistoryDataRequest", hist(LEVEL))
        assert page["totalCount"] == 5
        assert [s["value"] for s in page["data"]] == [11, 10, 9, 8, 7]
    finally:
        await sim.stop()


async def test_history_over_http(sim: StudioSimulator) -> None:
    sim.set_value(*LEVEL, 42)
    reply = await http_request(sim, "QueryDeviceHistoryDataRequest", hist(LEVEL, pageSize=1))
    assert (reply["type"], reply["msgId"], reply["code"]) == (
        "QueryDeviceHistoryDataResponse",
        "h-1",
        0,
    )
    assert reply["data"]["totalCount"] == 2
    assert [s["value"] for s in reply["data"]["data"]] == [42]


HISTORY_BAD_DATA: list[tuple[Any, str]] = [
    ([], "data"),
    (None, "data"),
    ({k: v for k, v in hist(S2).items() if k != "deviceId"}, "deviceId"),
    ({**hist(S2), "endpointId": "2"}, "endpointId"),
    ({k: v for k, v in hist(S2).items() if k != "functionCode"}, "functionCode"),
    ({k: v for k, v in hist(S2).items() if k != "traitCode"}, "traitCode"),
    ({k: v for k, v in hist(S2).items() if k != "startTime"}, "startTime"),
    ({**hist(S2), "endTime": "now"}, "endTime"),
    (hist(S2, 2000, 1000), "startTime"),
    ({**hist(S2), "pageNum": 0}, "pageNum"),
    ({**hist(S2), "pageSize": 0}, "pageSize"),
    ({**hist(S2), "pageSize": 201}, "pageSize"),
    ({**hist(S2), "orderBy": "createTime desc"}, "orderBy"),
]


@pytest.mark.parametrize(("data", "field"), HISTORY_BAD_DATA)
async def test_history_bad_data_answers_400(sim: StudioSimulator, data: Any, field: str) -> None:
    async with connect(sim) as client:
        reply = await client.request("QueryDeviceHistoryDataRequest", data)
    assert (reply["code"], reply["data"]) == (400, None)
    assert reply["message"].startswith("Invalid parameter: ")
    assert field in reply["message"]


async def test_history_unknown_device_trait_and_missing_data(sim: StudioSimulator) -> None:
    async with connect(sim) as client:
        reply = await client.request(
            "QueryDeviceHistoryDataRequest", hist(("lumi.nope", 1, "Output", "OnOff"))
        )
        assert (reply["code"], reply["message"], reply["data"]) == (
            2030,
            "device not found: lumi.nope",
            None,
        )
        reply = await client.request(
            "QueryDeviceHistoryDataRequest", hist((SWITCH, 2, "Output", "Nope"))
        )
        assert (reply["code"], reply["message"], reply["data"]) == (
            1531,
            f"trait not found: Output.Nope on {SWITCH} endpoint 2",
            None,
        )

        sim.remove_device(LIGHT)
        reply = await client.request("QueryDeviceHistoryDataRequest", hist(LEVEL))
        assert reply["code"] == 2030

        error = await client.send_raw(
            '{"type": "QueryDeviceHistoryDataRequest", "version": "v1", "msgId": "x"}'
        )
        assert (error["type"], error["msgId"], error["code"]) == ("ErrorMessage", "UNKNOWN", 1000)
        assert "data" in error["message"]


# ------------------------------------------------------------------------------------ capabilities


@pytest.mark.parametrize(
    ("rtype", "data"),
    [
        ("QueryAutomationCapabilitiesRequest", {}),
        ("QueryAutomationCapabilitiesRequest", NO_DATA),
        ("QueryDeviceSupportedScriptAutomationConfigRequest", ""),
        ("QueryDeviceSupportedScriptAutomationConfigRequest", {}),
    ],
)
async def test_capabilities(sim: StudioSimulator, rtype: str, data: Any) -> None:
    async with connect(sim) as client:
        caps = await client.ok(rtype, data)
    assert set(caps) == {"devices"}
    devices = caps["devices"]
    assert len(devices) == 24  # every sample device has some automation property
    for dev in devices:
        assert set(dev) == {"deviceId", "deviceName", "endpoints"}
        for ep in dev["endpoints"]:
            assert set(ep) == {"endpointName", "endpointId", "properties"}
            assert isinstance(ep["endpointId"], int)
            for prop in ep["properties"]:
                assert set(prop) == {
                    "functionCode",
                    "functionName",
                    "traitCode",
                    "traitName",
                    "valueType",
                    "semanticRole",
                }
                assert prop["valueType"] in ("boolean", "number", "string", "enum")
                assert prop["semanticRole"]
    props = {
        (d["deviceId"], e["endpointId"], p["functionCode"], p["traitCode"]): p
        for d in devices
        for e in d["endpoints"]
        for p in e["properties"]
    }
    assert props[S2]["semanticRole"] == ["starter", "condition", "action"]
    assert props[TEMP]["semanticRole"] == ["starter", "condition"]
    assert props[TEMP]["valueType"] == "number"
    assert props[MODE]["valueType"] == "enum"
    assert props[(LOCK, 1, "DoorLock", "LockState")]["semanticRole"] == ["starter", "condition"]


@pytest.mark.parametrize(
    "rtype",
    ["QueryAutomationCapabilitiesRequest", "QueryDeviceSupportedScriptAutomationConfigRequest"],
)
async def test_capabilities_bad_data(sim: StudioSimulator, rtype: str) -> None:
    async with connect(sim) as client:
        reply = await client.request(rtype, [1])
    assert (reply["code"], reply["data"]) == (400, None)
    assert "data" in reply["message"]


# ------------------------------------------------------------------------------------ CRUD


async def test_create_list_details_update_delete(sim: StudioSimulator) -> None:
    before = now_ms()
    async with connect(sim) as client:
        first = await create(client, SWITCH_TURNS_OFF_LIGHT)
        second_doc = script(
            rule("r", [when(TEMP, "greaterThan", 25)], [write(S3, True)]), name="Hot"
        )
        second = await create(client, second_doc, enabled=False)
        assert first != second

        listing = await client.ok("GetScriptAutomationListRequest", {})
        assert (listing["totalCount"], listing["pageNum"], listing["pageSize"]) == (2, 1, 100)
        assert [e["automationId"] for e in listing["data"]] == [first, second]
        entry = listing["data"][1]
        assert set(entry) == {"automationId", "name", "enabled", "createTime", "updateTime"}
        assert (entry["name"], entry["enabled"]) == ("Hot", False)
        assert before <= entry["createTime"] == entry["updateTime"] <= now_ms()
        assert (await client.ok("GetScriptAutomationListRequest"))["totalCount"] == 2
        page2 = await client.ok("GetScriptAutomationListRequest", {"pageNum": 2, "pageSize": 1})
        assert [e["automationId"] for e in page2["data"]] == [second]

        details = await client.ok("GetScriptAutomationDetailsRequest", {"automationId": first})
        assert set(details) == {
            "automationId",
            "name",
            "enabled",
            "createTime",
            "updateTime",
            "script",
        }
        assert details["script"] == SWITCH_TURNS_OFF_LIGHT
        assert (details["name"], details["enabled"]) == ("Test automation", True)

        # Update: name, then enabled, then the script.
        reply = await client.ok(
            "UpdateScriptAutomationRequest", {"automationId": first, "name": "Lights out"}
        )
        assert reply == {"automationId": first}
        details = await client.ok("GetScriptAutomationDetailsRequest", {"automationId": first})
        assert details["name"] == "Lights out"
        assert details["script"]["metadata"]["name"] == "Lights out"
        assert details["updateTime"] >= details["createTime"]

        await client.ok("UpdateScriptAutomationRequest", {"automationId": second, "enabled": True})
        new_doc = script(rule("cold", [when(TEMP, "lessThan", 5)], [write(MODE, "1")]), name="Cold")
        await client.ok(
            "UpdateScriptAutomationRequest", {"automationId": second, "script": new_doc}
        )
        details = await client.ok("GetScriptAutomationDetailsRequest", {"automationId": second})
        assert (details["name"], details["enabled"], details["script"]) == ("Cold", True, new_doc)
        assert [a.name for a in sim.automations.values()] == ["Lights out", "Cold"]

        reply = await client.ok("DeleteAutomationRequest", {"automationIds": [first]})
        assert reply == {"deleted": [first]}
        reply = await client.ok("DeleteAutomationRequest", {"automationId": second})
        assert reply == {"deleted": [second]}
        listing = await client.ok("GetScriptAutomationListRequest", {})
        assert (listing["totalCount"], listing["data"]) == (0, [])
    assert len(sim.automations) == 0


async def test_unknown_automation_ids_answer_1201(sim: StudioSimulator) -> None:
    async with connect(sim) as client:
        kept = await create(client, SWITCH_TURNS_OFF_LIGHT)
        for rtype, data in [
            ("GetScriptAutomationDetailsRequest", {"automationId": "L.404"}),
            ("UpdateScriptAutomationRequest", {"automationId": "L.404", "enabled": False}),
            ("DeleteAutomationRequest", {"automationIds": [kept, "L.404"]}),
            ("DeleteAutomationRequest", {"automationId": "L.404"}),
        ]:
            reply = await client.request(rtype, data)
            assert (reply["code"], reply["message"], reply["data"]) == (
                1201,
                "automation not exist: L.404",
                None,
            )
        assert kept in sim.automations  # the failed delete deleted nothing


AUTOMATION_BAD_DATA: list[tuple[str, Any, str]] = [
    ("CreateScriptAutomationRequest", None, "data"),
    ("CreateScriptAutomationRequest", {}, "data.script"),
    ("CreateScriptAutomationRequest", {"script": "{}"}, "script"),
    ("CreateScriptAutomationRequest", {"script": SWITCH_TURNS_OFF_LIGHT, "enabled": 1}, "enabled"),
    ("UpdateScriptAutomationRequest", {"enabled": True}, "automationId"),
    ("UpdateScriptAutomationRequest", {"automationId": "L.1"}, "script, name, enabled"),
    ("UpdateScriptAutomationRequest", {"automationId": "L.1", "name": 3}, "data.name"),
    ("GetScriptAutomationListRequest", {"pageSize": 0}, "pageSize"),
    ("GetScriptAutomationListRequest", {"pageNum": "1"}, "pageNum"),
    ("GetScriptAutomationListRequest", [], "data"),
    ("GetScriptAutomationDetailsRequest", {"automationId": 1}, "automationId"),
    ("DeleteAutomationRequest", {}, "automationIds"),
    ("DeleteAutomationRequest", {"automationIds": "L.1"}, "automationIds"),
]


@pytest.mark.parametrize(("rtype", "data", "field"), AUTOMATION_BAD_DATA)
async def test_automation_bad_data_answers_400(
    sim: StudioSimulator, rtype: str, data: Any, field: str
) -> None:
    response_type = "CreateScriptLinkageResponse" if rtype.startswith("Create") else None
    async with connect(sim) as client:
        reply = await client.request(rtype, data, response_type)
    assert (reply["code"], reply["data"]) == (400, None)
    assert reply["message"].startswith("Invalid parameter: ")
    assert field in reply["message"]
    assert len(sim.automations) == 0


@pytest.mark.parametrize(
    "rtype",
    [
        "CreateScriptAutomationRequest",
        "UpdateScriptAutomationRequest",
        "GetScriptAutomationDetailsRequest",
        "DeleteAutomationRequest",
    ],
)
async def test_automation_requests_without_data_fail_to_parse(
    sim: StudioSimulator, rtype: str
) -> None:
    async with connect(sim) as client:
        reply = await client.send_raw(json.dumps({"type": rtype, "version": "v1", "msgId": "z"}))
    assert (reply["type"], reply["msgId"], reply["code"]) == ("ErrorMessage", "UNKNOWN", 1000)
    assert reply["message"].startswith("Message parsing failed: ")


INVALID_SCRIPTS = [
    (script(), "script.automations: "),
    ({"automations": SWITCH_TURNS_OFF_LIGHT["automations"]}, "script.metadata: "),
    (
        script(rule("r", [when(S2, "is", True)], [write((SWITCH, 1, "Output", "OnOff"), True)])),
        f"script.automations[0].actions[0].traitCode: trait not found on {SWITCH} endpoint 1 "
        "(Output.OnOff)",
    ),
    (
        script(rule("r", [when(S2, "greaterThan", 1)], [write(S3, True)])),
        "script.automations[0].starters[0].greaterThan: needs a NUMBER trait",
    ),
    (
        script(rule("r", [when(S2, "is", True)], [write(LEVEL, 150)])),
        "script.automations[0].actions[0].value: 150 is illegal",
    ),
    (
        script(
            rule("ok", [when(S2, "is", True)], [write(S3, True)]),
            rule(
                "r",
                [{"type": "property.event", "source": {"type": "data.ref"}, "is": True}],
                [write(S3, True)],
            ),
        ),
        "script.automations[1].starters[0].source.type: data.ref sources are not supported",
    ),
    (
        script(rule("r", [when(S2, "is", True)], [write(S3, True)], [when(MODE, "is", 1)])),
        "script.automations[0].conditions[0].is: ",
    ),
]


@pytest.mark.parametrize(("doc", "prefix"), INVALID_SCRIPTS)
async def test_invalid_scripts_are_rejected_with_the_path(
    sim: StudioSimulator, doc: Any, prefix: str
) -> None:
    async with connect(sim) as client:
        reply = await client.request(
            "CreateScriptAutomationRequest", {"script": doc}, "CreateScriptLinkageResponse"
        )
        assert (reply["code"], reply["data"]) == (400, None)
        assert reply["message"].startswith("Invalid parameter: " + prefix), reply["message"]

        kept = await create(client, SWITCH_TURNS_OFF_LIGHT)
        reply = await client.request(
            "UpdateScriptAutomationRequest", {"automationId": kept, "script": doc, "name": "N"}
        )
        assert reply["code"] == 400
        assert prefix in reply["message"]
    assert sim.automations[kept].name == "Test automation"  # nothing changed
    assert len(sim.automations) == 1


async def test_automations_over_http(sim: StudioSimulator) -> None:
    reply = await http_request(
        sim, "CreateScriptAutomationRequest", {"script": SWITCH_TURNS_OFF_LIGHT}
    )
    assert (reply["type"], reply["code"]) == ("CreateScriptLinkageResponse", 0)
    listing = await http_request(sim, "GetScriptAutomationListRequest", {})
    assert listing["data"]["data"][0]["automationId"] == reply["data"]["automationId"]


# ------------------------------------------------------------------------------------ running


async def test_automation_fires_on_its_starter_and_pushes_the_action(sim: StudioSimulator) -> None:
    async with connect(sim) as client:
        await create(client, SWITCH_TURNS_OFF_LIGHT)
        await client.ok("SubscribeAllRequest")
        assert sim.get_value(*LIGHT_ON) is True

        sim.set_value(*S2, True)
        trigger, action = await client.push(), await client.push()
        assert trigger["data"] == {**addr(S2), "value": True, "time": trigger["data"]["time"]}
        assert action["type"] == "TraitValueUpdate"
        assert action["data"] == {**addr(LIGHT_ON), "value": False, "time": action["data"]["time"]}
        assert action["data"]["time"] >= trigger["data"]["time"]
        assert sim.get_value(*LIGHT_ON) is False
        assert sim.automation_runs == 1
        assert sim.history(*LIGHT_ON)[-1] == (action["data"]["time"], False)
        await client.no_more_pushes()


async def test_automation_fires_on_execute_trait_and_numeric_thresholds(
    sim: StudioSimulator,
) -> None:
    doc = script(
        rule("hot", [when(TEMP, "greaterThanOrEqual", 25)], [write(MODE, "2")]),
        rule("dim", [when(LEVEL, "lessThan", 20)], [write(S3, False)]),
    )
    async with connect(sim) as client:
        await create(client, doc)
        await client.ok(
            "SubscribeTraitValueRequest",
            [{**{k: v for k, v in addr(S3).items() if k != "traitCode"}, "traitCodes": ["OnOff"]}],
        )
        reply = await http_request(sim, "ExecuteTraitRequest", [{**addr(LEVEL), "value": 10}])
        assert (reply["code"], reply["data"]) == (0, [])
        push = await client.push()  # the automation's write, pushed to the S3 subscriber
        assert push["data"] == {**addr(S3), "value": False, "time": push["data"]["time"]}

    sim.set_value(*TEMP, 24.9)
    assert sim.get_value(*MODE) == "1"
    sim.set_value(*TEMP, 25)
    assert sim.get_value(*MODE) == "2"
    assert sim.automation_runs == 2


async def test_disabled_automation_does_not_fire(sim: StudioSimulator) -> None:
    async with connect(sim) as client:
        automation_id = await create(client, SWITCH_TURNS_OFF_LIGHT, enabled=False)
        await client.ok("SubscribeAllRequest")
        sim.set_value(*S2, True)
        assert (await client.push())["data"]["traitCode"] == "OnOff"
        await client.no_more_pushes()
        assert sim.get_value(*LIGHT_ON) is True
        assert sim.automation_runs == 0

        await client.ok(
            "UpdateScriptAutomationRequest", {"automationId": automation_id, "enabled": True}
        )
        sim.set_value(*S2, False)
        sim.set_value(*S2, True)
        assert sim.get_value(*LIGHT_ON) is False
        assert sim.automation_runs == 1

        await client.ok("DeleteAutomationRequest", {"automationIds": [automation_id]})
        sim.set_value(*LIGHT_ON, True)
        sim.set_value(*S2, False)
        sim.set_value(*S2, True)
        assert sim.get_value(*LIGHT_ON) is True
        assert sim.automation_runs == 1


async def test_automation_fires_only_on_the_edge(sim: StudioSimulator) -> None:
    async with connect(sim) as client:
        await create(client, SWITCH_TURNS_OFF_LIGHT)
        await client.ok("SubscribeAllRequest")
        sim.set_value(*S2, True)
        assert sim.automation_runs == 1
        sim.set_value(*LIGHT_ON, True)
        sim.set_value(*S2, True)  # already true: no edge
        assert sim.get_value(*LIGHT_ON) is True
        assert sim.automation_runs == 1
        pushes = [await client.push() for _ in range(4)]
        assert [(p["data"]["deviceId"], p["data"]["value"]) for p in pushes] == [
            (SWITCH, True),
            (LIGHT, False),
            (LIGHT, True),
            (SWITCH, True),
        ]
        await client.no_more_pushes()
        sim.set_value(*S2, False)
        sim.set_value(*S2, True)
        assert sim.get_value(*LIGHT_ON) is False
        assert sim.automation_runs == 2


async def test_automation_conditions_are_respected(sim: StudioSimulator) -> None:
    doc = script(
        rule(
            "only when heating and dim",
            [when(S2, "is", True)],
            [write(LIGHT_ON, False)],
            conditions=[when(MODE, "is", "1"), when(LEVEL, "lessThanOrEqual", 50)],
        )
    )
    async with connect(sim) as client:
        await create(client, doc)
    sim.set_value(*S2, True)  # level is 80: the condition fails
    assert (sim.get_value(*LIGHT_ON), sim.automation_runs) == (True, 0)
    sim.set_value(*LEVEL, 50)  # not a starter: nothing runs
    assert sim.automation_runs == 0
    sim.set_value(*S2, False)
    sim.set_value(*S2, True)
    assert (sim.get_value(*LIGHT_ON), sim.automation_runs) == (False, 1)
    sim.set_value(*LIGHT_ON, True)
    sim.set_value(*MODE, "2")
    sim.set_value(*S2, False)
    sim.set_value(*S2, True)
    assert (sim.get_value(*LIGHT_ON), sim.automation_runs) == (True, 1)


async def test_loop_guard_stops_a_flip_flop(sim: StudioSimulator) -> None:
    flip = script(
        rule("on then off", [when(S2, "is", True)], [write(S2, False)]),
        rule("off then on", [when(S2, "is", False)], [write(S2, True)]),
    )
    async with connect(sim) as client:
        await create(client, flip)
        await client.ok("SubscribeAllRequest")
        sim.set_value(*S2, True)
        assert sim.automation_runs == 8
        assert sim.automation_loops_stopped == 1
        pushes = [await client.push() for _ in range(9)]  # the change + 8 automation writes
        assert [p["data"]["value"] for p in pushes] == [True, False] * 4 + [True]
        await client.no_more_pushes()
    assert sim.get_value(*S2) is True
    assert len(sim.history(*S2)) == 10


async def test_automation_writes_to_offline_devices_fail(sim: StudioSimulator) -> None:
    async with connect(sim) as client:
        await create(client, SWITCH_TURNS_OFF_LIGHT)
    sim.set_online(LIGHT, False)
    sim.set_value(*S2, True)
    assert sim.get_value(*LIGHT_ON) is True
    assert (sim.automation_runs, sim.automation_write_failures) == (1, 1)
