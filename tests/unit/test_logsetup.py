"""Logging setup: formats, levels, stdlib routing, and secrets never reaching the output."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge import logsetup
from bridge.config import parse_config
from bridge.logsetup import configure_logging, get_logger, set_level
from bridge.secrets import REDACTOR

TOKEN = "log-test-token-5e6f7a8b9c"
PASSWORD = "log-test-password-0d1e2f"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    if logsetup._handler is not None:
        root.removeHandler(logsetup._handler)
        logsetup._handler = None
    root.setLevel(level)
    for name in logsetup._own_names:  # leave other tests' caplog unaffected
        logging.getLogger(name).setLevel(logging.NOTSET)
    logsetup._level = logging.INFO


def setup(level: str = "debug", fmt: logsetup.LogFormat = "json") -> io.StringIO:
    stream = io.StringIO()
    configure_logging(level, fmt, stream, secrets=[TOKEN, PASSWORD])
    return stream


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_line_fields() -> None:
    stream = setup()
    get_logger("bridge.test").info("hello", device="lumi.1", n=3)
    (line,) = json_lines(stream)
    assert line["event"] == "hello"
    assert line["level"] == "info"
    assert line["logger"] == "bridge.test"
    assert line["device"] == "lumi.1"
    assert line["n"] == 3
    assert ISO_UTC.match(line["timestamp"])
    assert list(line)[:4] == ["timestamp", "level", "logger", "event"]


def test_json_one_object_per_line() -> None:
    stream = setup()
    log = get_logger("bridge.test")
    log.info("multi\nline", text="a\nb")
    log.warning("second")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0])["event"] == "multi\nline"


def test_console_format_without_colours() -> None:
    stream = setup(fmt="console")
    get_logger("bridge.test").warning("something happened", device="lumi.1")
    out = stream.getvalue()
    assert "\x1b[" not in out
    assert "something happened" in out
    assert "[warning" in out
    assert "[bridge.test]" in out
    assert "device=lumi.1" in out
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z ", out)


def test_positional_arguments_are_formatted() -> None:
    stream = setup()
    get_logger("bridge.test").info("value %s of %d", "x", 2)
    assert json_lines(stream)[0]["event"] == "value x of 2"


def test_levels_filter_own_loggers() -> None:
    stream = setup(level="warning")
    log = get_logger("bridge.test")
    log.debug("no")
    log.info("no")
    log.warning("yes")
    log.error("yes too")
    assert [e["event"] for e in json_lines(stream)] == ["yes", "yes too"]


def test_set_level_at_runtime() -> None:
    stream = setup(level="info")
    log = get_logger("bridge.test")
    log.debug("hidden")
    set_level("debug")
    log.debug("shown")
    set_level("ERROR")
    log.warning("hidden again")
    log.error("error shown")
    assert [e["event"] for e in json_lines(stream)] == ["shown", "error shown"]


def test_loggers_outside_the_package_follow_the_level() -> None:
    stream = setup(level="debug")
    get_logger("aqara_tool").debug("dbg")
    assert [e["event"] for e in json_lines(stream)] == ["dbg"]


def test_unknown_level_and_format() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("loud", "json", io.StringIO())
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        configure_logging("info", "xml", io.StringIO())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown log level"):
        set_level("loud")


def test_stdlib_loggers_are_routed_at_warning_and_above() -> None:
    stream = setup(level="debug")
    paho = logging.getLogger("paho.mqtt.client")
    paho.debug("no")
    paho.info("no")
    paho.warning("paho warns %s", "here")
    logging.getLogger("websockets").error("ws error")
    lines = json_lines(stream)
    assert [(e["logger"], e["level"], e["event"]) for e in lines] == [
        ("paho.mqtt.client", "warning", "paho warns here"),
        ("websockets", "error", "ws error"),
    ]
    assert ISO_UTC.match(lines[0]["timestamp"])


def test_stdlib_loggers_respect_a_higher_level() -> None:
    stream = setup(level="error")
    logging.getLogger("aiohttp").warning("no")
    logging.getLogger("aiohttp").error("yes")
    assert [e["event"] for e in json_lines(stream)] == ["yes"]


def test_stdlib_logging_under_the_package_name_follows_the_level() -> None:
    stream = setup(level="debug")
    logging.getLogger("bridge.mqtt").debug("plain stdlib %s", TOKEN)
    assert json_lines(stream)[0]["event"] == "plain stdlib ***"


def test_configure_twice_keeps_one_handler() -> None:
    first = setup()
    second = setup(fmt="console")
    handlers = [h for h in logging.getLogger().handlers if h is logsetup._handler]
    assert len(handlers) == 1
    get_logger("bridge.test").info("once")
    assert first.getvalue() == ""
    assert second.getvalue().count("once") == 1


def test_get_logger_initial_values() -> None:
    stream = setup()
    get_logger("bridge.test", backend="home").info("bound")
    assert json_lines(stream)[0]["backend"] == "home"


# ---- secrets never reach the output, in both formats ------------------------------------------


def log_everything_wrong() -> None:
    log = get_logger("bridge.leaky")
    log.info(f"connecting with {TOKEN}")
    log.info("header", headers={"Authorization": f"Bearer {TOKEN}"})
    log.info("nested", data={"a": [{"b": f"x{TOKEN}y"}], "t": (PASSWORD,)})
    log.info("by key", token="not-registered-abc", password="unregistered-pw", app_key="k1234")
    log.info("positional %s", PASSWORD)
    log.warning("object", err=RuntimeError(f"401 for {TOKEN}"), path=Path(f"/tmp/{TOKEN}"))
    try:
        raise ConnectionError(f"handshake failed: Bearer {TOKEN}")
    except ConnectionError:
        log.exception("failed")
    try:
        raise ValueError(f"bad {PASSWORD}")
    except ValueError:
        logging.getLogger("aiohttp.client").error("stdlib %s", TOKEN, exc_info=True)
    log.info(
        "bytes",
        raw=f"{TOKEN}".encode(),
        **{"Authorization": "Bearer something-else"},
    )


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_secrets_are_redacted(fmt: logsetup.LogFormat) -> None:
    stream = setup(fmt=fmt)
    log_everything_wrong()
    out = stream.getvalue()
    assert TOKEN not in out
    assert PASSWORD not in out
    assert "not-registered-abc" not in out
    assert "unregistered-pw" not in out
    assert "k1234" not in out
    assert "something-else" not in out
    assert "Bearer ***" in out
    assert "connecting with ***" in out
    assert "401 for ***" in out
    assert "handshake failed: Bearer ***" in out
    assert "Traceback" in out
    assert "stdlib ***" in out
    assert "bad ***" in out


def test_json_redaction_structure() -> None:
    stream = setup()
    log_everything_wrong()
    lines = {e["event"]: e for e in json_lines(stream)}
    assert lines["header"]["headers"] == {"Authorization": "***"}
    assert lines["nested"]["data"] == {"a": [{"b": "x***y"}], "t": ["***"]}
    assert lines["by key"]["token"] == "***"
    assert lines["by key"]["password"] == "***"
    assert lines["by key"]["app_key"] == "***"
    assert lines["object"]["err"] == "RuntimeError: 401 for ***"
    assert lines["object"]["path"] == "/tmp/***"
    assert "ConnectionError: handshake failed: Bearer ***" in lines["failed"]["exception"]
    assert lines["failed"]["level"] == "error"
    assert "ValueError: bad ***" in lines["stdlib ***"]["exception"]


def test_secrets_registered_later_are_redacted() -> None:
    stream = setup()
    late = "registered-later-secret-77"
    REDACTOR.register(late)
    get_logger("bridge.test").info(f"x {late}")
    assert json_lines(stream)[0]["event"] == "x ***"


def test_config_secrets_feed_the_redactor() -> None:
    config = parse_config(
        "backends: [{type: studio, url: h, token: '${T}'}]\nmqtt: {password: '${P}'}\n",
        "config.yaml",
        {"T": "cfg-token-value-123", "P": "cfg-password-456"},
    )
    stream = io.StringIO()
    configure_logging(config.log.level, config.log.format, stream, secrets=config.secret_values())
    get_logger("bridge.test").info("cfg", info="cfg-token-value-123 / cfg-password-456")
    assert "cfg-token-value-123" not in stream.getvalue()
    assert "cfg-password-456" not in stream.getvalue()


def test_redact_processor_keeps_harmless_values() -> None:
    event = {"event": "e", "token_expired": True, "password": None, "_record": object(), "n": 1}
    out = logsetup.redact_processor(None, "info", event)
    assert out["token_expired"] is True
    assert out["password"] is None
    assert out["_record"] is event["_record"]
    assert out["n"] == 1
