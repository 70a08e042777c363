"""The operator's service on the broker (docs/fleet-service.md, docs/interfaces.md §7).

`FleetService` collects every chair's session records and faults into `Records`. Several
instances share the load: each subscribes to the chairs' topics as the shared subscription
``$share/fleet/<prefix>/+/event`` (and ``.../availability``, ``.../state``), so the broker hands
every message to one of them. It is an MQTT 5 client with a persistent session (clean start off,
a session expiry of a week by default), so what the chairs publish while the service is down is
kept by the broker and delivered when it comes back.

**Nothing acknowledged is lost.** A message is acknowledged (its PUBACK sent, by hand: the
client's automatic acknowledgement is off) only once its record is committed. A service killed
between the two leaves the message unacknowledged in its session; the broker sends it again, and
the record's unique key (chair, ``session_id``) makes the second arrival a no-op. A database
that fails drops the connection (nothing acknowledged) and the service retries with back-off.

**A dead instance's share.** mosquitto (2.0) keeps handing a shared subscription's messages to a
member whose persistent session outlives its connection — a killed instance would sit on its
share until it came back. So every instance announces itself, retained, on
``<fleet>/service/<group>/<instance>`` (``online``; its last will ``offline``, sent after a will
delay of 2 s so a reconnection or a takeover does not count), and when an instance goes
``offline`` the first online instance by name *drains* it: it connects with the dead instance's
client id and clean start off (taking over its session, with the messages queued or in flight
there), unsubscribes its shared subscriptions (no new messages for it), publishes a marker to
itself and records everything up to the marker; then it discards the emptied session (a clean
start) and clears the dead instance's status. A drain cut short leaves the rest in the session
for the next one. An instance that comes back takes its session back (the broker disconnects
the drainer). When every instance is down, their sessions keep the messages until one starts
again, and it drains the others. A broker that forces client ids to the user name (mosquitto's
``use_username_as_clientid``) makes a peer's session unreachable: the service notices and stops
draining (docs/fleet-service.md, Broker set-up).

**Alerts.** A fault or an emergency stop (the chair's live ``fault``/``estop`` event, or one its
session's record names when the event was missed) is logged as one ``ALERT`` line and published
on ``<fleet>/alert/<chair_id>`` (QoS 1, not retained); the database remembers that it went out,
so a fault is alerted once — twice at most when two instances handle its event and its record
at the same moment (the alert's ``fault_id`` tells them apart).

**Paid starts.** `start_session` sends a chair the ``start`` command over MQTT 5
request/response (docs/mqtt.md, Rules), records the order and the chair's answer.

The broker URL, credentials and TLS come from the chair's own settings model (`MqttSettings`);
reconnection follows the chair's bridge: a bounded exponential back-off with jitter.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import re
import socket
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from chair.fleet import CLIENT_ID_PREFIX
from chair.fleet.records import Fault, Records, RecordsError, valid_id
from chair.mqtt.reconnect import keep_connected
from chair.mqtt.settings import MqttSettings
from chair.mqtt.topics import Topics
from chair.store import now_iso

log = logging.getLogger("chair.fleet")

SHARE_GROUP = "fleet"
"""The shared subscription's name (docs/interfaces.md §7: ``$share/fleet/...``)."""
SESSION_EXPIRY_S = 7 * 24 * 3600
"""How long the broker keeps an instance's session (and its queued messages) while it is away."""
WILL_DELAY_S = 2
"""An instance counts as gone (its will is published) this long after its connection dropped."""
DRAIN_CHECK_S = 5.0
"""How often an instance looks again for a gone peer to drain (besides every status change)."""
DRAIN_IDLE_S = 30.0
"""A drain gives up when nothing (not even its marker) arrives for this long."""
TAKEN_OVER = 142
"""MQTT 5 reason code "Session taken over": another connection with our client id."""

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def default_instance() -> str:
    """This machine's host name (topic-safe): one instance per host unless named."""
    return (_SAFE.sub("-", socket.gethostname()) or "fleet")[:64]


@dataclass(frozen=True)
class FleetSettings:
    """How the service reaches the broker and names its topics."""

    mqtt: MqttSettings
    """Broker URL, credentials, TLS, the chairs' topic prefix, keep-alive and back-off."""
    instance: str = field(default_factory=default_instance)
    """This instance's name, unique among the group's running instances and the same across
    its restarts (its persistent session is found by it)."""
    group: str = SHARE_GROUP
    fleet_topic: str | None = None
    """The service's own topic root; default ``<prefix>-fleet``."""
    session_expiry_s: int = SESSION_EXPIRY_S
    will_delay_s: int = WILL_DELAY_S
    drain_check_s: float = DRAIN_CHECK_S

    def __post_init__(self) -> None:
        for what, value in (("instance", self.instance), ("group", self.group)):
            if not _NAME.match(value):
                raise ValueError(f"{what} {value!r}: 1-64 letters, digits, '_', '-', '.'")
        root = self.root
        if root.startswith("$") or any(c in root for c in "+#") or "" in root.split("/"):
            raise ValueError(f"fleet topic {root!r}: topic levels without wildcards or '$'")
        if not 0 < self.session_expiry_s <= 0xFFFFFFFF:
            raise ValueError("session expiry must be 1 s .. 136 years")

    @property
    def root(self) -> str:
        return self.fleet_topic or f"{self.mqtt.prefix}-fleet"

    def client_id(self, instance: str | None = None) -> str:
        return f"{CLIENT_ID_PREFIX}{self.group}-{instance or self.instance}"

    def status_topic(self, instance: str | None = None) -> str:
        return f"{self.root}/service/{self.group}/{instance or self.instance}"

    @property
    def status_filter(self) -> str:
        return f"{self.root}/service/{self.group}/+"

    def alert_topic(self, chair_id: str) -> str:
        return f"{self.root}/alert/{chair_id}"

    def drain_marker(self) -> str:
        return f"{self.root}/drain/{self.group}/{self.instance}/{uuid.uuid4().hex[:12]}"

    @property
    def shared_filters(self) -> tuple[tuple[str, int], ...]:
        """What the service hears from every chair, and at which QoS: events and availability
        are kept for it while it is away; the state (1/s in a session) is not."""
        base = f"$share/{self.group}/{self.mqtt.prefix}/+"
        return ((f"{base}/event", 1), (f"{base}/availability", 1), (f"{base}/state", 0))


def mqtt_client(
    settings: MqttSettings,
    identifier: str,
    *,
    session_expiry_s: int = 0,
    clean_start: bool = True,
    manual_ack: bool = False,
    will: aiomqtt.Will | None = None,
    tls_context: ssl.SSLContext | None = None,
    timeout_s: float = 10.0,
) -> aiomqtt.Client:
    """An MQTT 5 client of the fleet: a persistent session when `session_expiry_s` > 0 and
    `clean_start` is off; with `manual_ack` every QoS 1 message must be acknowledged by `ack`."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = session_expiry_s
    client = aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password is not None else None,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V5,
        will=will,
        clean_start=clean_start,
        properties=props,
        keepalive=settings.keepalive_s,
        tls_context=tls_context if tls_context is not None else settings.ssl_context(),
        timeout=timeout_s,
        socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
    )
    if manual_ack:
        # aiomqtt 2.x acknowledges a message as it queues it; paho's manual acknowledgement is
        # how the PUBACK waits for the record's commit.
        client._client.manual_ack_set(True)
    return client


def ack(client: aiomqtt.Client, msg: aiomqtt.Message) -> None:
    """Acknowledge `msg` (a client made with ``manual_ack``): the broker forgets it."""
    if msg.qos > 0:
        client._client.ack(msg.mid, msg.qos)


def _reason(e: BaseException | None) -> int | None:
    rc = getattr(e, "rc", None)
    value = getattr(rc, "value", rc)
    return value if isinstance(value, int) else None


def lost_reason(client: aiomqtt.Client, e: BaseException) -> int | None:
    """The MQTT 5 reason the broker gave for ending `client`'s connection (None: unknown).
    aiomqtt's message iterator raises a plain "Disconnected during message iteration"; the
    broker's reason is on the client's own disconnection."""
    reason = _reason(e)
    if reason is None:
        fut = getattr(client, "_disconnected", None)
        if isinstance(fut, asyncio.Future) and fut.done() and not fut.cancelled():
            reason = _reason(fut.exception())
    return reason


def _text(payload: Any) -> str:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload).decode("utf-8", errors="replace")
    return "" if payload is None else str(payload)


def _json(payload: Any) -> Any:
    try:
        return json.loads(payload if isinstance(payload, bytes | bytearray | str) else b"")
    except ValueError:
        return None


class FleetService:
    """One instance of the operator's service. ``await service.run()`` connects and serves
    until `stop()`, reconnecting on its own after any broker loss or database failure."""

    def __init__(self, settings: FleetSettings, records: Records) -> None:
        self.settings = settings
        self.records = records
        s = settings.mqtt
        self._prefix = f"{s.prefix}/"
        self._status_prefix = settings.status_filter[:-1]
        self.connected = asyncio.Event()
        """Set while connected, subscribed and announced ``online``."""
        self.connections = 0
        self.counts: collections.Counter[str] = collections.Counter()
        """sessions (new), duplicates, faults alerted, drained (messages), drains."""
        self.peers: dict[str, str] = {}
        """The other instances' last status: online / offline."""
        self._states: dict[str, str] = {}
        self._stopping = asyncio.Event()
        self._peers_changed = asyncio.Event()
        self._drain_tried: dict[str, float] = {}
        self._drain_cut: float | None = None
        """When the last drain was cut short (monotonic), None after one that completed."""
        self._self_takeovers = 0
        """Connections lost, in a row, to a drain of this instance's own (see `_drain_cut`)."""
        self.drains_disabled = False
        """Set when a drain took this instance's own session: the broker forces client ids
        (mosquitto's ``use_username_as_clientid``), so a peer's session cannot be reached."""

    # ---- life cycle --------------------------------------------------------------------------

    def stop(self) -> None:
        """Say ``offline``, disconnect (the session stays: the broker keeps what comes for us)
        and make `run()` return."""
        self._stopping.set()

    async def run(self) -> None:
        s = self.settings.mqtt
        tls = s.ssl_context()  # a bad certificate or key fails here, once, clearly
        await keep_connected(
            lambda failures: self._connection(tls, failures),
            stopping=self._stopping,
            connected=self.connected,
            reconnect_min_s=s.reconnect_min_s,
            reconnect_max_s=s.reconnect_max_s,
            log=log,
        )

    async def _connection(self, tls: ssl.SSLContext | None, failures: int) -> float | None:
        """One connection, from connect to loss; how long it was up (None: never)."""
        st, s = self.settings, self.settings.mqtt
        will_props = Properties(PacketTypes.WILLMESSAGE)  # type: ignore[no-untyped-call]
        will_props.WillDelayInterval = st.will_delay_s
        will = aiomqtt.Will(
            st.status_topic(), b"offline", qos=1, retain=True, properties=will_props
        )
        client = mqtt_client(
            s,
            st.client_id(),
            session_expiry_s=st.session_expiry_s,
            clean_start=False,
            manual_ack=True,
            will=will,
            tls_context=tls,
        )
        up_since: float | None = None
        try:
            async with client:
                up_since = time.monotonic()
                self.connections += 1
                log.info(
                    "%s %s:%d as %s",
                    "reconnected to" if failures else "connected to",
                    s.host, s.port, st.client_id(),
                )  # fmt: skip
                await self._serve(client)
        except aiomqtt.MqttError as e:
            taken_over = lost_reason(client, e) == TAKEN_OVER
            if up_since is not None and self._drained_myself():
                self._self_takeovers += 1
            if self._self_takeovers >= 2 and not self.drains_disabled:
                self.drains_disabled = True
                log.error(
                    "draining a gone instance takes this instance's own session (its connection "
                    "drops whenever a drain connects): the broker gives clients its own client "
                    "id (mosquitto use_username_as_clientid), so a gone instance's share waits "
                    "for it to come back; draining is off (docs/fleet-service.md, Broker set-up)"
                )
            elif taken_over:
                log.warning(
                    "another connection took over client id %s (a peer draining this instance "
                    "while it was away, or a second instance named %r: give each its own "
                    "--instance); reconnecting",
                    st.client_id(), st.instance,
                )  # fmt: skip
            elif failures == 0 or up_since is not None:
                what = "lost the broker" if up_since is not None else "cannot reach the broker"
                log.warning("%s (%s:%d): %s; retrying", what, s.host, s.port, e)
        except RecordsError as e:
            log.error("%s; nothing acknowledged, retrying", e)
        except Exception:  # a bug must not end the service: retry
            log.exception("fleet service error; reconnecting")
        finally:
            self.connected.clear()
        return None if up_since is None else time.monotonic() - up_since

    async def _serve(self, client: aiomqtt.Client) -> None:
        st = self.settings
        for topic, qos in st.shared_filters:
            await client.subscribe(topic, qos=qos)
        await client.subscribe(st.status_filter, qos=1)
        await client.publish(st.status_topic(), b"online", qos=1, retain=True)
        self.connected.set()
        log.info(
            "collecting %s as instance %s (database %s)",
            ", ".join(t for t, _ in st.shared_filters), st.instance, self.records.display,
        )  # fmt: skip
        tasks = [
            asyncio.create_task(self._read(client), name="fleet-read"),
            asyncio.create_task(self._drains(client), name="fleet-drain"),
            asyncio.create_task(self._stopping.wait(), name="fleet-stop"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.connected.clear()
        for task in done:
            exc = None if task.cancelled() else task.exception()
            if exc is not None:
                raise exc
        if self._stopping.is_set():  # a clean goodbye: no will; peers drain what comes for us
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(st.status_topic(), b"offline", qos=1, retain=True, timeout=5)

    async def _read(self, client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            await self._handle_once(client, msg)
            ack(client, msg)  # only now: the record is committed

    async def _handle_once(
        self, client: aiomqtt.Client, msg: aiomqtt.Message, via: str | None = None
    ) -> None:
        """`_handle`, where a bug costs this one message (logged, acknowledged) rather than a
        loop of reconnections redelivering it; a database or broker failure is raised (the
        message is not acknowledged, it comes again)."""
        try:
            await self._handle(client, msg, via)
        except (RecordsError, aiomqtt.MqttError):
            raise
        except Exception:
            log.exception("%s: cannot handle this message; dropped", msg.topic.value)

    # ---- messages ------------------------------------------------------------------------------

    def _chair_topic(self, topic: str) -> tuple[str, str] | None:
        if not topic.startswith(self._prefix):
            return None
        chair_id, _, leaf = topic[len(self._prefix) :].partition("/")
        if not _NAME.match(chair_id) or leaf not in ("event", "availability", "state"):
            return None
        return chair_id, leaf

    async def _handle(
        self, client: aiomqtt.Client, msg: aiomqtt.Message, via: str | None = None
    ) -> None:
        """Record one message (RecordsError when the database fails: not acknowledged)."""
        topic = msg.topic.value
        if topic.startswith(self._status_prefix):
            if via is None:
                self._peer_status(topic[len(self._status_prefix) :], _text(msg.payload))
            return
        parsed = self._chair_topic(topic)
        if parsed is None:
            return
        chair_id, leaf = parsed
        if leaf == "availability":
            text = _text(msg.payload)
            if text in ("online", "offline"):
                await self.records.saw_chair(chair_id, availability=text)
            return
        doc = _json(msg.payload)
        if not isinstance(doc, dict):
            log.warning("%s: not a JSON object, ignored", topic)
            return
        if leaf == "state":
            name = doc.get("state")
            if isinstance(name, str) and self._states.get(chair_id) != name[:32]:
                await self.records.saw_chair(chair_id, state=name[:32])
                self._states[chair_id] = name[:32]
            return
        kind = doc.get("event")
        by = self.settings.instance if via is None else f"{self.settings.instance}/{via}"
        if kind == "session_finished":
            recorded = await self.records.record_session(chair_id, doc, received_by=by)
            if recorded is None:
                log.warning("%s: session_finished without a usable session_id, ignored", topic)
                return
            sid = doc.get("session_id")
            if recorded.new:
                self.counts["sessions"] += 1
                log.info(
                    "session %s/%s recorded: %s, %s",
                    chair_id, sid, _program(doc), doc.get("end_reason"),
                )  # fmt: skip
            else:
                self.counts["duplicates"] += 1
                log.info("session %s/%s arrived again: already recorded", chair_id, sid)
            # the record is committed: the chair may forget it (docs/fleet-service.md); a
            # duplicate is acknowledged again, as the chair sends it again when an ack is lost
            ack_doc = {"session_id": sid, "service": self.settings.instance}
            await client.publish(
                f"{self._prefix}{chair_id}/ack", json.dumps(ack_doc), qos=1, timeout=10
            )
            self.counts["acks"] += 1
            await self._alert(client, recorded.to_alert)
        elif kind in ("fault", "estop"):
            await self._alert(
                client, await self.records.record_fault(chair_id, doc, received_by=by)
            )

    async def _alert(self, client: aiomqtt.Client, faults: list[Fault]) -> None:
        for f in faults:
            where = f" in session {f.session_id}" if f.session_id else ""
            log.warning("ALERT chair %s: %s%s: %s", f.chair_id, f.code, where, f.message or "-")
            payload = {
                "alert": "estop" if f.code == "estop" else "fault",
                "fault_id": f.id,
                **f.as_dict(),
                "at": now_iso(),
                "service": self.settings.instance,
            }
            await client.publish(
                self.settings.alert_topic(f.chair_id), json.dumps(payload), qos=1, timeout=10
            )
            await self.records.alerted(f.id)
            self.counts["alerts"] += 1

    # ---- gone peers ----------------------------------------------------------------------------

    def _peer_status(self, name: str, text: str) -> None:
        if name == self.settings.instance or not _NAME.match(name):
            return
        before = self.peers.get(name)
        if text:
            self.peers[name] = text[:16]
        else:
            self.peers.pop(name, None)
        if text != before:
            if text == "offline":
                log.info("instance %s is offline", name)
            self._peers_changed.set()

    def _drained_myself(self) -> bool:
        """Whether this connection may have been lost to one of this instance's own drains:
        a drain was cut short together with it (a drain is cancelled within moments of the
        connection's loss). mosquitto closes a replaced connection without a reason code, so
        this is all there is to go by; twice in a row is no coincidence."""
        cut = self._drain_cut
        return cut is not None and time.monotonic() - cut < 2.0

    def _to_drain(self) -> list[str]:
        """The gone peers this instance drains: it is the first online instance by name."""
        if self.drains_disabled:
            return []
        me = self.settings.instance
        online = {n for n, s in self.peers.items() if s == "online"} | {me}
        if min(online) != me:
            return []
        now = time.monotonic()
        return sorted(
            n
            for n, s in self.peers.items()
            if s == "offline"
            and now - self._drain_tried.get(n, -1e9) >= self.settings.drain_check_s
        )

    async def _drains(self, client: aiomqtt.Client) -> None:
        while True:
            self._peers_changed.clear()
            for peer in self._to_drain():
                self._drain_tried[peer] = time.monotonic()
                await self.drain(peer, client)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._peers_changed.wait(), self.settings.drain_check_s)

    async def drain(self, peer: str, client: aiomqtt.Client | None = None) -> int | None:
        """Take over the gone instance `peer`'s session and record what was left there;
        how many messages (None when the drain was cut short: the peer is back, or the broker
        went away). `client` (this instance's connection) clears the peer's status after.

        The drainer keeps the session's expiry while it works, so a drain cut short (this
        instance stopping, the database or the broker failing) leaves the rest in the session
        for the next drain; only once the marker is back is the session discarded."""
        st = self.settings
        drainer = mqtt_client(
            st.mqtt,
            st.client_id(peer),
            session_expiry_s=st.session_expiry_s,
            clean_start=False,
            manual_ack=True,
        )
        marker = st.drain_marker()
        n = 0
        completed = False
        try:
            async with drainer:
                for topic, _ in st.shared_filters:  # nothing new for the gone instance
                    await drainer.unsubscribe(topic)
                await drainer.subscribe(marker, qos=1)
                await drainer.publish(marker, b"drain", qos=1)
                async for msg in _until_idle(drainer, DRAIN_IDLE_S):
                    if msg.topic.value == marker:
                        ack(drainer, msg)
                        break
                    await self._handle_once(client or drainer, msg, via=peer)
                    ack(drainer, msg)
                    n += 1
                else:  # everything queued came at the connection: the session is done
                    log.warning(
                        "draining %s: the marker did not come back within %g s (may this "
                        "service publish and subscribe on %s/drain/#?)",
                        peer, DRAIN_IDLE_S, st.root,
                    )  # fmt: skip
            # the emptied session, forgotten: a clean start with no expiry replaces it
            async with mqtt_client(st.mqtt, st.client_id(peer), session_expiry_s=0):
                pass
            completed = True
        except aiomqtt.MqttError as e:
            log.info(
                "draining instance %s cut short (%s): it is back, or the broker is away", peer, e
            )
            return None
        finally:
            self._drain_cut = None if completed else time.monotonic()
            if completed:
                self._self_takeovers = 0
        self.counts["drains"] += 1
        self.counts["drained"] += n
        log.info("instance %s is gone: recorded the %d message(s) left for it", peer, n)
        if client is not None and self.peers.get(peer) == "offline":
            self.peers.pop(peer, None)
            with contextlib.suppress(aiomqtt.MqttError):  # forget it (retained status cleared)
                await client.publish(st.status_topic(peer), b"", qos=1, retain=True, timeout=5)
        return n


async def _until_idle(client: aiomqtt.Client, idle_s: float) -> AsyncIterator[aiomqtt.Message]:
    """The client's messages until none has come for `idle_s`."""
    it = aiter(client.messages)
    while True:
        try:
            yield await asyncio.wait_for(anext(it), idle_s)
        except TimeoutError:
            return


def _program(event: dict[str, Any]) -> str:
    record = event.get("record") if isinstance(event.get("record"), dict) else {}
    return str((record or {}).get("program") or "?")


# ---- paid starts ---------------------------------------------------------------------------------


@dataclass
class StartResult:
    """A paid start and the chair's answer."""

    order_id: str
    chair_id: str
    status: str
    """``started``, ``refused`` or ``no_reply`` (the order's status in the database)."""
    reply: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None
    session_id: str | None = None
    availability: str | None = None
    """The chair's last availability (``online``/``offline``) seen while waiting."""

    @property
    def ok(self) -> bool:
        return self.status == "started"


def check_start(chair_id: str, order_id: str | None = None) -> None:
    """ValueError naming what is wrong with a chair id or an order id."""
    if not _NAME.match(chair_id):
        raise ValueError(f"chair id {chair_id!r}: one topic level of 1-64 letters, digits, '_-.'")
    if order_id is not None and not valid_id(order_id):
        raise ValueError(f"order id {order_id!r}: 1-128 printable ASCII characters, no spaces")


async def start_session(
    mqtt: MqttSettings,
    records: Records,
    chair_id: str,
    program: str,
    minutes: float | None = None,
    *,
    order_id: str | None = None,
    timeout_s: float = 10.0,
) -> StartResult:
    """Start a paid session: record the order, send the chair ``start`` {program, minutes} with
    the order id as the command's id (a retry with the same id is not run twice: the chair
    answers it again) and an MQTT 5 response topic, wait for the reply and record it.

    Raises ValueError for a malformed chair or order id, aiomqtt.MqttError when the broker
    cannot be reached (nothing recorded, nothing sent), RecordsError when the database fails."""
    order_id = order_id or uuid.uuid4().hex
    check_start(chair_id, order_id)
    topics = Topics.for_chair(mqtt.prefix, chair_id)
    client_id = f"{CLIENT_ID_PREFIX}start-{uuid.uuid4().hex[:12]}"
    response_topic = f"{topics.reply}/{client_id}"
    command: dict[str, Any] = {"id": order_id, "action": "start", "program": program}
    if minutes is not None:
        command["minutes"] = minutes
    result = StartResult(order_id, chair_id, "no_reply")
    async with mqtt_client(mqtt, client_id, timeout_s=timeout_s) as client:
        await client.subscribe(response_topic, qos=1)
        await client.subscribe(topics.availability, qos=1)
        await records.add_order(order_id, chair_id, program, minutes)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = response_topic
        props.CorrelationData = order_id.encode()
        await client.publish(topics.cmd, json.dumps(command), qos=1, properties=props)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                async for msg in client.messages:
                    if msg.topic.value == topics.availability:
                        result.availability = _text(msg.payload)
                        continue
                    correlation = getattr(msg.properties, "CorrelationData", None)
                    reply = _json(msg.payload)
                    if correlation is not None and bytes(correlation) != order_id.encode():
                        continue
                    if isinstance(reply, dict) and reply.get("id") in (order_id, None):
                        result.reply = reply
                        break
    reply = result.reply
    if reply is not None and reply.get("ok") is True:
        state = reply.get("state") if isinstance(reply.get("state"), dict) else {}
        sid = (state or {}).get("session_id")
        result.status, result.session_id = "started", sid if valid_id(sid) else None
    elif reply is not None:
        err = reply.get("error") if isinstance(reply.get("error"), dict) else {}
        result.status = "refused"
        result.error_code = str((err or {}).get("code") or "unknown")
        result.error_message = str((err or {}).get("message") or "")
    await records.finish_order(
        order_id,
        result.status,
        session_id=result.session_id,
        error_code=result.error_code,
        error_message=result.error_message,
    )
    return result


__all__ = [
    "SHARE_GROUP",
    "FleetService",
    "FleetSettings",
    "StartResult",
    "ack",
    "check_start",
    "default_instance",
    "mqtt_client",
    "start_session",
]
