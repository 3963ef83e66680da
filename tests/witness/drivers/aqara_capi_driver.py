"""Drives aqara-capi 1.2.0's ``CloudApiClient`` as a user would, pointed at the simulator (its
API URL is built from a fixed host list: the simulator's URL replaces it)."""

from __future__ import annotations

from typing import Any

from _driver import serve
from aqara_capi.client.auth import AccessTokenModel
from aqara_capi.client.client import CloudApiClient
from aqara_capi.consts import Locality

state: dict[str, Any] = {}


def _answer(res: Any) -> dict[str, Any]:
    return {"code": res.code.value, "message": res.message, "result": res.result}


def init(req: dict[str, Any]) -> None:
    client = CloudApiClient(req["app_id"], req["app_key"], req["key_id"], Locality.GER)
    client._api_url = req["url"]
    client.set_tokens(req["access"], req["refresh"])
    state["client"] = client


def auth_code(req: dict[str, Any]) -> Any:
    """``get_auth_code``: the code, parsed by its ``GetAuthModel``."""
    res = state["client"].get_auth_code(req["account"], 0, "1h")
    return {**_answer(res), "auth_code": res.data.auth_code}


def get_token(req: dict[str, Any]) -> Any:
    """``get_access_token`` as a user calls it."""
    return _answer(state["client"].get_access_token(req["auth_code"], req["account"], 0))


def token_model(req: dict[str, Any]) -> Any:
    """``config.auth.getToken`` parsed by its ``AccessTokenModel`` (what get_access_token means
    to do), with the tokens it got set as get_access_token would."""
    client = state["client"]
    res = client._request("config.auth.getToken", {
        "authCode": req["auth_code"], "account": req["account"], "accountType": 0},
        model=AccessTokenModel)
    client.set_tokens(res.data.access_token, res.data.refresh_token)
    return {**_answer(res), "model": res.data.dict()}


def devices(_req: dict[str, Any]) -> list[str]:
    return [d.did for d in state["client"].get_all_devices(page_size=10)]


def sub_info(req: dict[str, Any]) -> Any:
    return _answer(state["client"].query_device_sub_info(req["did"]))


def rename(req: dict[str, Any]) -> Any:
    return _answer(state["client"].config_device_name(req["did"], req["name"]))


def request(req: dict[str, Any]) -> Any:
    return _answer(state["client"]._request(req["intent"], req["data"]))


def tokens(_req: dict[str, Any]) -> Any:
    client = state["client"]
    return {"access": client._access_token, "refresh": client._refresh_token}


serve({"init": init, "auth_code": auth_code, "get_token": get_token,
       "token_model": token_model, "devices": devices, "sub_info": sub_info,
       "rename": rename, "request": request, "tokens": tokens})
