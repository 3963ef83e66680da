"""The web page with 1,000 devices: time to show the device list, to filter it, and how smooth
the page stays while the hub changes values at a steady rate (real Chromium, headless).

Run: ``.venv/bin/python -m benchmarks.web [--devices 1000] [--rates 100,1000]``

For each rate, the Studio simulator (own process, N synthetic devices, random changes at that
rate) feeds the bridge (``aqara-mqtt run``, own process, page on a free port) and Debian's
Chromium opens the page through playwright-core (tests/browser.py). Figures, measured in the page:
the device list's first full render (navigation start → N rows in the DOM, which includes the
page's own loading and the API call), the list built again (another page → the list painted),
one search keystroke
(input → filtered list painted), and during 5 s on the device list, the device page and the
events page, the live messages received per second and the frame intervals (p50/p99/max: 16.7 ms
is a smooth 60 Hz; a long frame is a page that does not answer).
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request

from benchmarks.harness import bridge, bridge_config, simulator
from tests.browser import Browser
from tests.mosquitto import free_port, running_mosquitto

FRAMES = """async (seconds) => {
    const ws = new WebSocket(new URL("ws", location.href).href.replace(/^http/, "ws"));
    let values = 0;
    ws.onmessage = (e) => { for (const m of JSON.parse(e.data)) if (m.t === "value") values++; };
    const gaps = [];
    let last = performance.now();
    const end = last + seconds * 1000;
    await new Promise((done) => {
        const tick = (now) => { gaps.push(now - last); last = now;
                                if (now < end) requestAnimationFrame(tick); else done(); };
        requestAnimationFrame(tick);
    });
    ws.close();
    gaps.sort((a, b) => a - b);
    const at = (q) => gaps[Math.min(gaps.length - 1, Math.floor(q * gaps.length))];
    return {per_s: values / seconds, p50: at(0.5), p99: at(0.99), max: gaps[gaps.length - 1]};
}"""

REBUILD = """async () => {
    location.hash = "#/events";
    await new Promise((done) => setTimeout(done, 300));
    const start = performance.now();
    location.hash = "#/devices";
    while (document.querySelectorAll("#devices .row").length < %d) {
        await new Promise((done) => setTimeout(done, 0));
    }
    await new Promise(requestAnimationFrame);
    return performance.now() - start;
}"""

SEARCH = """async () => {
    const input = document.getElementById("search");
    const start = performance.now();
    input.value = "thermostat";
    input.dispatchEvent(new Event("input"));
    await new Promise(requestAnimationFrame);
    const took = performance.now() - start;
    const shown = document.getElementById("count").textContent;
    input.value = "";
    input.dispatchEvent(new Event("input"));
    return {ms: took, shown};
}"""


def wait_devices(url: str, count: int, timeout: float = 180) -> None:
    """Block until the page's API lists ``count`` devices."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "api/devices", timeout=5) as response:
                if len(json.load(response)) >= count:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the page did not list {count} devices within {timeout:.0f} s")


def measure(browser: Browser, url: str, devices: int) -> dict[str, object]:
    browser.call("fresh")
    browser.call("goto", url=url)
    browser.call("wait", selector=f"#devices .rows > .row:nth-child({devices})", timeout=60000)
    render = browser.call("evaluate", expression="performance.now()")
    search = browser.call("evaluate", expression=f"({SEARCH})()")
    rebuild = browser.call("evaluate", expression=f"({REBUILD % devices})()")
    figures: dict[str, object] = {"render_ms": render, "rebuild_ms": rebuild,
                                  "search_ms": search["ms"], "search_shown": search["shown"]}
    figures["list"] = browser.call("evaluate", expression=f"({FRAMES})(5)")
    first = browser.call("evaluate", expression=(
        "document.querySelector('#devices .row').dataset.id"))
    browser.call("goto", url=f"{url}#/device/{first}")
    browser.call("wait", selector="#traits")
    figures["device"] = browser.call("evaluate", expression=f"({FRAMES})(5)")
    browser.call("goto", url=f"{url}#/events")
    browser.call("wait", selector="#events")
    figures["events"] = browser.call("evaluate", expression=f"({FRAMES})(5)")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--rates", default="100,1000")
    args = parser.parse_args()
    browser = Browser()
    try:
        print(f"{args.devices} devices; times in ms; frames: p50/p99/max interval")
        print(f"{'changes/s':>9} {'first list':>10} {'rebuild':>7} {'search':>7} "
              f"{'list: msg/s, frames':>26} {'device page':>20} {'events page':>20}")
        for rate in (float(r) for r in args.rates.split(",")):
            with running_mosquitto() as broker:
                hub_port, page_port = free_port(), free_port()
                extra = f"frontend: {{enabled: true, port: {page_port}}}\n"
                with simulator(hub_port, args.devices, rate), \
                        bridge(bridge_config(broker.port, hub_port, extra=extra)):
                    url = f"http://127.0.0.1:{page_port}/"
                    wait_devices(url, args.devices)
                    f = measure(browser, url, args.devices)

            def frames(key: str, f: dict[str, object] = f) -> str:
                m = f[key]
                assert isinstance(m, dict)
                return f"{m['per_s']:6.0f} {m['p50']:4.1f}/{m['p99']:4.1f}/{m['max']:5.1f}"

            print(f"{rate:>9.0f} {f['render_ms']:>10.0f} {f['rebuild_ms']:>7.0f} "
                  f"{f['search_ms']:>7.1f} "
                  f"{frames('list'):>26} {frames('device'):>20} {frames('events'):>20}",
                  flush=True)
    finally:
        browser.close()


if __name__ == "__main__":
    main()
