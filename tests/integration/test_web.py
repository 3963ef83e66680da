"""The web page in a real browser (Debian's Chromium, headless, through playwright-core) against
the real daemon, Mosquitto and the Studio simulator with the sample home.

``AQARA_MQTT_SCREENSHOTS=1`` also saves each page to docs/web-*.png (the README shows them),
and the phone-sized and changed pages to docs/screenshots/.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bridge.app import Daemon
from bridge.config import ConfigError, parse_config
from bridge.secrets import register_secret
from bridge.simulators.studio import StudioSimulator
from tests.browser import Browser
from tests.integration.conftest import LIGHT, TOKEN, bridge_config, running
from tests.mosquitto import Mosquitto, free_port
from tests.mqtt_probe import MqttProbe, eventually

pytestmark = pytest.mark.integration

PAGE_TOKEN = "web-page-token-8c1d"
ONOFF = "aqara/dining_light/1/Output/OnOff"
DOCS = Path(__file__).parents[2] / "docs"
SWITCH = '[aria-label="1.Output.OnOff"]'
BEDSIDE_BUTTON = "lumi.158d0002f8e7d6"
THERMOSTAT = "lumi1.54ef448cc210"  # HeaterCoolerMode Heat (wire value 1), FanMode Auto (0)

@pytest.fixture
async def page(browser: Browser, mosquitto: Mosquitto, hub: StudioSimulator,
               probe: MqttProbe) -> AsyncIterator[tuple[Daemon, str]]:
    """The daemon with its page (token set), and the page's URL; the browser is logged in."""
    config = bridge_config(mosquitto, hub, extra=(
        f"frontend: {{enabled: true, port: 0, token: {PAGE_TOKEN}}}"))
    async with running(Daemon(config)) as daemon:
        await probe.value(ONOFF, "true")
        assert daemon.web is not None
        await eventually(lambda: daemon.web is not None and daemon.web.port != 0)
        url = daemon.web.url
        await browser.do("fresh")
        assert await browser.do("goto", url=f"{url}?token={PAGE_TOKEN}") == 200
        await browser.do("wait", selector="#devices .row")
        yield daemon, url
        assert await browser.do("logs") == []  # no script error, no failed request


async def screenshot(browser: Browser, name: str, prefix: str = "web-") -> None:
    if os.environ.get("AQARA_MQTT_SCREENSHOTS"):
        await browser.do("screenshot", path=str(DOCS / f"{prefix}{name}.png"))


async def test_the_sample_home_appears_on_every_page(page: tuple[Daemon, str],
                                                     browser: Browser,
                                                     hub: StudioSimulator) -> None:
    _, url = page
    assert await browser.do("text", selector="#count") == "24 of 24 devices"
    assert "Dining Light" in await browser.do("wait", selector="#devices .row",
                                              text="dining_light")
    await screenshot(browser, "devices")
    await browser.do("fill", selector="#search", value="kettle")
    assert await browser.do("text", selector="#count") == "1 of 24 devices"

    await browser.do("goto", url=f"{url}#/bridge")
    assert await browser.do("wait", selector="#hubs td", text="connected") == "connected"
    assert await browser.do("text", selector="#mqtt-state") == "connected"
    await screenshot(browser, "bridge")

    await browser.do("goto", url=f"{url}#/device/{LIGHT}")
    await browser.do("wait", selector="#traits tr", text="CurrentLevel")
    assert await browser.do("text", selector='#traits code') == (
        "aqara/dining_light/0/BasicInformation/FirmwareRevision")
    await browser.do("click", selector="#traits .topic button")
    assert await browser.do("wait", selector="#traits .topic button", text="copied")
    assert await browser.do("evaluate", expression="navigator.clipboard.readText()") == (
        "aqara/dining_light/0/BasicInformation/FirmwareRevision")
    await screenshot(browser, "device")

    await browser.do("goto", url=f"{url}#/homeassistant")
    await browser.do("wait", selector="#entities td",
                     text="aqara_mqtt_lumi1_54ef44d1e6a0_ep1_light")
    await screenshot(browser, "homeassistant")

    await browser.do("goto", url=f"{url}#/events")
    await browser.do("wait", selector="#events")
    hub.set_value(LIGHT, 1, "LevelControl", "CurrentLevel", 55)
    hub.press(BEDSIDE_BUTTON, 1, "double")
    hub.set_online(LIGHT, False)
    await browser.do("wait", selector="#events .row", text="dining_light is offline")
    await browser.do("wait", selector="#events .row", text="CurrentLevel = 55")
    await browser.do("wait", selector="#events .row", text=f"{BEDSIDE_BUTTON} double")
    await screenshot(browser, "events")


async def test_a_light_toggled_on_the_page_switches_the_hub_and_the_topic(
        page: tuple[Daemon, str], browser: Browser, hub: StudioSimulator,
        probe: MqttProbe, mosquitto: Mosquitto) -> None:
    daemon, url = page
    await browser.do("goto", url=f"{url}#/device/{LIGHT}")
    await browser.do("wait", selector=SWITCH)
    await browser.do("click", selector=SWITCH)
    assert await browser.do("wait", selector='[data-answer="1.Output.OnOff"]',
                            text="done") == "✓ done"
    assert hub.get_value(LIGHT, 1, "Output", "OnOff") is False
    assert await probe.value(ONOFF, "false") == "false"
    late = await MqttProbe(mosquitto.port, [ONOFF]).start()  # what the broker retains
    try:
        assert await late.value(ONOFF) == "false"
        assert late.last[ONOFF].retain
    finally:
        late.stop()
    assert daemon.bridge.writes_queued == 1


async def test_a_change_in_the_hub_appears_without_a_reload(
        page: tuple[Daemon, str], browser: Browser, hub: StudioSimulator) -> None:
    _, url = page
    await browser.do("goto", url=f"{url}#/device/{LIGHT}")
    level = '[data-path="1.LevelControl.CurrentLevel"]'
    await browser.do("wait", selector=level)
    await browser.do("evaluate", expression="window.notReloaded = true")
    hub.set_value(LIGHT, 1, "LevelControl", "CurrentLevel", 42)
    assert await browser.do("wait", selector=level, text="42") == "42"
    assert await browser.do("evaluate", expression="window.notReloaded") is True

    await browser.do("goto", url=f"{url}#/events")
    hub.set_value(LIGHT, 1, "LevelControl", "CurrentLevel", 43)
    await browser.do("wait", selector="#events .row",
                     text="dining_light 1.LevelControl.CurrentLevel = 43")
    await browser.do("select", selector="#event-kind", value="log")
    assert await browser.do("evaluate", expression=(
        "document.querySelectorAll('#event-rows .kind-value').length")) == 0


async def test_a_button_press_appears_in_the_event_stream_once(
        page: tuple[Daemon, str], browser: Browser, hub: StudioSimulator) -> None:
    _, url = page
    await browser.do("goto", url=f"{url}#/device/{BEDSIDE_BUTTON}")
    fired = await browser.do("wait", selector="#events-fired td", text="double")
    assert fired.startswith("single, double")
    assert await browser.do("text", selector="main p code") == f"aqara/{BEDSIDE_BUTTON}/event"
    trigger = await browser.do("wait", selector="main li", text="button_double_press")
    assert trigger.startswith("device_automation: trigger button_1 button_double_press")
    await browser.do("goto", url=f"{url}#/events")
    await browser.do("select", selector="#event-kind", value="action")
    hub.press(BEDSIDE_BUTTON, 1, "double", repeat=2)  # delivered twice, pressed once
    row = await browser.do("wait", selector="#event-rows .kind-action", text="double")
    assert row.endswith(f"{BEDSIDE_BUTTON} double")
    hub.press(BEDSIDE_BUTTON, 1, "hold")
    await browser.do("wait", selector="#event-rows .kind-action", text="hold")
    assert await browser.do("evaluate", expression=(
        "document.querySelectorAll('#event-rows .kind-action').length")) == 2


async def test_a_refused_write_shows_its_reason(page: tuple[Daemon, str], browser: Browser,
                                                hub: StudioSimulator) -> None:
    daemon, url = page
    await browser.do("goto", url=f"{url}#/device/{LIGHT}")
    await browser.do("wait", selector=SWITCH)
    hub.set_online(LIGHT, False)
    await browser.do("wait", selector="#device-availability", text="offline")
    await browser.do("click", selector=SWITCH)
    answer = await browser.do("wait", selector='[data-answer="1.Output.OnOff"]', text="✗")
    assert answer == "✗ device 'dining_light' is offline"
    assert hub.get_value(LIGHT, 1, "Output", "OnOff") is True
    assert daemon.bridge.writes_rejected == 1
    await browser.do("goto", url=f"{url}#/events")
    await browser.do("wait", selector="#events .row",
                     text="rejected: device 'dining_light' is offline")


async def test_enum_values_show_their_labels_with_the_wire_value_on_hover(
        page: tuple[Daemon, str], browser: Browser, hub: StudioSimulator,
        probe: MqttProbe) -> None:
    _, url = page
    await browser.do("goto", url=f"{url}#/device/{THERMOSTAT}")
    mode = '[data-path="1.Thermostat.HeaterCoolerMode"]'
    assert await browser.do("wait", selector=mode, text="Heat") == "Heat"
    assert await browser.do("evaluate", expression=(
        f"document.querySelector('{mode}').title")) == "wire value 1"
    spec = await browser.do("evaluate", expression=(
        f"document.querySelector('{mode}').closest('tr').querySelector('.spec').textContent"))
    assert "Off (0) | Heat (1) | Cool (2)" in spec
    await browser.do("goto", url=f"{url}#/events")
    await browser.do("wait", selector="#events")
    hub.set_value(THERMOSTAT, 1, "Thermostat", "FanMode", "3")
    assert await probe.value(f"aqara/{THERMOSTAT}/1/Thermostat/FanMode", "High")
    row = "#event-rows .kind-value .text[title='wire value 3']"
    assert await browser.do("wait", selector=row) == (
        f"{THERMOSTAT} 1.Thermostat.FanMode = High")
    await browser.do("fill", selector="#event-filter", value="wire value 3")  # the code finds it
    assert await browser.do("evaluate", expression=(
        "document.querySelectorAll('#event-rows .row').length")) == 1
    await browser.do("fill", selector="#event-filter", value="")
    await browser.do("goto", url=f"{url}#/device/{THERMOSTAT}")
    fan = '[data-path="1.Thermostat.FanMode"]'
    assert await browser.do("wait", selector=fan, text="High") == "High"
    hub.set_value(THERMOSTAT, 1, "Thermostat", "FanMode", "1")  # live, without a reload
    assert await browser.do("wait", selector=fan, text="Low") == "Low"
    assert await browser.do("evaluate", expression=(
        f"document.querySelector('{fan}').title")) == "wire value 1"
    await screenshot(browser, "desktop-thermostat-labels", "screenshots/")


async def test_a_page_opened_later_shows_the_history_and_a_refused_write(
        page: tuple[Daemon, str], browser: Browser, hub: StudioSimulator,
        probe: MqttProbe) -> None:
    daemon, url = page
    assert daemon.web is not None
    kept = daemon.web.output.history
    hub.set_online(LIGHT, False)
    await probe.value("aqara/dining_light/availability", "offline")
    register_secret(PAGE_TOKEN)  # as `run` does with every secret of the config
    await probe.publish(f"{ONOFF}/set", "OFF")  # over MQTT, while no page is open at all
    await probe.publish(f"{ONOFF}/set", PAGE_TOKEN)
    hub.press(BEDSIDE_BUTTON, 1, "double")
    await eventually(lambda: sorted({m["t"] for m in kept.entries()} & {"answer", "action"})
                     == ["action", "answer"] and sum(m["t"] == "answer"
                                                     for m in kept.entries()) == 2)
    refused = f"write {ONOFF}/set OFF: ✗ device 'dining_light' is offline"
    masked = (f"write {ONOFF}/set ***: ✗ value '***' is not a boolean for 1.Output.OnOff "
              "(use true/false, ON/OFF, 1/0 or toggle)")  # the secret never shown
    for _ in range(2):  # a new browser profile, then a reload
        await browser.do("fresh")
        assert await browser.do("goto", url=f"{url}?token={PAGE_TOKEN}") == 200
        await browser.do("goto", url=f"{url}#/events")
        assert await browser.do("wait", selector="#event-rows .kind-answer .text",
                                text="OFF:") == refused
        await browser.do("wait", selector="#event-rows .kind-action", text="double")
        await browser.do("wait", selector="#event-rows .kind-availability",
                         text="dining_light is offline")
        await browser.do("wait", selector="#event-rows .kind-log",
                         text="rejected: device 'dining_light' is offline")
    await screenshot(browser, "desktop-events-history", "screenshots/")
    texts = "Array.from(document.querySelectorAll('#event-rows .row .text'), e => e.textContent)"
    await browser.do("select", selector="#event-kind", value="answer")
    await browser.do("select", selector="#event-device", value=LIGHT)
    assert await browser.do("evaluate", expression=texts) == [masked, refused]
    await browser.do("fill", selector="#event-filter", value="offline")
    assert await browser.do("evaluate", expression=texts) == [refused]
    await browser.do("select", selector="#event-device", value=BEDSIDE_BUTTON)
    assert await browser.do("evaluate", expression=texts) == []
    assert await browser.do("text", selector="#event-rows") == "Nothing matches these filters."
    # the device page links to its events: the device filter set
    await browser.do("goto", url=f"{url}#/device/{LIGHT}")
    await browser.do("click", selector="#device-events")
    await browser.do("wait", selector="#event-rows .row")
    assert await browser.do("evaluate", expression=(
        "document.getElementById('event-device').value")) == LIGHT
    history = await history_text(url, {"Authorization": f"Bearer {PAGE_TOKEN}"})
    assert PAGE_TOKEN not in history
    assert TOKEN not in history  # the hub's token


async def test_the_history_keeps_only_the_last_n_messages(
        browser: Browser, mosquitto: Mosquitto, hub: StudioSimulator, probe: MqttProbe) -> None:
    config = bridge_config(mosquitto, hub, extra="frontend: {enabled: true, port: 0, history: 5}")
    async with running(Daemon(config)) as daemon:
        await probe.value(ONOFF, "true")
        port = await eventually(lambda: daemon.web is not None and daemon.web.port)
        for level in range(20, 40):
            hub.set_value(LIGHT, 1, "LevelControl", "CurrentLevel", level)
        await probe.value("aqara/dining_light/1/LevelControl/CurrentLevel", "39")
        history = json.loads(await history_text(f"http://127.0.0.1:{port}/"))
        assert history["limit"] == 5
        assert [m["value"] for m in history["entries"]] == [35, 36, 37, 38, 39]
        assert len({m["seq"] for m in history["entries"]}) == 5
        await browser.do("fresh")
        await browser.do("goto", url=f"http://127.0.0.1:{port}/#/events")
        await browser.do("wait", selector="#event-rows .row", text="= 39")
        assert await browser.do("evaluate", expression=(
            "document.querySelectorAll('#event-rows .row').length")) == 5
        assert await browser.do("text", selector="#event-limit") == "the last 5, newest first"
        assert await browser.do("logs") == []


@pytest.mark.parametrize("size", ["0", "10001", "true"])
def test_the_history_size_is_checked(size: str) -> None:
    base = "backends: [{type: studio, name: h, url: 'ws://127.0.0.1:1', token: t}]\n"
    assert parse_config(base, "c.yaml").frontend.history == 500
    with pytest.raises(ConfigError, match=r"frontend\.history"):
        parse_config(base + f"frontend: {{history: {size}}}\n", "c.yaml")


async def history_text(url: str, headers: dict[str, str] | None = None) -> str:
    """The page's ``api/history`` document, as sent."""
    async with aiohttp.ClientSession() as http, http.get(f"{url}api/history",
                                                         headers=headers) as response:
        assert response.status == 200
        return await response.text()


PHONE_PAGES = {  # each page, what shows that it is drawn, and what its screenshot shows
    "devices": ("#/devices", "#devices .row", None),
    "bridge": ("#/bridge", "#hubs td", None),
    "device": (f"#/device/{LIGHT}", '[data-path="1.Output.OnOff"]', None),
    "thermostat": (f"#/device/{THERMOSTAT}", '[data-path="1.Thermostat.FanMode"]', "#traits"),
    "button": (f"#/device/{BEDSIDE_BUTTON}", "#events-fired td", "#events-fired"),
    "events": ("#/events", "#event-rows .row", None),
    "homeassistant": ("#/homeassistant", "#entities td", None),
}


@pytest.mark.parametrize("width", [360, 390])
async def test_every_page_fits_a_phone(page: tuple[Daemon, str], browser: Browser,
                                       width: int) -> None:
    _, url = page
    await browser.do("fresh", width=width, height=844)
    assert await browser.do("goto", url=f"{url}?token={PAGE_TOKEN}") == 200
    wider = {}
    for name, (route, drawn, shown) in PHONE_PAGES.items():
        await browser.do("goto", url=f"{url}{route}")
        await browser.do("wait", selector=drawn)
        if shown is not None:
            await browser.do("evaluate", expression=(
                f"document.querySelector('{shown}').scrollIntoView({{block: 'end'}})"))
        scroll = await browser.do("evaluate", expression=(
            "[document.documentElement.scrollWidth, document.body.scrollWidth, innerWidth]"))
        if max(scroll[:2]) > scroll[2]:
            wider[name] = scroll
        if width == 390:
            await screenshot(browser, f"phone-{name}", "screenshots/")
    assert wider == {}


@contextlib.asynccontextmanager
async def other_site() -> AsyncIterator[str]:
    """A page on another origin (another port) the browser can open."""
    app = web.Application()

    async def blank(_request: web.Request) -> web.Response:
        return web.Response(text="<html><body>elsewhere</body></html>", content_type="text/html")

    app.router.add_get("/", blank)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        await runner.cleanup()


async def test_without_a_token_a_rebound_host_name_is_refused(
        mosquitto: Mosquitto, hub: StudioSimulator, probe: MqttProbe) -> None:
    """DNS rebinding: evil.example re-pointed at 127.0.0.1 is same-origin with itself, so only
    the Host header gives it away."""
    config = bridge_config(mosquitto, hub, extra="frontend: {enabled: true, port: 0}")
    async with running(Daemon(config)) as daemon:
        await probe.value(ONOFF, "true")
        port = await eventually(lambda: daemon.web is not None and daemon.web.port)
        write = f"http://127.0.0.1:{port}/api/devices/{LIGHT}/write"
        body = {"path": "1.Output.OnOff", "value": False}
        async with aiohttp.ClientSession() as http:
            rebound = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
            async with http.post(write, json=body, headers=rebound) as response:
                assert response.status == 403
                assert "DNS rebinding" in await response.text()
            async with http.get(f"http://127.0.0.1:{port}/api/devices",
                                headers={"Host": f"evil.example:{port}"}) as response:
                assert response.status == 403
            for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
                async with http.get(f"http://127.0.0.1:{port}/api/devices",
                                    headers={"Host": host}) as response:
                    assert response.status == 200, host
        assert probe.last[ONOFF].payload == b"true"  # the forged write never reached the hub


async def test_the_token_is_enforced_and_writes_cannot_be_forged(
        page: tuple[Daemon, str], browser: Browser, hub: StudioSimulator) -> None:
    daemon, url = page
    write_url = f"{url}api/devices/{LIGHT}/write"
    body = {"path": "1.Output.OnOff", "value": False}
    async with aiohttp.ClientSession() as http:
        for path in ("", "api/devices", "api/status", "static/app.js"):
            async with http.get(url + path) as response:
                assert response.status == 401, path
                assert PAGE_TOKEN not in await response.text()
        async with http.get(f"{url}?token=wrong") as response:
            assert response.status == 401
        async with http.get(f"{url}?token={PAGE_TOKEN}&x=1", allow_redirects=False) as response:
            assert response.status == 303
            assert response.headers["Location"] == "/?x=1"  # the token leaves the address
            cookie = response.headers["Set-Cookie"]
            assert cookie.startswith(f"aqara_mqtt_token={PAGE_TOKEN};")
            assert "HttpOnly" in cookie
            assert "SameSite=Strict" in cookie
        http.cookie_jar.clear()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url + "ws")
        assert refused.value.status == 401
        bearer = {"Authorization": f"Bearer {PAGE_TOKEN}"}
        async with http.ws_connect(url + "ws", headers={**bearer, "Origin": url[:-1]}) as ws:
            assert not ws.closed
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url + "ws", headers={**bearer,
                                                       "Origin": "http://evil.example"})
        assert refused.value.status == 403
        async with http.post(write_url, json=body,
                             headers={**bearer, "Origin": "http://evil.example"}) as response:
            assert response.status == 403
        async with http.post(write_url, data="{}", headers={
                **bearer, "Content-Type": "text/plain"}) as response:
            assert response.status == 415
        async with http.get(url + "api/status", headers=bearer) as response:
            status = await response.text()
            assert response.status == 200
            assert PAGE_TOKEN not in status
            assert "studio-test-token" not in status  # the hub's token
            assert response.headers["X-Frame-Options"] == "DENY"
            assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]

    # the logged-in browser, lured to another site, cannot make the page write
    async with other_site() as elsewhere:
        await browser.do("goto", url=elsewhere)
        script = f"""async () => {{
            const sent = [];
            for (const [mode, type] of [["no-cors", "text/plain"], ["cors", "application/json"]]) {{
                const options = {{method: "POST", mode, credentials: "include",
                                  headers: {{"Content-Type": type}}, body: {json.dumps(body)!r}}};
                try {{
                    const r = await fetch({write_url!r}, options);
                    sent.push(r.type + " " + r.status);
                }} catch (error) {{ sent.push("blocked"); }}
            }}
            return sent;
        }}"""
        assert await browser.do("evaluate", expression=f"({script})()") == [
            "opaque 0", "blocked"]
    assert hub.get_value(LIGHT, 1, "Output", "OnOff") is True
    assert daemon.bridge.writes_queued == 0
    await browser.do("logs")  # the refused requests' console errors are expected here


async def stalled_socket(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client that completes the handshake and then never reads again."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=4096)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    writer.write((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {PAGE_TOKEN}\r\n\r\n"
                  ).encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    return reader, writer


async def test_a_stalled_browser_holds_up_neither_the_bridge_nor_other_pages(
        page: tuple[Daemon, str], browser: Browser, hub: StudioSimulator,
        probe: MqttProbe) -> None:
    daemon, url = page
    assert daemon.web is not None
    output = daemon.web.output
    output.feed_limit = 5
    before = set(output.feeds)
    _, writer = await stalled_socket(daemon.web.port)
    (stalled,) = await eventually(lambda: output.feeds - before)
    await browser.do("goto", url=f"{url}#/device/{LIGHT}")
    level = '[data-path="1.LevelControl.CurrentLevel"]'
    await browser.do("wait", selector=level)
    try:
        big = "x" * 200_000  # fills the socket buffers: the stalled page's queue backs up
        for n in range(30):
            hub.set_value(LIGHT, 0, "BasicInformation", "FirmwareRevision", f"{n} {big}")
        await eventually(lambda: len(stalled) > 0)
        for value in range(10, 20):  # a trait of every device: more than its queue may hold
            hub.set_value(LIGHT, 1, "LevelControl", "CurrentLevel", value)
            for device in hub.devices:
                for ep, function, trait in device.iter_traits():
                    if trait.code == "FirmwareRevision":
                        hub.set_value(device.device_id, ep, function, trait.code, f"v{value}")
        await eventually(lambda: stalled.dropped > 0)
        assert len(stalled) <= 5
        # the bridge and the other page keep up
        assert await probe.value("aqara/dining_light/1/LevelControl/CurrentLevel", "19")
        assert await browser.do("wait", selector=level, text="19") == "19"
        await probe.publish(f"{ONOFF}/set", "OFF")
        assert await probe.value(ONOFF, "false")
    finally:
        writer.close()
    await eventually(lambda: stalled not in output.feeds)
    assert output.dropped >= stalled.dropped > 0  # still counted on the bridge page


async def test_behind_a_reverse_proxy_the_page_lives_under_its_base_path(
        browser: Browser, mosquitto: Mosquitto, hub: StudioSimulator, probe: MqttProbe) -> None:
    config = bridge_config(mosquitto, hub, extra=(
        "frontend: {enabled: true, port: 0, base_path: /tools/aqara}"))
    async with running(Daemon(config)) as daemon:
        await probe.value(ONOFF, "true")
        assert daemon.web is not None
        url = await eventually(lambda: daemon.web is not None and daemon.web.port != 0
                               and daemon.web.url)
        assert url.endswith("/tools/aqara/")
        async with aiohttp.ClientSession() as http:
            async with http.get(url[:-1], allow_redirects=False) as response:
                assert response.status == 308
                assert response.headers["Location"] == "/tools/aqara/"
            async with http.get(url.removesuffix("tools/aqara/") + "api/devices") as response:
                assert response.status == 404
        await browser.do("fresh")
        await browser.do("goto", url=url)
        await browser.do("wait", selector="#devices .row", text="dining_light")
        await browser.do("wait", selector="#live", text="live")
        await browser.do("goto", url=f"{url}#/device/{LIGHT}")
        level = '[data-path="1.LevelControl.CurrentLevel"]'
        await browser.do("wait", selector=level)
        hub.set_value(LIGHT, 1, "LevelControl", "CurrentLevel", 7)  # live, over the WebSocket
        assert await browser.do("wait", selector=level, text="7") == "7"
        assert await browser.do("logs") == []


async def test_a_taken_port_is_reported_and_the_bridge_runs_on(
        mosquitto: Mosquitto, hub: StudioSimulator, probe: MqttProbe) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = bridge_config(mosquitto, hub, extra=f"frontend: {{enabled: true, port: {port}}}")
        async with running(Daemon(config)):
            log = await probe.wait_for(lambda: [
                m.json() for m in probe.on("aqara/bridge/log")
                if "web page" in m.json()["message"]], timeout=30)
            assert log[0]["level"] == "error"
            assert log[0]["message"] == (f"the web page cannot listen on 127.0.0.1:{port}: "
                                         "Address already in use")
            await probe.publish(f"{ONOFF}/set", "OFF")
            assert await probe.value(ONOFF, "false")


@contextlib.contextmanager
def nginx(port: int, location: str, workdir: Path) -> Iterator[None]:
    """Debian's nginx on 127.0.0.1:``port`` with the README's ``location`` block."""
    temp = " ".join(f"{kind}_temp_path {workdir / kind};" for kind in (
        "client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (workdir / "nginx.conf").write_text(
        f"daemon off; master_process off; pid {workdir / 'nginx.pid'};\n"
        f"error_log {workdir / 'error.log'};\nevents {{}}\n"
        f"http {{ access_log off; {temp}\n"
        f"  server {{ listen 127.0.0.1:{port};\n{location}\n  }}\n}}\n")
    process = subprocess.Popen(["/usr/sbin/nginx", "-p", str(workdir), "-c",
                                str(workdir / "nginx.conf")], stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        process.terminate()
        process.wait(10)


async def accepting(port: int) -> None:
    """Return once something accepts connections on 127.0.0.1:``port``."""
    async with asyncio.timeout(30):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


async def test_the_readmes_nginx_setup_serves_the_page_under_its_base_path(
        browser: Browser, mosquitto: Mosquitto, hub: StudioSimulator, probe: MqttProbe,
        tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    location = readme.split("```nginx\n", 1)[1].split("```", 1)[0]
    config = bridge_config(mosquitto, hub, extra=(
        f"frontend: {{enabled: true, port: 0, base_path: /aqara, token: {PAGE_TOKEN}}}"))
    async with running(Daemon(config)) as daemon:
        await probe.value(ONOFF, "true")
        web_port = await eventually(lambda: daemon.web is not None and daemon.web.port)
        proxy_port = free_port()
        with nginx(proxy_port, location.replace("127.0.0.1:8088", f"127.0.0.1:{web_port}"),
                   tmp_path):
            url = f"http://127.0.0.1:{proxy_port}/aqara/"
            await accepting(proxy_port)
            await browser.do("fresh")
            assert await browser.do("goto", url=f"{url}?token={PAGE_TOKEN}") == 200
            await browser.do("wait", selector="#live", text="live")  # the WebSocket, proxied
            await browser.do("goto", url=f"{url}#/device/{LIGHT}")
            await browser.do("click", selector=SWITCH)  # a write through the proxy
            assert await browser.do("wait", selector='[data-answer="1.Output.OnOff"]',
                                    text="done") == "✓ done"
            assert await probe.value(ONOFF, "false")
            assert await browser.do("wait", selector='[data-path="1.Output.OnOff"]',
                                    text="false") == "false"
            assert await browser.do("logs") == []
