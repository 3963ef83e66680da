"""Reading the Tuya message service's messages: the legacy protocols 4 and 20 and the IoT Core
protocols 1000 and 1001; what is not understood is logged once, by its keys only."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from bridge.backends.tuya.client import MESSAGE_ACTIONS, PushMessage, read_message, report_unknown

DEV = "bf3a5c0d9e8f7a6b5c4d3e"


def legacy(code: str, biz: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"devId": DEV, "productKey": "p", "bizCode": code, "bizData": biz or {}, "ts": 1}


def core(code: str, biz: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"bizCode": code, "bizData": {"devId": DEV, "productId": "p", **(biz or {})}, "ts": 1}


def test_a_legacy_status_report() -> None:
    data = {"dataId": "d1", "devId": DEV, "productKey": "p",
            "status": [{"code": "switch_1", "value": False, "t": 1628229842692, "1": "false"},
                       {"code": "cur_power", "value": 12}, {"value": "no code"}, "junk"]}
    assert read_message(4, data) == PushMessage(
        "status", DEV, {"switch_1": False, "cur_power": 12}, {"switch_1": 1628229842692}, "d1")


def test_a_device_property_message() -> None:
    data = core("devicePropertyMessage", {"dataId": "d2", "properties": [
        {"code": "switch_1", "value": True, "dpId": 1, "time": 1700000000001},
        {"code": "cur_power", "value": 15, "dpId": 19, "time": True}]})
    assert read_message(1000, data) == PushMessage(
        "status", DEV, {"switch_1": True, "cur_power": 15}, {"switch_1": 1700000000001}, "d2")
    query = core("deviceQueryPropertyMessage", {"properties": [{"code": "a", "value": 1}]})
    assert read_message(1000, query) == PushMessage("status", DEV, {"a": 1}, {}, None)


@pytest.mark.parametrize(("protocol", "data", "action"), [
    (20, legacy("online", {"time": 1}), "online"),
    (20, legacy("offline", {"time": 1}), "offline"),
    (20, legacy("bindUser", {"uid": "u"}), "resync"),
    (20, legacy("delete"), "resync"),
    (20, legacy("dpNameUpdate", {"dpId": 1, "name": "x"}), "resync"),
    (1001, core("deviceOnline", {"uid": "u", "time": 1}), "online"),
    (1001, core("deviceOffline", {"uid": "u", "time": 1}), "offline"),
    (1001, core("deviceBindSpace", {"uid": "u", "spaceId": "1"}), "resync"),
    (1001, core("deviceUnbindSpace", {"uid": "u", "spaceId": "1"}), "resync"),
    (1001, core("deviceTransfer"), "resync"),
])
def test_device_events(protocol: int, data: dict[str, Any], action: str) -> None:
    assert read_message(protocol, data) == PushMessage(action, DEV)


def test_renames_in_both_formats() -> None:
    assert read_message(20, legacy("nameUpdate", {"name": "Hall"})) == PushMessage(
        "rename", DEV, name="Hall")
    assert read_message(1001, core("deviceNameUpdate", {"name": "Hall"})) == PushMessage(
        "rename", DEV, name="Hall")
    assert read_message(1001, core("deviceNameUpdate")) is None  # no name: nothing to apply


@pytest.mark.parametrize(("protocol", "code"), [
    (20, "p2pSignal"), (1000, "deviceEventMessage"), (1000, "deviceActionResponseMessage"),
    (1001, "deviceFreeze"), (1001, "deviceUnFreeze")])
def test_known_kinds_without_state_are_ignored(protocol: int, code: str) -> None:
    assert read_message(protocol, {"bizCode": code, "bizData": {}}) == PushMessage("ignore")


def test_every_known_kind_is_read() -> None:
    for protocol, actions in MESSAGE_ACTIONS.items():
        for code in actions:
            data = core(code, {"name": "n", "properties": []})
            assert read_message(protocol, data) is not None, (protocol, code)


@pytest.mark.parametrize(("protocol", "data"), [
    (25, {"devId": DEV, "bizCode": "sceneExecute"}),  # a protocol not read
    (1002, core("deviceOtaProgress")),
    (None, {"devId": DEV, "status": []}),
    (1001, core("deviceSomethingNew")),  # a bizCode not read
    (20, legacy("devicePropertyMessage")),  # a bizCode of another protocol
    (1001, {"bizCode": "deviceOnline", "bizData": {"time": 1}}),  # no device
    (1001, {"bizCode": "deviceOnline", "bizData": "not an object", "ts": 1}),
    (1000, core("devicePropertyMessage", {"properties": {"code": "a"}})),  # not a list
    (4, {"devId": DEV}),  # no status
    (1001, {"bizCode": ["unhashable"], "bizData": {"devId": DEV}}),
])
def test_what_cannot_be_read(protocol: Any, data: dict[str, Any]) -> None:
    assert read_message(protocol, data) is None


def test_the_device_may_stand_at_either_level() -> None:
    top = {"devId": DEV, "bizCode": "deviceOffline", "bizData": {"time": 1}}
    assert read_message(1001, top) == PushMessage("offline", DEV)


def warnings(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.msg for r in caplog.records
            if r.levelno == logging.WARNING and isinstance(r.msg, dict)]


def test_what_is_not_understood_is_logged_once_by_its_keys(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.tuya")
    secret = "value-that-must-not-be-logged"
    data = {"bizCode": "deviceLogOnceTest", "ts": 1,
            "bizData": {"devId": secret, "token": secret, "name": secret}}
    assert report_unknown("tuya", 1001, data) is True
    data["bizData"] = {"devId": "another", "extra": 1}
    assert report_unknown("tuya", 1001, data) is False  # the same kind: once per process
    (entry,) = warnings(caplog)
    assert (entry["backend"], entry["protocol"], entry["biz_code"]) == (
        "tuya", 1001, "deviceLogOnceTest")
    assert entry["keys"] == ["bizCode", "bizData", "ts"]
    assert entry["biz_data_keys"] == ["devId", "name", "token"]
    assert secret not in str(entry)
    # another bizCode, or the same under another protocol, is another kind
    assert report_unknown("tuya", 1000, {"bizCode": "deviceLogOnceTest"}) is True
    assert report_unknown("tuya", 1001, {"bizCode": "deviceLogOnceTest2", "bizData": 3}) is True
    assert report_unknown("tuya", 7777, {"devId": secret}) is True
    assert report_unknown("tuya", 7777, {"devId": "x", "other": 1}) is False
    later = warnings(caplog)[1:]
    assert [(e["protocol"], e["biz_code"], e["biz_data_keys"]) for e in later] == [
        (1000, "deviceLogOnceTest", None), (1001, "deviceLogOnceTest2", None),
        (7777, None, None)]
    assert secret not in str(later)
