"""The fleet's proof at scale (docs/fleet-service.md, How it is tested; docs/fleet.md, The
service on a listener of its own; docs/interfaces.md §7): every session of 200 chairs recorded
exactly once through a broker crash, a service instance's crash, a network cut and a chair's
crash.

Everything is real: `chair provision` issues a certificate per chair from the fleet's CA and the
service's certificates from a second CA; mosquitto runs the two-listener configuration of
docs/fleet.md as it stands there (paths and ports changed; persistence, logging and one ACL user
for the load tester's operator added), TLS on both listeners; PostgreSQL from the distribution's
binaries (`tests/postgres_server.py`; SQLite instead when it cannot be started here, said in the
output). The chairs: `chair fleet-sim` hosts all but two in two worker processes, each chair with
its own certificate and database; two more are `chair serve` processes, one behind a TCP relay
that the test cuts for 30 s, one SIGKILLed mid-session and started again. Two `chair fleet serve`
instances collect the records; the sessions are paid starts (`start_session`, what `chair fleet
start` runs: MQTT 5 request/response) on the service's listener.

The order of events: every chair online; the cut chair's session started and the cut begun; the
chair to be killed started; every other chair started; the killed chair SIGKILLed once its
program runs, and started again; the broker SIGKILLed and started again (its persistence file
brings the service's sessions back); instance b SIGKILLed once it is back, and drained by
instance a through the service's listener; the cut lifted after 30 s. Then every session must be
in the database exactly once by (chair, session_id), the killed chair's closed ``interrupted``,
the cut chair's finished during the cut and received after it. Each phase's time is printed.

`CHAIR_TEST_FLEET_PROOF_CHAIRS` (default 200) sets the fleet's size, for a quick look with fewer.
Every wait is on a message, a process, a log line or a database row, with a generous ceiling;
the one timed wait is the cut itself.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import getpass
import io
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from chair.fleet.records import Records
from chair.fleet.service import start_session
from chair.mqtt.settings import MqttSettings
from chair.store import Store
from tests.mqtt_broker import LOGGING, MOSQUITTO, free_port, have_mosquitto
from tests.postgres_server import PostgresServer, why_not
from tests.test_fleet_identity import doc_block
from tests.test_fleet_service import Watcher, _child_env, stop_processes, until

pytestmark = [pytest.mark.broker]  # not serial: tests/conftest.py, HEAVY_FILES
# It keeps both cores busy for most of a minute. In `make test` it runs first in the CPU-bound
# part (tests/conftest.py, HEAVY_FILES), never beside the HIL tests, at the tests' own priority:
# niced, it got so little of the cores beside two busy workers that a chair answered a paid start
# "timeout" after its 10 s (a CI run on a fresh clone; its other waits have generous ceilings).

ROOT = Path(__file__).resolve().parents[1]
CHAIRS = int(os.environ.get("CHAIR_TEST_FLEET_PROOF_CHAIRS", "200"))
PREFIX = "p-"
CUT_CHAIR, KILLED_CHAIR = "p-cut", "p-kill"
"""The two chairs served by `chair serve` (the rest, p-0 ..., by `chair fleet-sim`)."""
INSTANCES = ("fleet-a", "fleet-b")
OPERATOR = "fleet-sim"
"""The load tester's operator: a certificate of the fleet's CA, an ACL user of its own."""
FLEET_SPEED = "4"
"""The fleet-sim chairs' virtual time: a session (half a minute of program, the scan, the adjust
window and settling: about 100 s) in about 25 s."""
ALONE_SPEED = "10"
"""The two `chair serve` chairs': the cut chair's session ends well within the cut."""
CUT_S = 30.0
SESSION_MINUTES = 0.5
STARTS_AT_ONCE = 20
START_SPREAD_S = 15.0
QUEUED_AT_THE_CRASH = 10
"""Records the broker has acknowledged to their chairs and holds for the frozen service when it
is SIGKILLed: most of them arrived within its last second, so not saved (autosave every 1 s)."""
"""The fleet's paid starts are spread over this: 198 body scans at once would swamp two cores."""
FLEET = "massagechair-fleet"


# ---- identities --------------------------------------------------------------------------------


def provision(ca: Path, chairs: list[str], services: list[str]) -> None:
    """`chair provision` for every chair and service identity, and the broker's certificate
    (its own entry point, in this thread; its lines kept out of the test's output)."""
    from chair.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        argvs = [[c, "--ca", str(ca)] for c in chairs]
        argvs += [[s, "--service", "--ca", str(ca)] for s in services]
        argvs.append(["--broker", "localhost", "--ca", str(ca)])
        for argv in argvs:
            assert main(["provision", *argv]) == 0, out.getvalue()[-2000:]


def service_files(ca: Path, name: str) -> list[str]:
    d = ca / "services" / name
    return ["--ca-file", str(d / "ca.crt"), "--cert-file", str(d / f"{name}.crt"),
            "--key-file", str(d / f"{name}.key")]  # fmt: skip


def chair_files(ca: Path, name: str) -> list[str]:
    d = ca / "chairs" / name
    return ["--ca-file", str(ca / "ca.crt"), "--cert-file", str(d / f"{name}.crt"),
            "--key-file", str(d / f"{name}.key")]  # fmt: skip


def service_settings(ca: Path, name: str, url: str) -> MqttSettings:
    d = ca / "services" / name
    return MqttSettings(
        broker=url, ca_file=d / "ca.crt", cert_file=d / f"{name}.crt", key_file=d / f"{name}.key"
    )


# ---- the broker of docs/fleet.md (two listeners) -----------------------------------------------


class TwoListenerBroker:
    """mosquitto with docs/fleet.md's two-listener blocks, persistent (autosaved every second),
    on two free loopback ports that stay the same across a SIGKILL and a restart."""

    def __init__(self, directory: Path, fleet_ca: Path, service_ca: Path) -> None:
        self.dir = directory
        etc, state = directory / "etc", directory / "state"
        (etc / "service").mkdir(parents=True)
        state.mkdir()
        for ca, to in ((fleet_ca, etc), (service_ca, etc / "service")):
            for name in ("ca.crt", "server.crt", "server.key"):
                shutil.copyfile(ca / "broker" / name, to / name)
            shutil.copyfile(ca / "crl.pem", to / "crl.pem")
        self.chair_port, self.service_port = free_port(), free_port()
        conf = (
            doc_block("# /etc/mosquitto/conf.d/fleet-two-listeners.conf")
            .replace("/etc/mosquitto/fleet/", f"{etc}/")
            .replace("\nlistener 8883\n", f"\nlistener {self.chair_port} 127.0.0.1\n")
            .replace("\nlistener 8884\n", f"\nlistener {self.service_port} 127.0.0.1\n")
        )
        settings = [x for x in conf.splitlines() if not x.startswith("#")]
        assert not any("/etc/mosquitto" in x or x in ("listener 8883", "listener 8884")
                       for x in settings), conf  # fmt: skip
        # the load tester's operator reads every chair and commands any (no part of a deployment)
        operator = f"\nuser {OPERATOR}\ntopic read massagechair/#\ntopic write massagechair/+/cmd\n"
        (etc / "chairs.acl").write_text(doc_block("# /etc/mosquitto/fleet/chairs.acl") + operator)
        (etc / "service.acl").write_text(doc_block("# /etc/mosquitto/fleet/service.acl"))
        test_only = [
            "persistence true",
            f"persistence_location {state}/",
            "autosave_interval 1",
            f"user {getpass.getuser()}",  # as root: no drop to a user who cannot read our files
            *LOGGING,
        ]
        self.conf = directory / "mosquitto.conf"
        self.conf.write_text("\n".join(test_only) + "\n" + conf)
        self.log = directory / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def chair_url(self) -> str:
        return f"mqtts://127.0.0.1:{self.chair_port}"

    @property
    def service_url(self) -> str:
        return f"mqtts://127.0.0.1:{self.service_port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        for port in (self.chair_port, self.service_port):
            while True:
                assert self.proc.poll() is None, self.log_tail()
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                    break
                assert time.monotonic() < deadline, f"mosquitto on {port}: {self.log_tail()}"
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: what it had not saved (at most a second's changes) is gone, as in a crash."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


# ---- a network cut ------------------------------------------------------------------------------


class CutRelay:
    """A TCP relay between one chair and the broker. `cut()` stops it forwarding either way, as
    a pulled cable does: connections stay open, what is sent waits (in the relay and the
    sockets' buffers), new connections get nowhere; `mend()` lets it all through again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.forwarding = asyncio.Event()
        self.forwarding.set()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        self.forwarding.clear()

    def mend(self) -> None:
        self.forwarding.set()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.forwarding.wait()
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        for r, w in ((reader, up_w), (up_r, writer)):
            task = asyncio.create_task(self._pump(r, w))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self.forwarding.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(ConnectionError, OSError):
                await self.forwarding.wait()
                writer.close()

    async def close(self) -> None:
        self.forwarding.set()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


# ---- processes ----------------------------------------------------------------------------------


class Procs:
    """The test's child processes by name, each logging to its own file."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], stdout: int | None = None) -> None:
        with (self.dir / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "chair", *argv],
                stdout=stdout if stdout is not None else log,
                stderr=log,
                env=_child_env(PYTHONPATH=str(ROOT)),
                cwd=ROOT,
            )

    def signal(self, name: str, signum: int) -> None:
        self.procs[name].send_signal(signum)

    def kill(self, name: str) -> None:
        p = self.procs.pop(name)
        p.send_signal(signal.SIGKILL)
        p.wait(10)

    def log(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        stop_processes(self.procs.values(), 60)
        self.procs.clear()


def online(w: Watcher) -> set[str]:
    """The chairs whose last availability the watcher heard is ``online``."""
    last: dict[str, bytes] = {}
    for m in w.messages:
        if m.topic.startswith("massagechair/") and m.topic.endswith("/availability"):
            last[m.topic.split("/")[1]] = m.payload
    return {c for c, p in last.items() if p == b"online"}


def utc(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def postgres_or_sqlite(tmp_path: Path) -> Iterator[tuple[PostgresServer | None, str]]:
    """A PostgreSQL when one can be started here (its server; the database is made later),
    else a SQLite file, saying why."""
    reason = why_not()
    if reason is not None:
        print(f"PostgreSQL: {reason}; the records go to SQLite instead")
        yield None, str(tmp_path / "fleet.db")
        return
    server = PostgresServer()
    try:
        yield server, ""
    finally:
        server.stop()


# ---- the proof ----------------------------------------------------------------------------------


async def test_every_session_of_a_fleet_recorded_once_through_crashes_and_a_cut(
    tmp_path: Path, postgres_or_sqlite: tuple[PostgresServer | None, str]
) -> None:
    if not have_mosquitto():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    assert CHAIRS >= 4, "CHAIR_TEST_FLEET_PROOF_CHAIRS: at least 4"
    t0 = time.monotonic()

    def phase(what: str) -> None:
        print(f"{time.monotonic() - t0:6.1f} s  {what}", flush=True)

    fleet_ids = [f"{PREFIX}{k}" for k in range(CHAIRS - 2)]
    chair_ids = [*fleet_ids, CUT_CHAIR, KILLED_CHAIR]
    fleet_ca, service_ca = tmp_path / "fleet-ca", tmp_path / "service-ca"
    server, db = postgres_or_sqlite

    async def database() -> str:
        if server is None:
            return db
        await asyncio.to_thread(server.start)
        return await server.new_database()

    # 1. identities (two CAs) and the database, side by side
    _, db = await asyncio.gather(
        asyncio.to_thread(
            lambda: (
                provision(fleet_ca, chair_ids, [OPERATOR]),
                provision(service_ca, [], [*INSTANCES, "payments", "watcher"]),
            )
        ),
        database(),
    )
    engine = "PostgreSQL" if db.startswith("postgresql://") else "SQLite"
    phase(f"provisioned {CHAIRS} chairs and 5 services (two CAs); {engine} ready")

    broker = TwoListenerBroker(tmp_path / "broker", fleet_ca, service_ca)
    relay = CutRelay(broker.chair_port)
    procs = Procs(tmp_path)
    records: Records | None = None
    short = tmp_path / "short.toml"
    short.write_text(f"[session]\nmin_minutes = {SESSION_MINUTES}\n")
    state = tmp_path / "chairs"
    state.mkdir()

    def serve_chair(chair_id: str, url: str) -> None:
        procs.start(chair_id, [
            "--config", str(short), "serve", "--broker", url, "--chair-id", chair_id,
            *chair_files(fleet_ca, chair_id), "--db", str(state / f"{chair_id}.db"),
            "--speed", ALONE_SPEED, "--telemetry-hz", "1", "--no-discovery",
            "--log-level", "warning", "--outbox-until", "service",
        ])  # fmt: skip

    def serve_instance(name: str) -> None:
        procs.start(name, [
            "fleet", "serve", "--broker", broker.service_url, *service_files(service_ca, name),
            "--db", db, "--instance", name, "--log-level", "info",
        ])  # fmt: skip

    watch = service_settings(service_ca, "watcher", broker.service_url)
    payments = service_settings(service_ca, "payments", broker.service_url)
    try:
        broker.start()
        await relay.start()
        records = await Records.open(db)
        for name in INSTANCES:
            serve_instance(name)
        procs.start("fleet-sim", [
            "--config", str(short), "fleet-sim", "--chairs", str(len(fleet_ids)),
            "--id-prefix", PREFIX, "--workers", "2", "--minutes", "30", "--busy", "0",
            "--probe-s", "0", "--speed", FLEET_SPEED, "--state-dir", str(state),
            "--outbox-until", "service",
            "--identities", str(fleet_ca / "chairs"), "--broker", broker.chair_url,
            *service_files(fleet_ca, OPERATOR), "--json",
        ], stdout=subprocess.PIPE)  # fmt: skip
        serve_chair(CUT_CHAIR, f"mqtts://127.0.0.1:{relay.port}")
        serve_chair(KILLED_CHAIR, broker.chair_url)

        async with Watcher(settings=watch) as w:
            await until(lambda: online(w) >= set(chair_ids), 120, "every chair online")
            for name in INSTANCES:
                await w.wait_status(name, "online")
            phase(f"{CHAIRS} chairs online ({len(fleet_ids)} in chair fleet-sim), 2 instances")

            # 2. paid starts: the cut chair's first, then the cut; the killed chair; the rest
            orders: dict[str, str] = {}

            async def paid_start(chair_id: str) -> None:
                r = await start_session(
                    payments, records, chair_id, "manual", SESSION_MINUTES, timeout_s=60
                )
                assert r.ok and r.session_id, (chair_id, r)
                orders[chair_id] = r.session_id

            await paid_start(CUT_CHAIR)
            relay.cut()
            cut_from = time.time()
            phase(f"{CUT_CHAIR}'s session started; its network cut for {CUT_S:g} s")
            await paid_start(KILLED_CHAIR)

            async def start_the_fleet() -> None:
                """The rest, spread evenly over `START_SPREAD_S` (their body scans, a session's
                costliest minute, spread with them), at most `STARTS_AT_ONCE` under way."""
                gate = asyncio.Semaphore(STARTS_AT_ONCE)
                t_first = time.monotonic()

                async def one(k: int, chair_id: str) -> None:
                    due = t_first + START_SPREAD_S * k / len(fleet_ids)
                    await asyncio.sleep(max(0.0, due - time.monotonic()))  # its turn
                    async with gate:
                        await paid_start(chair_id)

                await asyncio.gather(*(one(k, c) for k, c in enumerate(fleet_ids)))

            async def kill_mid_session() -> None:
                """The killed chair, SIGKILLed once its program runs, and started again."""
                sid = orders[KILLED_CHAIR]
                await w.wait_for(
                    lambda m: m.topic == f"massagechair/{KILLED_CHAIR}/event"
                    and m.json().get("event") == "step_started"
                    and m.json().get("session_id") == sid,
                    timeout=60, what=f"{KILLED_CHAIR}'s program running",
                )  # fmt: skip
                procs.kill(KILLED_CHAIR)
                serve_chair(KILLED_CHAIR, broker.chair_url)
                phase(f"{KILLED_CHAIR} SIGKILLed mid-session, started again")

            # 3. the fleet's starts, and meanwhile the chair killed mid-session
            await asyncio.gather(start_the_fleet(), kill_mid_session())
            phase(f"{len(orders)} sessions started by the service (paid starts, MQTT 5)")

        # 4. the broker crashes and comes back (its last second's changes lost) while the
        # chairs' records stream in and the service is behind: once a quarter are recorded, both
        # instances are frozen (SIGSTOP, as on a host that stalls), the next records pile up in
        # the broker (each acknowledged to its chair with a PUBACK, none delivered), and the
        # broker dies with the last of them not yet saved
        async def a_quarter_recorded() -> bool:
            return len(await records.sessions()) >= len(orders) // 4

        await until(a_quarter_recorded, 120, "a quarter of the sessions recorded")
        async with Watcher(settings=watch) as w:
            mark = w.mark()
            for name in INSTANCES:
                procs.signal(name, signal.SIGSTOP)

            def queued() -> int:
                return sum(
                    m.topic.endswith("/event") and b'"session_finished"' in m.payload
                    for m in w.messages[mark:]
                )

            await until(lambda: queued() >= QUEUED_AT_THE_CRASH, 60, "records queued")
            killed_at = time.time()
            broker.kill()
        broker.start()
        for name in INSTANCES:
            procs.signal(name, signal.SIGCONT)
        phase(f"broker SIGKILLed with {queued()} records queued for the frozen service, back")

        def connections(name: str) -> int:
            return procs.log(name).count(f"as instance {name} ")

        await until(lambda: all(connections(n) >= 2 for n in INSTANCES), 60, "both instances back")
        phase("both instances reconnected")

        # 5. instance b crashes; a drains what the broker kept handing b's session
        procs.kill("fleet-b")
        drained = "instance fleet-b is gone: recorded the "
        await until(lambda: drained in procs.log("fleet-a"), 60, "fleet-a drained fleet-b")
        phase("fleet-b SIGKILLed, drained by fleet-a")

        # 6. the cut lasts its 30 s (the one timed wait: the cut's length is the experiment's)
        await asyncio.sleep(max(0.0, cut_from + CUT_S - time.time()))
        relay.mend()
        cut_to = time.time()
        phase(f"{CUT_CHAIR}'s network back")

        expected = {(c, sid) for c, sid in orders.items()}

        async def recorded() -> set[tuple[str, str]]:
            return {(r["chair_id"], r["session_id"]) for r in await records.sessions()}

        def acknowledged() -> bool:
            """Every chair's session closed and its outbox empty: the service has acknowledged
            every record (--outbox-until service: the broker's PUBACK is not enough)."""
            for chair_id in chair_ids:
                with contextlib.closing(sqlite3.connect(state / f"{chair_id}.db")) as db_:
                    open_ = db_.execute("SELECT COUNT(*) FROM sessions WHERE ended_at IS NULL")
                    queued = db_.execute("SELECT COUNT(*) FROM outbox")
                    if open_.fetchone()[0] or queued.fetchone()[0]:
                        return False
            return True

        with contextlib.suppress(AssertionError):
            await until(lambda: asyncio.to_thread(acknowledged), 180, "records acknowledged")
        missing = sorted(expected - await recorded())
        assert not missing, (
            f"{len(missing)} of {len(expected)} sessions never reached the service (the broker "
            f"was SIGKILLed at {killed_at:.1f}): {missing[:20]}"
        )
        assert await asyncio.to_thread(acknowledged), "recorded, yet a chair keeps a record"
        phase("every chair's record acknowledged by the service (outboxes empty)")
        phase(f"all {len(expected)} sessions recorded")

        # 7. exactly once: the rows are the sessions started, one each
        rows = await records.sessions()
        keys = [(r["chair_id"], r["session_id"]) for r in rows]
        assert len(keys) == len(set(keys)) == len(expected) == CHAIRS, collections.Counter(keys)
        assert set(keys) == expected
        by_chair = {r["chair_id"]: r for r in rows}
        outcomes = collections.Counter(r["outcome"] for r in rows)
        print("outcomes:", dict(outcomes))
        assert by_chair[KILLED_CHAIR]["outcome"] == "interrupted", by_chair[KILLED_CHAIR]
        assert by_chair[KILLED_CHAIR]["end_reason"] == "interrupted"
        others = [r for c, r in by_chair.items() if c != KILLED_CHAIR]
        assert all(r["outcome"] == "completed" for r in others), [
            (r["chair_id"], r["outcome"], r["end_reason"]) for r in others
            if r["outcome"] != "completed"
        ]  # fmt: skip
        cut = by_chair[CUT_CHAIR]
        assert cut_from < utc(cut["ended_at"]) < cut_to, (cut, cut_from, cut_to)
        assert utc(cut["received_at"]) >= cut_to - 0.01, (cut, cut_to)
        assert all(o["status"] == "started" for o in await records.orders())
        logs = procs.log("fleet-a") + procs.log("fleet-b")
        assert "draining is off" not in logs, logs[-3000:]
        n_drained = int(procs.log("fleet-a").split(drained)[1].split()[0])
        assert n_drained >= 1, procs.log("fleet-a")[-3000:]
        print(
            f"{CUT_CHAIR}: ended {utc(cut['ended_at']) - cut_from:.1f} s into the cut, received "
            f"{utc(cut['received_at']) - cut_to:.1f} s after it; fleet-a drained {n_drained} "
            f"message(s) of fleet-b's; duplicates handled: "
            f"{logs.count('arrived again: already recorded')}"
        )

        # 8. the fleet stops: every fleet-sim chair settles and says offline
        sim = procs.procs.pop("fleet-sim")
        sim.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(asyncio.to_thread(sim.communicate), 180)
        report: dict[str, Any] = json.loads(out)
        print("chair fleet-sim:", json.dumps({k: report[k] for k in (
            "chairs", "connected", "chairs_failed", "cpu_s", "cpu_s_per_chair_hour",
            "lag_max_ms", "wall_s", "close_s")}))  # fmt: skip
        assert report["connected"] == report["chairs"] == len(fleet_ids)
        assert report["chairs_failed"] == 0
        procs.stop_all()  # the two `chair serve` chairs and the instance left
        phase("fleet-sim and the rest stopped")

        # 9. the chairs' own records say the same, and none holds an event unacknowledged
        own: dict[str, tuple[str, str]] = {}
        for chair_id in chair_ids:
            store = await Store.open(state / f"{chair_id}.db")
            try:
                history = await store.history()
                assert len(history) == 1, (chair_id, history)
                own[chair_id] = (history[0]["session_id"], history[0]["outcome"])
                topic = f"massagechair/{chair_id}/event"
                assert await store.outbox(topic) == [], (chair_id, await store.outbox(topic))
            finally:
                await store.close()
        assert own == {c: (r["session_id"], r["outcome"]) for c, r in by_chair.items()}
        phase(f"the {CHAIRS} chairs' own records are the service's; their outboxes empty")
    finally:
        if records is not None:
            await records.close()
        procs.stop_all()
        await relay.close()
        broker.stop()
        for name in ("fleet-a", "fleet-b", "fleet-sim"):
            print(f"---- {name} (last lines)\n" + "\n".join(procs.log(name).splitlines()[-15:]))
