"""Config loading: defaults, every validation message, env substitution, secrets kept out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr

from bridge.app import client_id
from bridge.backends.studio.config import StudioBackendConfig
from bridge.config import (
    SUPPORTED_BACKENDS,
    BridgeOptions,
    Config,
    ConfigError,
    DeviceOptions,
    HomeAssistantConfig,
    LogConfig,
    MqttConfig,
    TlsConfig,
    load_config,
    parse_config,
)
from bridge.config_base import strip_userinfo

TOKEN = "studio-token-9f8e7d6c5b4a"
PASSWORD = "mqtt-pass-1a2b3c4d"
BACKEND = "backends: [{type: studio, url: 192.168.1.10, token: tok-123456}]\n"
EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


SUPPORTED = "(supported: studio, aqara_cloud, tuya)"


def first_studio(config: Config) -> StudioBackendConfig:
    """The first backend, which these tests configure as a Studio hub."""
    backend = config.backends[0]
    assert isinstance(backend, StudioBackendConfig)
    return backend

def load(text: str, env: dict[str, str] | None = None, base_dir: Path | None = None) -> Config:
    return parse_config(text, "config.yaml", env if env is not None else {}, base_dir=base_dir)


def error(text: str, env: dict[str, str] | None = None, base_dir: Path | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(text, env, base_dir)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---- defaults ---------------------------------------------------------------------------------


def test_minimal_config_has_every_default() -> None:
    config = load(BACKEND)
    mqtt = config.mqtt
    assert mqtt.url == "mqtt://127.0.0.1:1883"
    assert (mqtt.host, mqtt.port, mqtt.use_tls) == ("127.0.0.1", 1883, False)
    assert mqtt.base_topic == "aqara"
    assert mqtt.username is None
    assert mqtt.password is None
    assert mqtt.tls is None
    assert mqtt.qos == 1
    assert mqtt.client_id is None
    assert mqtt.version == "5"
    assert mqtt.protocol_version == 5
    assert mqtt.keepalive == 60
    assert mqtt.max_queued == 10000

    (studio,) = config.backends
    assert isinstance(studio, StudioBackendConfig)
    assert studio.type == "studio"
    assert studio.name == "studio"
    assert studio.url == "ws://192.168.1.10"
    assert studio.ws_url == "ws://192.168.1.10/open/ws"
    assert studio.http_url == "http://192.168.1.10/open/api/v1"
    assert studio.token.get_secret_value() == "tok-123456"
    assert studio.request_timeout == 10
    assert studio.ping_interval == 30
    assert studio.reconnect_max_delay == 60

    assert config.homeassistant == HomeAssistantConfig(
        enabled=True, discovery_prefix="homeassistant"
    )
    assert config.devices == {}
    assert config.bridge == BridgeOptions(
        write_window_ms=50, publish_unchanged=False, device_state_topic=True
    )
    assert config.log == LogConfig(level="info", format="console")


def test_section_defaults_standalone() -> None:
    assert MqttConfig().url == "mqtt://127.0.0.1:1883"
    assert DeviceOptions() == DeviceOptions(name=None, exclude=False)


def test_empty_sections_mean_defaults() -> None:
    config = load(BACKEND + "mqtt:\nhomeassistant:\ndevices:\nbridge:\nlog:\n")
    assert config.mqtt == MqttConfig()
    assert config.devices == {}


def test_models_are_frozen() -> None:
    config = load(BACKEND)
    with pytest.raises(ValueError, match="frozen"):
        config.mqtt.__setattr__("qos", 2)


def test_device_options_lookup() -> None:
    config = load(BACKEND + "devices:\n  a.1: {name: lamp}\n  b.2:\n")
    assert config.device_options("a.1").name == "lamp"
    assert config.device_options("b.2") == DeviceOptions()
    assert config.device_options("unknown") == DeviceOptions()


def test_numeric_device_ids_become_strings() -> None:
    config = load(BACKEND + "devices:\n  12345: {name: lamp}\n")
    assert config.devices == {"12345": DeviceOptions(name="lamp")}


# ---- mqtt ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "normal", "host", "port", "tls"),
    [
        ("mqtt://broker", "mqtt://broker:1883", "broker", 1883, False),
        ("mqtt://broker:1884", "mqtt://broker:1884", "broker", 1884, False),
        ("tcp://broker", "mqtt://broker:1883", "broker", 1883, False),
        ("mqtts://broker", "mqtts://broker:8883", "broker", 8883, True),
        ("mqtts://broker:9999", "mqtts://broker:9999", "broker", 9999, True),
        ("ssl://broker", "mqtts://broker:8883", "broker", 8883, True),
        ("MQTT://Broker/", "mqtt://broker:1883", "broker", 1883, False),
        ("broker.lan", "mqtt://broker.lan:1883", "broker.lan", 1883, False),
        ("10.0.0.2:1999", "mqtt://10.0.0.2:1999", "10.0.0.2", 1999, False),
        ("mqtt://[::1]:1883", "mqtt://[::1]:1883", "::1", 1883, False),
    ],
)
def test_mqtt_urls(url: str, normal: str, host: str, port: int, tls: bool) -> None:
    mqtt = load(BACKEND + f"mqtt: {{url: '{url}'}}").mqtt
    assert (mqtt.url, mqtt.host, mqtt.port, mqtt.use_tls) == (normal, host, port, tls)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://broker",
            "mqtt.url: unsupported scheme 'http://'; use mqtt://host[:port] or mqtts://host[:port]",
        ),
        (
            "ws://broker",
            "mqtt.url: MQTT over WebSocket is not supported; use mqtt://host[:port] or mqtts://",
        ),
        ("mqtt://", "mqtt.url: has no host name; use mqtt://host[:port]"),
        ("mqtt://broker/x", "mqtt.url: must not have a path or query; use mqtt://host[:port]"),
        ("mqtt://broker:0", "mqtt.url: port must be between 1 and 65535 (got 0)"),
        ("mqtt://broker:99999", "mqtt.url: is not a valid URL (Port out of range 0-65535)"),
    ],
)
def test_mqtt_url_errors(url: str, message: str) -> None:
    assert error(BACKEND + f"mqtt: {{url: '{url}'}}") == f"config.yaml: {message}"


def test_several_brokers_as_a_list_or_a_comma_separated_string() -> None:
    for value in ("[mqtt://a:1883, 'b:1884']", "'mqtt://a:1883, b:1884'"):
        mqtt = load(BACKEND + f"mqtt: {{url: {value}}}").mqtt
        assert mqtt.urls == ["mqtt://a:1883", "mqtt://b:1884"]
        assert mqtt.brokers == [("a", 1883), ("b", 1884)]
        assert (mqtt.host, mqtt.port) == ("a", 1883)
    assert error(BACKEND + "mqtt: {url: [mqtt://a, mqtts://b]}") == (
        "config.yaml: mqtt.url: mixes mqtt:// and mqtts://; every broker of the list must use "
        "the same")
    assert error(BACKEND + "mqtt: {url: []}") == (
        "config.yaml: mqtt.url: names no broker; use mqtt://host[:port]")
    assert error(BACKEND + "mqtt: {url: [mqtt://a, 'http://b']}").startswith(
        "config.yaml: mqtt.url: unsupported scheme 'http://'")


def test_topic_style_and_instance_id() -> None:
    config = load(BACKEND + "mqtt: {topic_style: Portable, base_topic: home/aqara}")
    assert config.mqtt.topic_style == "portable"
    assert config.instance_id == "home_aqara"  # the base topic, as an id
    assert load(BACKEND).instance_id == "aqara"
    assert load(BACKEND + "instance: {id: site_a}").instance_id == "site_a"
    assert error(BACKEND + "mqtt: {topic_style: dotted}").startswith(
        "config.yaml: mqtt.topic_style:")
    assert error(BACKEND + "instance: {id: 'a.b'}") == (
        "config.yaml: instance.id: may only contain A-Z a-z 0-9 _ - (at most 64 of them; "
        "got 'a.b')")


def test_hub_keys_name_the_hubs_without_secrets() -> None:
    config = load(BACKEND)
    keys = config.hub_keys()
    assert len(keys) == len(config.backends)
    assert all(len(key) == 12 for key in keys)
    other = load(BACKEND.replace("192.168.1.10", "192.168.1.11"))
    assert set(keys).isdisjoint(other.hub_keys())


def test_mqtt_credentials_from_url_are_moved_out() -> None:
    config = load(BACKEND + f"mqtt: {{url: 'mqtt://bob:{PASSWORD}%40x@broker:1884'}}")
    assert config.mqtt.url == "mqtt://broker:1884"
    assert config.mqtt.username == "bob"
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == PASSWORD + "@x"
    assert PASSWORD not in repr(config)
    assert PASSWORD not in str(config.summary())


def test_mqtt_credentials_in_url_and_fields_conflict() -> None:
    message = error(BACKEND + f"mqtt: {{url: 'mqtt://bob:{PASSWORD}@broker', username: alice}}")
    assert message == (
        "config.yaml: mqtt.url: give the user name and password either in the URL or as "
        "username/password, not both"
    )
    assert PASSWORD not in message


def test_empty_credentials_mean_none() -> None:
    config = load(BACKEND + "mqtt: {username: '', password: '', client_id: ''}")
    assert config.mqtt.username is None
    assert config.mqtt.password is None
    assert config.mqtt.client_id is None


def test_numbers_are_accepted_as_strings() -> None:
    config = load(BACKEND + "mqtt: {username: 1234, client_id: 42}")
    assert config.mqtt.username == "1234"
    assert config.mqtt.client_id == "42"


@pytest.mark.parametrize(("value", "qos"), [("0", 0), ("1", 1), ("2", 2), ("'2'", 2)])
def test_qos_values(value: str, qos: int) -> None:
    assert load(BACKEND + f"mqtt: {{qos: {value}}}").mqtt.qos == qos


@pytest.mark.parametrize(
    ("value", "got"), [("5", "5"), ("-1", "-1"), ("1.5", "1.5"), ("true", "true"), ("hi", "'hi'")]
)
def test_qos_errors(value: str, got: str) -> None:
    assert error(BACKEND + f"mqtt: {{qos: {value}}}") == (
        f"config.yaml: mqtt.qos: must be 0, 1 or 2 (got {got})"
    )


@pytest.mark.parametrize(
    ("value", "version"),
    [
        ("5", "5"),
        ("5.0", "5"),
        ("'5'", "5"),
        ("v5", "5"),
        ("MQTTv5", "5"),
        ("3.1.1", "3.1.1"),
        ("'3.1.1'", "3.1.1"),
        ("311", "3.1.1"),
        ("mqttv311", "3.1.1"),
    ],
)
def test_mqtt_versions(value: str, version: str) -> None:
    mqtt = load(BACKEND + f"mqtt: {{version: {value}}}").mqtt
    assert mqtt.version == version
    assert mqtt.protocol_version == (5 if version == "5" else 4)


@pytest.mark.parametrize(("value", "got"), [("3.1", "3.1"), ("4", "4"), ("'x'", "'x'")])
def test_mqtt_version_errors(value: str, got: str) -> None:
    assert error(BACKEND + f"mqtt: {{version: {value}}}") == (
        f"config.yaml: mqtt.version: must be 5 or 3.1.1 (got {got})"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("''", "must not be empty"),
        ("a/+/b", "must not contain '+' (got 'a/+/b')"),
        ("a/#", "must not contain '#' (got 'a/#')"),
        ('"a\\0b"', "must not contain a NUL character (got 'a\\x00b')"),
        ("/aqara", "must not start or end with '/' (got '/aqara')"),
        ("aqara/", "must not start or end with '/' (got 'aqara/')"),
        ("a//b", "must not contain an empty level '//' (got 'a//b')"),
        ("$SYS", "must not start with '$' (got '$SYS')"),
    ],
)
def test_base_topic_errors(value: str, message: str) -> None:
    assert error(BACKEND + f"mqtt: {{base_topic: {value}}}") == (
        f"config.yaml: mqtt.base_topic: {message}"
    )


def test_base_topic_with_levels_is_fine() -> None:
    assert load(BACKEND + "mqtt: {base_topic: home/aqara}").mqtt.base_topic == "home/aqara"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("keepalive: 1", "mqtt.keepalive: must be between 2 and 3600 (got 1)"),
        ("keepalive: 3601", "mqtt.keepalive: must be between 2 and 3600 (got 3601)"),
        ("keepalive: x", "mqtt.keepalive: must be an integer (got 'x')"),
        ("keepalive: 1.5", "mqtt.keepalive: must be a whole number (got 1.5)"),
        ("keepalive: true", "mqtt.keepalive: must be a number (got true)"),
        ("max_queued: 0", "mqtt.max_queued: must be between 100 and 60000 (got 0)"),
        ("max_queued: 70000", "mqtt.max_queued: must be between 100 and 60000 (got 70000)"),
        ('client_id: "a\\0"', "mqtt.client_id: must not contain a NUL character"),
        ("username: [a]", "mqtt.username: must be a string (got a list)"),
        ("password: [a]", "mqtt.password: must be a string"),
        ("tls: 5", "mqtt.tls: must be a mapping (got 5)"),
        ("tls: {insecure: maybe}", "mqtt.tls.insecure: must be true or false (got 'maybe')"),
        ("tls: {ca: /nonexistent/ca.pem}", "mqtt.tls.ca: file not found: /nonexistent/ca.pem"),
    ],
)
def test_mqtt_field_errors(text: str, message: str) -> None:
    assert error(BACKEND + f"mqtt: {{{text}}}") == f"config.yaml: {message}"


def test_keepalive_bounds_are_inclusive() -> None:
    assert load(BACKEND + "mqtt: {keepalive: 5}").mqtt.keepalive == 5
    assert load(BACKEND + "mqtt: {keepalive: '3600'}").mqtt.keepalive == 3600


def test_tls_files_resolved_relative_to_config(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("ca")
    (tmp_path / "client.pem").write_text("cert")
    (tmp_path / "client.key").write_text("key")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        BACKEND + "mqtt: {tls: {ca: ca.pem, cert: client.pem, key: client.key, insecure: true}}"
    )
    mqtt = load_config(config_file, env={}).mqtt
    assert mqtt.tls is not None
    assert mqtt.tls.ca == tmp_path.resolve() / "ca.pem"
    assert mqtt.tls.cert == tmp_path.resolve() / "client.pem"
    assert mqtt.tls.key == tmp_path.resolve() / "client.key"
    assert mqtt.tls.insecure is True
    assert mqtt.use_tls is True
    assert mqtt.port == 1883  # an explicit mqtt:// URL keeps its port; TLS is on because of tls:


def test_tls_section_without_url_port_uses_8883(tmp_path: Path) -> None:
    config = load(BACKEND + "mqtt: {url: 'mqtts://b', tls: {insecure: true}}")
    assert (config.mqtt.port, config.mqtt.use_tls) == (8883, True)


def test_tls_key_needs_cert(tmp_path: Path) -> None:
    (tmp_path / "k.pem").write_text("key")
    message = error(BACKEND + "mqtt: {tls: {key: k.pem}}", base_dir=tmp_path)
    assert message == (
        "config.yaml: mqtt.tls.key: a client key needs a client certificate (tls.cert)"
    )


def test_tls_missing_relative_file_names_resolved_path(tmp_path: Path) -> None:
    message = error(BACKEND + "mqtt: {tls: {ca: ca.pem}}", base_dir=tmp_path)
    assert message == f"config.yaml: mqtt.tls.ca: file not found: {tmp_path / 'ca.pem'}"


# ---- backends -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "ws", "http"),
    [
        ("192.168.1.10", "ws://192.168.1.10/open/ws", "http://192.168.1.10/open/api/v1"),
        ("hub.lan:8080", "ws://hub.lan:8080/open/ws", "http://hub.lan:8080/open/api/v1"),
        ("hub.lan:443", "wss://hub.lan:443/open/ws", "https://hub.lan:443/open/api/v1"),
        ("ws://hub.lan", "ws://hub.lan/open/ws", "http://hub.lan/open/api/v1"),
        ("wss://hub.lan", "wss://hub.lan/open/ws", "https://hub.lan/open/api/v1"),
        ("http://hub.lan:81/x/y", "ws://hub.lan:81/open/ws", "http://hub.lan:81/open/api/v1"),
        ("https://hub.lan/open/ws", "wss://hub.lan/open/ws", "https://hub.lan/open/api/v1"),
        ("ws://[fe80::1]:80", "ws://[fe80::1]:80/open/ws", "http://[fe80::1]:80/open/api/v1"),
    ],
)
def test_studio_urls(url: str, ws: str, http: str) -> None:
    studio = first_studio(load(f"backends: [{{type: studio, url: '{url}', token: tok-123456}}]"))
    assert (studio.ws_url, studio.http_url) == (ws, http)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://hub", "unsupported scheme 'ftp://'; use ws://host[:port] or wss://host[:port]"),
        ("ws://", "has no host name; use ws://host[:port]"),
        ("ws://hub:0", "port must be between 1 and 65535 (got 0)"),
        ("ws://hub:abc", "is not a valid URL (Port could not be cast to integer value as 'abc')"),
        (
            "ws://user:pw@hub",
            "must not contain a user name or password; put the token in 'token'",
        ),
    ],
)
def test_studio_url_errors(url: str, message: str) -> None:
    text = f"backends: [{{type: studio, url: '{url}', token: tok-123456}}]"
    assert error(text) == f"config.yaml: backends[0].url: {message}"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("{type: studio, token: t}", "backends[0].url: field required"),
        ("{type: studio, url: h}", "backends[0].token: field required"),
        ("{type: studio, url: h, token: ''}", "backends[0].token: must not be empty"),
        ("{type: studio, url: h, token: 'Bearer '}", "backends[0].token: must not be empty"),
        ("{type: studio, url: h, token: [x]}", "backends[0].token: must be a string"),
        (
            "{type: studio, url: h, token: t, name: 'my home'}",
            "backends[0].name: must be 1 to 64 letters, digits, '_' or '-' (got 'my home')",
        ),
        (
            "{type: studio, url: h, token: t, name: ''}",
            "backends[0].name: must be 1 to 64 letters, digits, '_' or '-' (got '')",
        ),
        (
            "{type: studio, url: h, token: t, request_timeout: 0}",
            "backends[0].request_timeout: must be greater than 0 (got 0)",
        ),
        (
            "{type: studio, url: h, token: t, ping_interval: -1.5}",
            "backends[0].ping_interval: must be greater than 0 (got -1.5)",
        ),
        (
            "{type: studio, url: h, token: t, reconnect_max_delay: soon}",
            "backends[0].reconnect_max_delay: must be a number (got 'soon')",
        ),
        (
            "{type: studio, url: h, token: t, tokn: x}",
            "backends[0].tokn: unknown key (did you mean 'token'?)",
        ),
        ("{url: h, token: t}", f"backends[0].type: field required {SUPPORTED}"),
        (
            "{type: zigbee, client_id: x}",
            f"backends[0].type: 'zigbee' is not supported by this version {SUPPORTED}",
        ),
        ("studio", "backends[0]: must be a mapping (got 'studio')"),
    ],
)
def test_backend_errors(item: str, message: str) -> None:
    assert error(f"backends: [{item}]") == f"config.yaml: {message}"


def test_unsupported_type_in_second_backend() -> None:
    text = "backends:\n  - {type: studio, url: h, token: t}\n  - {type: hue, secret: s}\n"
    assert error(text) == (
        "config.yaml: backends[1].type: 'hue' is not supported by this version "
        "(supported: studio, aqara_cloud, tuya)"
    )


def test_backend_type_spelling_is_normalised() -> None:
    config = load("backends: [{type: ' Studio ', url: h, token: tok-123456}]")
    assert config.backends[0].type == "studio"
    assert error("backends: [{type: Aqara-Cloud}]").startswith(
        "config.yaml: backends[0].app_id: field required")  # recognised as aqara_cloud


def test_supported_backends() -> None:
    assert SUPPORTED_BACKENDS == ("studio", "aqara_cloud", "tuya")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mqtt: {}", "backends: field required"),
        ("backends: []", f"backends: at least one backend is required {SUPPORTED}"),
        ("backends:", "backends: must be a list"),
        ("backends: {type: studio}", "backends: must be a list (got a mapping)"),
    ],
)
def test_backends_list_errors(text: str, message: str) -> None:
    assert error(text) == f"config.yaml: {message}"


def test_duplicate_backend_names() -> None:
    text = "backends:\n  - {type: studio, url: a, token: t}\n  - {type: studio, url: b, token: u}\n"
    assert error(text) == (
        "config.yaml: backends[1].name: 'studio' is already used by backends[0]; "
        "give each backend a unique name"
    )


def test_distinct_backend_names() -> None:
    text = (
        "backends:\n  - {type: studio, url: a, token: tok-1}\n"
        "  - {type: studio, name: second, url: b, token: tok-2}\n"
    )
    assert [b.name for b in load(text).backends] == ["studio", "second"]


# ---- other sections -----------------------------------------------------------------------------


def test_homeassistant_section() -> None:
    config = load(BACKEND + "homeassistant: {enabled: false, discovery_prefix: ha/disc}")
    assert config.homeassistant == HomeAssistantConfig(enabled=False, discovery_prefix="ha/disc")
    assert error(BACKEND + "homeassistant: {discovery_prefix: 'ha/#'}") == (
        "config.yaml: homeassistant.discovery_prefix: must not contain '#' (got 'ha/#')"
    )


def test_bridge_options() -> None:
    config = load(
        BACKEND + "bridge: {write_window_ms: 0, publish_unchanged: yes, device_state_topic: off}"
    )
    assert config.bridge == BridgeOptions(
        write_window_ms=0, publish_unchanged=True, device_state_topic=False
    )
    assert load(BACKEND + "bridge: {write_window_ms: 5000}").bridge.write_window_ms == 5000
    assert error(BACKEND + "bridge: {write_window_ms: 5001}") == (
        "config.yaml: bridge.write_window_ms: must be between 0 and 5000 (got 5001)"
    )
    assert error(BACKEND + "bridge: {write_window_ms: -1}") == (
        "config.yaml: bridge.write_window_ms: must be between 0 and 5000 (got -1)"
    )


@pytest.mark.parametrize(
    ("text", "level", "fmt"),
    [
        ("{level: DEBUG}", "debug", "console"),
        ("{level: Warning, format: JSON}", "warning", "json"),
        ("{level: warn}", "warning", "console"),
        ("{level: error, format: console}", "error", "console"),
    ],
)
def test_log_section(text: str, level: str, fmt: str) -> None:
    assert load(BACKEND + f"log: {text}").log == LogConfig(level=level, format=fmt)  # type: ignore[arg-type]


def test_log_errors() -> None:
    assert error(BACKEND + "log: {level: loud}") == (
        "config.yaml: log.level: must be debug, info, warning or error (got 'loud')"
    )
    assert error(BACKEND + "log: {format: xml}") == (
        "config.yaml: log.format: must be console or json (got 'xml')"
    )


# ---- devices ------------------------------------------------------------------------------------


def test_device_friendly_names() -> None:
    config = load(
        BACKEND
        + "devices:\n  lumi1.54ef448a0b73: {name: kitchen_switch}\n  lumi.2: {exclude: true}\n"
    )
    assert config.devices["lumi1.54ef448a0b73"] == DeviceOptions(name="kitchen_switch")
    assert config.devices["lumi.2"] == DeviceOptions(exclude=True)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("''", "must not be empty"),
        ("bridge", "'bridge' is reserved for the bridge's own topics"),
        ("a/b", "must not contain '/' (got 'a/b')"),
        ("a+b", "must not contain '+' (got 'a+b')"),
        ("'a#b'", "must not contain '#' (got 'a#b')"),
        ('"a\\0"', "must not contain a NUL character (got 'a\\x00')"),
        ("$x", "must not start with '$' (got '$x')"),
        ("[x]", "must be a string (got a list)"),
    ],
)
def test_device_name_errors(name: str, message: str) -> None:
    assert error(BACKEND + f"devices:\n  lumi1.54ef448a0b73: {{name: {name}}}\n") == (
        f'config.yaml: devices["lumi1.54ef448a0b73"].name: {message}'
    )


def test_device_unknown_key() -> None:
    assert error(BACKEND + "devices:\n  lumi.1: {nmae: x}\n") == (
        "config.yaml: devices[\"lumi.1\"].nmae: unknown key (did you mean 'name'?)"
    )


def test_duplicate_friendly_names_name_both_devices() -> None:
    text = BACKEND + "devices:\n  lumi.1: {name: lamp}\n  lumi.2: {name: lamp}\n"
    assert error(text) == (
        "config.yaml: devices[\"lumi.2\"].name: 'lamp' is already the name of device 'lumi.1'"
    )


def test_friendly_name_may_not_be_another_configured_id() -> None:
    text = BACKEND + "devices:\n  lumi.1: {name: lumi.2}\n  lumi.2: {exclude: true}\n"
    assert error(text) == (
        "config.yaml: devices[\"lumi.1\"].name: 'lumi.2' is the ID of another configured device"
    )


def test_device_may_be_named_as_its_own_id() -> None:
    assert load(BACKEND + "devices:\n  lumi.1: {name: lumi.1}\n").devices["lumi.1"].name == "lumi.1"


def test_devices_must_be_a_mapping() -> None:
    assert error(BACKEND + "devices: [a]") == "config.yaml: devices: must be a mapping (got a list)"


# ---- file-level problems ------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n", "---\n...\n"])
def test_empty_file(text: str) -> None:
    assert error(text) == "config.yaml: the file is empty; see config.example.yaml"


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "a list"), ("hello\n", "a str")])
def test_top_level_not_a_mapping(text: str, kind: str) -> None:
    assert error(text) == (
        "config.yaml: the top level must be a mapping of sections (mqtt, backends, ...), "
        f"not {kind}; see config.example.yaml"
    )


def test_unknown_top_level_key() -> None:
    assert error(BACKEND + "mqt: {}\n") == "config.yaml: mqt: unknown key (did you mean 'mqtt'?)"
    assert error(BACKEND + "zzz: 1\n") == (
        "config.yaml: zzz: unknown key "
        "(allowed: mqtt, instance, backends, homeassistant, homie, devices, bridge, log, frontend)"
    )


def test_unknown_nested_key() -> None:
    assert error(BACKEND + "mqtt: {qso: 2}") == (
        "config.yaml: mqtt.qso: unknown key (did you mean 'qos'?)"
    )


def test_yaml_syntax_error_has_line_number() -> None:
    text = BACKEND + "mqtt:\n  qos: 1\n    url: x\n"
    message = error(text)
    assert message.startswith("config.yaml: line 4: could not parse YAML: ")
    assert "mapping values are not allowed here" in message


def test_yaml_unclosed_bracket() -> None:
    message = error("mqtt: {qos: 1\nbackends: []\n")
    assert message == (
        "config.yaml: line 2: could not parse YAML: while parsing a flow mapping, "
        "expected ',' or '}', but got ':'"
    )


def test_yaml_duplicate_key_is_an_error() -> None:
    text = BACKEND + "mqtt:\n  qos: 1\n  qos: 2\n"
    assert error(text) == "config.yaml: line 4: could not parse YAML: duplicate key 'qos'"


def test_yaml_merge_keys_may_override() -> None:
    text = (
        "x: &studio {type: studio, url: a, token: tok-123456}\nbackends: [{<<: *studio, url: b}]\n"
    )
    # the anchor's host key itself is unknown, but merging is not a duplicate
    assert error(text).startswith("config.yaml: x: unknown key")
    text = (
        "backends:\n  - &s {type: studio, url: a, token: tok-123456}\n"
        "  - {<<: *s, url: b, name: other}\n"
    )
    config = load(text)
    assert [b.model_dump()["url"] for b in config.backends] == ["ws://a", "ws://b"]


def test_yaml_python_tags_are_refused() -> None:
    message = error(BACKEND + "mqtt: !!python/object/apply:os.system ['true']\n")
    assert message.startswith("config.yaml: line 2: could not parse YAML: ")


def test_several_documents_are_refused() -> None:
    assert error(BACKEND + "---\n" + BACKEND) == (
        "config.yaml: the file must hold one YAML document (found 2)"
    )


def test_several_problems_are_counted() -> None:
    with pytest.raises(ConfigError) as info:
        load(BACKEND + "mqtt: {qos: 7, keepalive: 1}\nlog: {level: x}\n")
    assert str(info.value) == (
        "config.yaml: mqtt.qos: must be 0, 1 or 2 (got 7) (and 2 more problems)"
    )
    assert info.value.errors == [
        "config.yaml: mqtt.qos: must be 0, 1 or 2 (got 7)",
        "config.yaml: mqtt.keepalive: must be between 2 and 3600 (got 1)",
        "config.yaml: log.level: must be debug, info, warning or error (got 'x')",
    ]


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: file not found"


def test_load_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a directory, not a file"


def test_load_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(BACKEND)

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: cannot read the file (Permission denied)"


def test_load_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"mqtt: {username: \xff}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: not UTF-8 text (byte 17)"


def test_load_file_uses_path_in_messages(tmp_path: Path) -> None:
    path = tmp_path / "my.yaml"
    path.write_text(BACKEND + "mqtt: {qos: 3}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == f"{path}: mqtt.qos: must be 0, 1 or 2 (got 3)"


def test_load_file_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + BACKEND.encode())
    assert load_config(path, env={}).backends[0].name == "studio"


def test_load_uses_os_environ_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AQARA_TEST_TOKEN_X", TOKEN)
    path = tmp_path / "config.yaml"
    path.write_text("backends: [{type: studio, url: h, token: '${AQARA_TEST_TOKEN_X}'}]\n")
    assert first_studio(load_config(path)).token.get_secret_value() == TOKEN


# ---- environment substitution -------------------------------------------------------------------


def studio_with(token: str) -> str:
    return f"backends: [{{type: studio, url: h, token: '{token}'}}]\n"


def test_env_substitution() -> None:
    config = load(
        studio_with("${AQARA_STUDIO_TOKEN}")
        + "mqtt: {url: 'mqtt://${HOST}:${PORT}', password: '${MQTT_PASSWORD}', qos: '${QOS}'}\n",
        {
            "AQARA_STUDIO_TOKEN": TOKEN,
            "MQTT_PASSWORD": PASSWORD,
            "HOST": "b.lan",
            "PORT": "1999",
            "QOS": "2",
        },
    )
    assert first_studio(config).token.get_secret_value() == TOKEN
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == PASSWORD
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.qos) == ("b.lan", 1999, 2)


def test_env_missing_variable() -> None:
    message = error(studio_with("t") + "mqtt: {password: '${AQARA_STUDIO_TOKEN}'}\n")
    assert message == (
        "config.yaml: ${AQARA_STUDIO_TOKEN} is not set in the environment (mqtt.password)"
    )


def test_env_missing_variable_path_in_list_and_devices() -> None:
    assert error(studio_with("${NOPE}")) == (
        "config.yaml: ${NOPE} is not set in the environment (backends[0].token)"
    )
    assert error(BACKEND + "devices:\n  lumi.1: {name: '${NAME}'}\n") == (
        'config.yaml: ${NAME} is not set in the environment (devices["lumi.1"].name)'
    )


def test_env_several_missing() -> None:
    with pytest.raises(ConfigError) as info:
        load(studio_with("${A}") + "mqtt: {password: '${B}'}\n")
    assert str(info.value) == (
        "config.yaml: ${A} is not set in the environment (backends[0].token) (and 1 more problem)"
    )
    assert info.value.errors[1] == (
        "config.yaml: ${B} is not set in the environment (mqtt.password)"
    )


def test_env_value_never_echoed_in_an_error() -> None:
    # A token put into a number field by mistake: the error names the variable, not its value.
    text = studio_with("${STUDIO_TOKEN}").replace(
        "token:", "request_timeout: '${STUDIO_TOKEN}', token:")
    message = error(text, {"STUDIO_TOKEN": TOKEN})
    assert TOKEN not in message
    assert message == ("config.yaml: backends[0].request_timeout: must be a number "
                       "(the value of ${STUDIO_TOKEN} is not shown)")


def test_env_value_masked_where_a_validator_quotes_it() -> None:
    with pytest.raises(ConfigError) as info:
        load(BACKEND + "mqtt: {base_topic: '${TOPIC}', client_id: 'x/${ID}'}\n",
             {"TOPIC": "a/#/sekrit-topic-value", "ID": "sekrit-id-value"})
    text = " ".join(info.value.errors)
    assert "mqtt.base_topic" in text
    assert "sekrit" not in text


def test_secret_field_value_never_echoed_by_another_field() -> None:
    # The same secret typed under a secret key and (by a copy-paste slip) into a quoted field.
    with pytest.raises(ConfigError) as info:
        load("backends: [{type: studio, url: h, token: 'sekrit-token-1'}]\n"
             "mqtt: {base_topic: 'sekrit-token-1/#'}\n")
    assert "sekrit" not in " ".join(info.value.errors)
    assert "mqtt.base_topic" in str(info.value)


def test_env_set_but_empty_is_used() -> None:
    assert error(studio_with("${TOK}"), {"TOK": ""}) == (
        "config.yaml: backends[0].token: must not be empty"
    )


@pytest.mark.parametrize(
    ("template", "env", "result"),
    [
        ("${U:-fallback}", {}, "fallback"),
        ("${U:-fallback}", {"U": ""}, "fallback"),
        ("${U:-fallback}", {"U": "given"}, "given"),
        ("${U:-}", {}, None),
        ("pre-${U}-post", {"U": "mid"}, "pre-mid-post"),
        ("${U}${V}", {"U": "a", "V": "b"}, "ab"),
        ("$${U}", {"U": "x"}, "${U}"),
        ("$$${U}", {"U": "x"}, "$${U}"),  # "$" then the "$${" escape, then "U}" literally
        ("$U", {"U": "x"}, "$U"),
        ("a$$b", {}, "a$$b"),
        ("${U:-a:-b}", {}, "a:-b"),
        ("${U:-${}", {}, "${"),
    ],
)
def test_env_forms(template: str, env: dict[str, str], result: str | None) -> None:
    config = load(BACKEND + f"mqtt: {{username: '{template}'}}\n", env)
    assert config.mqtt.username == result


@pytest.mark.parametrize("template", ["${}", "${1X}", "${A B}", "${A:b}", "x ${"])
def test_env_invalid_reference(template: str) -> None:
    assert error(BACKEND + f"mqtt: {{username: '{template}'}}\n") == (
        "config.yaml: invalid ${...} reference; use ${NAME} or ${NAME:-default}, and $${ for a "
        "literal ${ (mqtt.username)"
    )


def test_env_value_cannot_inject_yaml() -> None:
    evil = "x\nqos: 2\nextra: {a: 1}"
    config = load(BACKEND + "mqtt: {client_id: '${CID}'}\n", {"CID": evil})
    assert config.mqtt.client_id == evil
    assert config.mqtt.qos == 1


def test_env_not_applied_to_keys_or_non_strings() -> None:
    config = load(BACKEND + "devices:\n  '${X}': {exclude: true}\n", {"X": "y"})
    assert list(config.devices) == ["${X}"]


def test_env_default_types_are_coerced() -> None:
    config = load(
        BACKEND + "mqtt: {keepalive: '${KA:-30}'}\nbridge: {publish_unchanged: '${PU:-true}'}\n"
    )
    assert config.mqtt.keepalive == 30
    assert config.bridge.publish_unchanged is True


# ---- secrets ------------------------------------------------------------------------------------


def secret_config() -> Config:
    return load(
        "mqtt: {url: 'mqtts://broker:8883', username: bob, password: '${MQTT_PASSWORD}'}\n"
        "backends:\n"
        "  - {type: studio, name: home, url: 'wss://hub', token: 'Bearer ${AQARA_STUDIO_TOKEN}'}\n"
        "  - {type: studio, name: other, url: 'hub2:8080', token: '${AQARA_STUDIO_TOKEN}-2'}\n"
        "devices: {lumi.1: {name: lamp}}\n",
        {"MQTT_PASSWORD": PASSWORD, "AQARA_STUDIO_TOKEN": TOKEN},
    )


def test_secrets_never_in_str_or_repr() -> None:
    config = secret_config()
    for text in (str(config), repr(config), str(config.mqtt), repr(config.backends)):
        assert PASSWORD not in text
        assert TOKEN not in text
    assert isinstance(config.mqtt.password, SecretStr)


def test_summary_has_no_secrets_and_useful_facts() -> None:
    summary = secret_config().summary()
    text = str(summary)
    assert PASSWORD not in text
    assert TOKEN not in text
    assert "password" not in text
    assert "token" not in text
    assert summary["mqtt"] == {
        "url": "mqtts://broker:8883",
        "urls": ["mqtts://broker:8883"],
        "topic_style": "standard",
        "host": "broker",
        "port": 8883,
        "tls": True,
        "tls_insecure": False,
        "base_topic": "aqara",
        "qos": 1,
        "version": "5",
        "client_id": None,
        "username": "bob",
        "authenticated": True,
        "keepalive": 60,
        "max_queued": 10000,
    }
    assert summary["backends"] == [
        {
            "name": "home",
            "type": "studio",
            "url": "wss://hub",
            "request_timeout": 10.0,
            "ping_interval": 30.0,
            "reconnect_max_delay": 60.0,
            "ws_url": "wss://hub/open/ws",
            "http_url": "https://hub/open/api/v1",
        },
        {
            "name": "other",
            "type": "studio",
            "url": "ws://hub2:8080",
            "request_timeout": 10.0,
            "ping_interval": 30.0,
            "reconnect_max_delay": 60.0,
            "ws_url": "ws://hub2:8080/open/ws",
            "http_url": "http://hub2:8080/open/api/v1",
        },
    ]
    assert summary["homeassistant"] == {"enabled": True, "discovery_prefix": "homeassistant",
                                        "device_based": True,
                                        "status_topic": "homeassistant/status"}
    assert summary["homie"] == {"enabled": False, "root": "homie", "versions": [5],
                                "version_file": None}
    assert summary["devices"] == {"lumi.1": {"name": "lamp", "exclude": False,
                                             "homeassistant": True}}
    assert summary["bridge"] == {
        "write_window_ms": 50,
        "publish_unchanged": False,
        "device_state_topic": True,
        "clear_stale_topics": True,
    }
    assert summary["log"] == {"level": "info", "format": "console"}


def test_summary_is_json_serialisable() -> None:
    json.dumps(secret_config().summary())


def test_secret_values() -> None:
    values = secret_config().secret_values()
    assert values == [PASSWORD, f"Bearer {TOKEN}", TOKEN, f"{TOKEN}-2"]


def test_secret_values_without_secrets() -> None:
    assert load(BACKEND).secret_values() == ["tok-123456"]


def test_error_messages_never_contain_secrets() -> None:
    env = {"T": TOKEN, "P": PASSWORD}
    texts = [
        "backends: [{type: studio, url: h, token: [a]}]\nmqtt: {password: '${P}'}\n",
        "backends: [{type: studio, url: h, token: '${T}', tokn: '${T}'}]\n",
        "backends: [{type: studio, url: 'ws://u:${T}@h', token: '${T}'}]\n",
        "backends: [{type: studio, url: '${T}:99999', token: t}]\n",
        BACKEND + "mqtt: {url: 'mqtt://u:${P}@h', password: '${P}'}\n",
        BACKEND + "mqtt: {url: 'http://u:${P}@h'}\n",
        BACKEND + "mqtt: {password: {a: '${P}'}}\n",
        BACKEND + "mqtt: {password: '${P}', qos: 9}\n",
        "backends: [{type: studio, url: h, token: '${T}', request_timeout: x}]\n",
        "backends: [{type: studio, url: h, token: '${T}'}, {type: studio, url: h, token: '${T}'}]",
    ]
    for text in texts:
        with pytest.raises(ConfigError) as info:
            load(text, env)
        for line in [str(info.value), *info.value.errors]:
            assert TOKEN not in line, line
            assert PASSWORD not in line, line


def test_strip_userinfo() -> None:
    assert strip_userinfo("mqtt://u:p@h:1") == "mqtt://h:1"
    assert strip_userinfo("ws://h/x") == "ws://h/x"
    assert strip_userinfo("not a url") == "not a url"


# ---- the example --------------------------------------------------------------------------------


def test_example_config_loads() -> None:
    config = load_config(EXAMPLE, env={"AQARA_STUDIO_TOKEN": TOKEN, "MQTT_PASSWORD": PASSWORD})
    assert config.backends[0].name == "home"
    assert first_studio(config).ws_url == "ws://192.168.1.10/open/ws"
    assert config.devices["lumi1.54ef448a0b73"].name == "kitchen_switch"
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == PASSWORD
    assert set(config.secret_values()) == {TOKEN, PASSWORD}


def test_example_config_with_parse_config() -> None:
    config = parse_config(
        EXAMPLE.read_text(),
        "config.example.yaml",
        {"AQARA_STUDIO_TOKEN": TOKEN, "MQTT_PASSWORD": PASSWORD},
    )
    assert config.log.format == "console"


def test_example_config_needs_its_env() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(EXAMPLE, env={})
    assert str(info.value).startswith(f"{EXAMPLE}: ${{MQTT_PASSWORD}} is not set")


def test_example_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    models: list[type[BaseModel]] = [
        MqttConfig,
        TlsConfig,
        StudioBackendConfig,
        HomeAssistantConfig,
        DeviceOptions,
        BridgeOptions,
        LogConfig,
        Config,
    ]
    for model in models:
        for field in model.model_fields:
            assert f"{field}:" in text, f"{model.__name__}.{field} missing from the example"


# ---- failover members ----------------------------------------------------------------------------

def test_a_failover_member_gets_a_4_s_keepalive_unless_it_sets_one() -> None:
    assert load(BACKEND).keepalive == 60
    assert load(BACKEND + "instance: {failover: true}\n").keepalive == 4
    assert load(BACKEND + "instance: {failover: true}\nmqtt: {keepalive: 10}\n").keepalive == 10


def test_a_member_is_named_by_the_config_or_the_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "pi.kitchen")
    assert load(BACKEND + "instance: {failover: true}\n").member == "pi_kitchen"
    assert load(BACKEND + "instance: {failover: true, member: hall}\n").member == "hall"
    summary = load(BACKEND + "instance: {failover: true, member: hall}\n").summary()
    assert summary["instance"] == {"id": "aqara", "failover": True, "member": "hall"}
    assert load(BACKEND).summary()["instance"] == {"id": "aqara"}


def test_a_configured_client_id_carries_the_member_name_for_failover() -> None:
    assert client_id(load(BACKEND + "mqtt: {client_id: bridge}\n")) == "bridge"
    assert client_id(load(BACKEND + "mqtt: {client_id: bridge}\n"
                          "instance: {failover: true, member: hall}\n")) == "bridge-hall"
    assert client_id(load(BACKEND)).startswith("aqara-mqtt-")
