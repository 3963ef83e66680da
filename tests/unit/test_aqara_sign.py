"""Aqara Open API signing (protocols.md §2.2) and the backend's other pure helpers."""

from __future__ import annotations

import hashlib

import pytest

from bridge.backends.aqara_cloud.client import CallLimiter, parse_code_path
from bridge.backends.aqara_cloud.sign import (
    MAX_SKEW_MS,
    header,
    is_auth_intent,
    new_nonce,
    push_base,
    push_signs,
    sign,
    sign_base,
    signed_headers,
    time_is_fresh,
)
from bridge.model import TraitAddress
from bridge.simulators.aqara_cloud import _sign as simulator_sign


def test_worked_example_from_protocols_md() -> None:
    assert sign_base("app456", "K.789", "abcd", "1700000000000", "tok123") == (
        "Accesstoken=tok123&Appid=app456&Keyid=K.789&Nonce=abcd&Time=1700000000000"
    )
    assert sign("app456", "K.789", "SECRETKEY", "abcd", "1700000000000", "tok123") == (
        "8770d9199f8a2e21de48f0ee03dd4715"
    )


def test_the_whole_string_is_lower_cased_before_hashing() -> None:
    text = "accesstoken=tok123&appid=app456&keyid=k.789&nonce=abcd&time=1700000000000secretkey"
    assert sign("app456", "K.789", "SECRETKEY", "abcd", 1700000000000, "tok123") == (
        hashlib.md5(text.encode()).hexdigest()
    )
    assert sign("APP456", "k.789", "secretkey", "ABCD", 1700000000000, "TOK123") == (
        sign("app456", "K.789", "SECRETKEY", "abcd", 1700000000000, "tok123")
    )


def test_without_a_token_the_accesstoken_part_is_dropped() -> None:
    assert sign_base("a", "k", "n", 1, None) == "Appid=a&Keyid=k&Nonce=n&Time=1"
    assert sign_base("a", "k", "n", 1, "") == "Appid=a&Keyid=k&Nonce=n&Time=1"
    expected = hashlib.md5(b"appid=a&keyid=k&nonce=n&time=1key").hexdigest()
    assert sign("a", "k", "KEY", "n", "1") == expected


def test_signed_headers() -> None:
    headers = signed_headers("app", "K.1", "secret", "tok", nonce="n0", time_ms=42)
    assert headers["Appid"] == "app"
    assert headers["Keyid"] == "K.1"
    assert headers["Nonce"] == "n0"
    assert headers["Time"] == "42"
    assert headers["Accesstoken"] == "tok"
    assert headers["Sign"] == sign("app", "K.1", "secret", "n0", "42", "tok")
    assert headers["Content-Type"] == "application/json"
    auth = signed_headers("app", "K.1", "secret", None, nonce="n0", time_ms=42, lang=None)
    assert "Accesstoken" not in auth
    assert "Lang" not in auth
    assert auth["Sign"] == sign("app", "K.1", "secret", "n0", "42")


def test_fresh_headers_differ_every_call() -> None:
    one = signed_headers("app", "K.1", "secret", "tok")
    two = signed_headers("app", "K.1", "secret", "tok")
    assert one["Nonce"] != two["Nonce"]
    assert len(new_nonce()) == 16
    assert int(one["Time"]) > 1_600_000_000_000


def test_simulator_signs_like_the_bridge() -> None:
    """Two independent implementations (bridge and simulator) agree."""
    for token in ("tok123", ""):
        assert simulator_sign("app456", "K.789", "SECRETKEY", "abcd", "1700000000000", token) == (
            sign("app456", "K.789", "SECRETKEY", "abcd", "1700000000000", token or None)
        )


def test_push_signs_are_the_documented_string_and_the_request_base_both_keyed() -> None:
    assert push_base("K.1", "n", "5", "tok") == "appkey=K.1&nonce=n&time=5&token=tok"
    documented = hashlib.md5(b"appkey=k.1&nonce=n&time=5&token=toksecret",
                             usedforsecurity=False).hexdigest()
    assert push_signs("a", "k", "Secret", appkey="K.1", token="tok", nonce="n", time_ms="5") == {
        documented, sign("a", "k", "Secret", "n", "5", "tok")}
    unkeyed = hashlib.md5(b"appkey=k.1&nonce=n&time=5&token=tok",
                          usedforsecurity=False).hexdigest()
    assert unkeyed not in push_signs("a", "k", "Secret", appkey="K.1", token="tok", nonce="n",
                                     time_ms="5")


def test_auth_intents() -> None:
    assert is_auth_intent("config.auth.refreshToken")
    assert is_auth_intent("config.auth.getAuthCode")
    assert not is_auth_intent("spec.write.trait")
    assert not is_auth_intent("config.device.name")


@pytest.mark.parametrize(
    ("stamp", "fresh"),
    [(1_000_000, True), (1_000_000 + MAX_SKEW_MS, True), (1_000_000 - MAX_SKEW_MS - 1, False),
     ("1000000", True), ("x", False), (None, False), (" 1000001 ", True)],
)
def test_time_window(stamp: object, fresh: bool) -> None:
    assert time_is_fresh(stamp, 1_000_000) is fresh  # type: ignore[arg-type]


def test_header_lookup_ignores_case() -> None:
    assert header({"Sign": "x"}, "sign") == "x"
    assert header({"sign": "x"}, "SIGN") == "x"
    assert header({}, "sign") is None


# ---- backend helpers ------------------------------------------------------------------------


def test_code_paths_with_dotted_trait_codes() -> None:
    pm = TraitAddress("d", 1, "AirQuality", "PM2.5Density")
    assert parse_code_path("d", "2.Output.OnOff") == TraitAddress("d", 2, "Output", "OnOff")
    assert parse_code_path("d", "1.AirQuality.PM2.5Density", {pm}) == pm
    assert parse_code_path("d", "x.Output.OnOff") is None
    assert parse_code_path("d", "2.Output") is None
    assert parse_code_path("d", "2") is None
    assert parse_code_path("d", 5) is None


def test_limiter_sliding_window() -> None:
    limiter = CallLimiter(calls=3, window=10.0)
    window = limiter.window
    assert window > 10.0  # a safety margin
    for t in (0.0, 1.0, 2.0):
        assert limiter.delay(now=t) == 0
        limiter.record(now=t)
    assert limiter.delay(now=2.0) == pytest.approx(window - 2.0)
    assert limiter.delay(now=window + 0.5) == 0  # the first call left the window


def test_limiter_keeps_a_reserve_for_foreground_calls() -> None:
    limiter = CallLimiter(calls=20, window=100.0)
    assert limiter.reserve == 2
    for t in range(18):
        limiter.record(now=float(t))
    assert limiter.delay(background=True, now=18.0) > 0
    assert limiter.delay(background=False, now=18.0) == 0


def test_limiter_hold() -> None:
    limiter = CallLimiter(calls=100, window=1.0)
    limiter.hold(5.0)
    assert limiter.delay() > 4.0
