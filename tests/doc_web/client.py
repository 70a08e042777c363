"""A second client of the web remote, written from docs/web.md and docs/mqtt.md alone.

It knows only what those documents say:

- pairing (docs/web.md, Pairing): the token as `?token=T` on `/` (303 and a cookie), the cookie
  `chair_pairing=T`, the header `Authorization: Bearer T`, or `?token=T` on `/ws`;
- the WebSocket (docs/web.md, The WebSocket): every message from the chair is one JSON text frame
  `{"topic": ..., "payload": ...}` with `topic` one of hello, state, telemetry, event, reply; every
  message to the chair is one command object (docs/mqtt.md, Commands and replies);
- a client reads `hello` then `state`, sends commands with a fresh `id` each and matches each
  `reply` by `id` (docs/web.md, Implementing a client).

Every wait has a generous ceiling and returns as soon as its condition holds: no fixed sleeps.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

TOPICS = ("hello", "state", "telemetry", "event", "reply")
COOKIE = "chair_pairing"
Json = dict[str, Any]


# -- HTTP ----------------------------------------------------------------------------------------


@dataclass
class HttpAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first header of that name (case-insensitive), or None."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def http_get(
    host: str, port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 10.0
) -> HttpAnswer:
    """One GET, redirects not followed (a 303 is an answer to look at)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return HttpAnswer(resp.status, resp.getheaders(), resp.read())
    finally:
        conn.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def cookie_header(value: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={value}"}


@dataclass
class Pairing:
    """What `GET /?token=T` answered: the 303, its Location and the cookie it set."""

    answer: HttpAnswer
    location: str | None
    cookie_value: str | None
    attributes: dict[str, str]  # lower-cased attribute name -> value ("" for flags)


def parse_set_cookie(line: str) -> tuple[str, str, dict[str, str]]:
    """`name=value; Attr; Attr=v` -> (name, value, {attr: v}); attributes lower-cased."""
    parts = [p.strip() for p in line.split(";")]
    name, _, value = parts[0].partition("=")
    attrs: dict[str, str] = {}
    for p in parts[1:]:
        if not p:
            continue
        k, _, v = p.partition("=")
        attrs[k.strip().lower()] = v.strip()
    # SimpleCookie un-quotes a quoted value the way a browser would read it
    jar: SimpleCookie = SimpleCookie()
    jar.load(parts[0])
    if name.strip() in jar:
        value = jar[name.strip()].value
    return name.strip(), value, attrs


def pair(host: str, port: int, token: str) -> Pairing:
    """Pair like a browser that scanned the QR code: `GET /?token=T`."""
    answer = http_get(host, port, f"/?token={token}")
    value: str | None = None
    attrs: dict[str, str] = {}
    for line in answer.all("Set-Cookie"):
        name, v, a = parse_set_cookie(line)
        if name == COOKIE:
            value, attrs = v, a
    return Pairing(answer, answer.header("Location"), value, attrs)


# -- WebSocket -----------------------------------------------------------------------------------


@dataclass
class Message:
    at: float  # time.monotonic() on arrival
    topic: str
    payload: Any


class Refused(Exception):
    """The handshake was answered with an HTTP status instead of an upgrade."""

    def __init__(self, status: int, headers: list[tuple[str, str]]) -> None:
        super().__init__(f"handshake refused: HTTP {status}")
        self.status = status
        self.headers = headers


def fresh_id() -> str:
    return f"dw-{uuid.uuid4().hex[:16]}"


@dataclass
class Remote:
    """One WebSocket to the chair: every message it received, in order, and commands by id."""

    ws: ClientConnection
    messages: list[Message] = field(default_factory=list)
    framing_errors: list[str] = field(default_factory=list)
    close_code: int | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _cond: asyncio.Condition = field(default_factory=asyncio.Condition)
    _reader: asyncio.Task[None] | None = None

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        origin: str | None = None,
        compression: str | None = None,
        open_timeout: float = 10.0,
    ) -> Remote:
        """Open `url` (`ws://HOST:PORT/ws...`), with `Authorization: Bearer token` if given.

        Raises `Refused` when the chair answers the handshake with an HTTP status."""
        hdrs = dict(headers or {})
        if token is not None:
            hdrs.update(bearer(token))
        try:
            ws = await connect(
                url,
                additional_headers=hdrs,
                origin=origin,  # type: ignore[arg-type]
                compression=compression,
                open_timeout=open_timeout,
                proxy=None,
                max_size=None,  # the chair's limits are under test, not ours
                max_queue=None,
                ping_interval=None,
            )
        except InvalidStatus as e:
            raise Refused(e.response.status_code, list(e.response.headers.raw_items())) from None
        remote = cls(ws)
        remote._reader = asyncio.create_task(remote._read())
        return remote

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                await self._take(raw)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.closed.set()
            async with self._cond:
                self._cond.notify_all()

    async def _take(self, raw: str | bytes) -> None:
        now = time.monotonic()
        if not isinstance(raw, str):
            self.framing_errors.append(f"binary frame from the chair: {raw[:80]!r}")
            raw = raw.decode("utf-8", "replace")
        try:
            msg = json.loads(raw)
        except ValueError:
            self.framing_errors.append(f"not JSON: {raw[:120]!r}")
            return
        if not isinstance(msg, dict) or set(msg) != {"topic", "payload"}:
            self.framing_errors.append(f"not {{topic, payload}}: {raw[:120]!r}")
            return
        if msg["topic"] not in TOPICS:
            self.framing_errors.append(f"unknown topic {msg['topic']!r}")
        async with self._cond:
            self.messages.append(Message(now, msg["topic"], msg["payload"]))
            self._cond.notify_all()

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 10)

    def drop(self) -> None:
        """Cut the TCP connection without a closing handshake (a phone leaving the network)."""
        transport = self.ws.transport
        transport.abort()

    # -- waiting ---------------------------------------------------------------------------------

    def mark(self) -> int:
        """An index into `messages`: waits `since` it look only at what came after."""
        return len(self.messages)

    def on(self, topic: str, since: int = 0) -> list[Any]:
        return [m.payload for m in self.messages[since:] if m.topic == topic]

    async def wait_for(
        self,
        topic: str,
        pred: Callable[[Any], bool] = lambda _: True,
        *,
        since: int = 0,
        timeout: float = 20.0,
    ) -> Any:
        """The payload of the first message on `topic` from index `since` on for which `pred`
        holds (it may have arrived already)."""
        return (await self.wait_message(topic, pred, since=since, timeout=timeout)).payload

    async def wait_message(
        self,
        topic: str,
        pred: Callable[[Any], bool] = lambda _: True,
        *,
        since: int = 0,
        timeout: float = 20.0,
    ) -> Message:
        """The first message on `topic` from index `since` on for which `pred` holds."""
        found: list[Message] = []

        def check() -> bool:
            for m in self.messages[since:]:
                if m.topic == topic and pred(m.payload):
                    found.append(m)
                    return True
            return self.closed.is_set()

        async with self._cond:
            try:
                await asyncio.wait_for(self._cond.wait_for(check), timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"no {topic} within {timeout} s; last states: "
                    f"{[s.get('state') for s in self.on('state', since)][-10:]}"
                ) from None
        if not found:
            raise ConnectionError(f"socket closed ({self.close_code}) while waiting for {topic}")
        return found[0]

    async def wait_state(self, name: str, *, since: int = 0, timeout: float = 20.0) -> Json:
        payload: Json = await self.wait_for(
            "state", lambda s: s["state"] == name, since=since, timeout=timeout
        )
        return payload

    async def wait_event(self, name: str, *, since: int = 0, timeout: float = 20.0) -> Json:
        payload: Json = await self.wait_for(
            "event", lambda e: e["event"] == name, since=since, timeout=timeout
        )
        return payload

    async def greeting(self, timeout: float = 10.0) -> tuple[Json, Json]:
        """The first two messages: `hello`, then `state` (docs/web.md, The WebSocket)."""
        async with self._cond:
            await asyncio.wait_for(
                self._cond.wait_for(lambda: len(self.messages) >= 2 or self.closed.is_set()),
                timeout,
            )
        first, second = self.messages[0], self.messages[1]
        assert (first.topic, second.topic) == ("hello", "state"), (first.topic, second.topic)
        return first.payload, second.payload

    # -- commands --------------------------------------------------------------------------------

    async def send(self, command: Json | str | bytes) -> None:
        data = command if isinstance(command, (str, bytes)) else json.dumps(command)
        await self.ws.send(data)

    async def reply_to(self, cid: str, *, since: int = 0, timeout: float = 20.0) -> Json:
        payload: Json = await self.wait_for(
            "reply", lambda r: r.get("id") == cid, since=since, timeout=timeout
        )
        return payload

    async def command(
        self, action: str, *, cid: str | None = None, timeout: float = 20.0, **fields: Any
    ) -> Json:
        """Send `{"id": <fresh>, "action": action, **fields}` and return its reply."""
        cid = cid or fresh_id()
        since = self.mark()
        await self.send({"id": cid, "action": action, **fields})
        return await self.reply_to(cid, since=since, timeout=timeout)

    async def reset(self, timeout: float = 20.0) -> Json:
        """`reset`, again until it is allowed: docs/mqtt.md allows it in fault or estop with the
        chair at rest, and nothing in the state says when the chair is at rest, so a client
        polls (every 50 ms, up to `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            reply = await self.command("reset")
            if reply["ok"] or reply["error"]["code"] != "not_allowed":
                return reply
            if reply["state"]["state"] not in ("estop", "fault") or time.monotonic() > deadline:
                return reply
            await asyncio.sleep(0.05)  # polling: the chair says when, not us

    async def raw(self, data: str | bytes, *, timeout: float = 20.0) -> Json:
        """Send anything and return the next reply after it (a socket's commands are read one
        at a time and every one gets a reply, so the next reply is this one's, whatever `id` the
        chair could read from it)."""
        since = self.mark()
        await self.send(data)
        payload: Json = await self.wait_for("reply", since=since, timeout=timeout)
        return payload

    def state(self) -> Json:
        """The latest state: `state` messages are the truth (docs/web.md)."""
        states = self.on("state")
        assert states, "no state yet"
        latest: Json = states[-1]
        return latest
