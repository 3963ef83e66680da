"""The hub-side device representation of the Studio simulator, a sample home and a generator.

These dataclasses are the *hub's* own representation (Device → Endpoint → Function → Trait as in
seed document 001 and protocols.md §1/§2.10); they deliberately share no code with
``bridge.model`` so that a bug in the bridge cannot cancel out against the same bug here.

Values are stored the way Aqara Studio puts them on the wire (typed JSON): ``bool`` for BOOLEAN,
``int``/``float`` for NUMBER, ``str`` for STRING, the enum entry's ``value`` string for ENUM and a
``dict``/``list`` for OTHER.

Trait, function and device-type codes follow protocols.md §2.10 where it names them; the types,
formats, units and ranges are INFERRED (no official trait table was readable).
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field
from typing import Any, Literal

TraitKind = Literal["BOOLEAN", "NUMBER", "STRING", "ENUM", "OTHER"]
"""The trait attribute ``type`` (seed document 001)."""

SimEnum = tuple[str, str]
"""One enum entry as ``(key, value)``: ``key`` is the label, ``value`` the wire string."""


def now_ms() -> int:
    """The current UTC time in milliseconds (the unit of Studio's ``time``/``createTime``)."""
    return int(time.time() * 1000)


@dataclass(slots=True)
class SimTrait:
    """One trait: its attribute (spec) and its current value and update time."""

    code: str
    type: TraitKind
    format: str
    value: Any
    readable: bool = True
    writable: bool = False
    subscribable: bool = True
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    enums: list[SimEnum] | None = None
    default: str | None = None
    time: int | None = None

    def clone(self) -> SimTrait:
        """An independent copy (mutable values such as OTHER objects are copied too)."""
        value = self.value
        if isinstance(value, dict | list):
            value = copy.deepcopy(value)
        return SimTrait(
            self.code, self.type, self.format, value, self.readable, self.writable,
            self.subscribable, self.unit, self.min, self.max, self.step,
            None if self.enums is None else list(self.enums), self.default, self.time,
        )  # fmt: skip


@dataclass(slots=True)
class SimFunction:
    """A function (``functionCode``) grouping traits on an endpoint."""

    code: str
    traits: list[SimTrait]

    def clone(self) -> SimFunction:
        """An independent copy."""
        return SimFunction(self.code, [t.clone() for t in self.traits])


@dataclass(slots=True)
class SimEndpoint:
    """An endpoint: ``endpoint_id`` 0 is the Root endpoint."""

    endpoint_id: int
    types: list[str]
    functions: list[SimFunction]

    def clone(self) -> SimEndpoint:
        """An independent copy."""
        return SimEndpoint(self.endpoint_id, list(self.types), [f.clone() for f in self.functions])


@dataclass(slots=True)
class SimDevice:
    """A device as the hub knows it."""

    device_id: str
    name: str
    model: str
    types: list[str]
    endpoints: list[SimEndpoint]
    online: bool = True
    create_time: int = field(default_factory=now_ms)
    space: str | None = None
    """The room (Studio "space") the device is placed in, if any."""

    def clone(self) -> SimDevice:
        """An independent copy (the simulator keeps its own copies of the devices it is given)."""
        return SimDevice(
            self.device_id,
            self.name,
            self.model,
            list(self.types),
            [e.clone() for e in self.endpoints],
            self.online,
            self.create_time,
            self.space,
        )

    def iter_traits(self) -> list[tuple[int, str, SimTrait]]:
        """Every trait as ``(endpoint_id, function_code, trait)``."""
        return [
            (ep.endpoint_id, fn.code, tr)
            for ep in self.endpoints
            for fn in ep.functions
            for tr in fn.traits
        ]

    def find(self, endpoint_id: int, function_code: str, trait_code: str) -> SimTrait | None:
        """The trait at that address, or None."""
        for ep in self.endpoints:
            if ep.endpoint_id != endpoint_id:
                continue
            for fn in ep.functions:
                if fn.code != function_code:
                    continue
                for tr in fn.traits:
                    if tr.code == trait_code:
                        return tr
        return None


# --------------------------------------------------------------------------------------------
# Trait builders


def _bool(code: str, value: bool, *, writable: bool = False) -> SimTrait:
    return SimTrait(code, "BOOLEAN", "Bool", value, writable=writable)


def _num(
    code: str,
    value: float,
    *,
    fmt: str = "Float",
    unit: str | None = None,
    lo: float | None = None,
    hi: float | None = None,
    step: float | None = None,
    writable: bool = False,
    default: str | None = None,
) -> SimTrait:
    return SimTrait(
        code,
        "NUMBER",
        fmt,
        value,
        writable=writable,
        unit=unit,
        min=lo,
        max=hi,
        step=step,
        default=default,
    )


def _enum(code: str, value: str, enums: list[SimEnum], *, writable: bool = False) -> SimTrait:
    return SimTrait(code, "ENUM", "Enum8", value, writable=writable, enums=list(enums))


def _fn(code: str, *traits: SimTrait) -> SimFunction:
    return SimFunction(code, list(traits))


def _root(firmware: str, online: bool, *extra: SimFunction) -> SimEndpoint:
    """Endpoint 0 (Root) with BasicInformation.FirmwareRevision and .Reachable."""
    basic = _fn(
        "BasicInformation",
        SimTrait("FirmwareRevision", "STRING", "String", firmware),
        SimTrait("Reachable", "BOOLEAN", "Bool", online, enums=[("Offline", "0"), ("Online", "1")]),
    )
    return SimEndpoint(0, ["Root"], [basic, *extra])


def _battery(percent: int) -> SimFunction:
    return _fn(
        "PowerSource",
        _num("BatPercentRemaining", percent, fmt="Uint8", unit="%", lo=0, hi=100, step=1),
        _bool("BatReplacementNeeded", percent < 15),
    )


def button_endpoint(endpoint_id: int, presses: int = 2) -> SimEndpoint:
    """One button: ``Switch`` with Matter's switch events as push-only traits (INFERRED, see
    :mod:`bridge.simulators.event_devices`), counting up to ``presses`` presses."""
    switch = SimFunction("Switch", [
        SimTrait("InitialPress", "BOOLEAN", "Bool", None, readable=False),
        SimTrait("ShortRelease", "BOOLEAN", "Bool", None, readable=False),
        SimTrait("MultiPressComplete", "NUMBER", "Uint8", None, readable=False, min=1,
                 max=presses, step=1),
        SimTrait("LongPress", "BOOLEAN", "Bool", None, readable=False),
        SimTrait("LongRelease", "BOOLEAN", "Bool", None, readable=False),
    ])
    return SimEndpoint(endpoint_id, ["GenericSwitch"], [switch])


def _metering(voltage: float, power: float, energy: float, current: float | None) -> SimFunction:
    traits = [
        _num("CurrentVoltage", voltage, unit="V", lo=0, hi=300),
        _num("CurrentPower", power, unit="W", lo=0, hi=4000),
        _num("CumulativeEnergyConsumption", energy, unit="kWh", lo=0, hi=999999),
    ]
    if current is not None:
        traits.append(_num("CircuitCurrent", current, unit="A", lo=0, hi=16))
    return _fn("EnergyManagement", *traits)


def _onoff(on: bool) -> SimFunction:
    return _fn("Output", _bool("OnOff", on, writable=True))


def _temperature(value: float) -> SimFunction:
    return _fn(
        "TemperatureMeasurement", _num("CurrentTemperature", value, unit="°C", lo=-40, hi=125)
    )


def _humidity(value: float) -> SimFunction:
    return _fn(
        "RelativeHumidityMeasurement", _num("CurrentHumidity", value, unit="%", lo=0, hi=100)
    )


HEATER_COOLER_MODES: list[SimEnum] = [
    ("Off", "0"),
    ("Heat", "1"),
    ("Cool", "2"),
    ("Auto", "3"),
    ("Dry", "4"),
    ("Fan", "5"),
]
FAN_MODES: list[SimEnum] = [("Auto", "0"), ("Low", "1"), ("Medium", "2"), ("High", "3")]
LOCK_STATES: list[SimEnum] = [("NotFullyLocked", "0"), ("Locked", "1"), ("Unlocked", "2")]
DOOR_STATES: list[SimEnum] = [("Open", "0"), ("Closed", "1"), ("Jammed", "2")]
PLAYBACK_STATES: list[SimEnum] = [("Playing", "0"), ("Paused", "1"), ("Stopped", "2")]
COVERING_STATUS: list[SimEnum] = [("Stopped", "0"), ("Opening", "1"), ("Closing", "2")]


# --------------------------------------------------------------------------------------------
# Device builders (shared by the sample home and the synthetic generator)


def wall_switch(
    device_id: str,
    name: str,
    *,
    create_time: int,
    online: bool = True,
    left: bool = False,
    right: bool = True,
    power: float = 12.5,
) -> SimDevice:
    """A double-rocker wall switch with energy metering (the doc's "Double Rocker Switch A")."""
    root = _root("1.0.24", online)
    root.functions.append(
        _fn("Descriptor", SimTrait("EndpointArrayDynamic", "OTHER", "Array", [0, 1, 2, 3]))
    )
    return SimDevice(
        device_id,
        name,
        "lumi.switch.acn048",
        ["Switch"],
        [
            root,
            SimEndpoint(1, ["Public"], [_metering(229.8, power, 12.34, None)]),
            SimEndpoint(2, ["Switch"], [_onoff(left)]),
            SimEndpoint(3, ["Switch"], [_onoff(right)]),
        ],
        online,
        create_time,
    )


def single_switch(
    device_id: str, name: str, *, create_time: int, online: bool = True, on: bool = False
) -> SimDevice:
    """A single-rocker wall switch without metering."""
    return SimDevice(
        device_id,
        name,
        "lumi.switch.b1lacn02",
        ["Switch"],
        [_root("0.0.0_0021", online), SimEndpoint(1, ["Switch"], [_onoff(on)])],
        online,
        create_time,
    )


def smart_plug(
    device_id: str,
    name: str,
    *,
    create_time: int,
    online: bool = True,
    on: bool = True,
    power: float = 0.0,
    energy: float = 3.2,
) -> SimDevice:
    """A smart plug with on/off and energy metering on endpoint 1."""
    return SimDevice(
        device_id,
        name,
        "lumi.plug.maeu01",
        ["Outlet"],
        [
            _root("0.0.0_0090", online),
            SimEndpoint(
                1, ["Outlet"], [_onoff(on), _metering(230.1, power, energy, round(power / 230, 3))]
            ),
        ],
        online,
        create_time,
    )


def contact_sensor(
    device_id: str,
    name: str,
    *,
    create_time: int,
    online: bool = True,
    closed: bool = True,
    battery: int = 90,
) -> SimDevice:
    """A door/window contact sensor (ContactSensorState true = closed)."""
    return SimDevice(
        device_id,
        name,
        "lumi.magnet.agl02",
        ["ContactSensor"],
        [
            _root("0.0.0_0027", online, _battery(battery)),
            SimEndpoint(
                1, ["ContactSensor"], [_fn("BooleanState", _bool("ContactSensorState", closed))]
            ),
        ],
        online,
        create_time,
    )


def motion_sensor(
    device_id: str,
    name: str,
    *,
    create_time: int,
    online: bool = True,
    occupied: bool = False,
    lux: int = 120,
    battery: int = 77,
) -> SimDevice:
    """A motion/occupancy sensor with an illuminance sensor."""
    return SimDevice(
        device_id,
        name,
        "lumi.motion.agl04",
        ["OccupancySensor", "LightSensor"],
        [
            _root("0.0.0_0050", online, _battery(battery)),
            SimEndpoint(
                1,
                ["OccupancySensor"],
                [
                    _fn(
                        "OccupancySensing",
                        _bool("Occupancy", occupied),
                        _enum("OccupancySensorType", "0", [("PIR", "0"), ("Ultrasonic", "1")]),
                    )
                ],
            ),
            SimEndpoint(
                2,
                ["LightSensor"],
                [
                    _fn(
                        "IlluminanceMeasurement",
                        _num(
                            "CurrentIlluminance",
                            lux,
                            fmt="Uint16",
                            unit="lx",
                            lo=0,
                            hi=83000,
                            step=1,
                        ),
                    )
                ],
            ),
        ],
        online,
        create_time,
    )


def climate_sensor(
    device_id: str,
    name: str,
    *,
    create_time: int,
    online: bool = True,
    temperature: float = 21.4,
    humidity: float = 48.0,
    battery: int = 64,
) -> SimDevice:
    """A temperature/humidity/pressure sensor."""
    return SimDevice(
        device_id,
        name,
        "lumi.weather.v1",
        ["TemperatureSensor", "HumiditySensor"],
        [
            _root("0.0.0_0005", online, _battery(battery)),
            SimEndpoint(
                1,
                ["TemperatureSensor", "HumiditySensor"],
                [
                    _temperature(temperature),
                    _humidity(humidity),
                    _fn(
                        "PressureMeasurement",
                        _num("CurrentPressure", 101.3, unit="kPa", lo=30, hi=110),
                    ),
                ],
            ),
        ],
        online,
        create_time,
    )


def leak_sensor(
    device_id: str, name: str, *, create_time: int, online: bool = True, leak: bool = False
) -> SimDevice:
    """A water leak sensor."""
    return SimDevice(
        device_id,
        name,
        "lumi.flood.agl02",
        ["WaterLeakDetector"],
        [
            _root("0.0.0_0015", online, _battery(100)),
            SimEndpoint(1, ["WaterLeakDetector"], [_fn("BooleanState", _bool("LeakState", leak))]),
        ],
        online,
        create_time,
    )


def smoke_detector(
    device_id: str, name: str, *, create_time: int, online: bool = True
) -> SimDevice:
    """A smoke detector."""
    return SimDevice(
        device_id,
        name,
        "lumi.sensor_smoke.acn03",
        ["SmokeCoAlarm"],
        [
            _root("0.0.0_0013", online, _battery(98)),
            SimEndpoint(
                1,
                ["SmokeCoAlarm"],
                [
                    _fn(
                        "SmokeCoAlarm",
                        _bool("SmokeDetected", False),
                        _bool("SelfTestRequested", False, writable=True),
                    )
                ],
            ),
        ],
        online,
        create_time,
    )


def ct_light(
    device_id: str,
    name: str,
    *,
    create_time: int,
    online: bool = True,
    on: bool = True,
    level: int = 80,
    mired: int = 300,
    color: bool = False,
) -> SimDevice:
    """A dimmable colour-temperature light (optionally with hue/saturation)."""
    color_traits = [
        _num(
            "ColorTemperature",
            mired,
            fmt="Uint16",
            unit="mired",
            lo=153,
            hi=500,
            step=1,
            writable=True,
            default="370",
        ),
    ]
    if color:
        color_traits += [
            _num("Hue", 30, fmt="Uint16", unit="°", lo=0, hi=360, step=1, writable=True),
            _num("Saturation", 60, fmt="Uint8", unit="%", lo=0, hi=100, step=1, writable=True),
        ]
    return SimDevice(
        device_id,
        name,
        "aqara.light.acn014" if not color else "lumi.light.acn132",
        ["Light"],
        [
            _root("1.0.11", online),
            SimEndpoint(
                1,
                ["Light"],
                [
                    _onoff(on),
                    _fn(
                        "LevelControl",
                        _num(
                            "CurrentLevel",
                            level,
                            fmt="Uint8",
                            unit="%",
                            lo=0,
                            hi=100,
                            step=1,
                            writable=True,
                            default="100",
                        ),
                    ),
                    _fn("ColorControl", *color_traits),
                ],
            ),
        ],
        online,
        create_time,
    )


def curtain(
    device_id: str, name: str, *, create_time: int, online: bool = True, position: int = 100
) -> SimDevice:
    """A curtain motor: TargetPositionPercentage RW, CurrentPositionPercentage R."""
    return SimDevice(
        device_id,
        name,
        "lumi.curtain.acn002",
        ["WindowCovering"],
        [
            _root("0.0.0_0035", online, _battery(55)),
            SimEndpoint(
                1,
                ["WindowCovering"],
                [
                    _fn(
                        "WindowCovering",
                        _num(
                            "TargetPositionPercentage",
                            position,
                            fmt="Uint8",
                            unit="%",
                            lo=0,
                            hi=100,
                            step=1,
                            writable=True,
                        ),
                        _num(
                            "CurrentPositionPercentage",
                            position,
                            fmt="Uint8",
                            unit="%",
                            lo=0,
                            hi=100,
                            step=1,
                        ),
                        _enum("OperationalStatus", "0", COVERING_STATUS),
                    )
                ],
            ),
        ],
        online,
        create_time,
    )


def thermostat(
    device_id: str,
    name: str,
    *,
    create_time: int,
    online: bool = True,
    setpoint: float = 21.5,
    mode: str = "1",
    current: float = 20.8,
) -> SimDevice:
    """A thermostat: setpoint 5 to 30 °C step 0.5, HeaterCoolerMode and FanMode enums."""
    return SimDevice(
        device_id,
        name,
        "lumi.airrtc.agl001",
        ["Thermostat"],
        [
            _root("0.0.0_0024", online),
            SimEndpoint(
                1,
                ["Thermostat"],
                [
                    _fn(
                        "Thermostat",
                        _num(
                            "SetTemperature",
                            setpoint,
                            unit="°C",
                            lo=5,
                            hi=30,
                            step=0.5,
                            writable=True,
                            default="20",
                        ),
                        _enum("HeaterCoolerMode", mode, HEATER_COOLER_MODES, writable=True),
                        _enum("FanMode", "0", FAN_MODES, writable=True),
                    ),
                    _temperature(current),
                ],
            ),
        ],
        online,
        create_time,
    )


def door_lock(
    device_id: str, name: str, *, create_time: int, online: bool = True, state: str = "1"
) -> SimDevice:
    """A door lock (LockState/DoorState read-only enums)."""
    return SimDevice(
        device_id,
        name,
        "aqara.lock.wbzac1",
        ["DoorLock"],
        [
            _root("2.1.3", online, _battery(42)),
            SimEndpoint(
                1,
                ["DoorLock"],
                [
                    _fn(
                        "DoorLock",
                        _enum("LockState", state, LOCK_STATES),
                        _enum("DoorState", "1", DOOR_STATES),
                    )
                ],
            ),
        ],
        online,
        create_time,
    )


def remote_button(
    device_id: str, name: str, *, create_time: int, online: bool = True, battery: int = 12,
    presses: bool = False,
) -> SimDevice:
    """A battery wireless button; with ``presses`` its presses are events too (endpoint 1,
    ``Switch``; see :mod:`bridge.simulators.event_devices`). Synthetic homes leave them out, so
    their trait counts (the load tests' yardstick) stay as they were."""
    endpoints = [_root("0.0.0_0012", online, _battery(battery))]
    if presses:
        endpoints.append(button_endpoint(1))
    return SimDevice(device_id, name, "lumi.remote.b1acn02", ["Button"], endpoints, online,
                     create_time)


def air_monitor(
    device_id: str, name: str, *, create_time: int, online: bool = True, co2: int = 620
) -> SimDevice:
    """An air quality monitor (CO2, particulates, VOC, temperature, humidity)."""
    return SimDevice(
        device_id,
        name,
        "lumi.airm.fhac01",
        ["AirQualitySensor"],
        [
            _root("1.2.7", online),
            SimEndpoint(
                1,
                ["AirQualitySensor"],
                [
                    _fn(
                        "AirQuality",
                        _num("CO2Density", co2, fmt="Uint16", unit="ppm", lo=0, hi=5000, step=1),
                        _num("PM2.5Density", 8, fmt="Uint16", unit="µg/m³", lo=0, hi=1000, step=1),
                        _num("PM10Density", 12, fmt="Uint16", unit="µg/m³", lo=0, hi=1000, step=1),
                        _num("VOCDensity", 110, fmt="Uint16", unit="ppb", lo=0, hi=5000, step=1),
                        _enum(
                            "AirQualityLevel",
                            "1",
                            [("Good", "1"), ("Moderate", "2"), ("Poor", "3")],
                        ),
                    ),
                    _temperature(22.1),
                    _humidity(41.5),
                ],
            ),
        ],
        online,
        create_time,
    )


def hub_speaker(device_id: str, name: str, *, create_time: int, online: bool = True) -> SimDevice:
    """A hub with a speaker (Media traits) and an OTHER-typed JSON-object diagnostics trait."""
    return SimDevice(
        device_id,
        name,
        "lumi.gateway.acn012",
        ["Bridge", "Speaker"],
        [
            _root(
                "4.1.6",
                online,
                _fn(
                    "Diagnostics",
                    SimTrait(
                        "NetworkStatus",
                        "OTHER",
                        "Json",
                        {
                            "ssid": "home-wifi",
                            "rssi": -48,
                            "ip": "192.168.1.20",
                            "channels": [1, 6],
                        },
                    ),
                ),
            ),
            SimEndpoint(
                1,
                ["Speaker"],
                [
                    _fn(
                        "Media",
                        _num(
                            "Volume", 35, fmt="Uint8", unit="%", lo=0, hi=100, step=1, writable=True
                        ),
                        _bool("Mute", False, writable=True),
                        _enum("CurrentPlaybackState", "2", PLAYBACK_STATES),
                    )
                ],
            ),
        ],
        online,
        create_time,
    )


# --------------------------------------------------------------------------------------------
# The sample home

_T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z
_HOUR = 3_600_000


def sample_home() -> list[SimDevice]:
    """A fixed home of 24 varied devices; fresh objects on every call.

    Contains one offline device (``lumi.158d00045a1b2c``), an OTHER-typed object trait (the
    hub's ``Diagnostics.NetworkStatus``) and an OTHER-typed array trait (the wall switch's
    ``Descriptor.EndpointArrayDynamic``); one name contains ``/`` and one ``+``. ``createTime``
    is deliberately not in list order.
    """

    def ct(hours: int) -> int:
        return _T0 + hours * _HOUR

    home = [
        wall_switch("lumi1.54ef448a0b73", "Living Room Wall Switch", create_time=ct(50)),
        single_switch("lumi.158d0003a1f2e4", "Hallway Switch", create_time=ct(12)),
        smart_plug(
            "lumi.158d0002c660dc", "Kitchen Plug / Kettle", create_time=ct(7), on=False, energy=41.7
        ),
        smart_plug("lumi.158d0004b81e07", "TV + Soundbar", create_time=ct(93), power=86.4),
        smart_plug("lumi1.54ef4410fa2d", "Office Plug", create_time=ct(31), power=142.0),
        contact_sensor("lumi.158d00027d0a11", "Front Door", create_time=ct(3)),
        contact_sensor(
            "lumi.158d00027d0b42", "Balcony Window", create_time=ct(64), closed=False, battery=35
        ),
        motion_sensor("lumi.158d0004411c3e", "Hallway Motion", create_time=ct(18)),
        motion_sensor("lumi1.54ef443c77d9", "Garage Motion", create_time=ct(71), lux=5),
        climate_sensor("lumi.158d0001e8a3b9", "Bedroom Climate", create_time=ct(2)),
        climate_sensor(
            "lumi.158d0001e8a4c0",
            "Bathroom Climate",
            create_time=ct(44),
            temperature=23.9,
            humidity=71.5,
        ),
        climate_sensor(
            "lumi.158d00045a1b2c",
            "Outdoor Sensor",
            create_time=ct(26),
            online=False,
            temperature=4.5,
            humidity=88.0,
            battery=8,
        ),
        leak_sensor("lumi.158d0003c9e801", "Washing Machine Leak", create_time=ct(58)),
        smoke_detector("lumi.158d0005aa7723", "Kitchen Smoke Detector", create_time=ct(80)),
        ct_light("lumi1.54ef44d1e6a0", "Dining Light", create_time=ct(9)),
        ct_light(
            "lumi1.54ef44d1f3b8",
            "Bedroom LED Strip",
            create_time=ct(38),
            on=False,
            level=40,
            mired=250,
            color=True,
        ),
        curtain("lumi.158d0006c1d2e3", "Living Room Curtain", create_time=ct(21), position=60),
        thermostat("lumi1.54ef448cc210", "Hallway Thermostat", create_time=ct(15)),
        door_lock("aqara.lock.7f3e9a01c2", "Front Door Lock", create_time=ct(99)),
        remote_button("lumi.158d0002f8e7d6", "Bedside Button", create_time=ct(47), presses=True),
        air_monitor("lumi.158d0007aa01bc", "Study Air Monitor", create_time=ct(86)),
        hub_speaker("lumi1.54ef44100000", "Aqara Hub M3", create_time=ct(0)),
        wall_switch(
            "lumi1.54ef448a0c91",
            "Kids Room Switch",
            create_time=ct(77),
            left=True,
            right=False,
            power=0.0,
        ),
        single_switch("lumi.158d0003a1f9aa", "Porch Light Switch", create_time=ct(33), on=True),
    ]
    for device in home:
        device.space = SAMPLE_SPACES.get(device.device_id)
    return home


SAMPLE_SPACES = {
    "lumi1.54ef448a0b73": "Living Room", "lumi.158d0003a1f2e4": "Hallway",
    "lumi.158d0002c660dc": "Kitchen", "lumi.158d0004b81e07": "Living Room",
    "lumi1.54ef4410fa2d": "Office", "lumi.158d00027d0a11": "Hallway",
    "lumi.158d00027d0b42": "Living Room", "lumi.158d0004411c3e": "Hallway",
    "lumi1.54ef443c77d9": "Garage", "lumi.158d0001e8a3b9": "Bedroom",
    "lumi.158d0001e8a4c0": "Bathroom", "lumi.158d0003c9e801": "Bathroom",
    "lumi.158d0005aa7723": "Kitchen", "lumi1.54ef44d1e6a0": "Dining Room",
    "lumi1.54ef44d1f3b8": "Bedroom", "lumi.158d0006c1d2e3": "Living Room",
    "lumi1.54ef448cc210": "Hallway", "aqara.lock.7f3e9a01c2": "Hallway",
    "lumi.158d0002f8e7d6": "Bedroom", "lumi.158d0007aa01bc": "Office",
    "lumi1.54ef44100000": "Living Room", "lumi1.54ef448a0c91": "Kids Room",
}
"""Where the sample home's devices are (the outdoor sensor and the porch switch are in none)."""


# --------------------------------------------------------------------------------------------
# Synthetic devices


def energy_meter(device_id: str, name: str, *, traits: int, create_time: int,
                 online: bool = True, seed: int = 0) -> SimDevice:
    """A multi-circuit energy meter with exactly ``traits`` traits (at least 2): the root
    endpoint, then one endpoint per circuit with voltage, power, energy and current."""
    if traits < 2:
        raise ValueError(f"an energy meter has at least 2 traits, not {traits}")
    rng = random.Random(seed)
    endpoints = [_root("1.0.0_0012", online)]
    left = traits - 2
    circuit = 1
    while left > 0:
        metering = _metering(round(rng.uniform(220, 240), 1), round(rng.uniform(0, 3000), 1),
                             round(rng.uniform(0, 9000), 2), round(rng.uniform(0, 16), 2))
        del metering.traits[left:]
        left -= len(metering.traits)
        endpoints.append(SimEndpoint(circuit, ["ElectricalSensor"], [metering]))
        circuit += 1
    return SimDevice(device_id, name, "lumi.meter.mc01", ["ElectricalSensor"], endpoints,
                     online, create_time)


def synthetic_devices(n: int, seed: int = 0, traits: int | None = None) -> list[SimDevice]:
    """``n`` deterministic devices of varied kinds with unique ids (same arguments, same list).

    About 2 % are offline. Ids look like ``lumi.<14 lower-case hex digits>``. With ``traits``,
    every device is an :func:`energy_meter` with that many traits (a heavy home).
    """
    rng = random.Random(seed)
    prefix = rng.getrandbits(16)
    rooms = ["Kitchen", "Hall", "Bedroom", "Office", "Garage", "Attic", "Cellar", "Lounge"]
    devices: list[SimDevice] = []
    for i in range(n):
        device_id = f"lumi.{prefix:04x}{i:010x}"
        online = rng.random() >= 0.02
        ct = _T0 + rng.randrange(0, 365 * 24) * _HOUR + i
        room = rooms[rng.randrange(len(rooms))]
        kind = rng.randrange(13)
        common: dict[str, Any] = {"create_time": ct, "online": online}
        dev: SimDevice
        if traits is not None:
            dev = energy_meter(device_id, f"{room} Meter {i}", traits=traits,
                               seed=rng.getrandbits(32), **common)
        elif kind == 0:
            dev = wall_switch(
                device_id,
                f"{room} Switch {i}",
                left=rng.random() < 0.5,
                right=rng.random() < 0.5,
                power=round(rng.uniform(0, 200), 1),
                **common,
            )
        elif kind == 1:
            dev = smart_plug(
                device_id,
                f"{room} Plug {i}",
                on=rng.random() < 0.5,
                power=round(rng.uniform(0, 2000), 1),
                energy=round(rng.uniform(0, 500), 2),
                **common,
            )
        elif kind == 2:
            dev = contact_sensor(
                device_id,
                f"{room} Contact {i}",
                closed=rng.random() < 0.8,
                battery=rng.randrange(5, 101),
                **common,
            )
        elif kind == 3:
            dev = motion_sensor(
                device_id,
                f"{room} Motion {i}",
                occupied=rng.random() < 0.2,
                lux=rng.randrange(0, 2000),
                battery=rng.randrange(5, 101),
                **common,
            )
        elif kind == 4:
            dev = climate_sensor(
                device_id,
                f"{room} Climate {i}",
                temperature=round(rng.uniform(10, 30), 1),
                humidity=round(rng.uniform(20, 90), 1),
                battery=rng.randrange(5, 101),
                **common,
            )
        elif kind == 5:
            dev = ct_light(
                device_id,
                f"{room} Light {i}",
                on=rng.random() < 0.5,
                level=rng.randrange(0, 101),
                mired=rng.randrange(153, 501),
                color=rng.random() < 0.3,
                **common,
            )
        elif kind == 6:
            dev = curtain(
                device_id, f"{room} Curtain {i}", position=rng.randrange(0, 101), **common
            )
        elif kind == 7:
            dev = thermostat(
                device_id,
                f"{room} Thermostat {i}",
                setpoint=rng.randrange(10, 61) / 2,
                mode=HEATER_COOLER_MODES[rng.randrange(len(HEATER_COOLER_MODES))][1],
                current=round(rng.uniform(15, 25), 1),
                **common,
            )
        elif kind == 8:
            dev = door_lock(
                device_id,
                f"{room} Lock {i}",
                state=LOCK_STATES[rng.randrange(len(LOCK_STATES))][1],
                **common,
            )
        elif kind == 9:
            dev = leak_sensor(device_id, f"{room} Leak {i}", leak=rng.random() < 0.05, **common)
        elif kind == 10:
            dev = air_monitor(device_id, f"{room} Air {i}", co2=rng.randrange(400, 2000), **common)
        elif kind == 11:
            dev = single_switch(device_id, f"{room} Switch {i}", on=rng.random() < 0.5, **common)
        else:
            dev = remote_button(
                device_id, f"{room} Button {i}", battery=rng.randrange(5, 101), **common
            )
        devices.append(dev)
    return devices
