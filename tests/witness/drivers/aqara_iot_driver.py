"""Drives aqara-iot-py-sdk 1.0.9's ``AqaraOpenAPI`` (Aqara's Home Assistant SDK) as a user
would, pointed at the simulator: its endpoint and app credentials are hard-coded per country,
so they are replaced by the simulator's; it signs and calls by itself."""

from __future__ import annotations

from typing import Any

from _driver import serve
from aqara_iot.openapi import PATH_OPEN_API, AqaraOpenAPI, AqaraTokenInfo

state: dict[str, Any] = {}


def init(req: dict[str, Any]) -> None:
    api = AqaraOpenAPI("Europe")
    api.endpoint = req["endpoint"]
    api.app_id, api.key_id, api.app_key = req["app_id"], req["key_id"], req["app_key"]
    api.token_info = AqaraTokenInfo({"access_token": req["access"],
                                     "refresh_token": req["refresh"], "expires_in": 3600})
    state["api"] = api


def post(req: dict[str, Any]) -> Any:
    return state["api"].post(PATH_OPEN_API, {"intent": req["intent"], "data": req["data"]})


def expire_locally(_req: dict[str, Any]) -> None:
    state["api"].token_info.expire_time = 0  # the SDK refreshes 60 s before expiry


def token(_req: dict[str, Any]) -> Any:
    info = state["api"].token_info
    return info.access_token if info is not None else None


serve({"init": init, "post": post, "expire_locally": expire_locally, "token": token})
