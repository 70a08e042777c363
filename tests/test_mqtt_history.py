"""Users and session records over MQTT (docs/mqtt.md, "Users and session records"): `start`
{user}, the `users` action, the state's `user` and `history`, Home Assistant's user select, and
the `session_finished` record kept in the outbox until the broker's PUBACK — re-sent after a
broker crash, and after a crash of `chair serve` itself, so a subscriber listening throughout
gets every record at least once (exactly once after deduplication by `session_id`).

Real mosquitto, a real SQLite file in tmp_path; sessions in virtual time. The many-sessions test
runs 20 sessions through 5 broker crashes in `make test`; ``CHAIR_TEST_RECORD_SESSIONS=100`` runs
100 (25 crashes, about a minute).
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
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import pytest_asyncio

from chair.lifecycle import SessionState
from chair.mqtt.discovery import NOBODY
from chair.testing import TestingController
from core_rt.config import ChairConfig
from tests.mqtt_broker import Mosquitto, have_mosquitto, persistent_broker
from tests.mqtt_helpers import ChairFactory, Observer

pytest_plugins = ["tests.mqtt_fixtures"]
pytestmark = pytest.mark.broker

DISCOVERY = "homeassistant/device/massagechair_chair1/config"
RECORD_SESSIONS = int(os.environ.get("CHAIR_TEST_RECORD_SESSIONS", "20"))


async def until(cond: Callable[[], Any], timeout: float, what: str) -> None:
    """Wait until `cond()` holds (checked every 20 ms); fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.02)


def outbox_rows(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


class Listener:
    """A subscriber with a persistent session on a persistent broker: what is published while
    it or the broker is away is kept for it, so it hears everything, however the others crash."""

    def __init__(self, broker: Mosquitto, topic: str) -> None:
        self.broker, self.topic = broker, topic
        self.records: list[dict[str, Any]] = []
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Listener:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.subscribed.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.broker.host,
                    self.broker.port,
                    identifier="records-listener",
                    clean_session=False,
                    protocol=aiomqtt.ProtocolVersion.V311,
                ) as client:
                    await client.subscribe(self.topic, qos=1)
                    self.subscribed.set()
                    async for m in client.messages:
                        event = json.loads(bytes(m.payload))  # type: ignore[arg-type]
                        if event.get("event") == "session_finished":
                            self.records.append(event)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)  # the broker is down: try again

    def session_ids(self) -> set[str]:
        return {e["session_id"] for e in self.records}


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    """This module's broker (and so `chair_factory`'s) keeps sessions across a SIGKILL."""
    if not have_mosquitto():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    b = persistent_broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


@pytest_asyncio.fixture
async def db_controller(tmp_path: Path) -> AsyncIterator[TestingController]:
    ctl = TestingController.create(ChairConfig(), speed=3000, db=tmp_path / "chair.db")
    await ctl.open()
    ctl.serve()
    assert ctl.store is not None
    await ctl.store.add_user("Ann", {"intensity": 4, "heat": "low", "shoulder_offset_mm": 10})
    yield ctl
    await ctl.close()


async def test_users_start_record_and_outbox(
    chair_factory: ChairFactory, db_controller: TestingController, tmp_path: Path
) -> None:
    ctl = db_controller
    chair = await chair_factory(ctl=ctl)
    obs = chair.obs
    disc = (await obs.wait_for(DISCOVERY)).json()
    assert disc["cmps"]["user"]["options"] == [NOBODY, "Ann"]
    r = await obs.cmd("users")
    assert r["ok"] and [u["name"] for u in r["users"]] == ["Ann"]
    assert r["users"][0]["intensity"] == 4
    r = await obs.cmd("start", program="quick", minutes=5, user="Nobody")
    assert (r["ok"], r["error"]["code"]) == (False, "unknown_user")
    r = await obs.cmd("start", program="quick", minutes=5, user="bad/name")
    assert (r["ok"], r["error"]["code"]) == (False, "bad_field")

    # the preset user (Home Assistant's select) is whom a start naming none is for
    r = await obs.cmd("preset", user="Ann")
    assert r["ok"] and r["state"]["preset"]["user"] == "Ann"
    mark = obs.mark()
    r = await obs.cmd("start", program="quick", minutes=5)
    assert r["ok"], r
    assert r["state"]["user"] == "Ann" and r["state"]["history"] == {"on": True, "error": None}
    assert r["state"]["intensity"] == 4
    done = await obs.wait_for(
        "event", lambda m: m.json()["event"] == "session_finished", since=mark, timeout=30
    )
    ev = done.json()
    rec = ev["record"]
    assert "outbox_id" not in ev
    assert rec["session_id"] == ev["session_id"] == r["state"]["session_id"]
    assert (rec["user"], rec["outcome"], rec["program"], rec["intensity"]) == (
        "Ann", "completed", "quick", 4,
    )  # fmt: skip
    assert rec["started_at"] <= rec["ended_at"]
    # forgotten once the broker acknowledged it
    await until(lambda: outbox_rows(tmp_path / "chair.db") == 0, 10, "outbox emptied")
    r = await obs.cmd("preset", user="")
    assert r["ok"] and r["state"]["preset"]["user"] is None


async def test_broker_killed_as_the_session_finishes(
    broker: Mosquitto, chair_factory: ChairFactory, db_controller: TestingController,
    tmp_path: Path,
) -> None:  # fmt: skip
    ctl = db_controller
    topic = "massagechair/chair1/event"
    async with Listener(broker, topic) as listener:
        chair = await chair_factory(ctl=ctl)
        r = await chair.obs.cmd("start", program="quick", minutes=5)
        assert r["ok"], r
        session_id = r["state"]["session_id"]
        await ctl.advance_until(SessionState.SETTLING)
        broker.stop(kill=True)
        await until(lambda: not chair.bridge.connected.is_set(), 10, "the bridge saw it")
        ctl.release()
        await ctl.wait_session()
        assert outbox_rows(tmp_path / "chair.db") == 1  # kept: nobody acknowledged it
        broker.start()
        await until(lambda: session_id in listener.session_ids(), 20, "the record arrives")
        await until(lambda: outbox_rows(tmp_path / "chair.db") == 0, 10, "outbox emptied")
        assert listener.records[-1]["record"]["outcome"] == "completed"


async def test_many_sessions_through_broker_restarts_lose_no_record(
    broker: Mosquitto, chair_factory: ChairFactory, db_controller: TestingController,
    tmp_path: Path,
) -> None:  # fmt: skip
    n, every = RECORD_SESSIONS, 4
    ctl = db_controller
    async with Listener(broker, "massagechair/chair1/event") as listener:
        chair = await chair_factory(ctl=ctl)
        ids: list[str] = []
        for i in range(n):
            await until(lambda: ctl.state()["state"] == "idle" and ctl.session is None, 20, "idle")
            await ctl.start("quick", minutes=5)
            ids.append(ctl.state()["session_id"])
            await ctl.wait_session()
            if i % every == every - 1:  # the broker crashes as the session is being reported
                before = chair.bridge.connections
                broker.stop(kill=True)
                broker.start()
                # every crash is one the bridge recovers from before the next
                await until(lambda b=before: chair.bridge.connections > b, 20, "reconnected")
        await until(lambda: listener.session_ids() >= set(ids), 60, "every record arrives")
        assert listener.session_ids() == set(ids)  # exactly once after dedup by session_id
        await until(lambda: outbox_rows(tmp_path / "chair.db") == 0, 10, "outbox emptied")
        assert chair.bridge.connections >= 1 + n // every


def _serve(
    broker: Mosquitto, db: Path, speed: float, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """`chair serve` on `db`; its log (info) appended to `log` if given."""
    with contextlib.ExitStack() as files:
        err = subprocess.DEVNULL if log is None else files.enter_context(log.open("ab"))
        return subprocess.Popen(
            [sys.executable, "-m", "chair", "serve", "--broker", broker.url, "--db", str(db),
             "--speed", str(speed), "--no-discovery", "--log-level", "info"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "CHAIR_DB": str(db)},
        )  # fmt: skip


def _db(db: Path, sql: str) -> list[Any]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # not there yet
        return []


async def test_chair_serve_killed_before_the_ack_and_mid_session(
    broker: Mosquitto, tmp_path: Path
) -> None:
    db = tmp_path / "chair.db"
    log = tmp_path / "serve.log"
    base = "massagechair/chair1"
    procs: list[subprocess.Popen[bytes]] = []

    def kill(p: subprocess.Popen[bytes]) -> None:
        p.send_signal(signal.SIGKILL)
        p.wait(10)

    try:
        async with Listener(broker, f"{base}/event") as listener:
            # 1. the session finishes while the broker is down; the daemon is killed before
            # any broker acknowledged its record
            procs.append(_serve(broker, db, speed=300, log=log))
            async with Observer(broker.url, base) as obs:
                await obs.wait_for("availability", lambda m: m.payload == b"online", timeout=20)
                r = await obs.cmd("start", program="quick", minutes=5)
                assert r["ok"], r
                first = r["state"]["session_id"]
                broker.stop(kill=True)
            await until(
                lambda: (
                    _db(db, "SELECT COUNT(*) FROM outbox")[0][0] == 1
                    if _db(db, "SELECT COUNT(*) FROM outbox")
                    else False
                ),
                30,
                "the record is in the outbox",
            )
            kill(procs[-1])
            broker.start()
            # 2. restarted: the record goes out; a session is then cut off by SIGKILL
            procs.append(_serve(broker, db, speed=30, log=log))
            await until(lambda: first in listener.session_ids(), 30, "the first record")
            async with Observer(broker.url, base) as obs:
                r = await obs.cmd("start", program="quick", minutes=5, timeout=20)
                assert r["ok"], r
                second = r["state"]["session_id"]
                await obs.wait_for(
                    "event", lambda m: m.json()["event"] == "step_started", timeout=20
                )
            await until(
                lambda: bool(_db(db, "SELECT seconds_run FROM sessions WHERE ended_at IS NULL "
                                     "AND seconds_run > 0")),
                20, "the open record's progress",
            )  # fmt: skip
            kill(procs[-1])
            # 3. restarted: the cut-off session is closed as interrupted and reported
            procs.append(_serve(broker, db, speed=300, log=log))
            await until(lambda: second in listener.session_ids(), 30, "the interrupted record")
            got = {e["session_id"]: e["record"] for e in listener.records}
            said = log.read_text(errors="replace")[-4000:]  # the daemons' own account
            assert got[first]["outcome"] == "completed", (got[first], said)
            assert got[second]["outcome"] == "interrupted", (got[second], said)
            assert got[second]["seconds_run"] > 0, got[second]
            await until(lambda: _db(db, "SELECT COUNT(*) FROM outbox")[0][0] == 0, 10, "acked")
    finally:
        for p in procs:
            if p.poll() is None:
                kill(p)


def test_bench_store_quick(broker: Mosquitto, tmp_path: Path) -> None:
    from chair.bench.store import run

    scratch = tmp_path / "bench"
    scratch.mkdir()
    r = run(records=20, directory=scratch, broker_url=broker.url)
    assert r["records"] == 20 and r["directory"] == str(scratch)
    for name in ("record_begin", "record_close", "plain_insert", "outbox_round_trip",
                 "broker_puback"):  # fmt: skip
        assert 0 < r[f"{name}_p50_ms"] <= r[f"{name}_p99_ms"]
    assert not list(scratch.iterdir())  # its scratch files are gone


# ---- a chair in a fleet: the record stays until the service has it ----------------------------


def _finished(sid: str) -> Callable[[Any], bool]:
    def pred(m: Any) -> bool:
        doc = m.json()
        return bool(doc.get("event") == "session_finished" and doc.get("session_id") == sid)

    return pred


async def test_in_a_fleet_the_record_stays_until_the_service_acknowledges_it(
    chair_factory: ChairFactory, db_controller: TestingController, tmp_path: Path
) -> None:
    """``outbox_until = "service"`` (docs/mqtt.md): the broker's PUBACK does not end the record's
    stay in the outbox. It is sent again `outbox_resend_s` after its PUBACK, the wait doubling up
    to `outbox_resend_max_s`, until an acknowledgement on ``<base>/ack`` names its session;
    acknowledgements that are not one change nothing."""
    ctl, db = db_controller, tmp_path / "chair.db"
    chair = await chair_factory(
        ctl=ctl, outbox_until="service", outbox_resend_s=0.2, outbox_resend_max_s=0.4
    )
    obs = chair.obs
    mark = obs.mark()
    r = await obs.cmd("start", program="quick", minutes=5)
    assert r["ok"], r
    sid = r["state"]["session_id"]
    sends = [await obs.wait_for("event", _finished(sid), since=mark, timeout=30)]
    for _ in range(3):  # the same record again and again: 0.2 s, 0.4 s, 0.4 s (capped) apart
        since = obs.messages.index(sends[-1]) + 1
        sends.append(await obs.wait_for("event", _finished(sid), since=since, timeout=10))
    gaps = [b.t - a.t for a, b in itertools.pairwise(sends)]
    assert gaps[0] >= 0.2 - 0.02 and gaps[1] >= 0.4 - 0.02 and gaps[2] >= 0.4 - 0.02, gaps
    assert all(s.json() == sends[0].json() for s in sends)  # the same record, unchanged
    assert outbox_rows(db) == 1

    # what is not an acknowledgement of this session is ignored
    ack = f"{obs.base}/ack"
    for bad in (
        b"not json",
        b"[]",
        json.dumps({"session_id": 5}),
        json.dumps({"session_id": ""}),
        json.dumps({"session_id": "x" * 65}),
        json.dumps({"session_id": "someone-else-1"}),
        json.dumps({"session_id": sid, "pad": "x" * 1100}),  # over 1 KiB
        b"\xff\xfe",
    ):
        await obs.publish(ack, bad)
    since = obs.mark()
    await obs.wait_for("event", _finished(sid), since=since, timeout=10)  # still sent again
    assert outbox_rows(db) == 1 and chair.bridge.acks == 0
    assert ctl.state()["state"] == "idle"  # nothing else changed either

    await obs.publish(ack, json.dumps({"session_id": sid, "service": "a"}))
    await until(lambda: outbox_rows(db) == 0, 10, "the acknowledged record forgotten")
    await until(lambda: chair.bridge.acks == 1, 10, "the bridge counted it")
    assert chair.bridge._unconfirmed == {}  # nothing left to send again
    await obs.publish(ack, json.dumps({"session_id": sid}))  # a second ack: nothing to forget
    r = await obs.cmd("status")  # (the ack before it is handled by now: one connection, in order)
    assert r["ok"] and chair.bridge.acks == 1


@pytest.mark.parametrize("outbox_until", ["broker", "service"])
async def test_a_record_the_broker_acknowledged_and_lost_in_a_crash(
    tmp_path: Path, chair_factory: ChairFactory, db_controller: TestingController,
    broker: Mosquitto, outbox_until: str,
) -> None:  # fmt: skip
    """A broker acknowledges a record before it has delivered or saved it: SIGKILLed before its
    next save, it comes back without it (docs/fleet-service.md measured 47 of 200). A chair that
    forgets the record at the PUBACK (``broker``) has lost it; a chair that keeps it until the
    service acknowledges it (``service``) sends it again after the reconnection."""
    # a persistent broker that saves only when it stops cleanly (autosave every hour)
    broker.stop()
    broker.conf.write_text(
        broker.conf.read_text()
        .replace("autosave_interval 1\n", "autosave_interval 3600\n")
        .replace("autosave_on_changes true", "autosave_on_changes false")
    )
    broker.start()
    consumer = "the-service"
    topic = "massagechair/chair1/event"

    def client() -> aiomqtt.Client:
        return aiomqtt.Client(
            broker.host, broker.port, identifier=consumer, clean_session=False,
            protocol=aiomqtt.ProtocolVersion.V311,
        )  # fmt: skip

    async with client() as c:  # the consumer's persistent session, then it goes away
        await c.subscribe(topic, qos=1)
    broker.stop()  # a clean stop saves that session
    broker.start()

    ctl = db_controller
    chair = await chair_factory(ctl=ctl, outbox_until=outbox_until, outbox_resend_s=3600.0,
                                outbox_resend_max_s=3600.0)  # fmt: skip
    r = await chair.obs.cmd("start", program="quick", minutes=5)
    assert r["ok"], r
    sid = r["state"]["session_id"]
    await ctl.wait_session()
    await chair.obs.wait_for("event", _finished(sid), timeout=30)  # the broker has it: PUBACK
    if outbox_until == "broker":
        await until(lambda: outbox_rows(tmp_path / "chair.db") == 0, 10, "forgotten at PUBACK")
    broker.stop(kill=True)  # before any save: what it held for the consumer is gone
    await until(lambda: not chair.bridge.connected.is_set(), 10, "the chair saw it")
    broker.start()
    await asyncio.wait_for(chair.bridge.connected.wait(), 20)

    got: list[dict[str, Any]] = []
    async with client() as c:
        await c.subscribe(topic, qos=1)
        marker = json.dumps({"event": "marker"})
        async with aiomqtt.Client(broker.host, broker.port) as other:
            # once the chair's resend (if any) is on its way, a marker behind it
            await asyncio.sleep(0)
            if outbox_until == "service":
                await until(lambda: chair.bridge._unconfirmed != {}, 10, "the record resent")
            await other.publish(topic, marker, qos=1)
        async with asyncio.timeout(20):
            async for m in c.messages:
                doc = json.loads(bytes(m.payload))  # type: ignore[arg-type]
                if doc.get("event") == "marker":
                    break
                got.append(doc)
    ids = [d.get("session_id") for d in got if d.get("event") == "session_finished"]
    if outbox_until == "broker":
        assert ids == [], ids  # lost: what the fleet's chairs must not do
        assert outbox_rows(tmp_path / "chair.db") == 0
    else:
        assert ids == [sid], ids
        assert outbox_rows(tmp_path / "chair.db") == 1  # until the service says it has it
