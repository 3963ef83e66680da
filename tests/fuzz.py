"""Random MQTT commands for the bridge: /set payloads, device documents and management requests,
valid and invalid mixed (for the bounded fault test and the soak benchmark)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

from bridge.simulators.sample_home import SimDevice

_WORDS = ["ON", "off", "toggle", "1", "0", "true", "null", "NaN", "-1e999", "Heat", "[auto]",
          "", " ", "{", "}", '"', "\x00", "\u202e", "🙂", "1.5", "+3", "0x10", "9" * 40]


def _value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(9 if depth < 3 else 6)
    if pick == 0:
        return rng.choice([True, False, None])
    if pick == 1:
        return rng.choice([0, 1, -1, 2**63, -(2**63), rng.randint(-10**6, 10**6)])
    if pick == 2:
        return rng.choice([0.5, -0.0, 1e308, rng.uniform(-1000, 1000)])
    if pick == 3:
        return rng.choice(_WORDS)
    if pick == 4:
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(0, 40)))
    if pick == 5:
        return {"value": _value(rng, depth + 1)}
    if pick == 6:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    if pick == 7:
        return {rng.choice(["1", "0", "x", "value", ""]): _value(rng, depth + 1)}
    return {str(rng.randrange(3)): {rng.choice(["Output", "Thermostat", "?"]): {
        rng.choice(["OnOff", "TargetTemperature", "x"]): _value(rng, depth + 1)}}}


def _payload(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
    if kind == 1:
        depth = rng.choice([10, 100, 5000])
        return ("[" * depth + "]" * depth).encode()
    if kind == 2:
        return rng.choice(_WORDS).encode()
    text = json.dumps(_value(rng), allow_nan=True)
    return text.encode()


def commands(devices: list[SimDevice], topic_of: dict[str, str], seed: int
             ) -> Iterator[tuple[str, bytes]]:
    """Endless ``(topic, payload)`` pairs; ``topic_of`` maps device ids to their topic level."""
    rng = random.Random(seed)
    traits = [(topic_of.get(d.device_id, d.device_id), ep, fn, t.code)
              for d in devices for ep, fn, t in d.iter_traits()]
    requests = ["devices", "device", "device/rename", "history", "health_check", "options",
                "automation/list", "automation/create", "nonsense", "studio/x"]
    while True:
        kind = rng.randrange(10)
        if kind < 6:
            device, ep, fn, code = rng.choice(traits)
            suffix = rng.choice(["set", "set", "set", "get"])
            yield f"aqara/{device}/{ep}/{fn}/{code}/{suffix}", _payload(rng)
        elif kind < 8:
            device = rng.choice(traits)[0]
            yield f"aqara/{device}/set", _payload(rng)
        else:
            # never a restart: it would end the run being tested
            topic = f"aqara/bridge/request/{rng.choice(requests)}"
            if rng.random() < 0.3:
                yield topic, _payload(rng)
                continue
            body = _value(rng)
            if rng.random() < 0.5:
                body = {rng.choice(["device", "page", "name", "script", "log_level"]): body}
            yield topic, json.dumps(body).encode()
