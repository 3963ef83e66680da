"""``aqara-mqtt run | demo | simulate | check | health`` (also ``python -m bridge``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace

from bridge import __version__, health
from bridge.app import Daemon, mqtt_settings, run_until_signalled
from bridge.backends.registry import make_backend
from bridge.config import Config, ConfigError, load_config, parse_config
from bridge.embedded_broker import BrokerUnavailable
from bridge.failover import run_member
from bridge.logsetup import configure_logging, get_logger
from bridge.mqtt import MqttLink, MqttSettings, read_retained
from bridge.secrets import redact

log = get_logger("bridge.cli")

DEMO_NAMES = {
    "lumi1.54ef44d1e6a0": "dining_light",
    "lumi1.54ef448a0b73": "living_room_switch",
    "lumi.158d0006c1d2e3": "living_room_curtain",
    "lumi1.54ef448cc210": "hallway_thermostat",
}


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="aqara-mqtt", description="Bridge Aqara and Tuya hubs to an MQTT broker."
    )
    parser.add_argument("--version", action="version", version=f"aqara-mqtt {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the bridge daemon")
    run.add_argument("-c", "--config", required=True, help="path to config.yaml")

    check = commands.add_parser("check", help="validate the config, reach the broker and hubs")
    check.add_argument("-c", "--config", required=True, help="path to config.yaml")
    check.add_argument("--config-only", action="store_true", help="only validate the config")

    health_cmd = commands.add_parser(
        "health", help="exit 0 when the bridge is online and every hub connected")
    health_cmd.add_argument("-c", "--config", required=True, help="path to config.yaml")
    health_cmd.add_argument("--timeout", type=float, default=10.0,
                            help="seconds to wait for the broker and the retained state "
                                 "(default %(default)g)")

    demo = commands.add_parser("demo", help="simulated hub + broker + bridge, nothing needed")
    demo.add_argument("--mqtt", help="use this broker (mqtt://host:port) instead of a built-in")
    demo.add_argument("--port", type=int, default=1883,
                      help="port of the demo's broker (a free one is picked if taken)")
    demo.add_argument("--broker", choices=["auto", "mosquitto", "embedded"], default="auto",
                      help="the demo's broker: Mosquitto when installed (auto), or the "
                           "built-in rumqttd (pip install '.[demo]')")
    demo.add_argument("--rate", type=float, default=0.5,
                      help="simulated sensor changes per second (default 0.5)")

    simulate = commands.add_parser("simulate", help="run a hub simulator on its own")
    simulate.add_argument("kind", choices=["studio", "aqara-cloud", "tuya"],
                          help="which hub to simulate")
    simulate.add_argument("--host", default="127.0.0.1",
                          help="address to listen on (default %(default)s)")
    simulate.add_argument("--port", type=int, default=8080,
                          help="port to listen on, 0 for any free one (default %(default)s)")
    simulate.add_argument("--token", default="demo-token",
                          help="studio: the hub's API token; aqara-cloud: the access token; "
                               "tuya: the app secret, when at least 24 characters (else the "
                               "simulator's own) (default %(default)s)")
    simulate.add_argument("--devices", type=int, default=None,
                          help="N synthetic devices instead of the sample home")
    simulate.add_argument("--rate", type=float, default=0.0,
                          help="random changes per second (default %(default)g: none)")
    simulate.add_argument("--seed", type=int, default=None,
                          help="seed of the random changes (studio, aqara-cloud: and of the "
                               "synthetic devices), for a repeatable run (default: a new one "
                               "each run)")
    simulate.add_argument("--traits", type=int, default=None,
                          help="with --devices (studio): every device an energy meter with "
                               "this many traits (at least 2)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            config = load_config(args.config)
            configure_logging(config.log.level, config.log.format,
                              secrets=config.secret_values())
            reload = functools.partial(load_config, args.config)
            if config.instance.failover:
                return asyncio.run(run_member(config, reload))
            return asyncio.run(run_until_signalled(Daemon(config), reload))
        if args.command == "check":
            config = load_config(args.config)
            if args.config_only:
                print("config: ok")
                return 0
            configure_logging("warning", "console")
            return asyncio.run(check(config))
        if args.command == "health":
            return health_check(load_config(args.config), args.timeout)
        if args.command == "demo":
            configure_logging("info", "console")
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(demo(args.mqtt, args.port, args.rate, args.broker))
        elif args.command == "simulate":
            if args.traits is not None and (args.kind != "studio" or args.devices is None
                                            or args.traits < 2):
                print("aqara-mqtt: --traits needs 'simulate studio --devices N' and at least 2",
                      file=sys.stderr)
                return 2
            configure_logging("info", "console")
            if args.kind == "tuya":
                from bridge.simulators.tuya import serve as serve_tuya

                secret = args.token if len(args.token) >= 24 else None  # else the default
                with contextlib.suppress(KeyboardInterrupt):
                    asyncio.run(serve_tuya(args.port, args.host, secret=secret,
                                           devices=args.devices, rate=args.rate, seed=args.seed))
                return 0
            if args.kind == "aqara-cloud":
                from bridge.simulators.aqara_cloud import serve as serve_aqara_cloud

                with contextlib.suppress(KeyboardInterrupt):
                    asyncio.run(serve_aqara_cloud(args.port, args.token, args.devices, args.rate,
                                                  args.seed, args.host))
                return 0
            from bridge.simulators.studio import serve

            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(serve(args.port, args.token, args.devices, args.rate, args.seed,
                                  args.host, traits=args.traits,
                                  on_ready=lambda sim: print(studio_config(sim.url, args.token),
                                                             flush=True)))
    except ConfigError as exc:
        print(f"aqara-mqtt: {exc}", file=sys.stderr)
        return 2
    except (OSError, BrokerUnavailable) as exc:
        print(f"aqara-mqtt: {redact(str(exc)) or type(exc).__name__}", file=sys.stderr)
        return 1
    return 0


def studio_config(url: str, token: str) -> str:
    """What ``simulate studio`` prints after its banner: its token and a backend entry to paste
    into config.yaml (as the other simulators print theirs)."""
    return (f"  token: {token}\n"
            "backend config:\n"
            f"  - {{type: studio, name: studio, url: {json.dumps(url)}, "
            f"token: {json.dumps(token)}}}")


def companion_settings(config: Config, role: str) -> MqttSettings:
    """Broker settings for a short-lived helper connection (``check``, ``health``): its own
    client id, never the daemon's (the broker would drop the daemon for it), and no will."""
    base = config.mqtt.client_id or "aqara-mqtt"
    settings = mqtt_settings(config)
    return replace(settings, client_id=f"{base}-{role}-{secrets.token_hex(3)}", will_topic="")


async def check(config: Config) -> int:
    """Report whether the broker and every hub can be reached; 0 when all can."""
    print("config: ok")
    failures = 0
    settings = companion_settings(config, "check")
    reason = await MqttLink(settings, [], lambda _m: None, lambda: None).probe()
    where = f"{settings.host}:{settings.port}"
    if reason is None:
        print(f"broker {where}: ok")
    else:
        failures += 1
        print(f"broker {where}: FAILED: {redact(reason)}")
    for spec in config.backends:
        backend = make_backend(spec)
        try:
            count = await backend.probe()
        except Exception as exc:  # every failure is reported, none is fatal to the check
            failures += 1
            print(f"backend {spec.name} ({spec.type}): FAILED: {redact(str(exc))}")
        else:
            print(f"backend {spec.name} ({spec.type}): ok, {count} devices")
    return 0 if failures == 0 else 1


def health_check(config: Config, timeout: float) -> int:
    """Print the bridge's health line from its retained ``bridge/state`` and ``bridge/info``;
    exit 0 when ``ok``, 1 when ``starting`` or ``degraded``, 3 when ``offline``."""
    settings = companion_settings(config, "health")
    base = config.mqtt.base_topic
    state_topic, info_topic = f"{base}/bridge/state", f"{base}/bridge/info"
    standby_topic = f"{base}/bridge/standby/{config.member}"
    failover = config.instance.failover
    where = f"{settings.host}:{settings.port}"

    def complete(got: dict[str, bytes]) -> bool:
        if state_topic not in got or (got[state_topic] == b"online" and info_topic not in got):
            return False
        return not failover or standby_topic in got or (
            health.active_member(got.get(info_topic, b"")) == config.member)

    try:
        got, refusal = read_retained(
            settings, [state_topic, info_topic, *([standby_topic] if failover else [])],
            timeout, complete)
    except OSError as exc:
        print(f"{health.OFFLINE}: cannot reach the broker at {where}: {exc.strerror or exc}")
        return health.EXIT_CODES[health.OFFLINE]
    if failover and refusal is None:
        standing_by = health.standby_health(config.member, got.get(standby_topic),
                                            got.get(info_topic, b""))
        if standing_by is not None:
            print(redact(standing_by[1]))
            return health.EXIT_CODES[standing_by[0]]
    state = got.get(state_topic)
    if refusal is not None:
        line = f"the broker at {where} refused the connection: {refusal}"
    elif state is None:
        line = f"{state_topic} is not set (is the bridge running with this broker?)"
    elif state != b"online":
        line = f"{state_topic} is {state.decode(errors='replace')}"
    elif info_topic not in got:
        print(f"{health.STARTING}: {info_topic} is not set yet")
        return health.EXIT_CODES[health.STARTING]
    else:
        try:
            result = health.from_info(json.loads(got[info_topic]))
        except (ValueError, TypeError, KeyError):
            print(f"{health.DEGRADED}: {info_topic} is not the bridge's JSON")
            return health.EXIT_CODES[health.DEGRADED]
        line = result.line()
        broker = json.loads(got[info_topic]).get("mqtt", {}).get("broker")
        if len(config.mqtt.urls) > 1 and isinstance(broker, str):
            line += f" (broker {broker})"  # which node of several it is on
        print(redact(line))
        return health.EXIT_CODES[result.state]
    print(f"{health.OFFLINE}: {line}")
    return health.EXIT_CODES[health.OFFLINE]


def demo_config(mqtt_url: str, hub_url: str, token: str) -> Config:
    """The demo's config, built through the same validation as a user's file."""
    names = "\n".join(f"  {device_id}: {{name: {name}}}" for device_id, name in DEMO_NAMES.items())
    text = (
        f"mqtt: {{url: '{mqtt_url}', base_topic: aqara, version: '5'}}\n"
        f"backends:\n  - {{type: studio, name: demo, url: '{hub_url}', token: '{token}'}}\n"
        f"devices:\n{names}\n"
        "frontend: {enabled: true, port: 0}\n"
    )
    return parse_config(text, "demo")


@dataclass(frozen=True, slots=True)
class DemoBrokerInfo:
    """Where the demo's broker is and how mosquitto-clients reach it, for the banner."""

    description: str
    host: str
    port: int
    client_flags: str = ""
    """``-V mqttv5 `` for a broker that speaks MQTT 5 only."""


async def demo(mqtt_url: str | None, port: int, rate: float, broker_kind: str = "auto") -> None:
    """Simulated Studio hub + a broker (unless given) + the bridge, until Ctrl+C."""
    from bridge.embedded_broker import DemoBroker, demo_broker
    from bridge.simulators.sample_home import sample_home
    from bridge.simulators.studio import StudioSimulator

    token = secrets.token_hex(16)
    hub = StudioSimulator(token, sample_home())
    broker: DemoBroker | None = None
    await hub.start()
    try:
        if mqtt_url is None:
            broker = demo_broker(broker_kind, "127.0.0.1", port)
            await broker.start()
            mqtt_url = f"mqtt://{broker.host}:{broker.port}"
        config = demo_config(mqtt_url, hub.url, token)
        if broker is None:
            reason = await MqttLink(companion_settings(config, "demo"), [], lambda _m: None,
                                    lambda: None).probe()
            if reason is not None:
                raise BrokerUnavailable(f"--mqtt {mqtt_url}: {reason}")
            where = DemoBrokerInfo("your broker", config.mqtt.host, config.mqtt.port)
        else:
            where = DemoBrokerInfo(f"{broker.name}, {broker.protocols}", broker.host,
                                   broker.port, broker.client_flags)
        daemon = Daemon(config)
        hub.start_random_changes(rate, seed=None)
        runner = asyncio.create_task(run_until_signalled(daemon))
        await daemon.mqtt.wait_connected(timeout=30)
        if broker is not None and broker.port != port:
            print(port_note(port, where), flush=True)
        web_url = daemon.web.url if daemon.web is not None else None
        print(demo_banner(config, hub.url, where, web_url), flush=True)
        await runner
    finally:
        hub.stop_random_changes()
        await hub.stop()
        if broker is not None:
            await broker.stop()


def port_note(wanted: int, where: DemoBrokerInfo) -> str:
    """Why the broker is not on the port asked for, and where it is instead."""
    return (f"Port {wanted} is already in use on {where.host} (another broker?), so the demo's "
            f"broker listens on {where.host}:{where.port}; the commands below use that.")


def demo_banner(config: Config, hub_url: str, where: DemoBrokerInfo,
                web_url: str | None = None) -> str:
    """What the demo prints: where things are and how to watch and control it, every command
    ready to paste."""
    base = config.mqtt.base_topic
    target = f"{where.client_flags}-h {where.host} -p {where.port}"
    address = f"mqtt://{where.host}:{where.port} ({where.description})"
    request = f"{base}/bridge/request/health_check"
    response = f"{base}/bridge/response/health_check"
    return "\n".join([
        "",
        "aqara-mqtt demo is running",
        f"  simulated Aqara Studio hub: {hub_url} (24 devices, changing now and then)",
        f"  MQTT broker:                {address}",
        f"  web page:                   {web_url or 'off'}",
        "",
        "Watch everything (mosquitto-clients package):",
        f"  mosquitto_sub {target} -t '{base}/#' -v",
        "Switch the dining light off, then on:",
        f"  mosquitto_pub {target} -t '{base}/dining_light/1/Output/OnOff/set' -m OFF",
        f"  mosquitto_pub {target} -t '{base}/dining_light/1/Output/OnOff/set' -m ON",
        "Dim it and warm it up in one hub call:",
        f"  mosquitto_pub {target} -t '{base}/dining_light/set' "
        "-m '{\"1\": {\"LevelControl\": {\"CurrentLevel\": 30}, "
        "\"ColorControl\": {\"ColorTemperature\": 400}}}'",
        "Move the curtain:",
        f"  mosquitto_pub {target} -t '{base}/living_room_curtain/1/WindowCovering/"
        "TargetPositionPercentage/set' -m 25",
        "Rejected writes are explained on:",
        f"  mosquitto_sub {target} -t '{base}/bridge/log' -v",
        "Button presses and gestures, never retained (the Bedside Button presses now and then):",
        f"  mosquitto_sub {target} -t '{base}/bridge/events' -v",
        "Ask the bridge (MQTT 5 request/response):",
        f"  mosquitto_rr -h {where.host} -p {where.port} -t '{request}' -e '{response}' "
        "-m '{}'",
        "Home Assistant discovery (point Home Assistant's MQTT integration at this broker):",
        f"  mosquitto_sub {target} -t 'homeassistant/#' -v",
        "Press Ctrl+C to stop.",
        "",
    ])
