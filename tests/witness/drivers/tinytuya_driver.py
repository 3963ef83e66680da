"""Drives tinytuya 1.20.0's ``Cloud`` class as a user would, pointed at the simulator.

tinytuya builds ``https://<region host>`` URLs itself: the region host is replaced by the
simulator's ``127.0.0.1:<port>`` and ``https`` by ``http`` (the simulator speaks plain HTTP on
loopback); everything else, signing included, is tinytuya's own.
"""

from __future__ import annotations

import sys
from typing import Any

import requests
import tinytuya
from _driver import serve

cloud_module = sys.modules["tinytuya.Cloud"]
state: dict[str, Any] = {}


def _http(url: str) -> str:
    host = state["host"]
    if not url.startswith(f"https://{host}/"):
        raise ConnectionRefusedError(f"not the simulator: {url}")
    return "http://" + url.removeprefix("https://")


class _LoopbackRequests:
    """The ``requests`` functions tinytuya's Cloud uses, with the scheme swapped."""

    Request = requests.Request

    @staticmethod
    def get(url: str, **kwargs: Any) -> Any:
        return requests.get(_http(url), **kwargs)

    @staticmethod
    def request(method: str, url: str, **kwargs: Any) -> Any:
        return requests.request(method, _http(url), **kwargs)


class SimulatorCloud(tinytuya.Cloud):
    def setregion(self, apiRegion: Any = None) -> None:
        self.urlhost = state["host"]


def init(req: dict[str, Any]) -> Any:
    state["host"] = req["host"]
    cloud_module.requests = _LoopbackRequests
    cloud = SimulatorCloud(apiRegion="eu", apiKey=req["client_id"], apiSecret=req["secret"])
    state["cloud"] = cloud
    return {"token": cloud.token, "error": cloud.error}


def device_call(req: dict[str, Any]) -> Any:
    cloud = state["cloud"]
    name = req["name"]
    if name == "sendcommand":
        return cloud.sendcommand(req["device"], req["commands"])
    if name == "getdevices":
        return cloud.getdevices(verbose=True)
    return getattr(cloud, name)(req["device"])


def cloudrequest(req: dict[str, Any]) -> Any:
    return state["cloud"].cloudrequest(req["url"], action=req.get("action"),
                                       post=req.get("post"), query=req.get("query"))


def token(_req: dict[str, Any]) -> Any:
    return state["cloud"].token


serve({"init": init, "device_call": device_call, "cloudrequest": cloudrequest, "token": token})
