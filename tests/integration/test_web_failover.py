"""The bridge page's failover section in a real browser (Debian's Chromium, headless) against the
real daemon, Mosquitto and the Studio simulator.

The daemon does not report failover yet: the tests wrap the web server's status callable so that
``api/status`` carries a ``failover`` object, as an active member's daemon will.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest

from bridge.app import Daemon
from bridge.simulators.studio import StudioSimulator
from bridge.web.server import WebServer
from tests.browser import Browser
from tests.integration.conftest import bridge_config, running
from tests.mosquitto import Mosquitto
from tests.mqtt_probe import MqttProbe, eventually

pytestmark = pytest.mark.integration

PAGE_TOKEN = "web-failover-token-3e7b"
ONOFF = "aqara/dining_light/1/Output/OnOff"
STANDBYS = "#failover-standbys"


@pytest.fixture
async def page(browser: Browser, mosquitto: Mosquitto, hub: StudioSimulator,
               probe: MqttProbe) -> AsyncIterator[tuple[WebServer, str]]:
    """The daemon's web server and the bridge page's URL; the browser is logged in."""
    config = bridge_config(mosquitto, hub, extra=(
        f"frontend: {{enabled: true, port: 0, token: {PAGE_TOKEN}}}"))
    async with running(Daemon(config)) as daemon:
        await probe.value(ONOFF, "true")
        await eventually(lambda: daemon.web is not None and daemon.web.port != 0)
        assert daemon.web is not None
        url = daemon.web.url
        await browser.do("fresh")
        assert await browser.do("goto", url=f"{url}?token={PAGE_TOKEN}") == 200
        await browser.do("wait", selector="#devices .row")
        yield daemon.web, url
        assert await browser.do("logs") == []  # no script error, no failed request


class FailoverStatus:
    """The daemon's status plus ``failover`` (None: left out, as without failover set up)."""

    def __init__(self, real: Callable[[], Mapping[str, Any]]) -> None:
        self.real = real
        self.failover: dict[str, Any] | None = None

    def __call__(self) -> Mapping[str, Any]:
        status = dict(self.real())
        if self.failover is not None:
            status["failover"] = self.failover
        return status


@pytest.fixture
def status(page: tuple[WebServer, str], monkeypatch: pytest.MonkeyPatch) -> FailoverStatus:
    web, _ = page
    wrapped = FailoverStatus(web.status)
    monkeypatch.setattr(web, "status", wrapped)
    return wrapped


async def has_failover(browser: Browser) -> bool:
    return bool(await browser.do("evaluate", expression=(
        "document.getElementById('failover') !== null"
        " || [...document.querySelectorAll('h2')].some((e) => e.textContent === 'Failover')")))


async def local_time(browser: Browser, epoch: float) -> str:
    """``epoch`` as the page writes it (the browser's locale and time zone)."""
    text = await browser.do("evaluate", expression=f"new Date({epoch} * 1000).toLocaleString()")
    assert isinstance(text, str)
    return text


async def test_without_failover_the_bridge_page_has_no_failover_rows(
        page: tuple[WebServer, str], browser: Browser, status: FailoverStatus) -> None:
    _, url = page
    await browser.do("goto", url=f"{url}#/bridge")
    assert await browser.do("wait", selector="#hubs td", text="connected") == "connected"
    assert await browser.do("text", selector="#mqtt-state") == "connected"
    assert not await has_failover(browser)
    assert "failover" not in status()


async def test_the_active_member_and_its_standbys_are_shown(
        page: tuple[WebServer, str], browser: Browser, status: FailoverStatus) -> None:
    _, url = page
    since = time.time() - 125
    status.failover = {
        "member": "pi-a", "generation": 7, "since": since, "lease_seconds": 6.0,
        "standbys": [{"member": "pi-b", "hub_reachable": True},
                     {"member": "pi-c", "hub_reachable": False}]}
    await browser.do("goto", url=f"{url}#/bridge")
    await browser.do("wait", selector="#failover")
    assert await browser.do("text", selector="#failover-member") == "pi-a"
    active = await browser.do("text", selector="#failover-active td")
    assert active == f"pi-a (generation 7) since {await local_time(browser, since)} (2 min ago)"
    assert await browser.do("text", selector=STANDBYS) == (
        "pi-b (hub reachable), pi-c (hub not reachable)")
    assert await browser.do("evaluate", expression=(
        "[...document.querySelectorAll('#failover-standbys .standby')]"
        ".map((e) => [e.dataset.member, e.querySelector('span').className])")) == [
        ["pi-b", "ok"], ["pi-c", "bad"]]
    # the page's own status rows are still there
    assert await browser.do("wait", selector="#hubs td", text="connected") == "connected"


async def test_a_status_event_redraws_the_failover_rows_without_a_reload(
        page: tuple[WebServer, str], browser: Browser, status: FailoverStatus) -> None:
    web, url = page
    await browser.do("goto", url=f"{url}#/bridge")
    await browser.do("wait", selector="#hubs td", text="connected")
    await browser.do("evaluate", expression="window.notReloaded = true")
    assert not await has_failover(browser)

    status.failover = {"member": "pi-a", "generation": 7, "since": time.time() - 5,
                       "lease_seconds": 6.0, "standbys": []}
    web.output.on_connected()  # the live feed's "status" message
    assert await browser.do("wait", selector=STANDBYS, text="none") == (
        "none — no standby is connected")
    assert await browser.do("text", selector="#failover-member") == "pi-a"

    # a takeover: the new active member's status; a member's name is shown as text, not markup
    odd = '<img src=x onerror="window.injected = 1">'
    status.failover = {"member": "pi-b", "generation": 8, "since": time.time(),
                       "lease_seconds": 6.0,
                       "standbys": [{"member": "pi-a", "hub_reachable": False},
                                    {"member": odd, "hub_reachable": True}]}
    web.output.on_connected()
    assert await browser.do("wait", selector="#failover-active td", text="generation 8")
    assert await browser.do("text", selector="#failover-member") == "pi-b"
    assert await browser.do("text", selector=STANDBYS) == (
        f"pi-a (hub not reachable), {odd} (hub reachable)")
    assert await browser.do("evaluate", expression=(
        "document.querySelectorAll('#view img').length === 0"
        " && window.injected === undefined")) is True

    status.failover = None  # failover switched off again
    web.output.on_connected()
    for _ in range(50):  # the page fetches api/status again, then draws
        if not await has_failover(browser):
            break
        await asyncio.sleep(0.1)
    assert not await has_failover(browser)
    assert await browser.do("evaluate", expression="window.notReloaded") is True
