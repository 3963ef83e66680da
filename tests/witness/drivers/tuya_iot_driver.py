"""Drives tuya-iot-py-sdk 0.6.6's ``TuyaOpenAPI`` (the one Home Assistant's Tuya integration
used) as a user would, pointed at the simulator.

Its ``connect()`` logs in through the app-user paths (smart-home or custom auth), which the
bridge does not use; a project in simple mode gets its token with the SDK's own signed
``get("/v1.0/token", {"grant_type": 1})`` and hands it to ``TuyaTokenInfo``.
"""

from __future__ import annotations

from typing import Any

from _driver import serve
from tuya_iot import TuyaOpenAPI
from tuya_iot.openapi import TuyaTokenInfo

state: dict[str, Any] = {}


def init(req: dict[str, Any]) -> None:
    state["api"] = TuyaOpenAPI(req["url"], req["client_id"], req["secret"])


def simple_token(_req: dict[str, Any]) -> Any:
    api = state["api"]
    response = api.get("/v1.0/token", {"grant_type": 1})
    if response.get("success"):
        api.token_info = TuyaTokenInfo(response)
    return response


def connect(req: dict[str, Any]) -> Any:
    return state["api"].connect(req["username"], req["password"], req["country_code"],
                                req["schema"])


def call(req: dict[str, Any]) -> Any:
    api = state["api"]
    method, path = req["method"], req["path"]
    if method in ("GET", "DELETE"):
        return getattr(api, method.lower())(path, req.get("query") or None)
    return getattr(api, method.lower())(path, req.get("body"))


def expire_locally(_req: dict[str, Any]) -> None:
    state["api"].token_info.expire_time = 0  # the SDK refreshes 60 s before expiry


def token(_req: dict[str, Any]) -> Any:
    info = state["api"].token_info
    return info.access_token if info is not None else None


serve({"init": init, "simple_token": simple_token, "connect": connect, "call": call,
       "expire_locally": expire_locally, "token": token})
