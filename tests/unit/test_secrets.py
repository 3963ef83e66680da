"""The redactor: registered secrets and secret-named keys never survive."""

from __future__ import annotations

import pytest

from bridge import secrets
from bridge.secrets import MASK, REDACTOR, Redactor, is_secret_key, mask_secret_keys

SECRET = "s3cr3t-t0ken-value"


@pytest.fixture
def redactor() -> Redactor:
    r = Redactor()
    r.register(SECRET)
    return r


def test_redact_replaces_every_occurrence(redactor: Redactor) -> None:
    text = f"a {SECRET} b {SECRET}{SECRET}"
    assert redactor.redact(text) == f"a {MASK} b {MASK}{MASK}"


def test_bearer_form_is_covered(redactor: Redactor) -> None:
    assert redactor.redact(f"Authorization: Bearer {SECRET}") == "Authorization: Bearer ***"


def test_url_and_json_escaped_forms() -> None:
    r = Redactor()
    secret = 'p@ss/w"rd\\x'
    r.register(secret)
    assert r.redact("mqtt://u:p%40ss%2Fw%22rd%5Cx@host") == "mqtt://u:***@host"
    assert r.redact('{"password": "p@ss/w\\"rd\\\\x"}') == '{"password": "***"}'
    assert r.redact(f"raw {secret}") == "raw ***"


def test_registering_a_bearer_value_also_covers_the_bare_token() -> None:
    r = Redactor()
    r.register(f"Bearer {SECRET}")
    assert r.redact(f"token={SECRET}") == "token=***"
    assert r.redact(f"Bearer {SECRET}") == "***"


@pytest.mark.parametrize("value", ["", None, "abc", "  ab  ", "   "])
def test_short_or_empty_values_are_ignored(value: str | None) -> None:
    r = Redactor()
    r.register(value)
    assert len(r) == 0
    assert r.redact("abc ab") == "abc ab"


def test_four_characters_are_enough() -> None:
    r = Redactor()
    r.register("abcd")
    assert r.redact("xabcdx") == "x***x"


def test_longest_secret_wins_when_overlapping() -> None:
    r = Redactor()
    r.register("abcd")
    r.register("abcdefgh")
    assert r.redact("abcdefgh abcd") == "*** ***"


def test_regex_characters_in_secrets_are_literal() -> None:
    r = Redactor()
    r.register("a.b*c+")
    assert r.redact("a.b*c+ aXbbc+") == "*** aXbbc+"


def test_no_secrets_returns_text_unchanged() -> None:
    r = Redactor()
    text = "nothing to hide"
    assert r.redact(text) is text


def test_register_is_idempotent_and_many(redactor: Redactor) -> None:
    before = len(redactor)
    redactor.register(SECRET)
    assert len(redactor) == before
    redactor.register_many(["other-secret", None, ""])
    assert redactor.redact("other-secret") == MASK


def test_clear(redactor: Redactor) -> None:
    redactor.clear()
    assert redactor.redact(SECRET) == SECRET


def test_redact_obj_nested(redactor: Redactor) -> None:
    obj = {
        "msg": f"sent {SECRET}",
        "list": [SECRET, 1, None, True, {"deep": (f"Bearer {SECRET}", 2.5)}],
        "password": "not registered but named",
        "token_expired": True,
        "app_key": None,
        "n": 3,
    }
    assert redactor.redact_obj(obj) == {
        "msg": "sent ***",
        "list": ["***", 1, None, True, {"deep": ("Bearer ***", 2.5)}],
        "password": "***",
        "token_expired": True,
        "app_key": None,
        "n": 3,
    }


def test_redact_obj_without_key_masking(redactor: Redactor) -> None:
    assert redactor.redact_obj({"password": "x", "a": SECRET}, by_key=False) == {
        "password": "x",
        "a": "***",
    }


def test_redact_obj_leaves_other_objects(redactor: Redactor) -> None:
    marker = object()
    assert redactor.redact_obj(marker) is marker
    assert redactor.redact_obj(5) == 5


@pytest.mark.parametrize(
    "name",
    [
        "token",
        "Token",
        "access_token",
        "refresh_token",
        "accessToken",
        "password",
        "mqtt_password",
        "passwd",
        "secret",
        "client_secret",
        "app_key",
        "appKey",
        "APPKEY",
        "api_key",
        "X-Api-Key",
        "authorization",
        "Authorization",
        "sign",
        "Sign",
        "signature",
        "key",
        "KEY",
        "private_key",
        "cookie",
        "Set-Cookie",
    ],
)
def test_secret_key_names(name: str) -> None:
    assert is_secret_key(name)


@pytest.mark.parametrize(
    "name",
    ["monkey", "key_id", "keys", "signal", "design", "user", "username", "name", "url", 5, None],
)
def test_ordinary_key_names(name: object) -> None:
    assert not is_secret_key(name)


def test_mask_secret_keys_needs_no_registration() -> None:
    data = {
        "headers": {"Authorization": "Bearer xyz", "Content-Type": "application/json"},
        "body": [{"appKey": "k", "intent": "query"}, "plain"],
        "sign": "abcdef",
        "key": 42,
        "secret": "",
        "name": "lamp",
    }
    assert mask_secret_keys(data) == {
        "headers": {"Authorization": "***", "Content-Type": "application/json"},
        "body": [{"appKey": "***", "intent": "query"}, "plain"],
        "sign": "***",
        "key": "***",
        "secret": "",
        "name": "lamp",
    }
    assert mask_secret_keys(("a", {"token": "t"})) == ("a", {"token": "***"})


def test_module_level_helpers() -> None:
    value = "module-level-secret-1234"
    secrets.register_secret(value)
    assert secrets.redact(f"x{value}x") == "x***x"
    assert secrets.redact_obj({"a": [value]}) == {"a": ["***"]}
    assert REDACTOR.redact(value) == MASK
