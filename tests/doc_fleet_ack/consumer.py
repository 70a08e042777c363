"""A minimal operator-side consumer of the chairs' session records, written from the docs alone.

It knows only what these say:

- docs/mqtt.md, Topics: every chair publishes `{"event": ...}` on `<prefix>/<chair_id>/event`
  (QoS 1, not retained); `<prefix>/<chair_id>/ack` is "in (only with `outbox_until =
  "service"`)", QoS 1, payload "the fleet service has a session's record: `{"session_id": ...}`".
- docs/mqtt.md, Users and session records: every `session_finished` carries the session's
  `record`; "Consumers deduplicate by `session_id`"; "subscribe with a persistent session (MQTT
  3.1.1 `clean_session=false`, MQTT 5 a session expiry) at QoS 1"; in the fleet mode the service
  "publishes `{"session_id": "...", "service": "..."}` once the record is committed in its
  database".
- docs/fleet-service.md, No record lost, none counted twice: "Once a record is committed (or
  found there already: a duplicate), the instance publishes `{"session_id": ..., "service":
  <instance>}` on `<prefix>/<chair_id>/ack` (QoS 1) before it acknowledges the chair's message to
  the broker"; "Every instance connects with clean start off and a session expiry (a week by
  default), subscribing at QoS 1"; "The client's automatic acknowledgement is off: a message's
  PUBACK goes out only once its record is committed"; a session "is keyed by (chair id,
  `session_id`)".

Choices of this consumer: MQTT 5 (clean start off, session expiry one week), one subscription
`<prefix>/+/event` at QoS 1 (no shared subscription: one instance), records kept in a dict keyed
by (chair id, session_id) -- "stored" means put in that dict. Every `session_finished` that
names a `session_id`, new or duplicate, is stored (first copy kept), then acknowledged on the
chair's ack topic (QoS 1, not retained, awaited until the broker's PUBACK), and only then is the
chair's message acknowledged to the broker (manual PUBACK). aiomqtt 2.x has no switch for manual
acknowledgement; its paho-mqtt client has (`manual_ack_set`, `ack`), used here.

Use:

    consumer = Consumer("127.0.0.1", 1883)
    await consumer.start()          # returns once subscribed
    ...
    consumer.records                # {(chair_id, session_id): the first session_finished event}
    consumer.received               # every session_finished received, duplicates included
    consumer.acks                   # every acknowledgement published: (chair_id, session_id)
    await consumer.stop()           # disconnects; the broker keeps the session for a week

or from a shell: `python -m tests.doc_fleet_ack.consumer --broker mqtt://127.0.0.1:1883`
(prints each new record, Ctrl-C stops).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger("doc_fleet_ack")

SESSION_EXPIRY_S = 7 * 24 * 3600
"""docs/fleet-service.md: "a session expiry (a week by default)"."""

RECONNECT_MIN_S, RECONNECT_MAX_S = 0.1, 1.5
"""docs/fleet-service.md: "the chair bridge's back-off (0.1 s doubling to 1.5 s ...)"."""


@dataclass(frozen=True)
class Received:
    chair_id: str
    session_id: str
    payload: dict[str, Any]
    at: float
    """time.monotonic() when it arrived"""


class Consumer:
    """One operator-side instance: stores each chair's `session_finished` once, acknowledges it."""

    def __init__(
        self,
        host: str,
        port: int = 1883,
        *,
        prefix: str = "massagechair",
        identifier: str = "doc-fleet-consumer",
        service: str = "doc-consumer",
        on_record: Callable[[str, str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.prefix = prefix
        self.identifier = identifier
        self.service = service
        self.on_record = on_record
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.received: list[Received] = []
        self.acks: list[tuple[str, str]] = []
        self.ignored: list[tuple[str, bytes]] = []
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._stopping = False

    # --- start / stop -----------------------------------------------------------------------

    async def start(self, timeout_s: float = 10.0) -> None:
        """Connect and subscribe; return once the subscription is in place."""
        assert self._task is None or self._task.done(), "already running"
        self._stopping = False
        self._subscribed.clear()
        self._task = asyncio.create_task(self._run(), name=f"consumer {self.identifier}")
        waiter = asyncio.create_task(self._subscribed.wait())
        done, _ = await asyncio.wait(
            {waiter, self._task}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter not in done:
            waiter.cancel()
            task = self._task
            await self.stop()
            if task is not None and task.done() and not task.cancelled() and task.exception():
                raise RuntimeError("consumer could not subscribe") from task.exception()
            raise TimeoutError(f"consumer not subscribed within {timeout_s} s")

    async def stop(self) -> None:
        """Disconnect (normally: the broker keeps the persistent session and queues for it)."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> Consumer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # --- reading what it has ------------------------------------------------------------------

    def session_ids(self, chair_id: str | None = None) -> set[str]:
        return {s for (c, s) in self.records if chair_id is None or c == chair_id}

    async def wait_for(
        self, condition: Callable[[], bool], timeout_s: float = 30.0, poll_s: float = 0.05
    ) -> bool:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(poll_s)
        return True

    # --- the connection -----------------------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,  # never clean: not even on this client object's first connect
            properties=props,
            keepalive=30,
        )
        # "The client's automatic acknowledgement is off" (docs/fleet-service.md)
        client._client.manual_ack_set(True)
        return client

    async def _run(self) -> None:
        wait = RECONNECT_MIN_S
        while not self._stopping:
            try:
                async with self._client() as client:
                    await client.subscribe(f"{self.prefix}/+/event", qos=1)
                    self._subscribed.set()
                    wait = RECONNECT_MIN_S
                    async for message in client.messages:
                        await self._handle(client, message)
            except aiomqtt.MqttError as e:
                if self._stopping:
                    return
                log.warning("consumer %s: %s; again in %.1f s", self.identifier, e, wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, RECONNECT_MAX_S)

    async def _handle(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        topic = str(message.topic)
        raw = message.payload if isinstance(message.payload, bytes) else b""
        try:
            parts = topic.split("/")
            chair_id = parts[-2]
            event = json.loads(raw)
            wanted = (
                isinstance(event, dict)
                and event.get("event") == "session_finished"
                and isinstance(event.get("session_id"), str)
                and event["session_id"] != ""
            )
        except (ValueError, IndexError):
            wanted = False
        if wanted:
            session_id = event["session_id"]
            self.received.append(Received(chair_id, session_id, event, time.monotonic()))
            key = (chair_id, session_id)
            new = key not in self.records
            if new:  # "Keep the first and drop later ones"
                self.records[key] = event
            # "(or found there already: a duplicate)": acknowledged all the same
            ack = json.dumps({"session_id": session_id, "service": self.service})
            await client.publish(f"{self.prefix}/{chair_id}/ack", ack, qos=1, retain=False)
            self.acks.append(key)
            if new and self.on_record is not None:
                self.on_record(chair_id, session_id, event)
        elif raw and b"session_finished" in raw:
            self.ignored.append((topic, raw))
        # only now the chair's message is acknowledged to the broker
        if message.qos > 0:
            client._client.ack(message.mid, message.qos)


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default="mqtt://localhost:1883")
    parser.add_argument("--prefix", default="massagechair")
    parser.add_argument("--client-id", default="doc-fleet-consumer")
    parser.add_argument("--service", default="doc-consumer")
    args = parser.parse_args()
    url = urlparse(args.broker)

    def show(chair_id: str, session_id: str, event: dict[str, Any]) -> None:
        print(json.dumps({"chair_id": chair_id, "session_id": session_id, "event": event}))

    consumer = Consumer(
        url.hostname or "localhost",
        url.port or 1883,
        prefix=args.prefix,
        identifier=args.client_id,
        service=args.service,
        on_record=show,
    )
    await consumer.start()
    try:
        await asyncio.Event().wait()
    finally:
        await consumer.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())
