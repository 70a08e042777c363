"""The fleet acknowledgement, proven with a consumer written from the docs alone.

`tests/doc_fleet_ack/consumer.py` knows only docs/mqtt.md (Topics, Users and session records,
Commands and replies, Settings) and docs/fleet-service.md (No record lost, none counted twice).
Here the real daemon (`python -m chair serve --outbox-until service`) runs as a subprocess
against a real, persistent mosquitto, and:

a. with the consumer listening, a finished session's record reaches it, it acknowledges the
   record on `<base>/ack`, and the chair's outbox empties;
b. with nobody acknowledging, the outbox keeps the record and the chair sends the same record
   (same `session_id`) again, `outbox_resend_s` after each PUBACK (shortened with the
   documented `CHAIR_OUTBOX_RESEND_S`, `CHAIR_OUTBOX_RESEND_MAX_S`);
c. the consumer then comes back (its persistent session kept the copies sent while it was
   away): the record is stored once, the outbox empties and the re-sending stops.

Every wait polls its condition every 50 ms up to a generous ceiling; the chair's database is
read read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiomqtt
import pytest
import pytest_asyncio

from tests.doc_fleet_ack.consumer import Consumer
from tests.mqtt_broker import Mosquitto, have_mosquitto, persistent_broker

pytestmark = pytest.mark.broker

REPO = Path(__file__).resolve().parents[1]
PREFIX = "massagechair"
CHAIR = "c1"
BASE = f"{PREFIX}/{CHAIR}"
CEILING_S = 30.0
POLL_S = 0.05

# docs/mqtt.md, Users and session records: the fields of `record`
RECORD_FIELDS = {
    "session_id", "user", "program", "minutes_planned", "intensity", "heat", "started_at",
    "ended_at", "outcome", "end_reason", "seconds_run", "minutes_run", "faults", "safety_ok",
    "zone_seconds",
}  # fmt: skip

T = TypeVar("T")


# --- the broker --------------------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    if not have_mosquitto():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    b = persistent_broker(tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.stop()


# --- waiting -----------------------------------------------------------------------------------


async def until(condition: Callable[[], T | None], what: str, timeout_s: float = CEILING_S) -> T:
    """Poll `condition` every 50 ms until it returns something truthy (returned)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(POLL_S)


# --- the chair daemon --------------------------------------------------------------------------


@dataclass
class Chair:
    proc: subprocess.Popen[bytes]
    db: Path
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(
                f"chair serve exited with {self.proc.returncode}:\n{self.log_tail()}"
            )

    def outbox(self) -> int | None:
        """`SELECT COUNT(*) FROM outbox`, read-only; None while that is not possible yet."""
        self.alive()
        if not self.db.exists():
            return None
        try:
            con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        except sqlite3.Error:
            return None
        try:
            return int(con.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        except sqlite3.Error:
            return None
        finally:
            con.close()


def start_chair(broker: Mosquitto, tmp: Path, env: dict[str, str] | None = None) -> Chair:
    db = tmp / "chair.db"
    log = tmp / "chair.log"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CHAIR_")}
    environ.update({"XDG_STATE_HOME": str(tmp), **(env or {})})
    cmd = [
        sys.executable, "-m", "chair", "serve", "--broker", broker.url, "--chair-id", CHAIR,
        "--db", str(db), "--speed", "600", "--no-discovery", "--outbox-until", "service",
    ]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=environ, stdout=out, stderr=subprocess.STDOUT)
    return Chair(proc, db, log)


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM (docs/mqtt.md: settles, publishes offline, exits 0), then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- a plain observer: sees the chair's topics, never acknowledges anything -------------------


@dataclass(frozen=True)
class Seen:
    topic: str
    payload: Any
    retain: bool
    at: float


class Observer:
    def __init__(self, broker: Mosquitto) -> None:
        self.broker = broker
        self.seen: list[Seen] = []
        self._task: asyncio.Task[None] | None = None
        self._client: aiomqtt.Client | None = None
        self._ids = itertools.count(1)

    async def start(self) -> None:
        ready = asyncio.Event()

        async def run() -> None:
            async with aiomqtt.Client(
                self.broker.host,
                self.broker.port,
                identifier="doc-fleet-observer",
                protocol=aiomqtt.ProtocolVersion.V5,
            ) as client:
                self._client = client
                for sub in ("availability", "event", "reply", "ack"):
                    await client.subscribe(f"{BASE}/{sub}", qos=1)
                ready.set()
                async for m in client.messages:
                    raw = m.payload if isinstance(m.payload, bytes) else b""
                    try:
                        payload: Any = json.loads(raw)
                    except ValueError:
                        payload = raw.decode(errors="replace")
                    self.seen.append(Seen(str(m.topic), payload, m.retain, time.monotonic()))

        self._task = asyncio.create_task(run())
        await asyncio.wait_for(ready.wait(), 10)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._task
            self._task = None

    def on(self, sub: str) -> list[Seen]:
        return [s for s in self.seen if s.topic == f"{BASE}/{sub}"]

    def finished(self, session_id: str | None = None) -> list[Seen]:
        return [
            s
            for s in self.on("event")
            if isinstance(s.payload, dict)
            and s.payload.get("event") == "session_finished"
            and (session_id is None or s.payload.get("session_id") == session_id)
        ]

    def online(self) -> bool:
        avail = self.on("availability")
        return bool(avail) and avail[-1].payload == "online"

    async def command(self, chair: Chair, action: str, **fields: Any) -> dict[str, Any]:
        """docs/mqtt.md: a command on `<base>/cmd` (QoS 1, not retained), its reply on
        `<base>/reply` matched by `id`; re-sent with the same `id` (idempotent) until
        answered, since nothing says when the daemon's subscription to `cmd` is in place."""
        assert self._client is not None
        cid = f"doc-{action}-{next(self._ids)}"
        payload = json.dumps({"id": cid, "action": action, **fields})

        def reply() -> dict[str, Any] | None:
            chair.alive()
            for s in self.on("reply"):
                if isinstance(s.payload, dict) and s.payload.get("id") == cid:
                    return s.payload
            return None

        deadline = time.monotonic() + CEILING_S
        while time.monotonic() < deadline:
            chair.alive()
            await self._client.publish(f"{BASE}/cmd", payload, qos=1)
            with contextlib.suppress(AssertionError):
                return await until(reply, f"the reply to {cid}", timeout_s=3.0)
            chair.alive()
        raise AssertionError(f"no reply to {payload}:\n{chair.log_tail()}")


@pytest_asyncio.fixture
async def observer(broker: Mosquitto) -> AsyncIterator[Observer]:
    obs = Observer(broker)
    await obs.start()
    try:
        yield obs
    finally:
        await obs.stop()


async def run_a_session(chair: Chair, obs: Observer) -> dict[str, Any]:
    """Start a short session as docs/mqtt.md says; return its first `session_finished`."""

    def online() -> bool:
        chair.alive()
        return obs.online()

    await until(online, "the chair's `online`")
    r = await obs.command(chair, "start", program="quick", minutes=5)
    assert r["ok"] is True, r
    fin = await until(obs.finished, "session_finished")
    return fin[0].payload


def check_record(event: dict[str, Any]) -> dict[str, Any]:
    """The record's essentials, its keys exactly docs/mqtt.md's list (the first run found the
    live record without `minutes_run`; the daemon now carries it, as `chair history` does)."""
    sid = event["session_id"]
    assert isinstance(sid, str) and sid
    record = event.get("record")
    assert isinstance(record, dict), event
    assert record["session_id"] == sid
    assert record["program"] == "quick"
    assert set(record) == RECORD_FIELDS, RECORD_FIELDS ^ set(record)
    return {
        "documented_but_missing": sorted(RECORD_FIELDS - set(record)),
        "present_but_undocumented": sorted(set(record) - RECORD_FIELDS),
        "event_keys": sorted(event),
        "record": record,
    }


# --- the tests ---------------------------------------------------------------------------------


async def test_a_listening_consumer_acknowledges_and_the_outbox_empties(
    broker: Mosquitto, observer: Observer, tmp_path: Path
) -> None:
    consumer = Consumer(broker.host, broker.port, identifier="doc-consumer-a")
    chair: Chair | None = None
    try:
        await consumer.start()
        chair = start_chair(broker, tmp_path)
        event = await run_a_session(chair, observer)
        fields = check_record(event)
        sid = event["session_id"]

        finished_at = observer.finished(sid)[0].at
        await until(lambda: (CHAIR, sid) in consumer.records, "the consumer to store it")
        await until(lambda: chair.outbox() == 0, "an empty outbox")
        (tmp_path / "summary.json").write_text(
            json.dumps({"emptied_after_s": time.monotonic() - finished_at, **fields}, indent=1)
        )
        assert consumer.records[(CHAIR, sid)]["record"] == event["record"]
        assert (CHAIR, sid) in consumer.acks
        acks = await until(lambda: observer.on("ack"), "the ack on the wire")
        assert acks[0].payload == {"session_id": sid, "service": "doc-consumer"}
        assert acks[0].retain is False
        assert set(consumer.records) == {(CHAIR, sid)}
        assert not consumer.ignored
    finally:
        if chair is not None:
            stop_process(chair.proc)
        await consumer.stop()
    assert chair.proc.returncode == 0, chair.log_tail()


async def test_b_unacknowledged_record_is_kept_and_resent_c_then_acknowledged_once(
    broker: Mosquitto, observer: Observer, tmp_path: Path
) -> None:
    consumer = Consumer(broker.host, broker.port, identifier="doc-consumer-bc")
    chair: Chair | None = None
    try:
        # the consumer's persistent session exists, but the consumer is away
        await consumer.start()
        await consumer.stop()
        assert not consumer.running

        # b. nobody acknowledges: the record stays in the outbox and is sent again
        chair = start_chair(
            broker,
            tmp_path,
            {"CHAIR_OUTBOX_RESEND_S": "1", "CHAIR_OUTBOX_RESEND_MAX_S": "2"},
        )
        event = await run_a_session(chair, observer)
        fields = check_record(event)
        sid = event["session_id"]
        outbox_seen: list[int | None] = []

        def resent_twice() -> list[Seen] | None:
            outbox_seen.append(chair.outbox())
            copies = observer.finished(sid)
            return copies if len(copies) >= 3 else None

        copies = await until(resent_twice, "two re-sends of the same record")
        assert set(outbox_seen) == {1}, outbox_seen  # kept all along
        assert chair.outbox() == 1
        for c in copies:
            assert c.payload["session_id"] == sid
            assert c.payload["record"] == event["record"]  # "a retry never changes the record"
        assert [s.payload for s in observer.finished()] == [
            s.payload for s in observer.finished(sid)
        ], "only one session finished"
        assert observer.on("ack") == []
        assert consumer.records == {}
        sent_while_away = len(observer.finished(sid))

        # c. the consumer comes back: stored once, acknowledged, the outbox empties
        await consumer.start()
        await until(lambda: chair.outbox() == 0, "an empty outbox")
        emptied_at = time.monotonic()
        assert set(consumer.records) == {(CHAIR, sid)}
        assert consumer.records[(CHAIR, sid)]["record"] == event["record"]
        # its persistent session kept what was sent while it was away
        await until(
            lambda: len(consumer.received) >= sent_while_away,
            "the copies queued in the consumer's session",
        )
        assert {(r.chair_id, r.session_id) for r in consumer.received} == {(CHAIR, sid)}
        # every copy, the first and the duplicates, acknowledged (docs/fleet-service.md: "or
        # found there already: a duplicate")
        await until(lambda: len(consumer.acks) == len(consumer.received), "every ack")
        assert set(consumer.acks) == {(CHAIR, sid)}

        # and the chair stops re-sending (a negative check: a few re-send periods of quiet)
        await asyncio.sleep(5.0)
        late = [c for c in observer.finished(sid) if c.at > emptied_at + 0.5]
        assert late == [], f"re-sent after the outbox emptied: {len(late)}"
        assert chair.outbox() == 0
        # what happened, for a reader (tmp_path/summary.json)
        all_copies = observer.finished(sid)
        summary = {
            "session_id": sid,
            "copies_while_nobody_acknowledged": sent_while_away,
            "copies_in_all": len(all_copies),
            "resend_gaps_s": [round(y.at - x.at, 2) for x, y in itertools.pairwise(all_copies)],
            "copies_identical": all(c.payload == all_copies[0].payload for c in all_copies),
            "received_by_consumer": len(consumer.received),
            "acks_published": len(consumer.acks),
            "acks_seen_on_wire": len(observer.on("ack")),
            **fields,
        }
        (tmp_path / "summary.json").write_text(json.dumps(summary, indent=1))
    finally:
        if chair is not None:
            stop_process(chair.proc)
        await consumer.stop()
    assert chair.proc.returncode == 0, chair.log_tail()
