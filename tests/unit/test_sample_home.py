"""The simulator's sample home and synthetic device generator."""

from __future__ import annotations

import math
import re

import pytest

from bridge.simulators.sample_home import (
    SimDevice,
    SimTrait,
    sample_home,
    synthetic_devices,
)

ID_RE = re.compile(r"^[a-z0-9]+(\.[a-z0-9]+)*\.[0-9a-f]{10,}$")


def _traits(dev: SimDevice) -> dict[tuple[int, str, str], SimTrait]:
    return {(ep, fn, tr.code): tr for ep, fn, tr in dev.iter_traits()}


def _by_id(devs: list[SimDevice]) -> dict[str, SimDevice]:
    return {d.device_id: d for d in devs}


def _value_fits(tr: SimTrait) -> bool:
    """The value has the wire type its attribute says (and lies within its limits); a push-only
    event trait (a button press) has none."""
    v = tr.value
    if not tr.readable and v is None:
        return True
    if tr.type == "BOOLEAN":
        return isinstance(v, bool)
    if tr.type == "NUMBER":
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return False
        if "int" in tr.format.lower() and not isinstance(v, int):
            return False
        return (tr.min is None or v >= tr.min) and (tr.max is None or v <= tr.max)
    if tr.type == "ENUM":
        return isinstance(v, str) and tr.enums is not None and v in [e[1] for e in tr.enums]
    if tr.type == "STRING":
        return isinstance(v, str)
    return isinstance(v, dict | list)


def test_sample_home_size_and_unique_ids() -> None:
    devs = sample_home()
    assert len(devs) >= 20
    ids = [d.device_id for d in devs]
    assert len(set(ids)) == len(ids)
    for device_id in ids:
        assert ID_RE.match(device_id), device_id
    assert len({d.create_time for d in devs}) == len(devs)
    assert [d.create_time for d in devs] != sorted(d.create_time for d in devs)


def test_every_device_has_root_basic_information() -> None:
    for dev in sample_home():
        root = [ep for ep in dev.endpoints if ep.endpoint_id == 0]
        assert len(root) == 1, dev.device_id
        assert root[0].types == ["Root"], dev.device_id
        traits = _traits(dev)
        fw = traits[(0, "BasicInformation", "FirmwareRevision")]
        assert fw.type == "STRING"
        assert fw.readable
        assert not fw.writable
        reach = traits[(0, "BasicInformation", "Reachable")]
        assert reach.type == "BOOLEAN"
        assert reach.value is dev.online
        ep_ids = [ep.endpoint_id for ep in dev.endpoints]
        assert len(set(ep_ids)) == len(ep_ids)


def test_every_value_matches_its_attribute() -> None:
    for dev in sample_home():
        for ep, fn, tr in dev.iter_traits():
            assert _value_fits(tr), (dev.device_id, ep, fn, tr.code, tr.value)


def test_every_writable_trait_has_sensible_limits() -> None:
    writable = [tr for d in sample_home() for _, _, tr in d.iter_traits() if tr.writable]
    assert len(writable) >= 15
    for tr in writable:
        assert tr.readable, tr.code
        if tr.type == "NUMBER":
            assert tr.min is not None, tr.code
            assert tr.max is not None, tr.code
            assert tr.min < tr.max, tr.code
            assert tr.step is None or 0 < tr.step <= tr.max - tr.min, tr.code
            assert tr.unit, tr.code
        elif tr.type == "ENUM":
            assert tr.enums, tr.code
            assert len(tr.enums) >= 2, tr.code
            values = [v for _, v in tr.enums]
            assert len(set(values)) == len(values)
            assert all(isinstance(v, str) for v in values)
        else:
            assert tr.type in ("BOOLEAN", "STRING", "OTHER"), tr.code


def test_sample_home_covers_the_required_kinds() -> None:
    devs = sample_home()
    codes = {(fn, tr.code) for d in devs for _, fn, tr in d.iter_traits()}
    for needed in [
        ("EnergyManagement", "CurrentVoltage"),
        ("EnergyManagement", "CurrentPower"),
        ("EnergyManagement", "CumulativeEnergyConsumption"),
        ("Output", "OnOff"),
        ("BooleanState", "ContactSensorState"),
        ("BooleanState", "LeakState"),
        ("OccupancySensing", "Occupancy"),
        ("TemperatureMeasurement", "CurrentTemperature"),
        ("RelativeHumidityMeasurement", "CurrentHumidity"),
        ("LevelControl", "CurrentLevel"),
        ("ColorControl", "ColorTemperature"),
        ("WindowCovering", "TargetPositionPercentage"),
        ("WindowCovering", "CurrentPositionPercentage"),
        ("Thermostat", "SetTemperature"),
        ("Thermostat", "HeaterCoolerMode"),
        ("Thermostat", "FanMode"),
        ("DoorLock", "LockState"),
        ("PowerSource", "BatPercentRemaining"),
        ("AirQuality", "CO2Density"),
    ]:
        assert needed in codes, needed

    all_traits = [tr for d in devs for _, _, tr in d.iter_traits()]
    assert any(tr.type == "OTHER" and isinstance(tr.value, dict) for tr in all_traits)
    assert sum(not d.online for d in devs) >= 1
    assert any("/" in d.name for d in devs)
    assert any("+" in d.name for d in devs)
    assert any(" " in d.name for d in devs)


def test_specific_traits_have_the_documented_shapes() -> None:
    home = _by_id(sample_home())
    switch = _traits(home["lumi1.54ef448a0b73"])
    assert {
        (1, "EnergyManagement", c)
        for c in ("CurrentVoltage", "CurrentPower", "CumulativeEnergyConsumption")
    } <= set(switch)
    for ep in (2, 3):
        assert switch[(ep, "Output", "OnOff")].writable

    light = _traits(home["lumi1.54ef44d1e6a0"])
    level = light[(1, "LevelControl", "CurrentLevel")]
    assert (level.min, level.max, level.writable) == (0, 100, True)
    ct = light[(1, "ColorControl", "ColorTemperature")]
    assert (ct.min, ct.max, ct.writable) == (153, 500, True)

    curtain = _traits(home["lumi.158d0006c1d2e3"])
    assert curtain[(1, "WindowCovering", "TargetPositionPercentage")].writable
    assert not curtain[(1, "WindowCovering", "CurrentPositionPercentage")].writable

    thermostat = _traits(home["lumi1.54ef448cc210"])
    sp = thermostat[(1, "Thermostat", "SetTemperature")]
    assert (sp.min, sp.max, sp.step, sp.unit, sp.writable) == (5, 30, 0.5, "°C", True)
    mode = thermostat[(1, "Thermostat", "HeaterCoolerMode")]
    assert mode.type == "ENUM"
    assert mode.writable
    assert mode.enums is not None
    assert ("Off", "0") in mode.enums
    assert ("Heat", "1") in mode.enums

    lock = _traits(home["aqara.lock.7f3e9a01c2"])
    assert lock[(1, "DoorLock", "LockState")].type == "ENUM"
    assert not lock[(1, "DoorLock", "LockState")].writable


def test_sample_home_returns_fresh_objects() -> None:
    a, b = sample_home(), sample_home()
    assert a == b
    a[0].name = "changed"
    a[0].endpoints[2].functions[0].traits[0].value = "x"
    assert b[0].name != "changed"
    assert b[0].endpoints[2].functions[0].traits[0].value is False


def test_clone_is_independent() -> None:
    hub = _by_id(sample_home())["lumi1.54ef44100000"]
    copy = hub.clone()
    assert copy == hub
    net = next(tr for _, _, tr in copy.iter_traits() if tr.type == "OTHER")
    assert isinstance(net.value, dict)
    net.value["rssi"] = 0
    original = next(tr for _, _, tr in hub.iter_traits() if tr.type == "OTHER")
    assert original.value["rssi"] == -48


def test_heavy_synthetic_devices_have_the_chosen_trait_count() -> None:
    for traits in (2, 3, 7, 30):
        devices = synthetic_devices(20, seed=4, traits=traits)
        assert {len(d.iter_traits()) for d in devices} == {traits}
        assert len({d.device_id for d in devices}) == 20
        assert {d.model for d in devices} == {"lumi.meter.mc01"}
    assert synthetic_devices(5, seed=4, traits=30) == synthetic_devices(5, seed=4, traits=30)
    with pytest.raises(ValueError, match="at least 2"):
        synthetic_devices(1, seed=4, traits=1)


def test_synthetic_devices_are_deterministic() -> None:
    assert synthetic_devices(60, seed=7) == synthetic_devices(60, seed=7)
    assert synthetic_devices(60, seed=7) != synthetic_devices(60, seed=8)
    # A prefix of a longer run is the shorter run.
    assert synthetic_devices(10, seed=3) == synthetic_devices(40, seed=3)[:10]


@pytest.mark.parametrize("n", [0, 1, 500])
def test_synthetic_devices_count_and_unique_ids(n: int) -> None:
    devs = synthetic_devices(n, seed=1)
    assert len(devs) == n
    assert len({d.device_id for d in devs}) == n
    for dev in devs:
        assert ID_RE.match(dev.device_id), dev.device_id


def test_synthetic_devices_are_varied_and_well_formed() -> None:
    devs = synthetic_devices(300, seed=0)
    assert len({d.model for d in devs}) >= 10
    assert any(not d.online for d in devs)
    assert sum(d.online for d in devs) > 250
    for dev in devs:
        for ep, fn, tr in dev.iter_traits():
            assert _value_fits(tr), (dev.device_id, ep, fn, tr.code, tr.value)
        reach = _traits(dev)[(0, "BasicInformation", "Reachable")]
        assert reach.value is dev.online
