"""Helpers of the MQTT tests: a recording test client, a running daemon, controller test hooks.

The state-matrix tests need to hold a transient state (scanning, adjusting, settling) still and to
latch a fault; `hold`, `advance_until` and `inject_fault` are the controller's test hooks for the
simulated chair (paced clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from chair.api import ControllerAPI
from chair.mqtt.bridge import MqttBridge
from chair.mqtt.settings import MqttSettings
from tests.mqtt_broker import Mosquitto

ControllerFactory = Callable[..., Awaitable[ControllerAPI]]


# ---- controller test hooks ----------------------------------------------------------------------


def _hook(ctl: Any, name: str) -> Any:
    fn = getattr(ctl, name, None)
    if fn is None:
        pytest.skip(f"{type(ctl).__name__} has no test hook {name}()")
    return fn


async def _call(fn: Any, *args: Any) -> None:
    r = fn(*args)
    if inspect.isawaitable(r):
        await r


async def hold(ctl: Any) -> None:
    """Stop the simulated clock: the controller stays in its state until told otherwise."""
    await _call(_hook(ctl, "hold"))


async def advance_until(ctl: Any, state: str) -> None:
    """With the clock held, run simulated time until the controller is in `state`."""
    await _call(_hook(ctl, "advance_until"), state)


async def inject_fault(ctl: Any) -> None:
    """Latch a fault (e.g. a carriage stall)."""
    await _call(_hook(ctl, "inject_fault"))


# ---- a test client ------------------------------------------------------------------------------


@dataclass
class Msg:
    topic: str
    payload: bytes
    retain: bool
    properties: Any
    t: float

    def json(self) -> Any:
        return json.loads(self.payload)


class Observer:
    """A test client subscribed to a chair's topics (and Home Assistant's), recording all."""

    def __init__(
        self,
        url: str,
        base: str = "massagechair/chair1",
        *,
        subscriptions: tuple[str, ...] | None = None,
        **settings: Any,
    ) -> None:
        """`settings`: `MqttSettings` fields for the connection (protocol, username, ...)."""
        self.base = base
        self.settings = MqttSettings(broker=url, **settings)
        self.subscriptions = subscriptions or (f"{base}/#", "homeassistant/#")
        self.messages: list[Msg] = []
        self._new = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self.identifier = f"observer-{uuid.uuid4().hex[:8]}"

    async def __aenter__(self) -> Observer:
        self._client = self.settings.client(self.identifier)
        await self._client.__aenter__()
        self._client.pending_calls_threshold = 100_000
        for topic in self.subscriptions:
            await self._client.subscribe(topic, qos=1)
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._task
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._client.__aexit__(None, None, None)

    async def _read(self) -> None:
        assert self._client is not None
        async for m in self._client.messages:
            payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
            self.messages.append(Msg(m.topic.value, payload, m.retain, m.properties, time.time()))
            self._new.set()

    @property
    def client(self) -> aiomqtt.Client:
        assert self._client is not None
        return self._client

    # ---- looking -------------------------------------------------------------------------------

    def mark(self) -> int:
        return len(self.messages)

    def on(self, suffix: str, since: int = 0) -> list[Msg]:
        topic = suffix if "/" in suffix else f"{self.base}/{suffix}"
        return [m for m in self.messages[since:] if m.topic == topic]

    def json_on(self, suffix: str, since: int = 0) -> list[Any]:
        return [m.json() for m in self.on(suffix, since)]

    async def wait_for(
        self,
        suffix: str,
        pred: Callable[[Msg], bool] = lambda m: True,
        *,
        since: int = 0,
        timeout: float = 10.0,
    ) -> Msg:
        topic = suffix if "/" in suffix else f"{self.base}/{suffix}"
        deadline = time.monotonic() + timeout
        i = since
        while True:
            while i < len(self.messages):
                m = self.messages[i]
                i += 1
                if m.topic == topic and pred(m):
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                seen = [x.payload[:200] for x in self.messages[since:] if x.topic == topic][-5:]
                raise AssertionError(
                    f"nothing matching on {topic} within {timeout} s; last: {seen}"
                )
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), left)

    def last_state(self) -> dict[str, Any] | None:
        states = self.on("state")
        return states[-1].json() if states else None

    async def wait_state(
        self, name: str, *, since: int | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        """The first state message with ``state == name`` from `since` (default: the current)."""
        if since is None:
            idx = [i for i, m in enumerate(self.messages) if m.topic == f"{self.base}/state"]
            since = idx[-1] if idx else 0
        msg = await self.wait_for(
            "state", lambda m: m.json().get("state") == name, since=since, timeout=timeout
        )
        return dict(msg.json())

    # ---- talking -------------------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        await self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)

    async def send(self, payload: bytes | str, **kw: Any) -> None:
        await self.publish(f"{self.base}/cmd", payload, **kw)

    async def reply_to(self, cmd_id: str, since: int = 0, timeout: float = 10.0) -> dict[str, Any]:
        msg = await self.wait_for(
            "reply", lambda m: _reply_id(m) == cmd_id, since=since, timeout=timeout
        )
        return dict(msg.json())

    async def cmd(self, action: str, *, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Send a command with a fresh id and return its reply (from ``<base>/reply``)."""
        cmd_id = fields.pop("id", None) or uuid.uuid4().hex
        mark = self.mark()
        await self.send(json.dumps({"id": cmd_id, "action": action, **fields}))
        return await self.reply_to(cmd_id, since=mark, timeout=timeout)


def _reply_id(m: Msg) -> Any:
    try:
        return m.json().get("id")
    except ValueError:
        return None


def v5_properties(
    response_topic: str | None = None, correlation: bytes | None = None
) -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if response_topic is not None:
        props.ResponseTopic = response_topic
    if correlation is not None:
        props.CorrelationData = correlation
    return props


# ---- a running daemon ---------------------------------------------------------------------------


@dataclass
class Chair:
    """A bridge serving a controller in this test's loop, plus an observer on its topics."""

    broker: Mosquitto
    ctl: Any
    bridge: MqttBridge
    task: asyncio.Task[None]
    obs: Observer

    @property
    def base(self) -> str:
        return self.bridge.topics.base

    async def stop(self) -> None:
        await self.bridge.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 10)


ChairFactory = Callable[..., Awaitable[Chair]]


# ---- the state payload --------------------------------------------------------------------------

STATE_FIELDS = {
    "state", "program", "step", "technique", "zone", "elapsed_s", "remaining_s", "intensity",
    "heat", "shoulder_mm", "fault", "session_id", "zone_intensity", "manual",
}  # fmt: skip
"""Fields every state payload carries (docs/mqtt.md, "State")."""


# ---- hand-written bad input ---------------------------------------------------------------------

LONG_ID = "x" * 129
# (payload, code): every case is refused before anything reaches the controller.
BAD_PAYLOADS: list[tuple[bytes, str]] = [
    (b"", "bad_json"),
    (b"not json", "bad_json"),
    (b"\xff\xfe{}", "bad_json"),
    (b'{"action":"status"', "bad_json"),
    (b"NaN", "bad_json"),
    (b'{"action":"set","intensity":NaN}', "bad_json"),
    (b'{"action":"set","heat":"low","intensity":-Infinity}', "bad_json"),
    (b'{"action":"status","action":"stop"}', "bad_json"),
    (b'\xef\xbb\xbf{"action":"status"}', "bad_json"),
    ('{"action":"status"}'.encode("utf-16"), "bad_json"),
    (b"[" * 2000 + b"]" * 2000, "bad_json"),
    (b"[]", "not_object"),
    (b'"start"', "not_object"),
    (b"42", "not_object"),
    (b"null", "not_object"),
    (b"true", "not_object"),
    (b"{}", "missing_action"),
    (b'{"id":"a1"}', "missing_action"),
    (b'{"action":null}', "bad_field"),
    (b'{"action":42}', "bad_field"),
    (b'{"action":["start"]}', "bad_field"),
    (b'{"action":"launch"}', "unknown_action"),
    (b'{"action":"START"}', "unknown_action"),
    (b'{"action":""}', "unknown_action"),
    (b'{"action":"start","program":"relax","speed":9}', "bad_field"),
    (b'{"action":"pause","force":true}', "bad_field"),
    (b'{"action":"status","extra":1}', "bad_field"),
    (b'{"action":"start","program":7}', "bad_field"),
    (b'{"action":"start","program":""}', "unknown_program"),
    (b'{"action":"start","program":"' + b"p" * 65 + b'"}', "unknown_program"),
    (b'{"action":"start","program":"relax","minutes":4}', "out_of_range"),
    (b'{"action":"start","program":"relax","minutes":31}', "out_of_range"),
    (b'{"action":"start","program":"relax","minutes":1e400}', "out_of_range"),
    (b'{"action":"start","program":"relax","minutes":"15"}', "bad_field"),
    (b'{"action":"start","program":"relax","minutes":true}', "bad_field"),
    (b'{"action":"set","intensity":0}', "out_of_range"),
    (b'{"action":"set","intensity":6}', "out_of_range"),
    (b'{"action":"set","intensity":1000000000000000000000000000000}', "out_of_range"),
    (b'{"action":"set","intensity":2.5}', "bad_field"),
    (b'{"action":"set","intensity":"3"}', "bad_field"),
    (b'{"action":"set","heat":"warm"}', "out_of_range"),
    (b'{"action":"set","zone_intensity":{"neck":3}}', "out_of_range"),
    (b'{"action":"set","zone_intensity":{"lumbar":-3}}', "out_of_range"),
    (b'{"action":"set","zone_intensity":{"head":1}}', "unknown_zone"),
    (b'{"action":"set","zone_intensity":{"neck":"1"}}', "bad_field"),
    (b'{"action":"start","program":"relax","zone_intensity":[1]}', "bad_field"),
    (b'{"action":"set","heat":1}', "bad_field"),
    (b'{"action":"set"}', "bad_field"),
    (b'{"action":"set","intensity":null}', "bad_field"),
    (b'{"action":"preset"}', "bad_field"),
    (b'{"action":"adjust_shoulder"}', "bad_field"),
    (b'{"action":"adjust_shoulder","mm":51}', "out_of_range"),
    (b'{"action":"adjust_shoulder","mm":-1e400}', "out_of_range"),
    (b'{"action":"adjust_shoulder","mm":"5"}', "bad_field"),
    (b'{"id":42,"action":"status"}', "bad_field"),
    (b'{"id":"","action":"status"}', "bad_field"),
    (b'{"id":"' + LONG_ID.encode() + b'","action":"status"}', "bad_field"),
    (b'{"action":"stop","pad":"' + b" " * 4100 + b'"}', "too_large"),
    (b" " * 4090 + b'{"action":"estop"}', "too_large"),
]
