"""Devices that fire momentary events, as the Aqara hubs describe and push them (INFERRED).

No Aqara document we could read names the traits of a button press; these devices speak the
variant the bridge's Aqara backends expect from Aqara's Matter-derived trait model (see the
README, "Buttons, cubes and other momentary events"):

* a button is an endpoint (types ``GenericSwitch``) with a function ``Switch`` whose traits are
  Matter's Switch cluster events: ``MultiPressComplete`` (NUMBER, the presses counted, ``max`` =
  the most it counts), ``LongPress`` and ``LongRelease`` (BOOLEAN, pushed as ``true``) and
  ``InitialPress``/``ShortRelease`` (pushed too, before the MultiPressComplete of the same press);
* a cube's gestures are ``Cube.Gesture`` and a vibration sensor's alarms
  ``Vibration.VibrationEvent``, ENUM traits whose values are the gesture names.

Every event trait is ``readable: false, subscribable: true``: it has no value to read, only
pushes. :func:`press_values` says which trait values one press pushes, for every simulator that
speaks this trait model.
"""

from __future__ import annotations

from bridge.simulators.sample_home import (
    SimDevice,
    SimEndpoint,
    SimFunction,
    SimTrait,
    _battery,
    _root,
    button_endpoint,
)

GESTURES = ("shake", "flip90", "flip180", "rotate_left", "rotate_right", "slide", "tap", "fall",
            "wakeup")
VIBRATIONS = ("vibration", "tilt", "drop")
PRESS_COUNTS = {"single": 1, "double": 2, "triple": 3}
PRESS_EVERY = 20
"""Random changes (``--rate``) press a random button (or fire a gesture) once every this many."""


def _gesture_endpoint(function_code: str, trait_code: str, names: tuple[str, ...],
                      types: list[str]) -> SimEndpoint:
    trait = SimTrait(trait_code, "ENUM", "Enum8", None, readable=False,
                     enums=[(name.replace("_", " ").title(), name) for name in names])
    return SimEndpoint(1, types, [SimFunction(function_code, [trait])])


def mini_switch(device_id: str, name: str, *, create_time: int) -> SimDevice:
    """A wireless mini switch: one button (single, double, hold, release)."""
    return SimDevice(device_id, name, "lumi.remote.b1acn02", ["Button"],
                     [_root("0.0.0_0021", True, _battery(90)), button_endpoint(1)],
                     True, create_time)


def wall_remote(device_id: str, name: str, *, create_time: int) -> SimDevice:
    """A two-button wireless wall remote (each button: single, double, triple, hold, release)."""
    return SimDevice(device_id, name, "lumi.remote.b286acn03", ["Button"],
                     [_root("0.0.0_0025", True, _battery(77)), button_endpoint(1, 3),
                      button_endpoint(2, 3)], True, create_time)


def cube(device_id: str, name: str, *, create_time: int) -> SimDevice:
    """A cube: shake, flip, rotate, slide, tap, fall, wake up."""
    return SimDevice(device_id, name, "lumi.remote.cagl02", ["Button"],
                     [_root("0.0.0_0030", True, _battery(64)),
                      _gesture_endpoint("Cube", "Gesture", GESTURES, ["GenericSwitch"])],
                     True, create_time)


def vibration_sensor(device_id: str, name: str, *, create_time: int) -> SimDevice:
    """A vibration sensor: vibration, tilt, drop."""
    return SimDevice(device_id, name, "lumi.vibration.agl01", ["VibrationSensor"],
                     [_root("0.0.0_0019", True, _battery(58)),
                      _gesture_endpoint("Vibration", "VibrationEvent", VIBRATIONS,
                                        ["VibrationSensor"])],
                     True, create_time)


def event_devices() -> list[SimDevice]:
    """A mini switch, a two-button wall remote, a cube and a vibration sensor."""
    t0 = 1_735_689_600_000
    return [
        mini_switch("lumi.158d0009e1a001", "Desk Mini Switch", create_time=t0 + 1),
        wall_remote("lumi.158d0009e1a002", "Hall Remote", create_time=t0 + 2),
        cube("lumi.158d0009e1a003", "Living Room Cube", create_time=t0 + 3),
        vibration_sensor("lumi.158d0009e1a004", "Mailbox Vibration", create_time=t0 + 4),
    ]


def press_values(device: SimDevice, endpoint_id: int,
                 event: str) -> list[tuple[str, str, object]]:
    """The ``(function, trait, value)`` pushes of one event on that endpoint, in order.

    ``event`` is ``single``/``double``/``triple``, ``hold``, ``release`` for a button (a short
    press pushes InitialPress and ShortRelease first, as a Matter switch reports them), a gesture
    name for a cube or a vibration sensor. Raises ValueError when the endpoint cannot fire it.
    """
    endpoint = next((e for e in device.endpoints if e.endpoint_id == endpoint_id), None)
    functions = {f.code: f for f in endpoint.functions} if endpoint is not None else {}
    switch = functions.get("Switch")
    if switch is not None:
        most = next((t.max for t in switch.traits if t.code == "MultiPressComplete"), None) or 2
        if event in PRESS_COUNTS and PRESS_COUNTS[event] <= most:
            return [("Switch", "InitialPress", True), ("Switch", "ShortRelease", True),
                    ("Switch", "MultiPressComplete", PRESS_COUNTS[event])]
        if event == "hold":
            return [("Switch", "InitialPress", True), ("Switch", "LongPress", True)]
        if event == "release":
            return [("Switch", "LongRelease", True)]
    for function in functions.values():
        for trait in function.traits:
            if trait.type == "ENUM" and not trait.readable and any(
                    value == event for _, value in trait.enums or []):
                return [(function.code, trait.code, event)]
    raise ValueError(f"{device.device_id} endpoint {endpoint_id} cannot fire {event!r}")


def event_choices(device: SimDevice) -> list[tuple[int, str]]:
    """Every ``(endpoint_id, event)`` the device can fire (for random presses)."""
    choices: list[tuple[int, str]] = []
    for endpoint in device.endpoints:
        for function in endpoint.functions:
            if function.code == "Switch":
                most = next((int(t.max) for t in function.traits
                             if t.code == "MultiPressComplete" and t.max), 2)
                choices += [(endpoint.endpoint_id, e) for e, n in PRESS_COUNTS.items()
                            if n <= most]
                choices += [(endpoint.endpoint_id, "hold"), (endpoint.endpoint_id, "release")]
            else:
                choices += [(endpoint.endpoint_id, value) for t in function.traits
                            if t.type == "ENUM" and not t.readable for _, value in t.enums or []]
    return choices
