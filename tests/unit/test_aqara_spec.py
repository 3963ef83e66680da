"""Parsing Aqara device trees (Studio and the Open API share them) into the model, tolerantly."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from bridge.backends.aqara_spec import (
    SpecError,
    first,
    parse_device,
    parse_online,
    parse_trait_spec,
)
from bridge.model import Device, EnumOption, TraitSpec, TraitType

# seed document 001 (spec.query.specdevice.config): metadata under "attribute", numbers as JSON
# numbers, values typed by the format (here a boolean as the string "1"), no device name.
SEED_001: dict[str, Any] = {
    "types": ["ContactSensor"],
    "endpoints": [
        {
            "functions": [
                {
                    "functionId": 128,
                    "traits": [
                        {
                            "traitId": 32901,
                            "attribute": {
                                "readable": True,
                                "format": "Bool",
                                "type": "BOOLEAN",
                                "subscribable": True,
                                "writable": False,
                            },
                            "time": 1762399511357,
                            "value": "1",
                            "traitCode": "Reachable",
                        }
                    ],
                    "functionCode": "BasicInformation",
                },
                {
                    "functionCode": "ContactSensor",
                    "traits": [
                        {
                            "traitCode": "ContactSensorState",
                            "attribute": {
                                "readable": True,
                                "type": "BOOLEAN",
                                "format": "Bool",
                                "enums": [
                                    {"key": "Closed", "value": "1"},
                                    {"key": "Open", "value": "0"},
                                ],
                            },
                            "value": False,
                        },
                    ],
                },
            ],
            "endpointId": 0,
            "endpointTypes": ["Root"],
        },
        {
            "endpointId": 1,
            "endpointTypes": ["ContactSensor"],
            "functions": [
                {
                    "functionCode": "PowerSource",
                    "traits": [
                        {
                            "traitCode": "BatPercentRemaining",
                            "attribute": {
                                "type": "NUMBER",
                                "format": "uint8",
                                "unit": "%",
                                "min": 0,
                                "max": 100,
                                "step": 1,
                                "readable": True,
                                "writable": False,
                                "subscribable": True,
                                "defaultValue": "100",
                            },
                            "value": 87,
                            "time": 1762399511000,
                        },
                    ],
                },
            ],
        },
    ],
    "model": "aqara.matter.4447_8194",
    "deviceId": "matt.2990fb3413ed87c9b7370000",
}

# the third-party Studio client's GetDevicesResponse: metadata under "parameter", a name,
# deviceTypesList, numbers as strings, an enum.
THIRD_PARTY: dict[str, Any] = {
    "deviceId": "lumi1.54ef448cc210",
    "name": "Hallway Thermostat",
    "deviceTypesList": ["Thermostat"],
    "state": 1,
    "endpoints": [
        {
            "endpointId": "1",
            "functions": [
                {
                    "functionCode": "Thermostat",
                    "traits": [
                        {
                            "traitCode": "SetTemperature",
                            "parameter": {
                                "type": "NUMBER",
                                "format": "float",
                                "unit": "°C",
                                "min": "5",
                                "max": "30",
                                "step": "0.5",
                                "readable": "true",
                                "writable": "true",
                                "subscribable": "1",
                            },
                            "value": "21.5",
                            "time": "1762399511357",
                        },
                        {
                            "traitCode": "HeaterCoolerMode",
                            "parameter": {
                                "type": "ENUM",
                                "readable": True,
                                "writable": True,
                                "enums": [
                                    {"key": "Auto", "value": "0"},
                                    {"name": "Heat", "value": 1},
                                    "not an option",
                                ],
                            },
                            "value": 1,
                        },
                    ],
                },
            ],
        },
    ],
}


# ---- parse_trait_spec ---------------------------------------------------------------------------


def test_attribute_shape_of_seed_001() -> None:
    spec = parse_trait_spec(SEED_001["endpoints"][0]["functions"][0]["traits"][0]["attribute"])
    assert spec == TraitSpec(
        TraitType.BOOLEAN, format="Bool", readable=True, writable=False, subscribable=True
    )


def test_number_spec_with_everything() -> None:
    spec = parse_trait_spec(
        {
            "type": "NUMBER",
            "format": "uint8",
            "unit": "%",
            "min": 0,
            "max": 100,
            "step": 1,
            "readable": True,
            "writable": True,
            "subscribable": False,
            "defaultValue": 50,
        }
    )
    assert spec == TraitSpec(
        TraitType.NUMBER,
        format="uint8",
        unit="%",
        min=0,
        max=100,
        step=1,
        readable=True,
        writable=True,
        subscribable=False,
        default="50",
    )
    assert spec.is_integer


def test_numbers_and_flags_given_as_strings() -> None:
    spec = parse_trait_spec(
        {
            "type": "number",
            "min": "-40.5",
            "max": "125",
            "step": "0.1",
            "readable": "1",
            "writable": "TRUE",
            "subscribable": "no",
        }
    )
    assert spec.type is TraitType.NUMBER
    assert spec.min == -40.5
    assert spec.max == 125
    assert isinstance(spec.max, int)
    assert spec.step == 0.1
    assert (spec.readable, spec.writable, spec.subscribable) == (True, True, False)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", None),
        ("abc", None),
        (True, None),
        (None, None),
        ([1], None),
        ("1e3", 1000),
        (2.5, 2.5),
        ("-0", 0),
        (7, 7),
    ],
)
def test_unusable_bounds_are_dropped(raw: Any, expected: float | None) -> None:
    assert parse_trait_spec({"type": "NUMBER", "min": raw}).min == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        ("true", True),
        ("yes", True),
        ("1", True),
        (" True ", True),
        ("false", False),
        ("0", False),
        ("", False),
        ("nope", False),
    ],
)
def test_flags(raw: Any, expected: bool) -> None:
    assert parse_trait_spec({"writable": raw}).writable is expected
    assert parse_trait_spec({"readable": raw}).readable is expected


def test_missing_fields_take_the_defaults() -> None:
    assert parse_trait_spec({}) == TraitSpec(
        TraitType.OTHER,
        format="",
        unit=None,
        min=None,
        max=None,
        step=None,
        enums=(),
        readable=True,
        writable=False,
        subscribable=True,
        default=None,
    )
    nulls = {
        "type": None,
        "format": None,
        "unit": None,
        "min": None,
        "enums": None,
        "readable": None,
        "writable": None,
        "subscribable": None,
        "defaultValue": None,
    }
    assert parse_trait_spec(nulls) == parse_trait_spec({})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("BOOLEAN", TraitType.BOOLEAN),
        ("boolean", TraitType.BOOLEAN),
        ("Number", TraitType.NUMBER),
        ("STRING", TraitType.STRING),
        ("ENUM", TraitType.ENUM),
        ("OTHER", TraitType.OTHER),
        ("STRUCT", TraitType.OTHER),
        ("", TraitType.OTHER),
        (5, TraitType.OTHER),
    ],
)
def test_types(raw: Any, expected: TraitType) -> None:
    assert parse_trait_spec({"type": raw}).type is expected


def test_enums_keep_order_accept_name_and_skip_garbage() -> None:
    spec = parse_trait_spec(
        {
            "type": "ENUM",
            "enums": [
                {"key": "Auto", "value": "0"},
                {"name": "Heat", "value": 1},
                "junk",
                None,
                {"key": "Cool", "value": "2", "extra": True},
                {"value": "3"},
            ],
        }
    )
    assert spec.enums == (
        EnumOption("Auto", "0"),
        EnumOption("Heat", "1"),
        EnumOption("Cool", "2"),
        EnumOption("", "3"),
    )


def test_empty_unit_is_none() -> None:
    assert parse_trait_spec({"type": "NUMBER", "unit": ""}).unit is None
    assert parse_trait_spec({"type": "NUMBER", "unit": "W"}).unit == "W"


# ---- parse_online -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1, True),
        (0, False),
        (True, True),
        (False, False),
        ("1", True),
        ("0", False),
        ("online", True),
        ("ONLINE", True),
        (" online ", True),
        ("offline", False),
        ("true", True),
        ("false", False),
        ("", False),
    ],
)
def test_parse_online(raw: Any, expected: bool) -> None:
    assert parse_online(raw) is expected


def test_parse_online_default() -> None:
    assert parse_online(None) is True
    assert parse_online(None, default=False) is False


# ---- parse_device -------------------------------------------------------------------------------


def test_seed_001_device() -> None:
    device = parse_device(SEED_001, "cloud")
    assert device.id == "matt.2990fb3413ed87c9b7370000"
    assert device.name == device.id  # no name in this shape
    assert device.backend == "cloud"
    assert device.model == "aqara.matter.4447_8194"
    assert device.types == ("ContactSensor",)
    assert device.online is True
    assert list(device.endpoints) == [0, 1]
    assert device.endpoints[0].types == ("Root",)
    assert list(device.endpoints[0].functions) == ["BasicInformation", "ContactSensor"]
    reachable = device.trait(0, "BasicInformation", "Reachable")
    assert reachable is not None
    assert reachable.value is True  # "1" for a Bool trait
    assert reachable.time == 1762399511357
    contact = device.trait(0, "ContactSensor", "ContactSensorState")
    assert contact is not None
    assert contact.value is False
    assert contact.time is None
    assert contact.spec.enums == (EnumOption("Closed", "1"), EnumOption("Open", "0"))
    battery = device.trait(1, "PowerSource", "BatPercentRemaining")
    assert battery is not None
    assert battery.value == 87
    assert battery.spec.default == "100"
    assert [a.path() for a, _ in device.iter_traits()] == [
        "0.BasicInformation.Reachable",
        "0.ContactSensor.ContactSensorState",
        "1.PowerSource.BatPercentRemaining",
    ]


def test_devices_of_one_model_share_specs_codes_and_type_lists() -> None:
    first_copy = parse_device(copy.deepcopy(SEED_001), "cloud")
    second = copy.deepcopy(SEED_001)
    second["deviceId"] = "matt.other"
    other = parse_device(second, "cloud")
    for (address, trait), (_, twin) in zip(first_copy.iter_traits(), other.iter_traits(),
                                           strict=True):
        assert trait.spec is twin.spec, address
        assert trait.code is twin.code
    assert first_copy.types is other.types
    assert first_copy.endpoints[0].types is other.endpoints[0].types
    # equal specs are shared; a different one is not
    assert parse_trait_spec({"type": "NUMBER", "min": 1}) is parse_trait_spec(
        {"type": "NUMBER", "min": "1"})
    assert parse_trait_spec({"type": "NUMBER", "min": 2}) != parse_trait_spec(
        {"type": "NUMBER", "min": 1})


def test_third_party_parameter_shape() -> None:
    device = parse_device(THIRD_PARTY, "home")
    assert device.name == "Hallway Thermostat"
    assert device.types == ("Thermostat",)
    assert device.online is True
    assert list(device.endpoints) == [1]  # "1" as a string
    setpoint = device.trait(1, "Thermostat", "SetTemperature")
    assert setpoint is not None
    assert setpoint.spec == TraitSpec(
        TraitType.NUMBER,
        format="float",
        unit="°C",
        min=5,
        max=30,
        step=0.5,
        readable=True,
        writable=True,
        subscribable=True,
    )
    assert setpoint.value == 21.5
    assert isinstance(setpoint.value, float)
    assert setpoint.time == 1762399511357
    mode = device.trait(1, "Thermostat", "HeaterCoolerMode")
    assert mode is not None
    assert mode.spec.enums == (EnumOption("Auto", "0"), EnumOption("Heat", "1"))
    assert mode.value == "1"  # enum values are wire strings


@pytest.mark.parametrize("key", ["deviceId", "did", "subjectId"])
def test_device_id_keys(key: str) -> None:
    device = parse_device({key: "lumi.abc", "endpoints": []}, "b")
    assert device.id == "lumi.abc"
    assert device.endpoints == {}


def test_device_id_precedence_and_null_keys() -> None:
    assert parse_device({"deviceId": "a", "did": "b", "subjectId": "c"}, "b").id == "a"
    assert parse_device({"deviceId": None, "did": "b"}, "b").id == "b"


def test_names_types_and_online_alternatives() -> None:
    device = parse_device(
        {"did": "x", "deviceName": "Lamp", "types": ["Light", 3], "online": "offline"}, "b"
    )
    assert (device.name, device.types, device.online) == ("Lamp", ("Light", "3"), False)
    assert parse_device({"did": "x", "name": "A", "deviceName": "B"}, "b").name == "A"
    assert parse_device({"did": "x", "state": 0}, "b").online is False
    assert parse_device({"did": "x", "state": 0, "online": 1}, "b").online is False
    assert parse_device({"did": "x"}, "b").online is True


def test_minimal_device_has_defaults() -> None:
    device = parse_device({"deviceId": "lumi.min"}, "home")
    assert device == Device(
        id="lumi.min",
        name="lumi.min",
        backend="home",
        model="",
        types=(),
        online=True,
        endpoints={},
    )


def test_alternative_codes_and_missing_parts() -> None:
    device = parse_device(
        {
            "did": "x",
            "endpoints": [
                {
                    "id": 2,
                    "types": ["Switch"],
                    "functions": [
                        {
                            "code": "Output",
                            "traits": [
                                {"code": "OnOff", "attribute": {"type": "BOOLEAN"}, "value": "true"}
                            ],
                        },
                        {"functionCode": "Empty"},
                    ],
                },
                {"endpointId": 3},
            ],
        },
        "b",
    )
    assert device.endpoints[2].types == ("Switch",)
    onoff = device.trait(2, "Output", "OnOff")
    assert onoff is not None
    assert onoff.value is True
    assert device.endpoints[2].functions["Empty"].traits == {}
    assert device.endpoints[3].functions == {}


def test_trait_without_metadata_is_other_and_keeps_the_value() -> None:
    device = parse_device(
        {
            "did": "x",
            "endpoints": [
                {
                    "endpointId": 1,
                    "functions": [
                        {
                            "functionCode": "F",
                            "traits": [
                                {"traitCode": "T", "value": {"a": 1}},
                                {"traitCode": "J", "value": '{"b": 2}'},
                            ],
                        }
                    ],
                }
            ],
        },
        "b",
    )
    t = device.trait(1, "F", "T")
    j = device.trait(1, "F", "J")
    assert t is not None
    assert j is not None
    assert t.spec.type is TraitType.OTHER
    assert t.spec.readable is True
    assert t.value == {"a": 1}
    assert j.value == {"b": 2}


def test_a_function_listed_twice_is_merged() -> None:
    device = parse_device(
        {
            "did": "x",
            "endpoints": [
                {
                    "endpointId": 1,
                    "functions": [
                        {"functionCode": "F", "traits": [{"traitCode": "A", "value": 1}]},
                        {"functionCode": "F", "traits": [{"traitCode": "B", "value": 2}]},
                    ],
                }
            ],
        },
        "b",
    )
    assert list(device.endpoints[1].functions["F"].traits) == ["A", "B"]


@pytest.mark.parametrize(
    ("attribute", "raw"),
    [
        ({"type": "NUMBER"}, "warm"),
        ({"type": "NUMBER"}, ""),
        ({"type": "BOOLEAN"}, "maybe"),
        ({"type": "BOOLEAN"}, 2),
        ({"type": "NUMBER"}, True),
        ({"type": "ENUM"}, 1.5),
        ({"type": "STRING"}, {"a": 1}),
    ],
)
def test_unusable_values_become_unknown(attribute: dict[str, Any], raw: Any) -> None:
    device = parse_device(
        {
            "did": "x",
            "endpoints": [
                {
                    "endpointId": 1,
                    "functions": [
                        {
                            "functionCode": "F",
                            "traits": [
                                {
                                    "traitCode": "T",
                                    "attribute": attribute,
                                    "value": raw,
                                    "time": "soon",
                                }
                            ],
                        }
                    ],
                }
            ],
        },
        "b",
    )
    trait = device.trait(1, "F", "T")
    assert trait is not None
    assert trait.value is None
    assert trait.time is None


@pytest.mark.parametrize(
    ("attribute", "raw", "expected"),
    [
        ({"type": "NUMBER", "format": "int32"}, "42", 42),
        ({"type": "NUMBER", "format": "float"}, "42", 42.0),
        ({"type": "NUMBER", "format": "float"}, 21, 21.0),
        ({"type": "NUMBER", "format": "uint8"}, 3.0, 3),
        ({"type": "BOOLEAN"}, 0, False),
        ({"type": "BOOLEAN"}, "ON", True),
        ({"type": "ENUM"}, 2, "2"),
        ({"type": "ENUM", "enums": [{"key": "Low", "value": "1"}]}, "Low", "1"),
        ({"type": "STRING"}, 12, "12"),
        ({"type": "STRING"}, "", ""),
    ],
)
def test_values_are_converted_by_their_spec(
    attribute: dict[str, Any], raw: Any, expected: Any
) -> None:
    device = parse_device(
        {
            "did": "x",
            "endpoints": [
                {
                    "endpointId": 1,
                    "functions": [
                        {
                            "functionCode": "F",
                            "traits": [{"traitCode": "T", "attribute": attribute, "value": raw}],
                        }
                    ],
                }
            ],
        },
        "b",
    )
    trait = device.trait(1, "F", "T")
    assert trait is not None
    assert trait.value == expected
    assert type(trait.value) is type(expected)


def test_parsing_does_not_modify_the_input() -> None:
    tree = copy.deepcopy(THIRD_PARTY)
    parse_device(tree, "b")
    assert tree == THIRD_PARTY


# ---- bad trees ----------------------------------------------------------------------------------


def _with_endpoints(endpoints: Any) -> dict[str, Any]:
    return {"deviceId": "lumi.bad", "endpoints": endpoints}


def _with_functions(functions: Any) -> dict[str, Any]:
    return _with_endpoints([{"endpointId": 1, "functions": functions}])


def _with_traits(traits: Any) -> dict[str, Any]:
    return _with_functions([{"functionCode": "F", "traits": traits}])


SPEC_ERRORS = [
    pytest.param({}, "without a deviceId", id="no-id"),
    pytest.param({"deviceId": ""}, "without a deviceId", id="empty-id"),
    pytest.param({"deviceId": 12345}, "without a deviceId", id="numeric-id"),
    pytest.param({"did": ["a"]}, "without a deviceId", id="list-id"),
    pytest.param(_with_endpoints([{"functions": []}]), "endpointId", id="no-endpoint-id"),
    pytest.param(_with_endpoints([{"endpointId": "one"}]), "endpointId", id="text-endpoint-id"),
    pytest.param(_with_endpoints([{"endpointId": 1.5}]), "endpointId", id="float-endpoint-id"),
    pytest.param(_with_endpoints([{"endpointId": True}]), "endpointId", id="bool-endpoint-id"),
    pytest.param(_with_functions([{"traits": []}]), "functionCode", id="no-function-code"),
    pytest.param(_with_functions([{"functionCode": 7}]), "functionCode", id="int-function-code"),
    pytest.param(_with_traits([{"value": 1}]), "traitCode", id="no-trait-code"),
    pytest.param(_with_traits([{"traitCode": None, "code": 3}]), "traitCode", id="int-trait-code"),
]


@pytest.mark.parametrize(("tree", "message"), SPEC_ERRORS)
def test_bad_trees_raise_spec_error(tree: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_device(tree, "b")


def test_spec_error_names_the_device() -> None:
    with pytest.raises(SpecError, match=re.escape("lumi.bad")):
        parse_device(_with_traits([{"value": 1}]), "b")


def test_spec_error_is_a_value_error() -> None:
    assert issubclass(SpecError, ValueError)


MALFORMED = [
    pytest.param(_with_endpoints({"1": {}}), id="endpoints-object"),
    pytest.param(_with_endpoints(["ep"]), id="endpoint-string"),
    pytest.param(_with_endpoints(5), id="endpoints-number"),
    pytest.param(_with_functions([None]), id="function-null"),
    pytest.param(_with_functions("Output"), id="functions-string"),
    pytest.param(_with_traits(["OnOff"]), id="trait-string"),
    pytest.param(
        _with_traits([{"traitCode": "T", "attribute": "BOOLEAN"}]),
        id="attribute-string",
    ),
    pytest.param({"deviceId": "lumi.bad", "deviceTypesList": 5}, id="types-number"),
    pytest.param({"deviceId": "lumi.bad", "endpoints": None}, id="endpoints-null"),
    pytest.param(_with_endpoints([]), id="endpoints-empty"),
    pytest.param(_with_functions(None), id="functions-null"),
    pytest.param(
        _with_traits([{"traitCode": "T", "attribute": {"enums": {"a": 1}}}]), id="enums-object"
    ),
    pytest.param(_with_traits([{"traitCode": "T", "attribute": None}]), id="attribute-null"),
]


@pytest.mark.parametrize("tree", MALFORMED)
def test_malformed_trees_parse_or_raise_spec_error_only(tree: dict[str, Any]) -> None:
    """Hub data is untrusted: the only exception a tree may cause is SpecError."""
    try:
        device = parse_device(tree, "b")
    except SpecError:
        return
    assert device.id == "lumi.bad"


# ---- first --------------------------------------------------------------------------------------


def test_first() -> None:
    assert first({"a": None, "b": 0, "c": 1}, "a", "b", "c") == 0
    assert first({"a": None}, "a", "z", default="d") == "d"
    assert first({}, "a") is None
