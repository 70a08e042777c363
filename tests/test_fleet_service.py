"""The operator's service (docs/fleet-service.md, docs/interfaces.md §7): `chair fleet serve`,
`chair fleet start`, `chair fleet report`.

Real processes against a real mosquitto: three `chair serve` chairs (each its own chair id and
state directory, sessions in paced virtual time), two `chair fleet serve` instances on one
database sharing the subscription ``$share/fleet/...``, paid starts through `chair fleet start`
(and the function it runs), SIGKILLs. Both engines: a SQLite file, and a real PostgreSQL started
from the distribution's binaries (`tests/postgres_server.py`; skipped with the reason when it
cannot be started here). Every wait is on a message, a process or a database row, with a
generous ceiling.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import pytest_asyncio

from chair.cli import main
from chair.fleet.records import SCHEMA_VERSION, Records, RecordsError
from chair.fleet.service import SHARE_GROUP, mqtt_client, start_session
from chair.mqtt.settings import MqttSettings
from tests.mqtt_broker import Mosquitto, have_mosquitto
from tests.postgres_server import PostgresServer, why_not

pytestmark = [pytest.mark.broker]

CHAIRS = ("chair1", "chair2", "chair3")
SPEED = "600"  # simulated seconds per second: a 5-minute session in about half a second
FLEET = "massagechair-fleet"
ENGINES = ("sqlite", "postgresql")


async def until(cond: Callable[[], Any], timeout: float, what: str) -> None:
    """Wait until `cond()` (sync or async) holds, checked every 50 ms; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.05)


def stop_processes(procs: Iterable[subprocess.Popen[bytes]], timeout_s: float) -> None:
    """SIGTERM to every one still running (they stop together), then each is waited for up to
    `timeout_s`, and killed after that."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAIR_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


# ---- the broker, the chairs, PostgreSQL (one of each for the module) --------------------------


@dataclass
class Fleet:
    broker: Mosquitto
    dir: Path
    chairs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def chair_db(self, chair_id: str) -> Path:
        return self.dir / chair_id / "chair.db"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    if not have_mosquitto():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    d = tmp_path_factory.mktemp("fleet")
    broker = Mosquitto(d / "broker")
    broker.start()
    f = Fleet(broker, d)
    try:
        for chair_id in CHAIRS:
            state = d / chair_id
            state.mkdir()
            log = (state / "serve.log").open("wb")
            f.chairs[chair_id] = subprocess.Popen(
                [sys.executable, "-m", "chair", "serve", "--broker", broker.url,
                 "--chair-id", chair_id, "--db", str(f.chair_db(chair_id)), "--speed", SPEED,
                 "--telemetry-hz", "1", "--no-discovery", "--log-level", "warning",
                 "--outbox-until", "service"],
                stdout=log, stderr=subprocess.STDOUT,
                env=_child_env(XDG_STATE_HOME=str(state)),
            )  # fmt: skip
            log.close()
        yield f
    finally:
        stop_processes(f.chairs.values(), 20)
        broker.stop()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer | None]:
    """One PostgreSQL for the module, started on first use; None when it cannot be here."""
    reason = why_not()
    if reason is not None:
        yield None
        return
    server = PostgresServer()
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        server.stop()
        pytest.fail(f"PostgreSQL did not start: {e}")
    yield server
    server.stop()


@pytest_asyncio.fixture(params=ENGINES)
async def db(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresServer | None
) -> str:
    """A fresh database of each engine: a SQLite file, or a PostgreSQL database's URL."""
    if request.param == "sqlite":
        return str(tmp_path / "fleet.db")
    if postgres is None:
        pytest.skip(f"postgresql: {why_not()}")
    return await postgres.new_database()


# ---- a test client on the chairs' and the service's topics ------------------------------------


@dataclass
class Msg:
    topic: str
    payload: bytes
    t: float

    def json(self) -> Any:
        return json.loads(self.payload)


class Watcher:
    """Subscribed to every chair's events and availability and to the service's topics,
    recording all; sends commands as `chair remote` does."""

    def __init__(
        self, broker: Mosquitto | None = None, settings: MqttSettings | None = None
    ) -> None:
        """On `broker` without credentials, or as `settings` say (a TLS listener, say)."""
        if settings is None:
            assert broker is not None, "give a broker or settings"
            settings = MqttSettings(broker=broker.url)
        self.settings = settings
        self.messages: list[Msg] = []
        self._new = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watcher:
        self._client = self.settings.client(f"watcher-{uuid.uuid4().hex[:8]}")
        await self._client.__aenter__()
        for topic in ("massagechair/+/event", "massagechair/+/availability",
                      "massagechair/+/reply", f"{FLEET}/#"):  # fmt: skip
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
            self.messages.append(Msg(m.topic.value, payload, time.monotonic()))
            self._new.set()

    async def wait_for(
        self, pred: Callable[[Msg], bool], *, since: int = 0, timeout: float = 30.0, what: str
    ) -> Msg:
        deadline = time.monotonic() + timeout
        i = since
        while True:
            while i < len(self.messages):
                m = self.messages[i]
                i += 1
                with contextlib.suppress(ValueError, AttributeError):
                    if pred(m):
                        return m
            left = deadline - time.monotonic()
            assert left > 0, f"{what}: not within {timeout} s"
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), left)

    def mark(self) -> int:
        return len(self.messages)

    def events(self, name: str, since: int = 0) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for m in self.messages[since:]:
            if m.topic.startswith("massagechair/") and m.topic.endswith("/event"):
                ev = m.json()
                if ev.get("event") == name:
                    out.append((m.topic.split("/")[1], ev))
        return out

    def finished(self, since: int = 0) -> dict[str, tuple[str, dict[str, Any]]]:
        """session_id → (chair, session_finished event), deduplicated."""
        return {ev["session_id"]: (c, ev) for c, ev in self.events("session_finished", since)}

    async def wait_finished(self, session_ids: set[str], timeout: float = 30.0) -> None:
        await until(lambda: session_ids <= set(self.finished()), timeout, f"{session_ids} finished")

    async def wait_status(self, instance: str, status: str, since: int = 0) -> None:
        topic = f"{FLEET}/service/{SHARE_GROUP}/{instance}"
        await self.wait_for(
            lambda m: m.topic == topic and m.payload == status.encode(),
            since=since, what=f"instance {instance} {status}",
        )  # fmt: skip

    async def cmd(self, chair_id: str, action: str, **fields: Any) -> dict[str, Any]:
        assert self._client is not None
        cmd_id = uuid.uuid4().hex
        mark = self.mark()
        await self._client.publish(
            f"massagechair/{chair_id}/cmd",
            json.dumps({"id": cmd_id, "action": action, **fields}),
            qos=1,
        )
        msg = await self.wait_for(
            lambda m: m.topic == f"massagechair/{chair_id}/reply" and m.json()["id"] == cmd_id,
            since=mark, timeout=20, what=f"{chair_id} {action} reply",
        )  # fmt: skip
        return dict(msg.json())

    async def publish(self, topic: str, payload: bytes) -> None:
        assert self._client is not None
        await self._client.publish(topic, payload, qos=1)


@pytest_asyncio.fixture
async def watcher(fleet: Fleet) -> AsyncIterator[Watcher]:
    async with Watcher(fleet.broker) as w:
        yield w


async def chairs_online(w: Watcher) -> None:
    for chair_id in CHAIRS:  # retained: here at once when the chair is up
        topic = f"massagechair/{chair_id}/availability"

        def online(m: Msg, topic: str = topic) -> bool:
            return m.topic == topic and m.payload == b"online"

        await w.wait_for(online, timeout=60, what=f"{chair_id} online")


# ---- service instances --------------------------------------------------------------------------


class Services:
    """`chair fleet serve` processes on one database; their logs kept for the assertions."""

    def __init__(self, broker: Mosquitto, db: str, directory: Path, tag: str) -> None:
        self.broker, self.db, self.dir, self.tag = broker, db, directory, tag
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.names: set[str] = set()

    def name(self, short: str) -> str:
        return f"{self.tag}-{short}"

    def start(self, short: str) -> None:
        name = self.name(short)
        self.names.add(name)
        with (self.dir / f"service-{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "chair", "fleet", "serve", "--broker", self.broker.url,
                 "--db", self.db, "--instance", name, "--log-level", "info"],
                stdout=log, stderr=subprocess.STDOUT, env=_child_env(),
            )  # fmt: skip

    def log(self, short: str) -> str:
        path = self.dir / f"service-{self.name(short)}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(self.log(n.removeprefix(f"{self.tag}-")) for n in sorted(self.names))

    def kill(self, short: str) -> None:
        p = self.procs.pop(self.name(short))
        p.send_signal(signal.SIGKILL)
        p.wait(10)

    def stop(self, short: str) -> int:
        p = self.procs.pop(self.name(short))
        p.send_signal(signal.SIGTERM)
        return p.wait(20)

    def stop_all(self) -> None:
        for short in [n.removeprefix(f"{self.tag}-") for n in self.procs]:
            try:
                self.stop(short)
            except subprocess.TimeoutExpired:
                self.kill(short)

    async def forget(self) -> None:
        """Remove what the instances leave on the broker (their sessions and statuses), so the
        module's next test starts with a clean shared subscription."""
        settings = MqttSettings(broker=self.broker.url)
        for name in sorted(self.names):
            async with mqtt_client(settings, f"chair-fleet-{SHARE_GROUP}-{name}") as c:
                await c.publish(f"{FLEET}/service/{SHARE_GROUP}/{name}", b"", qos=1, retain=True)


@pytest_asyncio.fixture
async def services(fleet: Fleet, db: str, tmp_path: Path) -> AsyncIterator[Services]:
    tag = "sq" if not db.startswith("postgresql://") else "pg"
    s = Services(fleet.broker, db, tmp_path, tag)
    try:
        yield s
    finally:
        s.stop_all()
        await s.forget()
        print(s.logs())  # shown when the test failed


def cli_in_process(*args: str) -> tuple[int, str, str]:
    """`chair ARGS` through the console script's own `main` (in a thread of its own: it runs
    its own event loop; one at a time: stdout and stderr are redirected); exit code, stdout,
    stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(args))
        except SystemExit as e:
            rc = int(e.code or 0)
    return rc, out.getvalue(), err.getvalue()


async def fleet_cli(*args: str) -> tuple[int, str, str]:
    """`chair fleet ARGS` as its own process."""
    p = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chair", "fleet", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=_child_env(),
    )  # fmt: skip
    out, err = await asyncio.wait_for(p.communicate(), 60)
    assert p.returncode is not None
    return p.returncode, out.decode(), err.decode()


async def session_ids(db: str) -> set[str]:
    records = await Records.open(db)
    try:
        return {r["session_id"] for r in await records.sessions()}
    finally:
        await records.close()


# ---- the whole service -------------------------------------------------------------------------


async def test_fleet_collects_every_session_once(
    fleet: Fleet, db: str, services: Services, watcher: Watcher
) -> None:
    w, broker = watcher, fleet.broker
    mqtt = MqttSettings(broker=broker.url)
    t0 = time.monotonic()

    def phase(what: str) -> None:  # where the time goes (shown with -s, or on failure)
        print(f"{time.monotonic() - t0:6.2f} s  {what}")

    mark = w.mark()
    services.start("a")
    services.start("b")
    await chairs_online(w)
    await w.wait_status(services.name("a"), "online", since=mark)
    await w.wait_status(services.name("b"), "online", since=mark)
    records = await Records.open(db)
    try:
        phase("chairs and service instances up")
        # 1. paid starts through `chair fleet start`: one as its own process, two through the
        # console script's `main` (a process costs seconds of start-up on a busy machine)
        start = ("quick", "--minutes", "5", "--broker", broker.url, "--db", db, "--json")

        def in_process() -> list[tuple[int, str, str]]:
            return [cli_in_process("fleet", "start", c, *start) for c in CHAIRS[1:]]

        one, rest = await asyncio.gather(
            fleet_cli("start", CHAIRS[0], *start), asyncio.to_thread(in_process)
        )
        orders = []
        for rc, out, err in [one, *rest]:
            assert rc == 0, err
            orders.append(json.loads(out))
        first = {o["session_id"] for o in orders}
        assert len(first) == 3 and all(o["status"] == "started" for o in orders)
        await w.wait_finished(first)
        await until(lambda: records_have(records, first), 30, "round 1 recorded")

        phase("round 1 recorded")
        # the chair re-sends a record after a reconnection: the same event twice, one row
        chair_id, event = w.finished()[sorted(first)[0]]
        for _ in range(2):
            await w.publish(f"massagechair/{chair_id}/event", json.dumps(event).encode())
        again = f"session {chair_id}/{event['session_id']} arrived again"
        await until(lambda: services.logs().count(again) == 2, 20, "both re-sends handled")
        assert await session_ids(db) == first

        phase("re-sent record deduplicated")
        # a refusal is reported with the chair's code, exit 1, and kept with the order
        rc, _, err = await asyncio.to_thread(
            cli_in_process, "fleet", "start", "chair1", "tickle", "--broker", broker.url,
            "--db", db, "--order-id", "o-bad",
        )  # fmt: skip
        assert rc == 1 and "(unknown_program)" in err and len(err.strip().splitlines()) == 1
        bad = await records.order("o-bad")
        assert bad is not None and (bad["status"], bad["error_code"]) == (
            "refused", "unknown_program",
        )  # fmt: skip

        phase("refusal")
        # 2. instance a killed mid-way: b records everything, what was left for a included
        mark = w.mark()
        second: set[str] = set()
        for c in CHAIRS:  # chair3's runs longer: it is e-stopped mid-way
            r = await start_session(mqtt, records, c, "quick", 20 if c == "chair3" else 5)
            assert r.ok and r.session_id is not None, r
            second.add(r.session_id)
        services.kill("a")
        estopped = r.session_id
        await w.wait_for(
            lambda m: m.topic == "massagechair/chair3/event"
            and m.json().get("event") == "step_started" and m.json()["session_id"] == estopped,
            since=mark, what="chair3 running",
        )  # fmt: skip
        busy = await start_session(mqtt, records, "chair3", "quick", 5)
        assert (busy.status, busy.error_code) == ("refused", "not_allowed")
        # an emergency stop on chair3: a fault the service alerts
        assert (await w.cmd("chair3", "estop"))["ok"]
        await w.wait_finished(second)
        assert (await w.cmd("chair3", "reset"))["ok"]
        await until(lambda: records_have(records, first | second), 30, "round 2 recorded")
        alert = await w.wait_for(
            lambda m: m.topic == f"{FLEET}/alert/chair3", since=mark, what="the estop alert"
        )
        assert {k: alert.json()[k] for k in ("alert", "chair_id", "session_id", "code")} == {
            "alert": "estop", "chair_id": "chair3", "session_id": estopped, "code": "estop",
        }  # fmt: skip
        # a's share: what the broker kept handing its dead session, recorded by b
        gone = re.compile(rf"instance {services.name('a')} is gone: recorded the (\d+) message")
        await until(lambda: gone.search(services.log("b")), 30, "b drained a's session")
        drained = gone.search(services.log("b"))
        assert drained is not None and int(drained[1]) >= 1, services.log("b")
        assert "ALERT chair chair3: estop" in services.logs()

        phase("round 2 recorded (instance a killed, drained by b)")
        # 3. every instance down: what a chair reports meanwhile waits for the service
        assert services.stop("b") == 0
        await w.wait_status(services.name("b"), "offline", since=mark)
        r3 = await start_session(mqtt, records, "chair2", "quick", 5)
        assert r3.ok and r3.session_id is not None
        third = {r3.session_id}
        await w.wait_finished(third)
        services.start("a")  # back: takes over b's session with the record
        await until(lambda: records_have(records, first | second | third), 30, "round 3 recorded")

        phase("round 3 recorded (all instances were down)")
        # every session once; the totals are the chairs' own
        recorded = await records.sessions()
        ids = first | second | third
        assert sorted(r["session_id"] for r in recorded) == sorted(ids)
        rows = {r["session_id"]: r for r in recorded}
        assert rows[estopped]["end_reason"] == "estop" and rows[estopped]["faults"] == 1
        faults = await records.faults()
        assert [(f["chair_id"], f["session_id"], f["code"]) for f in faults] == [
            ("chair3", estopped, "estop")
        ]
        assert faults[0]["alerted_at"] is not None
        started = [o for o in await records.orders() if o["status"] == "started"]
        assert {o["session_id"] for o in started} == ids
    finally:
        await records.close()

    rc, out, err = await asyncio.to_thread(cli_in_process, "fleet", "report", "--json", "--db", db)
    assert rc == 0, err
    report = json.loads(out)
    expected = await chairs_own_totals(fleet, ids)
    assert report == expected, (report, expected)
    assert report["sessions"] == 7 and report["faults"] == 1 and report["chairs"] == 3
    phase("report matches the chairs' own history")

    # the chairs keep each record until the service acknowledges it (--outbox-until service):
    # every one of them was, so no outbox holds anything
    def outboxes() -> dict[str, int]:
        out = {}
        for chair_id in CHAIRS:
            uri = f"file:{fleet.chair_db(chair_id)}?mode=ro"
            with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as conn:
                out[chair_id] = int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        return out

    deadline = time.monotonic() + 30
    while any(outboxes().values()):
        assert time.monotonic() < deadline, f"records never acknowledged: {outboxes()}"
        await asyncio.sleep(0.1)
    phase("every chair's outbox empty: the service acknowledged each record")
    print("chair fleet report --json:", json.dumps(report))


async def records_have(records: Records, ids: set[str]) -> bool:
    return ids <= {r["session_id"] for r in await records.sessions()}


async def chairs_own_totals(fleet: Fleet, ids: set[str]) -> dict[str, Any]:
    """The report the chairs' own `chair history --json` makes for these sessions."""
    by: dict[str, dict[str, Any]] = {}
    for chair_id in CHAIRS:
        rc, out, err = await asyncio.to_thread(
            cli_in_process, "history", "--json", "--db", str(fleet.chair_db(chair_id))
        )
        assert rc == 0, err
        mine = [r for r in json.loads(out) if r["session_id"] in ids]
        by[chair_id] = {
            "sessions": len(mine),
            "minutes": round(sum(r["minutes_run"] for r in mine), 3),
            "faults": sum(len(r["faults"]) for r in mine),
        }
    return {
        "chairs": len(by),
        "sessions": sum(c["sessions"] for c in by.values()),
        "minutes": round(sum(c["minutes"] for c in by.values()), 3),
        "faults": sum(c["faults"] for c in by.values()),
        "by_chair": by,
    }


# ---- the database alone -------------------------------------------------------------------------


def _finished(session_id: str, *, faults: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "event": "session_finished", "session_id": session_id, "t": 330.0,
        "completed": not faults, "end_reason": "estop" if faults else "completed",
        "summary": None,
        "record": {"session_id": session_id, "user": None, "program": "quick",
                   "minutes_planned": 5.0, "seconds_run": 150.0, "faults": faults or [],
                   "outcome": "estop" if faults else "completed", "safety_ok": True},
    }  # fmt: skip


async def test_same_record_twice_is_one_row(db: str) -> None:
    """Two service instances racing on the same record (each its own connection): one row,
    counted once; its fault once, alerted until marked."""
    a, b = await Records.open(db), await Records.open(db)
    try:
        ev = _finished("s-1", faults=[{"code": "estop", "t": 12.0, "message": "emergency stop"}])
        got = await asyncio.gather(*(r.record_session("c1", ev) for r in (a, b, a, b)))
        assert sorted(g.new for g in got if g is not None) == [False, False, False, True]
        fault = got[0].to_alert[0] if got[0] is not None else None
        assert fault is not None and fault.code == "estop"
        # the live estop event names the same fault: no second row
        assert [
            f.id for f in await b.record_fault("c1", {"event": "estop", "session_id": "s-1"})
        ] == [fault.id]
        await a.alerted(fault.id)
        assert await b.record_fault("c1", {"event": "estop", "session_id": "s-1"}) == []
        # the same session id from another chair is another session
        assert (await a.record_session("c2", _finished("s-1"))).new  # type: ignore[union-attr]
        report = await b.report()
        assert report == {
            "chairs": 2, "sessions": 2, "minutes": 5.0, "faults": 1,
            "by_chair": {"c1": {"sessions": 1, "minutes": 2.5, "faults": 1},
                         "c2": {"sessions": 1, "minutes": 2.5, "faults": 0}},
        }  # fmt: skip
        assert await a.record_session("c1", {"event": "session_finished"}) is None
    finally:
        await a.close()
        await b.close()


async def test_migrations_from_version_1(db: str) -> None:
    """A database made by migration 1 alone is brought up to date at open, its records kept;
    a newer database is refused rather than guessed at."""
    old = await Records.open(db, upto=1)
    try:
        assert await old.version() == 1
        assert (await old.record_session("c1", _finished("old-1"))).new  # type: ignore[union-attr]
        await old.saw_chair("c2", availability="online")
    finally:
        await old.close()
    new = await Records.open(db)
    try:
        assert await new.version() == SCHEMA_VERSION == 2
        assert [r["session_id"] for r in await new.sessions()] == ["old-1"]
        assert await new.add_order("o-1", "c1", "quick", 5.0)  # v2's table
        await new.finish_order("o-1", "started", session_id="new-1")
        assert (await new.order("o-1") or {})["status"] == "started"
        faults = await new.record_fault("c2", {"event": "fault", "code": "stall", "message": "m"})
        assert [f.code for f in faults] == ["stall"]  # v2's alerted_at column
        assert (await new.report())["chairs"] == 2
        await new._db.transaction([("UPDATE schema_version SET version = ?", (99,))])
    finally:
        await new.close()
    with pytest.raises(RecordsError, match="schema version 99 is newer"):
        await Records.open(db)


def test_clear_one_line_errors(tmp_path: Path) -> None:
    """Bad URLs and an unreachable database: one line, exit 1 (no traceback)."""
    from tests.mqtt_broker import free_port

    port = free_port()  # nothing listens there
    cases = [
        (("fleet", "report", "--db", "mysql://u:secret@host/db"), "use a file path"),
        (("fleet", "serve", "--broker", "http://x:1", "--db", str(tmp_path / "f.db")),
         "use mqtt://host:port"),
        (("fleet", "report", "--db", f"postgresql://fleet:secret@127.0.0.1:{port}/x"),
         "cannot connect"),
        (("fleet", "serve", "--db", f"postgresql://fleet@127.0.0.1:{port}/x"), "cannot connect"),
        (("fleet", "start", "bad/id", "quick", "--db", str(tmp_path / "f.db")), "chair id"),
        (("fleet", "serve", "--instance", "two words"), "instance"),
        (("fleet", "report", "--db", str(tmp_path)), "database"),
    ]  # fmt: skip
    for args, words in cases:
        rc, out, err = cli_in_process(*args)
        assert rc == 1, (args, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], (args, err)
        assert "secret" not in err and "Traceback" not in err
    rc, out, err = cli_in_process("fleet", "report", "--db", str(tmp_path / "empty.db"))
    assert (rc, err) == (0, "") and out.startswith("0 chair(s), 0 session(s)")
