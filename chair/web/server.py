"""`WebRemote`: the chair's own remote, a page and a WebSocket served by `chair serve --web`
(docs/web.md).

An ASGI app (Starlette) on uvicorn, in the daemon's event loop, beside the MQTT bridge and never
on the real-time thread. ``/`` serves the page, ``/assets/...`` its files (packaged with the
chair: no CDN), ``/ws`` carries the same JSON commands and replies as MQTT ``<base>/cmd`` and
``<base>/reply`` through the chair's one `CommandDesk`, and pushes the state, the events and the
telemetry. Every path answers 401 without the pairing token (`chair.web.pairing`).

A page is a guest like the MQTT bridge: whatever it does or fails to do (closing, a dead network,
a flood of messages) reaches the session only as validated commands, at a bounded rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from chair.api import CommandError
from chair.commands.desk import CommandDesk, Reply
from chair.commands.feed import StatePacer, dumps, telemetry_samples
from chair.commands.parse import MAX_PAYLOAD_BYTES
from chair.web.pairing import COOKIE, token_matches

log = logging.getLogger("chair.web")

MAX_MESSAGE_BYTES = 64 * 1024
"""A WebSocket message over this closes the socket (1009); up to it, one over the commands' 4 KiB
is refused as ``too_large`` like on MQTT."""
RATE_PER_S = 20.0
"""Commands a page may send per second, sustained ..."""
RATE_BURST = 40
"""... and at once. Beyond: refused as ``rate_limited`` (an ``estop`` never is)."""
MAX_PAGES = 16
"""Open WebSockets at once; one more is refused (503)."""
REFUSAL_REUSE_S = 0.1
"""A ``rate_limited`` reply's state is at most this old (see `_Page.refusal`)."""
SEND_QUEUE_MAX = 512
"""Messages waiting for one page; a page that reads none of its replies is closed (1008)."""
TELEMETRY_HZ = 10.0
STATE_INTERVAL_S = 0.5
"""The state goes out at once on every change, and with the clocks moving at most this often."""
SHUTDOWN_S = 2
"""Longest the web remote waits for its pages to close when the daemon stops."""
ASSETS = {
    "remote.js": "text/javascript; charset=utf-8",
    "remote.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
"""The page's files (chair/web/assets), with their types."""
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}


@dataclass(eq=False)
class _Page:
    """One open WebSocket: what waits to be sent to it, and its command budget."""

    ws: WebSocket
    rate_per_s: float = RATE_PER_S
    burst: int = RATE_BURST
    queue: asyncio.Queue[bytes | None] = field(
        default_factory=lambda: asyncio.Queue(SEND_QUEUE_MAX)
    )
    tokens: float = float(RATE_BURST)
    refilled: float = field(default_factory=time.monotonic)
    refused: int = 0
    """Commands refused as ``rate_limited`` on this socket."""
    refusal: tuple[float, bytes] | None = None
    """The last ``rate_limited`` reply and when it was made: a flood's refusals reuse it for
    `REFUSAL_REUSE_S` (its state is that fresh), so refusing costs the loop next to nothing."""

    def take(self) -> bool:
        """Spend one command from the budget (refilled at `rate_per_s`); False when none is
        left."""
        now = time.monotonic()
        self.tokens = min(float(self.burst), self.tokens + (now - self.refilled) * self.rate_per_s)
        self.refilled = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def send(self, topic: str, data: bytes) -> bool:
        """Queue ``{"topic": topic, "payload": data}``; False when the page reads nothing."""
        try:
            self.queue.put_nowait(b'{"topic":"%s","payload":%s}' % (topic.encode(), data))
        except asyncio.QueueFull:
            return False
        return True


class WebRemote:
    """The web remote of one chair: `app` is the ASGI app; `serve()` runs it on uvicorn."""

    def __init__(
        self,
        desk: CommandDesk,
        token: str,
        *,
        chair_id: str = "chair1",
        telemetry_hz: float = TELEMETRY_HZ,
        rate_per_s: float = RATE_PER_S,
        rate_burst: int = RATE_BURST,
    ) -> None:
        self.desk = desk
        self.rate_per_s = rate_per_s
        self.rate_burst = rate_burst
        self.token = token
        self.chair_id = chair_id
        self.telemetry_hz = telemetry_hz
        self.pages: set[_Page] = set()
        """The open WebSockets."""
        self.connections = 0
        """WebSockets accepted so far."""
        self._state = StatePacer(
            self._broadcast_state, STATE_INTERVAL_S, refresh=desk.state_payload
        )
        self._telemetry_task: asyncio.Task[None] | None = None
        self._unwatch: Any = None
        self._closing: set[asyncio.Task[None]] = set()
        routes = Starlette(
            routes=[
                Route("/", self._index),
                Route("/assets/{name}", self._asset),
                WebSocketRoute("/ws", self._ws),
            ],
        )
        self.app = _Guard(routes, self._paired)
        """The ASGI app: the pairing check and the security headers around every route."""

    # ---- life cycle ----------------------------------------------------------------------------

    def attach(self) -> None:
        """Start listening to the chair (state, events, telemetry); call on the event loop."""
        if self._unwatch is not None:
            return
        self.desk.attach()
        self._unwatch = self.desk.watch(
            self._state.offer, self._event, lambda _: self._broadcast("hello", dumps(self._hello()))
        )
        if self.telemetry_hz > 0:
            self._telemetry_task = asyncio.create_task(self._telemetry(), name="web-telemetry")

    async def detach(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        self._state.close()
        if self._telemetry_task is not None:
            self._telemetry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._telemetry_task
            self._telemetry_task = None

    @staticmethod
    def listen(host: str, port: int) -> socket.socket:
        """The listening socket (bound before `serve()`, so its port is known and connections
        queue from now on); OSError when the address is taken or not ours."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=64)
        # A reply or a state is one small frame: send it now, not after the page's delayed ACK
        # (Nagle would hold it ~40 ms). Accepted connections inherit the option.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.set_inheritable(True)
        return sock

    async def serve(self, sock: socket.socket) -> None:
        """Serve on the `listen()`ing `sock` until cancelled (the daemon's signals stay the
        daemon's)."""
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws_max_size=MAX_MESSAGE_BYTES,
            ws_ping_interval=10.0,
            ws_ping_timeout=10.0,
            server_header=False,
            timeout_graceful_shutdown=SHUTDOWN_S,
        )
        server = _Server(config)
        self.attach()
        running = asyncio.ensure_future(server.serve(sockets=[sock]))
        try:
            await asyncio.shield(running)
        finally:
            # uvicorn's own shutdown: close the pages (1012, "going away"), then the socket
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(running, SHUTDOWN_S + 1.0)
            await self.detach()

    # ---- HTTP ----------------------------------------------------------------------------------

    def _paired(self, conn: HTTPConnection) -> bool:
        """The connection carries the token: cookie, ``Authorization: Bearer``, or (WebSocket
        only) ``?token=``."""
        auth = conn.headers.get("authorization", "")
        candidates = [conn.cookies.get(COOKIE), auth[7:] if auth[:7].lower() == "bearer " else None]
        if conn.scope["type"] == "websocket":
            candidates.append(conn.query_params.get("token"))
        return any(token_matches(c, self.token) for c in candidates if c)

    async def _index(self, request: Request) -> Response:
        offered = request.query_params.get("token")
        if offered is not None:  # (`_Guard` let it through to be checked here)
            if not token_matches(offered, self.token):
                return _unpaired("wrong pairing token")
            # Paired: the cookie carries the token from now on; the address bar forgets it.
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(
                COOKIE,
                self.token,
                max_age=400 * 24 * 3600,
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
            return response
        page = resources.files("chair.web").joinpath("assets/index.html").read_bytes()
        return Response(page, media_type="text/html; charset=utf-8")

    async def _asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        media = ASSETS.get(name)
        if media is None:
            return PlainTextResponse("not found", 404)
        data = resources.files("chair.web").joinpath(f"assets/{name}").read_bytes()
        return Response(data, media_type=media)

    # ---- the WebSocket -------------------------------------------------------------------------

    async def _ws(self, ws: WebSocket) -> None:
        if not _same_origin(ws):
            await _deny(ws, PlainTextResponse("cross-origin WebSocket refused", 403))
            return
        if len(self.pages) >= MAX_PAGES:
            await _deny(ws, PlainTextResponse(f"at most {MAX_PAGES} pages at once", 503))
            return
        await ws.accept()
        page = _Page(ws, self.rate_per_s, self.rate_burst, tokens=float(self.rate_burst))
        self.pages.add(page)
        self.connections += 1
        log.info("page connected (%d open)", len(self.pages))
        # At once: what the page needs to draw, and where the chair is now.
        page.send("hello", dumps(self._hello()))
        page.send("state", dumps(self.desk.state_payload()))
        sender = asyncio.create_task(self._send_loop(page), name="web-send")
        try:
            await self._receive_loop(page)
        finally:
            self.pages.discard(page)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            if ws.client_state == WebSocketState.CONNECTED:
                with contextlib.suppress(Exception):
                    await ws.close()
            log.info("page disconnected (%d open)", len(self.pages))

    async def _receive_loop(self, page: _Page) -> None:
        ws = page.ws
        while True:
            try:
                message = await ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                data = (message.get("text") or "").encode("utf-8", "surrogatepass")
            if not self._command(page, data):
                await _close(ws, 1008, "not reading its replies")
                return
            await asyncio.sleep(0)  # a flood takes turns with the session's tasks

    def _command(self, page: _Page, data: bytes) -> bool:
        """Hand one message to the desk (within the page's budget); False when the page has
        stopped reading its replies."""
        if not page.take() and not _is_estop(data):
            page.refused += 1
            if page.refused == 1 or page.refused % 1000 == 0:
                log.warning("page over %g commands/s: %d refused", page.rate_per_s, page.refused)
            now = time.monotonic()
            if page.refusal is None or now - page.refusal[0] > REFUSAL_REUSE_S:
                error = CommandError(
                    "rate_limited", f"more than {page.rate_per_s:g} commands per second; slow down"
                )
                page.refusal = (now, dumps(self.desk.reply(None, None, error)))
            return page.send("reply", page.refusal[1])
        future = self.desk.submit(data)
        if future.done():
            return page.send("reply", dumps(future.result()))
        future.add_done_callback(lambda f: self._reply(page, f.result()))
        return True

    def _reply(self, page: _Page, reply: Reply) -> None:
        if page in self.pages and not page.send("reply", dumps(reply)):
            self._drop(page)

    async def _send_loop(self, page: _Page) -> None:
        ws = page.ws
        while True:
            data = await page.queue.get()
            if data is None:
                return
            try:
                await ws.send_text(data.decode())
            except (WebSocketDisconnect, RuntimeError, OSError):
                return

    # ---- what goes out to every page -----------------------------------------------------------

    def _hello(self) -> dict[str, Any]:
        from chair.programs.manual import AREAS, MANUAL, MANUAL_TECHNIQUES, WIDTHS
        from core_rt.config import ZONES

        config = self.desk.config
        return {
            "chair_id": self.chair_id,
            "programs": [p for p in self.desk.programs() if p != MANUAL],
            "manual": MANUAL if MANUAL in self.desk.programs() else None,
            "heat_levels": list(config.heater.level_names),
            "intensities": list(config.session.intensities),
            "default_intensity": config.session.default_intensity,
            "zone_offsets": list(config.session.zone_offsets),
            "zones": list(ZONES),
            "techniques": list(MANUAL_TECHNIQUES),
            "areas": list(AREAS),
            "widths": list(WIDTHS),
            "tempos": list(config.manual.tempos),
            "minutes": {
                "min": config.session.min_minutes,
                "max": config.session.max_minutes,
                "default": config.session.default_minutes,
            },
            "track_mm": [config.carriage.track_min_mm, config.carriage.track_max_mm],
            "move_step_mm": config.manual.move_step_mm,
            "max_payload_bytes": MAX_PAYLOAD_BYTES,
            "rate_per_s": self.rate_per_s,
        }

    def _broadcast(self, topic: str, data: bytes) -> None:
        for page in list(self.pages):
            # A page too slow for the telemetry misses samples; one that misses a state, an event
            # or a reply would show something false: it is closed (and reconnects afresh).
            if not page.send(topic, data) and topic != "telemetry":
                self._drop(page)

    def _drop(self, page: _Page) -> None:
        log.warning("a page reads nothing: closing it")
        self.pages.discard(page)
        task = asyncio.get_running_loop().create_task(_close(page.ws, 1008, "not reading"))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _broadcast_state(self, data: bytes) -> None:
        self._broadcast("state", data)

    def _event(self, event: dict[str, Any]) -> None:
        event = {k: v for k, v in event.items() if k != "outbox_id"}
        self._broadcast("event", dumps(event))

    async def _telemetry(self) -> None:
        async for sample in telemetry_samples(self.desk.controller, self.telemetry_hz):
            if self.pages:
                self._broadcast("telemetry", dumps(sample))


class _Guard:
    """Around every route: without the pairing token, 401 (a WebSocket's handshake too) — except
    ``GET /?token=``, which checks the token it brings; and the security headers on every HTTP
    response, errors (404, 405) included (docs/web.md, Pairing and HTTP paths)."""

    def __init__(self, app: Any, paired: Any) -> None:
        self.app = app
        self.paired = paired

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        if scope["type"] == "websocket":
            if not self.paired(conn):
                await _deny(WebSocket(scope, receive, send), _unpaired())
                return
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [
                    (k.lower().encode(), v.encode())
                    for k, v in SECURITY_HEADERS.items()
                    if k.lower().encode() not in have
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        pairing = scope["path"] == "/" and "token" in conn.query_params
        if not pairing and not self.paired(conn):
            await _unpaired()(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: SIGTERM and SIGINT are the daemon's (they settle
    a session before it exits)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def _deny(ws: WebSocket, response: Response) -> None:
    """Refuse a WebSocket's handshake with an HTTP `response` (with the security headers)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    await ws.send_denial_response(response)


def _unpaired(why: str = "pair this device first") -> Response:
    return PlainTextResponse(
        f"401: {why}: open the address `chair serve` printed (with ?token=...), "
        "or scan its QR code",
        401,
        headers={"WWW-Authenticate": 'Bearer realm="chair"'},
    )


def _same_origin(ws: WebSocket) -> bool:
    """A browser's WebSocket from another site carries our cookie too: refuse it. (Clients that
    are not browsers send no Origin.)"""
    origin = ws.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == ws.headers.get("host", "").lower()


def _is_estop(data: bytes) -> bool:
    """An e-stop goes through however many commands came before it (docs/web.md, Limits)."""
    if len(data) > MAX_PAYLOAD_BYTES or b'"estop"' not in data:
        return False
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return False
    return isinstance(obj, dict) and obj.get("action") == "estop"


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await ws.close(code, reason)
