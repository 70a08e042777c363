"""`MqttBridge`: the chair on the broker (docs/mqtt.md, "Commands and replies", "Broker loss and
reconnection").

The bridge joins a `ControllerAPI` to a broker. It is a guest of the controller, never the other
way round: controller callbacks only append to in-memory queues, commands go to the chair's
`CommandDesk` (`chair.commands`, shared with the web remote), which validates them in full before
anything reaches the controller, and a lost broker only pauses the bridge's own tasks while
sessions carry on. It owns the connection's life (connect, announce, serve, reconnect with
back-off), answers every command (the desk's reply, also on an MQTT 5 response topic) and
publishes state, telemetry and events.

A finished session's ``session_finished`` event is kept in the controller's database (the outbox,
`Controller.outbox_attach`) until its QoS 1 publish has returned, i.e. the broker's PUBACK has
come — or, for a chair in a fleet (``outbox_until = "service"``), until the operator's service
says on ``<base>/ack`` that the record is in its database, sent again meanwhile after a growing
wait. It is queued again from there after every reconnect and every restart. So it may arrive
twice, never not at all: consumers deduplicate by ``session_id`` (docs/mqtt.md,
docs/fleet-service.md).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from chair.api import CommandError, ControllerAPI
from chair.commands.desk import CommandDesk, Reply
from chair.commands.feed import StatePacer, dumps, telemetry_samples
from chair.mqtt.discovery import discovery_config
from chair.mqtt.reconnect import keep_connected
from chair.mqtt.settings import MqttSettings
from chair.requests import short_repr
from core_rt.config import ChairConfig

log = logging.getLogger("chair.mqtt")  # the package's logger, one name for all of the bridge

_OUT_QUEUE_MAX = 5000
_ACK_MAX_BYTES = 1024
"""An acknowledgement on ``<base>/ack`` is a small JSON object; anything larger is ignored."""


@dataclass
class _Outgoing:
    topic: str
    payload: bytes
    qos: int
    retain: bool = False
    properties: Properties | None = None
    outbox_id: int | None = None
    """An event kept in the outbox: forgotten there once the broker (or the service) has it."""
    session_id: str | None = None
    """The session an outbox event records (what the service's acknowledgement names)."""


@dataclass
class _Unconfirmed:
    """An outbox event the broker has, waiting for the service's acknowledgement."""

    session_id: str | None
    resend_at: float
    """time.monotonic() at which it is sent again."""
    resends: int = 0


class MqttBridge:
    """The chair on the broker: availability, state, telemetry, events, commands and replies.

    ``await bridge.run()`` connects and serves until `stop()`; it reconnects on its own after any
    broker loss. The controller is never blocked: its callbacks only queue work for this loop.
    """

    def __init__(
        self,
        controller: ControllerAPI,
        settings: MqttSettings,
        *,
        config: ChairConfig | None = None,
        desk: CommandDesk | None = None,
    ) -> None:
        self.controller = controller
        self.desk = desk if desk is not None else CommandDesk(controller, config)
        """Where commands are executed (shared with the web remote, docs/web.md)."""
        self.settings = settings
        self.config = config if config is not None else ChairConfig()
        self.topics = settings.topics
        self.connected = asyncio.Event()
        """Set while connected and announced (subscribed, availability ``online`` published)."""
        self.connections = 0
        """Successful connections so far (1 + reconnects)."""
        self.failed_attempts = 0
        """Connection attempts that never connected (broker down, refused, TLS or auth)."""
        self.published = 0
        """Messages handed to the broker so far (QoS 1: acknowledged), every topic."""
        self._attempts = asyncio.Condition()
        self._client: aiomqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._out: collections.deque[_Outgoing] = collections.deque()
        self._out_ready = asyncio.Event()
        self._out_drained = asyncio.Event()
        """Set when the sender has published everything queued (cleared by the next message)."""
        self._out_drained.set()
        self._stopping = asyncio.Event()
        self._state = StatePacer(
            self._publish_state, settings.state_interval_s, refresh=self.desk.state_payload
        )
        self._telemetry_next: _Outgoing | None = None
        self._users: list[str] | None = None
        """The user profiles' names for discovery (None: the chair keeps none)."""
        self._unconfirmed: dict[int, _Unconfirmed] = {}
        """``outbox_until = "service"``: outbox id → its event's wait for the service's ack."""
        self._unconfirmed_changed = asyncio.Event()
        self._resends: dict[int, int] = {}
        """outbox id → how often it was sent again (the wait doubles each time)."""
        self.acks = 0
        """Acknowledgements from the service that forgot an outbox event."""
        self._acking: set[asyncio.Task[None]] = set()
        self._started = False

    # ---- life cycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until `stop()`: connect, announce, serve, and reconnect with back-off."""
        if self._started:
            raise RuntimeError("MqttBridge.run() is not reentrant")
        self._started = True
        self._loop = asyncio.get_running_loop()
        self.desk.attach()
        unwatch = self.desk.watch(self._state.offer, self._event, self._programs_changed)
        try:
            await self._run()
        finally:
            unwatch()
            self._state.close()

    async def _run(self) -> None:
        attach = getattr(self.controller, "outbox_attach", None)
        if attach is not None:  # a controller with a database keeps its records until PUBACK
            await attach(self.topics.event)
        s = self.settings
        will = aiomqtt.Will(self.topics.availability, b"offline", qos=1, retain=True)
        identifier = s.client_id or f"{s.prefix.replace('/', '-')}-{s.chair_id}"
        tls_context = s.ssl_context()  # a bad certificate or key fails here, once, clearly
        await keep_connected(
            lambda failures: self._connection(
                s.client(identifier, will, tls_context=tls_context), failures
            ),
            stopping=self._stopping,
            connected=self.connected,
            reconnect_min_s=s.reconnect_min_s,
            reconnect_max_s=s.reconnect_max_s,
            log=log,
        )

    async def _connection(self, client: aiomqtt.Client, failures: int) -> float | None:
        """One connection, from connect to loss; how long it was up (None: never)."""
        s = self.settings
        up_since: float | None = None
        try:
            async with client:
                up_since = time.monotonic()
                self.connections += 1
                if failures:
                    log.info("reconnected to %s:%d", s.host, s.port)
                else:
                    log.info("connected to %s:%d as %s", s.host, s.port, client.identifier)
                await self._serve(client)
        except aiomqtt.MqttError as e:
            what = "lost the broker" if up_since is not None else "cannot reach the broker"
            if failures == 0 or up_since is not None:
                log.warning("%s (%s:%d): %s; retrying", what, s.host, s.port, e)
        except Exception:  # a bug in the bridge must not take the daemon (or a session) down
            log.exception("MQTT bridge error; reconnecting")
        finally:
            self._client = None
            self.connected.clear()
        if up_since is None:
            self.failed_attempts += 1
            async with self._attempts:
                self._attempts.notify_all()
        return None if up_since is None else time.monotonic() - up_since

    async def wait_failed_attempts(self, n: int, timeout_s: float) -> None:
        """Wait until `n` connection attempts have failed in all; TimeoutError if they have not
        within `timeout_s`."""
        async with asyncio.timeout(timeout_s), self._attempts:
            await self._attempts.wait_for(lambda: self.failed_attempts >= n)

    async def stop(self, timeout_s: float = 3.0) -> None:
        """Publish what is queued (the last states, replies and events), then ``offline``;
        disconnect and make `run()` return."""
        if self.connected.is_set():
            try:
                await asyncio.wait_for(self._out_drained.wait(), timeout_s)
            except TimeoutError:
                log.warning("stopping with %d message(s) not yet published", len(self._out))
        self._stopping.set()
        client = self._client
        if client is not None and self.connected.is_set():
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await client.publish(
                    self.topics.availability, b"offline", qos=1, retain=True, timeout=timeout_s
                )
        self._out_ready.set()

    async def _serve(self, client: aiomqtt.Client) -> None:
        t, s = self.topics, self.settings
        if s.v5:
            # Retained commands are stale: never sent to us, and flagged when published live.
            options = SubscribeOptions(
                qos=1,
                retainAsPublished=True,
                retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND,
            )
            await client.subscribe(t.cmd, options=options)
        else:
            await client.subscribe(t.cmd, qos=1)
        if s.discovery:
            await client.subscribe(f"{s.discovery_prefix}/status", qos=1)
        if s.outbox_until == "service":
            await client.subscribe(t.ack, qos=1)
        self._client = client
        # Fresh announcement: whatever was queued for the last connection is stale except
        # replies and events.
        self._out = collections.deque(o for o in self._out if o.retain is False)
        self._telemetry_next = None
        await self._requeue_outbox()
        await self._refresh_users()
        for item in self._announcement():
            await client.publish(item.topic, item.payload, item.qos, item.retain)
            self.published += 1
        self.connected.set()
        tasks = [
            asyncio.create_task(self._read(client), name="mqtt-read"),
            asyncio.create_task(self._send(client), name="mqtt-send"),
            asyncio.create_task(self._stopping.wait(), name="mqtt-stop"),
        ]
        if s.telemetry_hz > 0:
            tasks.append(asyncio.create_task(self._telemetry(), name="mqtt-telemetry"))
        if s.outbox_until == "service":
            tasks.append(asyncio.create_task(self._resend_unconfirmed(), name="mqtt-resend"))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._client = None
            self._out_ready.set()  # wakes the sender to see it
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self.connected.clear()
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if self._stopping.is_set():
            # stop() published offline already when it could; say it again in case a reply or
            # state was in flight, then leave cleanly (no last will after a clean disconnect).
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(t.availability, b"offline", qos=1, retain=True, timeout=2.0)

    async def _requeue_outbox(self) -> None:
        """Queue the outbox's events the broker has not acknowledged (lost with a connection,
        or left by an earlier run), oldest first, ahead of what is queued."""
        pending = getattr(self.controller, "outbox_pending", None)
        if pending is None:
            return
        queued = {o.outbox_id for o in self._out if o.outbox_id is not None}
        items = [
            _Outgoing(self.topics.event, dumps(event), 1, outbox_id=oid, session_id=_sid(event))
            for oid, event in await pending()
            if oid not in queued
        ]
        if items:
            log.info("outbox: %d event(s) not yet acknowledged, sending them again", len(items))
            self._out.extendleft(reversed(items))
            self._out_drained.clear()

    async def _resend_unconfirmed(self) -> None:
        """``outbox_until = "service"``: send again every outbox event the broker has had for its
        wait without the service's acknowledgement (the wait doubling per resend, up to
        `outbox_resend_max_s`): a broker may lose what it acknowledged (a crash before it saved),
        a queue for an absent service may overflow, a session may expire."""
        while True:
            now = time.monotonic()
            due = [oid for oid, u in self._unconfirmed.items() if u.resend_at <= now]
            if due:
                pending = getattr(self.controller, "outbox_pending", None)
                still = {oid: ev for oid, ev in await pending()} if pending is not None else {}
                queued = {o.outbox_id for o in self._out if o.outbox_id is not None}
                again = []
                for oid in due:
                    u = self._unconfirmed.pop(oid)
                    if oid in still and oid not in queued:
                        self._resends[oid] = u.resends + 1
                        event = still[oid]
                        again.append(
                            _Outgoing(
                                self.topics.event,
                                dumps(event),
                                1,
                                outbox_id=oid,
                                session_id=_sid(event),
                            )
                        )
                if again:
                    log.info("outbox: %d record(s) the service has not confirmed, sent again",
                             len(again))  # fmt: skip
                    for item in again:
                        self._enqueue(item)
                continue
            wait = min((u.resend_at for u in self._unconfirmed.values()), default=None)
            self._unconfirmed_changed.clear()
            with contextlib.suppress(TimeoutError):
                timeout = None if wait is None else max(0.0, wait - now)
                await asyncio.wait_for(self._unconfirmed_changed.wait(), timeout)

    def _sent_unconfirmed(self, item: _Outgoing) -> None:
        """The broker has `item` (an outbox event): wait for the service's acknowledgement."""
        assert item.outbox_id is not None
        s = self.settings
        resends = self._resends.get(item.outbox_id, 0)
        wait = min(s.outbox_resend_s * 2.0**resends, s.outbox_resend_max_s)
        self._unconfirmed[item.outbox_id] = _Unconfirmed(
            item.session_id, time.monotonic() + wait, resends
        )
        self._unconfirmed_changed.set()

    async def _refresh_users(self) -> None:
        users = getattr(self.controller, "users", None)
        if users is None:
            return
        try:
            self._users = [u["name"] for u in await users()]
        except CommandError:  # no database: no user select
            self._users = None

    def _announcement(self) -> list[_Outgoing]:
        """Discovery, state, then availability: when ``online`` arrives, all else is in place."""
        items = []
        if self.settings.discovery:
            topic, payload = discovery_config(
                self.settings, self.desk.programs(), self.config, self._users
            )
            items.append(_Outgoing(topic, dumps(payload), 1, retain=True))
        state = self.desk.state_payload()
        items.append(_Outgoing(self.topics.state, self._state.sent(state), 1, retain=True))
        items.append(_Outgoing(self.topics.availability, b"online", 1, retain=True))
        return items

    # ---- inbound -------------------------------------------------------------------------------

    async def _read(self, client: aiomqtt.Client) -> None:
        ha_status = f"{self.settings.discovery_prefix}/status"
        async for msg in client.messages:
            topic = msg.topic.value
            try:
                if topic == self.topics.cmd:
                    self._on_command(msg)
                elif topic == self.topics.ack:
                    self._on_ack(msg.payload)
                elif topic == ha_status and msg.payload == b"online" and not msg.retain:
                    log.info("Home Assistant is online: discovery sent again")
                    for item in self._announcement():
                        self._enqueue(item)
            except Exception:  # a bug here must not end the connection or the session
                log.exception("while handling a message on %s", topic)

    def _on_command(self, msg: aiomqtt.Message) -> None:
        if msg.retain:
            log.warning("ignored a retained command on %s (stale by definition)", msg.topic)
            return
        payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
        response_topic, correlation = self._response_props(msg)
        future = self.desk.submit(payload)
        if future.done():  # refused before the controller, or a status: answer in order
            self._answered(future.result(), response_topic, correlation)
        else:
            future.add_done_callback(
                lambda f: self._answered(f.result(), response_topic, correlation)
            )

    def _on_ack(self, payload: Any) -> None:
        """The operator's service has a session's record in its database: ``{"session_id":
        ...}`` on ``<base>/ack``. Anything else is ignored and changes nothing."""
        raw = payload if isinstance(payload, bytes) else str(payload).encode()
        sid = None
        if len(raw) <= _ACK_MAX_BYTES:
            try:
                doc = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                doc = None
            if isinstance(doc, dict):
                sid = _sid(doc)
        if sid is None:
            log.debug("ignored an acknowledgement that names no session: %s", short_repr(raw))
            return
        received = getattr(self.controller, "outbox_received", None)
        if received is None:
            return
        for oid, u in list(self._unconfirmed.items()):
            if u.session_id == sid:
                del self._unconfirmed[oid]
                self._resends.pop(oid, None)
        task = asyncio.create_task(self._forget_received(received, sid), name="mqtt-ack")
        self._acking.add(task)
        task.add_done_callback(self._acking.discard)

    async def _forget_received(self, received: Any, sid: str) -> None:
        try:
            if await received(sid):
                self.acks += 1
                log.info("outbox: the service has the record of session %s", sid)
        except Exception:  # at worst the record is sent once more
            log.exception("outbox: could not forget session %s", sid)

    def _answered(
        self, reply: Reply, response_topic: str | None, correlation: bytes | None
    ) -> None:
        self._send_reply(reply, response_topic, correlation)
        profiles = reply.get("users")
        if reply["ok"] and profiles is not None and self._users is not None:
            names = [u["name"] for u in profiles]
            if names != self._users:
                self._users = names
                for item in self._announcement():  # the user select's new options
                    self._enqueue(item)

    def _response_props(self, msg: aiomqtt.Message) -> tuple[str | None, bytes | None]:
        props = msg.properties
        if props is None:
            return None, None
        topic = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)
        if topic is not None and not self._response_topic_ok(topic):
            log.warning("ignored response topic %s", short_repr(topic, 80))
            topic = None
        return topic, bytes(correlation) if correlation is not None else None

    def _response_topic_ok(self, topic: str) -> bool:
        """A client's own topic, or one under ``<base>/reply/``; never one of ours to clobber."""
        t = self.topics
        if not topic or len(topic) > 256 or topic.startswith("$"):
            return False
        if any(c in topic for c in "+#\0"):
            return False
        if topic == t.reply:
            return False  # the reply goes there anyway
        if topic.startswith(t.base + "/") and not topic.startswith(t.reply + "/"):
            return False
        return not topic.startswith(self.settings.discovery_prefix + "/")

    # ---- outbound ------------------------------------------------------------------------------

    def _send_reply(
        self, reply: dict[str, Any], response_topic: str | None, correlation: bytes | None
    ) -> None:
        payload = dumps(reply)
        props = None
        if self.settings.v5 and correlation is not None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.CorrelationData = correlation
        self._enqueue(_Outgoing(self.topics.reply, payload, 1, properties=props))
        if response_topic is not None:
            self._enqueue(_Outgoing(response_topic, payload, 1, properties=props))

    def _enqueue(self, item: _Outgoing) -> None:
        if len(self._out) >= _OUT_QUEUE_MAX:
            dropped = self._out.popleft()
            log.warning("outgoing queue full: dropped a message for %s", dropped.topic)
        self._out.append(item)
        self._out_drained.clear()
        self._out_ready.set()

    async def _send(self, client: aiomqtt.Client) -> None:
        # Ends when the connection does (`self._client` moves on), not only by cancellation:
        # Python 3.11's asyncio.wait_for (inside aiomqtt's publish) can swallow a cancel.
        while True:
            while not self._out and self._telemetry_next is None and self._client is client:
                self._out_ready.clear()
                await self._out_ready.wait()
            if self._client is not client:
                return
            if self._telemetry_next is not None:
                item, self._telemetry_next = self._telemetry_next, None
            else:
                item = self._out.popleft()
            try:
                await client.publish(
                    item.topic, item.payload, item.qos, item.retain, properties=item.properties
                )
            except aiomqtt.MqttCodeError as e:  # e.g. over the broker's packet size: drop it
                # (an outbox event stays in the outbox: sent again after the next connect)
                log.warning("publish to %s failed: %s", item.topic, e)
            else:
                self.published += 1
                if item.outbox_id is not None:  # QoS 1: publish returned on the PUBACK
                    if self.settings.outbox_until == "service":
                        self._sent_unconfirmed(item)
                    else:
                        await self._outbox_done(item.outbox_id)
            if not self._out:
                self._out_drained.set()

    def _programs_changed(self, names: list[str]) -> None:
        if self._client is not None:
            for item in self._announcement():  # the program select's new options
                self._enqueue(item)

    def _event(self, event: dict[str, Any]) -> None:
        event = dict(event)
        oid = event.pop("outbox_id", None)
        self._enqueue(
            _Outgoing(self.topics.event, dumps(event), 1, outbox_id=oid, session_id=_sid(event))
        )

    async def _outbox_done(self, outbox_id: int) -> None:
        done = getattr(self.controller, "outbox_done", None)
        if done is not None:
            try:
                await done(outbox_id)
            except Exception:  # the event went out; at worst it goes out once more
                log.exception("outbox: could not forget event %d", outbox_id)

    def _publish_state(self, data: bytes) -> None:
        if self._client is not None:  # else the state goes out with the next announcement
            self._enqueue(_Outgoing(self.topics.state, data, 1, retain=True))

    async def _telemetry(self) -> None:
        async for sample in telemetry_samples(self.controller, self.settings.telemetry_hz):
            if self._client is not None:
                # One slot, sent ahead of the queue: a flood of replies cannot delay telemetry,
                # and a slow link drops samples rather than piling them up.
                self._telemetry_next = _Outgoing(self.topics.telemetry, dumps(sample), 0)
                self._out_ready.set()


def _sid(doc: dict[str, Any]) -> str | None:
    """A message's ``session_id`` when it is one (a string of 1-64 characters), else None."""
    sid = doc.get("session_id")
    return sid if isinstance(sid, str) and 0 < len(sid) <= 64 else None
