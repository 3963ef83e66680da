"""Device descriptions in every shape a broken hub could send: the parsers either describe the
device or raise SpecError (Aqara) / leave out what they cannot read (Tuya), nothing else."""

from __future__ import annotations

import json
import random
from typing import Any

from bridge.backends.aqara_spec import SpecError, parse_device
from bridge.backends.tuya.model import build_device, parse_spec, status_map

WEIRD: list[Any] = [None, "x", "", 0, -1, 1.5, 1e308, True, [], {}, [1], {"a": 1}, "NaN",
                    float("nan"), "1", 2**70]


def aqara_tree(rng: random.Random) -> Any:
    def pick() -> Any:
        return rng.choice(WEIRD)

    trait = {"traitCode": rng.choice(["OnOff", *WEIRD]), "value": pick(),
             "attribute": rng.choice([{"type": rng.choice(["NUMBER", "ENUM", *WEIRD]),
                                       "min": pick(), "max": pick(), "enums": pick(),
                                       "format": pick()}, pick()])}
    function = {"functionCode": rng.choice(["Output", *WEIRD]),
                "traits": rng.choice([[trait], pick()])}
    endpoint = {"endpointId": rng.choice([1, "1", *WEIRD]),
                "functions": rng.choice([[function], pick()])}
    return rng.choice([
        {"deviceId": rng.choice(["lumi.1", *WEIRD]), "name": pick(), "state": pick(),
         "deviceTypesList": pick(), "endpoints": rng.choice([[endpoint], pick()])},
        pick(),
    ])


def test_aqara_descriptions_parse_or_raise_spec_error() -> None:
    rng = random.Random(7)
    parsed = refused = 0
    for _ in range(5000):
        try:
            parse_device(aqara_tree(rng), "home")
            parsed += 1
        except SpecError:
            refused += 1
    assert parsed > 20
    assert refused > 100


def test_tuya_descriptions_never_raise() -> None:
    rng = random.Random(8)
    for _ in range(5000):
        values = {k: rng.choice(WEIRD) for k in rng.sample(
            ["min", "max", "scale", "step", "range", "unit", "maxlen"], 3)}
        kind = rng.choice(["Integer", "Enum", "Boolean", "String", "Json", "Bitmap", *WEIRD])
        entry = {"code": rng.choice(["switch_1", *WEIRD]), "type": kind,
                 "values": json.dumps(values) if rng.random() < 0.5 else values}
        spec = parse_spec(rng.choice([{"category": rng.choice(WEIRD), "status": [entry],
                                       "functions": [entry]}, rng.choice(WEIRD)]))
        info = {"id": rng.choice(["bf01", *WEIRD]), "name": rng.choice(WEIRD),
                "online": rng.choice(WEIRD),
                "status": rng.choice([[{"code": "switch_1", "value": rng.choice(WEIRD)}],
                                      rng.choice(WEIRD)])}
        device, _bad = build_device(info, spec, "tuya", status_map(info["status"]))
        assert device.endpoints
