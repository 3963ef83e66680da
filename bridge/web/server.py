"""The web page's HTTP server (aiohttp, inside the daemon): the static page, a small JSON API,
one WebSocket per browser, and the checks that keep it safe.

Security: with a token set, every request needs it, as the ``aqara_mqtt_token`` cookie (set
HttpOnly, SameSite=Strict when the page is opened once with ``?token=``), or an
``Authorization: Bearer`` header. Writes are POSTs with a JSON body whose ``Origin`` (when sent)
is this server's own host, which a cross-site page cannot forge; the WebSocket checks its
``Origin`` the same way. Every answer carries a CSP without inline script, ``frame-ancestors
'none'`` and ``nosniff``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from bridge.config_base import host_text
from bridge.entries import DeviceEntry
from bridge.logsetup import get_logger
from bridge.model import TraitAddress
from bridge.secrets import redact_obj
from bridge.web.feed import ClientFeed
from bridge.web.output import WebOutput
from bridge.web.views import device_detail, device_summary

log = get_logger("bridge.web")

COOKIE = "aqara_mqtt_token"
STATIC = Path(str(resources.files("bridge.web") / "static"))
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
MAX_WRITE_BODY = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class WebSettings:
    """Where the page listens and who may open it (from the ``frontend:`` section)."""

    host: str = "127.0.0.1"
    port: int = 8088
    """0: any free port (see :attr:`WebServer.url`)."""
    token: str | None = None
    base_path: str = ""


class WebServer:
    """Serves the page for one daemon."""

    def __init__(self, settings: WebSettings, output: WebOutput,
                 entries: Callable[[], Mapping[str, DeviceEntry]],
                 status: Callable[[], Mapping[str, Any]],
                 entities: Callable[[DeviceEntry], list[dict[str, Any]]] | None) -> None:
        self.settings = settings
        self.output = output
        self.entries = entries
        self.status = status
        self.entities = entities
        self.port = settings.port
        self._runner: web.AppRunner | None = None
        self._sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()

    @property
    def url(self) -> str:
        """The page's address (the real port once started)."""
        return f"http://{host_text(self.settings.host)}:{self.port}{self.settings.base_path}/"

    def app(self) -> web.Application:
        """The aiohttp application (routes under the base path)."""
        app = web.Application(middlewares=[self._headers, self._known_host, self._auth,
                                           self._same_origin],
                              client_max_size=MAX_WRITE_BODY)
        base = self.settings.base_path
        app.router.add_get(base or "/", self._index)
        if base:
            app.router.add_get(base + "/", self._index)
        app.router.add_static(base + "/static", STATIC, follow_symlinks=False)
        app.router.add_get(base + "/api/status", self._status)
        app.router.add_get(base + "/api/devices", self._devices)
        app.router.add_get(base + "/api/devices/{id}", self._device)
        app.router.add_post(base + "/api/devices/{id}/write", self._write)
        app.router.add_get(base + "/api/entities", self._all_entities)
        app.router.add_get(base + "/api/history", self._history)
        app.router.add_get(base + "/ws", self._socket)
        return app

    async def start(self) -> None:
        """Listen (raises OSError when the address cannot be used)."""
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.host, self.settings.port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])  # the real one when port 0 asked for any
        log.info("web page listening", url=self.url)

    async def stop(self) -> None:
        """Close the pages' WebSockets and stop listening."""
        for ws in list(self._sockets):
            with contextlib.suppress(ConnectionError):
                await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- middlewares ----------------------------------------------------------------------

    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(SECURITY_HEADERS)
            raise
        response.headers.update(SECURITY_HEADERS)
        if "/api/" in request.path:
            response.headers["Cache-Control"] = "no-store"
        return response

    @web.middleware
    async def _known_host(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Without a token, only an address or ``localhost`` in ``Host``: a site whose DNS name
        was re-pointed at 127.0.0.1 (DNS rebinding) is same-origin with itself and would pass
        the origin check; with a token it cannot send the token, so any name is fine."""
        if self.settings.token is None and not is_rebinding_proof(request.host,
                                                                 self.settings.host):
            raise web.HTTPForbidden(text=(
                f"aqara-mqtt: host name {request.host!r} refused: without frontend.token the "
                "page answers only under an address or localhost (DNS rebinding); set a "
                "token to open it by name\n"))
        return await handler(request)

    def _token_ok(self, given: str | None) -> bool:
        token = self.settings.token
        return token is None or (given is not None and hmac.compare_digest(
            given.encode(), token.encode()))

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.settings.token is None:
            return await handler(request)
        query = request.query.get("token")
        if query is not None and request.method == "GET" and self._token_ok(query):
            # once: from now on the HttpOnly cookie, and the token leaves the address bar
            clean = request.rel_url.with_query({k: v for k, v in request.query.items()
                                                if k != "token"})
            response = web.Response(status=303, headers={"Location": str(clean)})
            response.set_cookie(COOKIE, query, httponly=True, samesite="Strict",
                                path=(self.settings.base_path or "") + "/",
                                secure=request.secure)
            return response
        header = request.headers.get("Authorization", "")
        bearer = header[7:] if header[:7].lower() == "bearer " else None
        if self._token_ok(request.cookies.get(COOKIE)) or self._token_ok(bearer):
            return await handler(request)
        raise web.HTTPUnauthorized(
            text="aqara-mqtt: this page needs its token: open it once as …/?token=<token>\n",
            headers={"WWW-Authenticate": 'Bearer realm="aqara-mqtt"'})

    @web.middleware
    async def _same_origin(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Writes and the WebSocket only from this page (no cross-site forgery)."""
        reads = request.method in ("GET", "HEAD")
        if not reads or request.path.endswith("/ws"):
            origin = request.headers.get("Origin")
            if origin is not None and urlsplit(origin).netloc != request.host:
                raise web.HTTPForbidden(text=f"cross-site request refused (Origin {origin})\n")
            site = request.headers.get("Sec-Fetch-Site")
            if site not in (None, "same-origin", "none"):
                raise web.HTTPForbidden(text=f"cross-site request refused ({site})\n")
        if not reads and request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(text="writes take application/json\n")
        return await handler(request)

    # ---- handlers -------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.StreamResponse:
        if self.settings.base_path and not request.path.endswith("/"):
            raise web.HTTPPermanentRedirect(request.path + "/")  # relative URLs need the slash
        return web.FileResponse(STATIC / "index.html")

    async def _status(self, request: web.Request) -> web.StreamResponse:
        return _json(redact_obj(self.status()))

    async def _devices(self, request: web.Request) -> web.StreamResponse:
        last = self.output.last_change
        return _json([device_summary(e, last.get(i)) for i, e in self.entries().items()])

    def _entry(self, request: web.Request) -> DeviceEntry:
        entry = self.entries().get(request.match_info["id"])
        if entry is None:
            raise web.HTTPNotFound(text="no such device\n")
        return entry

    async def _device(self, request: web.Request) -> web.StreamResponse:
        entry = self._entry(request)
        entities = self.entities(entry) if self.entities is not None else None
        return _json(device_detail(entry, self.output.last_change.get(entry.device.id),
                                   entities, self.output.topics))

    async def _all_entities(self, request: web.Request) -> web.StreamResponse:
        if self.entities is None:
            return _json(None)
        found = {i: self.entities(e) for i, e in self.entries().items()}
        return _json({i: e for i, e in found.items() if e})

    async def _history(self, request: web.Request) -> web.StreamResponse:
        history = self.output.history
        return _json({"limit": history.limit, "entries": history.entries()})

    async def _write(self, request: web.Request) -> web.StreamResponse:
        entry = self._entry(request)
        try:
            body = await request.json()
            endpoint, function, trait = str(body["path"]).split(".", 2)
            raw = body["value"]
            address = TraitAddress(entry.device.id, int(endpoint), function, trait)
        except (ValueError, KeyError, TypeError):
            raise web.HTTPBadRequest(
                text='expected {"path": "endpoint.function.trait", "value": text}\n') from None
        text = raw if isinstance(raw, str) else json.dumps(raw)
        return _json(await self.output.write(entry, address, text))

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=4096)
        await ws.prepare(request)
        self._sockets.add(ws)
        feed = self.output.open_feed()
        sender = asyncio.create_task(self._pump(ws, feed))
        try:
            async for message in ws:  # the page sends nothing; this notices the close
                if message.type == WSMsgType.ERROR:
                    break
        finally:
            self.output.close_feed(feed)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        return ws

    async def _pump(self, ws: web.WebSocketResponse, feed: ClientFeed) -> None:
        """Send the feed's batches, one frame each, as fast as this browser takes them."""
        with contextlib.suppress(ConnectionError):
            while not ws.closed:
                await ws.send_str(json.dumps(await feed.batch()))


def _json(document: Any) -> web.Response:
    return web.Response(text=json.dumps(document), content_type="application/json")


def is_rebinding_proof(host_header: str, listen_host: str) -> bool:
    """Whether a ``Host`` header names an IP address, ``localhost`` or the configured listen
    host: names no other site's DNS can take over."""
    name = urlsplit(f"//{host_header}").hostname or ""
    if name in ("localhost", listen_host.lower()):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
