"""Aqara Open API v3 request signing (protocols.md §2.2): pure functions, no IO.

Every call to ``POST /v3.0/open/api`` carries the headers ``Appid``, ``Keyid``, ``Nonce``,
``Time`` (ms since the epoch, as text), ``Sign`` and, except on the auth intents
(``config.auth.*``), ``Accesstoken``. The signature (3P, identical in four independent clients,
citing the vendor's "signGenerationRules" page)::

    base = "Accesstoken=<token>&Appid=<appId>&Keyid=<keyId>&Nonce=<nonce>&Time=<time>"
    Sign = lowercase_hex(MD5(lower(base + AppKey)))

The ``Accesstoken=<token>&`` part is dropped entirely when there is no token. The key id is used
exactly as configured (whether a ``K.`` prefix belongs to it is an open question; the simulator
recomputes the signature from the received header values, so both sides agree either way).

An HTTP push (DOC, Aqara's Chinese "消息推送模式" page) always carries ``token`` (a valid access
token of the authorized account), ``time`` and ``nonce``; ``appkey`` and ``sign`` only when
signing is turned on in the console. Its rule's first step is DOC: the headers as
``appkey=<appkey>&nonce=<nonce>&time=<time>&token=<token>``; the rest of the rule is not in any
copy we have. :func:`push_signs` gives the keyed candidates a genuine push may carry: that string
and, as an earlier inference, the request base with ``token`` as the access token, each digested
like a request (INFERRED). Neither decides alone whether a push is genuine (see the backend's
``_push_authentic``).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Mapping

__all__ = [
    "AUTH_INTENT_PREFIX",
    "MAX_SKEW_MS",
    "header",
    "is_auth_intent",
    "new_nonce",
    "now_ms",
    "push_base",
    "push_signs",
    "sign",
    "sign_base",
    "signed_headers",
    "time_is_fresh",
]

AUTH_INTENT_PREFIX = "config.auth."
"""Intents signed without the access token (and sent without the ``Accesstoken`` header)."""

MAX_SKEW_MS = 5 * 60 * 1000
"""How far a request's ``Time`` may be from the server's clock (legacy SDK code 105)."""


def is_auth_intent(intent: str) -> bool:
    """True for ``config.auth.*`` intents, which are signed without an access token."""
    return intent.startswith(AUTH_INTENT_PREFIX)


def now_ms() -> int:
    """The current time in milliseconds since the epoch."""
    return int(time.time() * 1000)


def new_nonce() -> str:
    """A fresh random nonce: 16 lower-case hex characters."""
    return secrets.token_hex(8)


def sign_base(
    app_id: str, key_id: str, nonce: str, time_ms: str | int, access_token: str | None = None
) -> str:
    """The string that is signed (before the AppKey is appended and everything lower-cased)."""
    base = f"Appid={app_id}&Keyid={key_id}&Nonce={nonce}&Time={time_ms}"
    if access_token:
        base = f"Accesstoken={access_token}&{base}"
    return base


def sign(
    app_id: str,
    key_id: str,
    app_key: str,
    nonce: str,
    time_ms: str | int,
    access_token: str | None = None,
) -> str:
    """``Sign``: lower-case hex MD5 of ``lower(base + app_key)``."""
    text = (sign_base(app_id, key_id, nonce, time_ms, access_token) + app_key).lower()
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def signed_headers(
    app_id: str,
    key_id: str,
    app_key: str,
    access_token: str | None,
    *,
    nonce: str | None = None,
    time_ms: int | None = None,
    lang: str | None = "en",
) -> dict[str, str]:
    """The headers of one API call; ``access_token`` None (auth intents) omits ``Accesstoken``."""
    nonce = nonce if nonce is not None else new_nonce()
    stamp = str(time_ms if time_ms is not None else now_ms())
    headers = {
        "Appid": app_id,
        "Keyid": key_id,
        "Nonce": nonce,
        "Time": stamp,
        "Sign": sign(app_id, key_id, app_key, nonce, stamp, access_token),
        "Content-Type": "application/json",
    }
    if access_token:
        headers["Accesstoken"] = access_token
    if lang:
        headers["Lang"] = lang
    return headers


def push_base(appkey: str, nonce: str, time_ms: str | int, token: str) -> str:
    """The documented first step of a push's ``sign``: the headers in their documented order."""
    return f"appkey={appkey}&nonce={nonce}&time={time_ms}&token={token}"


def push_signs(
    app_id: str, key_id: str, app_key: str, *, appkey: str, token: str, nonce: str,
    time_ms: str | int,
) -> frozenset[str]:
    """The ``sign`` values a genuine push may carry (INFERRED digests, both keyed by the AppKey)."""
    documented = (push_base(appkey, nonce, time_ms, token) + app_key).lower()
    return frozenset({
        hashlib.md5(documented.encode("utf-8"), usedforsecurity=False).hexdigest(),
        sign(app_id, key_id, app_key, nonce, time_ms, token),
    })


def time_is_fresh(time_ms: str | int | None, now: int, window_ms: int = MAX_SKEW_MS) -> bool:
    """True when ``time_ms`` (text or int, ms) is within ``window_ms`` of ``now``."""
    if time_ms is None:
        return False
    try:
        stamp = int(str(time_ms).strip())
    except ValueError:
        return False
    return abs(now - stamp) <= window_ms


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header value by case-insensitive name (for plain dicts; aiohttp's are already so)."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None
