"""The web remote for the tests: the real `WebRemote` on a free loopback port, in the test's own
event loop, in front of the real controller (virtual time paced at `speed`); a WebSocket client
that keeps every message it gets and waits for them (docs/web.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from chair.commands.desk import CommandDesk
from chair.testing import TestingController
from chair.web.server import WebRemote
from core_rt.config import ChairConfig

TOKEN = "test-pairing-token-0123456789"


@dataclass
class Remote:
    """A served web remote: its address, token, the controller behind it, the server."""

    url: str
    token: str
    ctl: TestingController
    desk: CommandDesk
    server: WebRemote

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"


@contextlib.asynccontextmanager
async def web_remote(
    speed: float = 60.0, token: str = TOKEN, db: Path | None = None, **server: Any
) -> AsyncIterator[Remote]:
    """`db`: the chair's database (none by default); `server`: `WebRemote`'s keyword arguments
    (a rate limit, say)."""
    ctl = TestingController.create(ChairConfig(), speed=speed, db=db)
    await ctl.open()
    ctl.serve()
    desk = CommandDesk(ctl, ctl.config)
    web = WebRemote(desk, token, **server)
    sock = WebRemote.listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    task = asyncio.create_task(web.serve(sock))
    try:
        yield Remote(f"http://127.0.0.1:{port}", token, ctl, desk, web)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await ctl.close()


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET without following redirects: status, headers (lower-case names), body."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(request, timeout=10) as response:
            return (
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
            )
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


async def aget(
    url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """`http_get` off the event loop (the server runs on it)."""
    return await asyncio.to_thread(http_get, url, headers)


@dataclass
class Page:
    """A WebSocket client of the web remote: every message it got, by topic, in order."""

    ws: ClientConnection
    messages: list[tuple[str, Any]] = field(default_factory=list)
    replies: dict[Any, dict[str, Any]] = field(default_factory=dict)
    """The first reply to each id (a flood's replies are looked up, not searched)."""
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _new: asyncio.Condition = field(default_factory=asyncio.Condition)
    _seq: int = 0

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                async with self._new:
                    self.messages.append((msg["topic"], msg["payload"]))
                    if msg["topic"] == "reply":
                        self.replies.setdefault(msg["payload"].get("id"), msg["payload"])
                    self._new.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()
            async with self._new:
                self._new.notify_all()

    def on(self, topic: str, since: int = 0) -> list[Any]:
        return [p for t, p in self.messages[since:] if t == topic]

    async def wait_for(self, what: str, cond: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Wait until `cond()` is truthy (checked on every message); its value. Fails naming
        `what` after `timeout` s."""
        try:
            async with asyncio.timeout(timeout), self._new:
                while not (value := cond()):
                    await self._new.wait()
                return value
        except TimeoutError:
            raise AssertionError(f"{what}: not within {timeout} s") from None

    async def state(self, name: str, since: int = 0, timeout: float = 30.0) -> dict[str, Any]:
        def seen() -> dict[str, Any] | None:
            return next((s for s in self.on("state", since) if s["state"] == name), None)

        result: dict[str, Any] = await self.wait_for(f"state {name}", seen, timeout)
        return result

    async def command(self, timeout: float = 30.0, **cmd: Any) -> dict[str, Any]:
        """Send a command with a fresh id; its reply."""
        self._seq += 1
        cid = f"t{self._seq}-{time.monotonic_ns()}"
        await self.ws.send(json.dumps({"id": cid, **cmd}))
        return await self.reply_to(cid, timeout)

    async def reply_to(self, cid: str, timeout: float = 30.0) -> dict[str, Any]:
        def seen() -> dict[str, Any] | None:
            return self.replies.get(cid)

        result: dict[str, Any] = await self.wait_for(f"reply to {cid}", seen, timeout)
        return result


@contextlib.asynccontextmanager
async def page(remote: Remote, **connect: Any) -> AsyncIterator[Page]:
    headers = {"Authorization": f"Bearer {remote.token}"}
    async with websockets.connect(
        remote.ws_url, additional_headers=headers, max_size=None, **connect
    ) as ws:
        p = Page(ws)
        reader = asyncio.create_task(p._read())
        try:
            await p.wait_for("hello and state", lambda: len(p.messages) >= 2, 10)
            yield p
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


def chromium_path() -> str:
    """The browser the page tests drive: Debian's chromium (`make chromium` installs it)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium is not installed (make chromium)")
    return path


def screenshot_dir() -> Path:
    d = Path("out")
    d.mkdir(exist_ok=True)
    return d


async def until_state(
    remote: Remote, what: str, cond: Callable[[dict[str, Any]], bool], timeout: float = 30.0
) -> dict[str, Any]:
    """Wait until the chair's state payload satisfies `cond` (checked now and on every change);
    that state."""
    seen: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    unwatch = remote.desk.watch(seen.put_nowait)
    try:
        state = remote.desk.state_payload()
        async with asyncio.timeout(timeout):
            while not cond(state):
                state = await seen.get()
        return state
    except TimeoutError:
        raise AssertionError(f"{what}: not within {timeout} s (state {state['state']})") from None
    finally:
        unwatch()


class CuttableLink:
    """A TCP forwarder between a browser and the web remote whose connections the test can cut
    (as a network would: no close frame, the sockets just die)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._transports: list[asyncio.WriteTransport] = []
        self._pipes: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> CuttableLink:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        for task in list(self._pipes):
            task.cancel()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> int:
        """Kill every open connection; how many there were."""
        n = 0
        for t in self._transports:
            if not t.is_closing():
                n += 1
            t.abort()
        self._transports.clear()
        return n

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._transports += [writer.transport, up_writer.transport]
        for a, b in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(a, b))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()
