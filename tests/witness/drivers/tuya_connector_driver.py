"""Drives tuya-connector-python 0.1.2 (Tuya's official OpenAPI and Pulsar client) as a user
would, pointed at the simulator: ``TuyaOpenAPI(endpoint, access_id, secret)`` and
``TuyaOpenPulsar(access_id, secret, ws_endpoint, topic)``."""

from __future__ import annotations

import json
import time
from typing import Any

from _driver import serve
from tuya_connector import TuyaOpenAPI, TuyaOpenPulsar

state: dict[str, Any] = {}


def init(req: dict[str, Any]) -> None:
    state["api"] = TuyaOpenAPI(req["url"], req["client_id"], req["secret"])
    state["keys"] = (req["client_id"], req["secret"])


def connect(_req: dict[str, Any]) -> Any:
    return state["api"].connect()


def call(req: dict[str, Any]) -> Any:
    api = state["api"]
    method, path = req["method"], req["path"]
    if method == "GET":
        return api.get(path, req.get("query") or None)
    if method == "DELETE" and req.get("body"):
        # delete() takes no body, but the SDK's request core signs and sends one for any method
        # (requests' json=): the documented DELETE body of room-device removal, sent Tuya's way
        return api._TuyaOpenAPI__request("DELETE", path, req.get("query") or None, req["body"])
    if method == "DELETE":
        return api.delete(path, req.get("query") or None)
    return getattr(api, method.lower())(path, req.get("body"))


def token(_req: dict[str, Any]) -> Any:
    info = state["api"].token_info
    return info.access_token if info is not None else None


def pulsar_start(req: dict[str, Any]) -> None:
    received: list[Any] = []
    client_id, secret = state["keys"]
    pulsar = TuyaOpenPulsar(client_id, secret, req["push_url"], req["topic"])
    pulsar.daemon = True
    pulsar.add_message_listener(received.append)
    state["pulsar"], state["received"] = pulsar, received
    pulsar.start()


def pulsar_wait(req: dict[str, Any]) -> list[Any]:
    deadline = time.monotonic() + req["timeout"]
    received: list[Any] = state["received"]
    while len(received) < req["count"] and time.monotonic() < deadline:
        time.sleep(0.05)
    return [json.loads(r) for r in received]


def pulsar_stop(_req: dict[str, Any]) -> None:
    state.pop("pulsar").stop()


serve({"init": init, "connect": connect, "call": call, "token": token,
       "pulsar_start": pulsar_start, "pulsar_wait": pulsar_wait, "pulsar_stop": pulsar_stop})
