"""A minimal Aqara Studio client for the simulator's tests: requests correlated by ``msgId``,
everything else kept as a push."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from bridge.simulators.studio import StudioSimulator

TIMEOUT = 3.0
NO_DATA: Any = object()
"""Marks a request sent without a ``data`` member."""


class Client:
    """One WebSocket connection to the simulator."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pushes: list[dict[str, Any]] = []
        self._seq = 0

    async def recv_json(self) -> Any:
        async with asyncio.timeout(TIMEOUT):
            raw = await self.ws.recv()
        return json.loads(raw)

    async def send_raw(self, text: str) -> Any:
        await self.ws.send(text)
        return await self.recv_json()

    async def request(self, rtype: str, data: Any = NO_DATA,
                      response_type: str | None = None) -> dict[str, Any]:
        """Send one request and return its response (pushes meanwhile are kept)."""
        self._seq += 1
        msg_id = f"t-{self._seq}"
        msg: dict[str, Any] = {"type": rtype, "version": "v1", "msgId": msg_id}
        if data is not NO_DATA:
            msg["data"] = data
        await self.ws.send(json.dumps(msg))
        while True:
            reply = await self.recv_json()
            if reply.get("msgId") == msg_id:
                assert reply["type"] == (response_type or rtype.replace("Request", "Response"))
                return dict(reply)
            self.pushes.append(reply)

    async def ok(self, rtype: str, data: Any = NO_DATA, response_type: str | None = None) -> Any:
        """A request that must succeed: its ``data``."""
        reply = await self.request(rtype, data, response_type)
        assert set(reply) == {"type", "version", "msgId", "code", "message", "data"}
        assert (reply["code"], reply["message"]) == (0, "Success"), reply
        return reply["data"]

    async def push(self) -> dict[str, Any]:
        """The next push (trait change or object event)."""
        if self.pushes:
            return self.pushes.pop(0)
        msg = await self.recv_json()
        assert msg["type"] in ("TraitValueUpdate", "objectEvent"), msg
        return dict(msg)

    async def no_more_pushes(self) -> None:
        """Everything pushed so far arrives before the answer to a request made now."""
        await self.ok("GetDeviceInfoRequest", {"pageSize": 1})
        assert self.pushes == []


@contextlib.asynccontextmanager
async def connect(sim: StudioSimulator, auth: str | None, **kwargs: Any) -> AsyncIterator[Client]:
    """A client connected with this Authorization header (None: without one)."""
    headers = {"Authorization": auth} if auth is not None else {}
    async with websockets.connect(sim.ws_endpoint, additional_headers=headers, **kwargs) as ws:
        yield Client(ws)
