"""The Tuya simulator's world: users, homes with rooms and members, devices with DPs.

These dataclasses are the *cloud's* representation (Tuya DP codes, types and ``values`` as in
protocols.md §3 and seed document 002); they share no code with ``bridge.backends.tuya.model`` so
a bug in the bridge cannot cancel out against the same bug here. Status values are stored the way
Tuya's device APIs send them: ``bool`` for Boolean, the raw (unscaled) ``int`` for Integer and
Bitmap, ``str`` for Enum/String/Raw and a JSON *string* for Json.

The sample follows seed document 002 where it speaks: the user ``ay1528964101460qLVPu``, the
member ``ay15309353754999xY2T``, home ``3182004`` and the homes of ``home.memberHomeList``, the
socket ``vdevo153500827491970`` (codes ``switch``, ``countdown_1``) and the curtain
``vdevo154017769539389`` (category ``qt`` and its eleven status codes with the seed's values).
The metering plug, light and sensors use common Tuya standard DP codes (ranges INFERRED from
Tuya's standard instruction sets).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from typing import Any

USER_UID = "ay1528964101460qLVPu"
"""Hua: owner and administrator of both sample homes (seed 002)."""
MEMBER_UID = "ay15309353754999xY2T"
"""Ming: a non-administrator member of "My Home" (seed 002)."""
OTHER_UID = "ay1600000000000xNewU"
"""Li: a known app user in no home (to add as a member)."""
OTHER_ACCOUNT = ("86", "13912345678")
SHARER_UID = "ay1700000000000xShrW"
"""Wang: owns the home whose devices :func:`share_plugs` shares with another user."""
SHARER_HOME_ID = 3300001

HOME_ID = 3182004
HOMETOWN_ID = 2422120
ROOM_KITCHEN = 1408001
ROOM_LIVING = 1408002
ROOM_BEDROOM = 1408003
ROOM_GARDEN = 1398001

SOCKET = "vdevo153500827491970"
CURTAIN = "vdevo154017769539389"
PLUG = "vdevo169000000000001"
LIGHT = "vdevo169000000000002"
SENSOR = "vdevo169000000000003"
GARDEN_SENSOR = "vdevo169000000000004"
THERMOSTAT = "vdevo169000000000005"


def now_ms() -> int:
    """Wall-clock milliseconds (Tuya's ``t``)."""
    return int(time.time() * 1000)


@dataclass(slots=True)
class SimDp:
    """One data point: ``function`` = writable through commands, ``status`` = reported."""

    code: str
    type: str
    values: dict[str, Any] = field(default_factory=dict)
    function: bool = True
    status: bool = True

    def values_json(self) -> str:
        """``values`` as Tuya sends it: a JSON string."""
        return json.dumps(self.values, separators=(",", ":"), ensure_ascii=False)


@dataclass(slots=True)
class SimTuyaDevice:
    id: str
    name: str
    category: str
    product_id: str
    product_name: str
    dps: list[SimDp]
    status: dict[str, Any]
    home_id: int | None = None
    room_id: int | None = None
    online: bool = True
    local_key: str = "0123456789abcdef"
    ip: str | None = None
    time_zone: str = "+08:00"
    sub: bool = False
    owner_uid: str = USER_UID
    create_time: int = 1_600_000_000
    update_time: int = 1_600_000_000

    def dp(self, code: str) -> SimDp | None:
        """The DP with this code, or None."""
        return next((d for d in self.dps if d.code == code), None)

    def clone(self) -> SimTuyaDevice:
        """An independent copy."""
        return copy.deepcopy(self)


@dataclass(slots=True)
class SimRoom:
    room_id: int
    name: str


@dataclass(slots=True)
class SimHome:
    home_id: int
    name: str
    geo_name: str
    lon: float
    lat: float
    owner_uid: str
    rooms: list[SimRoom] = field(default_factory=list)
    members: dict[str, bool] = field(default_factory=dict)
    """uid → admin."""
    member_names: dict[str, str] = field(default_factory=dict)

    def room(self, room_id: int) -> SimRoom | None:
        """The room with this id, or None."""
        return next((r for r in self.rooms if r.room_id == room_id), None)


@dataclass(slots=True)
class SimUser:
    uid: str
    name: str
    country_code: str
    account: str


@dataclass(slots=True)
class TuyaWorld:
    users: dict[str, SimUser] = field(default_factory=dict)
    homes: dict[int, SimHome] = field(default_factory=dict)
    devices: dict[str, SimTuyaDevice] = field(default_factory=dict)
    shared: dict[str, set[str]] = field(default_factory=dict)
    """uid → the ids of devices others shared with that user (in none of the user's homes)."""


def _int(low: int, high: int, scale: int = 0, step: int = 1, unit: str = "") -> dict[str, Any]:
    values: dict[str, Any] = {"min": low, "max": high, "scale": scale, "step": step}
    if unit:
        values["unit"] = unit
    return values


def _enum(*options: str) -> dict[str, Any]:
    return {"range": list(options)}


def seed_socket(
    device_id: str = SOCKET,
    name: str = "xxx socket",
    home_id: int = HOME_ID,
    room_id: int | None = ROOM_KITCHEN,
) -> SimTuyaDevice:
    """The seed's socket: ``switch`` and ``countdown_1`` (category ``cz``)."""
    return SimTuyaDevice(
        device_id,
        name,
        "cz",
        "T62ZA4lyVXFgtvE7",
        "Smart Socket",
        [SimDp("switch", "Boolean"), SimDp("countdown_1", "Integer", _int(0, 86400, unit="s"))],
        {"switch": True, "countdown_1": 0},
        home_id=home_id,
        room_id=room_id,
        local_key="47a5a361719f16b9",
    )


def metering_plug(
    device_id: str = PLUG,
    name: str = "Living Room Plug",
    home_id: int = HOME_ID,
    room_id: int | None = ROOM_LIVING,
    power: int = 123,
) -> SimTuyaDevice:
    """A metering plug: ``switch_1``, ``countdown_1``, ``cur_power`` (W, scale 1),
    ``cur_voltage`` (V, scale 1), ``cur_current`` (mA)."""
    return SimTuyaDevice(
        device_id,
        name,
        "cz",
        "p6khbivxnhvv5ydb",
        "Metering Plug",
        [
            SimDp("switch_1", "Boolean"),
            SimDp("countdown_1", "Integer", _int(0, 86400, unit="s")),
            SimDp("cur_power", "Integer", _int(0, 99999, 1, 1, "W"), function=False),
            SimDp("cur_voltage", "Integer", _int(0, 5000, 1, 1, "V"), function=False),
            SimDp("cur_current", "Integer", _int(0, 30000, 0, 1, "mA"), function=False),
        ],
        {
            "switch_1": False,
            "countdown_1": 0,
            "cur_power": power,
            "cur_voltage": 2301,
            "cur_current": 54,
        },
        home_id=home_id,
        room_id=room_id,
        local_key="5e2f9a7c1b3d4e6f",
    )


def seed_curtain(
    device_id: str = CURTAIN,
    name: str = "All-in-one curtain",
    home_id: int = HOME_ID,
    room_id: int | None = ROOM_LIVING,
) -> SimTuyaDevice:
    """The seed's curtain (category ``qt``) with its eleven status codes and the seed's values."""
    dps = [
        SimDp("control", "Enum", _enum("open", "stop", "close", "continue")),
        SimDp("percent_control", "Integer", _int(0, 100, unit="%")),
        SimDp("percent_state", "Integer", _int(0, 100, unit="%"), function=False),
        SimDp("mode", "Enum", _enum("morning", "night")),
        SimDp("control_back", "Boolean"),
        SimDp("auto_power", "Boolean"),
        SimDp("work_state", "Enum", _enum("opening", "closing"), function=False),
        SimDp("countdown", "Enum", _enum("cancel", "1", "2", "3", "4")),
        SimDp("countdown_left", "Integer", _int(0, 86400, unit="s"), function=False),
        SimDp("fault", "Bitmap", {"label": ["motor_fault"], "maxlen": 1}, function=False),
        SimDp("time_total", "Integer", _int(0, 120000, unit="ms"), function=False),
    ]
    status = {
        "control": "open",
        "percent_control": 0,
        "percent_state": 0,
        "mode": "morning",
        "control_back": False,
        "auto_power": False,
        "work_state": "opening",
        "countdown": "2",
        "countdown_left": 0,
        "fault": 0,
        "time_total": 0,
    }
    return SimTuyaDevice(
        device_id,
        name,
        "qt",
        "9ysAXds4ohDAnXwh",
        "All-in-one curtain",
        dps,
        status,
        home_id=home_id,
        room_id=room_id,
        local_key="75bc0238e71ef011",
    )


def light(
    device_id: str = LIGHT,
    name: str = "Bedroom Light",
    home_id: int = HOME_ID,
    room_id: int | None = ROOM_BEDROOM,
) -> SimTuyaDevice:
    """A tunable white + colour bulb (category ``dj``)."""
    colour = {
        "h": {"min": 0, "scale": 0, "unit": "", "max": 360, "step": 1},
        "s": {"min": 0, "scale": 0, "unit": "", "max": 1000, "step": 1},
        "v": {"min": 0, "scale": 0, "unit": "", "max": 1000, "step": 1},
    }
    return SimTuyaDevice(
        device_id,
        name,
        "dj",
        "keyjup78v54myhan",
        "Smart Bulb",
        [
            SimDp("switch_led", "Boolean"),
            SimDp("work_mode", "Enum", _enum("white", "colour", "scene", "music")),
            SimDp("bright_value_v2", "Integer", _int(10, 1000)),
            SimDp("temp_value_v2", "Integer", _int(0, 1000)),
            SimDp("colour_data_v2", "Json", colour),
        ],
        {
            "switch_led": True,
            "work_mode": "white",
            "bright_value_v2": 800,
            "temp_value_v2": 500,
            "colour_data_v2": '{"h":0,"s":1000,"v":1000}',
        },
        home_id=home_id,
        room_id=room_id,
        local_key="a1b2c3d4e5f60718",
    )


def th_sensor(
    device_id: str = SENSOR,
    name: str = "Hallway Sensor",
    home_id: int = HOME_ID,
    room_id: int | None = None,
    temperature: int = 215,
) -> SimTuyaDevice:
    """A temperature/humidity sensor (category ``wsdcg``); temperature scale 1."""
    return SimTuyaDevice(
        device_id,
        name,
        "wsdcg",
        "g2y6z3p3ja2qhyav",
        "Temperature Humidity Sensor",
        [
            SimDp("va_temperature", "Integer", _int(-200, 600, 1, 1, "℃"), function=False),
            SimDp("va_humidity", "Integer", _int(0, 100, 0, 1, "%"), function=False),
            SimDp("battery_percentage", "Integer", _int(0, 100, 0, 1, "%"), function=False),
            SimDp("temp_unit_convert", "Enum", _enum("c", "f")),
        ],
        {
            "va_temperature": temperature,
            "va_humidity": 48,
            "battery_percentage": 87,
            "temp_unit_convert": "c",
        },
        home_id=home_id,
        room_id=room_id,
        sub=True,
        local_key="f0e1d2c3b4a59687",
    )


def thermostat(
    device_id: str = THERMOSTAT,
    name: str = "Bedroom Thermostat",
    home_id: int = HOME_ID,
    room_id: int | None = ROOM_BEDROOM,
) -> SimTuyaDevice:
    """A radiator thermostat (category ``wk``): ``temp_set`` is a writable scale-1 Integer."""
    return SimTuyaDevice(
        device_id,
        name,
        "wk",
        "w1c2d3e4f5a6b7c8",
        "Radiator Thermostat",
        [
            SimDp("switch", "Boolean"),
            SimDp("temp_set", "Integer", _int(50, 350, 1, 5, "℃")),
            SimDp("temp_current", "Integer", _int(-100, 500, 1, 1, "℃"), function=False),
            SimDp("mode", "Enum", _enum("auto", "manual", "holiday")),
        ],
        {"switch": True, "temp_set": 205, "temp_current": 198, "mode": "manual"},
        home_id=home_id,
        room_id=room_id,
        sub=True,
        local_key="0a1b2c3d4e5f6a7b",
    )


SCENE_SWITCH = "vdevo169000000000011"
WALL_REMOTE = "vdevo169000000000012"
CUBE = "vdevo169000000000013"
VIBRATION = "vdevo169000000000014"
PRESS_VALUES = ("single_click", "double_click", "long_press")
"""A wireless switch button's Enum range (Tuya's standard instruction set, category ``wxkg``;
3P/INFERRED)."""


def is_event_dp(code: str) -> bool:
    """Whether a DP code reports momentary events (see :func:`event_devices`)."""
    return code in ("cube_action", "shock_state") or (
        code.startswith("switch") and code.endswith("_value") and code[6:-6].isdigit())


QUIET = "normal"
"""The value of ``shock_state`` when nothing happens (no event)."""


def _event_device(device_id: str, name: str, category: str, product: str,
                  dps: list[SimDp], room_id: int | None) -> SimTuyaDevice:
    return SimTuyaDevice(device_id, name, category, product[:16].ljust(16, "0"), product,
                         [*dps, SimDp("battery_percentage", "Integer", _int(0, 100, 0, 1, "%"),
                                      function=False)],
                         {"battery_percentage": 80}, home_id=HOME_ID, room_id=room_id, sub=True)


def _buttons(count: int) -> list[SimDp]:
    return [SimDp(f"switch{n}_value", "Enum", _enum(*PRESS_VALUES), function=False)
            for n in range(1, count + 1)]


def event_devices() -> list[SimTuyaDevice]:
    """Devices whose DPs report momentary events, never state (values INFERRED): a one-button
    scene switch and a two-button wall remote (``switch<n>_value``: single_click, double_click,
    long_press), a cube (``cube_action``: gesture names) and a vibration sensor
    (``shock_state``: vibration, tilt, drop; ``normal`` when quiet). Their status holds the last
    report, as Tuya's status API keeps it."""
    return [
        _event_device(SCENE_SWITCH, "Desk Scene Switch", "wxkg", "Wireless Switch", _buttons(1),
                      ROOM_BEDROOM),
        _event_device(WALL_REMOTE, "Hall Remote", "wxkg", "Wireless Wall Remote", _buttons(2),
                      ROOM_LIVING),
        _event_device(CUBE, "Magic Cube", "wxkg", "Magic Cube", [SimDp(
            "cube_action", "Enum", _enum("shake", "flip90", "flip180", "rotate_left",
                                         "rotate_right", "slide", "tap", "fall"),
            function=False)], ROOM_LIVING),
        _event_device(VIBRATION, "Mailbox Sensor", "zd", "Vibration Sensor", [SimDp(
            "shock_state", "Enum", _enum("normal", "vibration", "tilt", "drop"),
            function=False)], None),
    ]


def sample_world() -> TuyaWorld:
    """Two homes of the seed's user: "My Home" (3 rooms, 6 devices) and "Hometown" (1)."""
    users = {
        USER_UID: SimUser(USER_UID, "Hua", "86", "18812345176"),
        MEMBER_UID: SimUser(MEMBER_UID, "Ming", "86", "15812345196"),
        OTHER_UID: SimUser(OTHER_UID, "Li", *OTHER_ACCOUNT),
    }
    home = SimHome(
        HOME_ID,
        "My Home",
        "Xihu District, Hangzhou",
        120.545,
        30.1624,
        USER_UID,
        [
            SimRoom(ROOM_KITCHEN, "Kitchen"),
            SimRoom(ROOM_LIVING, "Living Room"),
            SimRoom(ROOM_BEDROOM, "Bedroom"),
        ],
        {USER_UID: True, MEMBER_UID: False},
    )
    hometown = SimHome(
        HOMETOWN_ID,
        "Hometown",
        "Westlake",
        120.100791,
        30.270856,
        USER_UID,
        [SimRoom(ROOM_GARDEN, "Garden")],
        {USER_UID: True},
    )
    devices = [
        seed_socket(),
        metering_plug(),
        seed_curtain(),
        light(),
        thermostat(),
        th_sensor(),
        th_sensor(GARDEN_SENSOR, "Garden Sensor", HOMETOWN_ID, ROOM_GARDEN, temperature=183),
    ]
    return TuyaWorld(
        users, {home.home_id: home, hometown.home_id: hometown}, {d.id: d for d in devices}
    )


def synthetic_plugs(count: int, home_id: int = HOME_ID) -> list[SimTuyaDevice]:
    """``count`` metering plugs with distinct ids (for load tests and ``--devices``)."""
    return [
        metering_plug(f"vdevosyn{n:012d}", f"Plug {n}", home_id, None, power=n % 3000)
        for n in range(1, count + 1)
    ]


def share_plugs(world: TuyaWorld, count: int, uid: str = USER_UID) -> list[SimTuyaDevice]:
    """``count`` metering plugs of Wang's home shared with ``uid``: in none of that user's homes,
    they reach the user's device listing only (DOC private cloud: ``from=sharing``)."""
    world.users.setdefault(SHARER_UID, SimUser(SHARER_UID, "Wang", "86", "13712345601"))
    world.homes.setdefault(SHARER_HOME_ID, SimHome(
        SHARER_HOME_ID, "Wang's Home", "Binjiang", 120.2, 30.2, SHARER_UID, [],
        {SHARER_UID: True}))
    plugs = synthetic_plugs(count, SHARER_HOME_ID)
    for plug in plugs:
        plug.owner_uid = SHARER_UID
        world.devices[plug.id] = plug
    world.shared.setdefault(uid, set()).update(p.id for p in plugs)
    return plugs
