"""`chair fleet-sim` (docs/fleet-sim.md, docs/interfaces.md §7): N simulated chairs on one
machine, driven over MQTT as an operator drives a fleet, and measured.

The chairs live in a few worker processes (`chair.fleet.sim_worker`), each hosting its share in
one event loop, each chair served exactly as `chair serve` serves one. This process is the
operator: it starts sessions with `start` (an MQTT 5 request with a response topic, as
docs/mqtt.md says), asks each chair its `status` every so often, stops what still runs when the
time is up, and measures:

- every command's reply time (publish → the reply's arrival here), p50 and p99;
- the messages the chairs publish (their own count) and the messages that reach this process,
  per second;
- each worker's CPU time (its own `getrusage`, reported every second and at its exit);
- how far each chair's virtual clock trails the wall clock (the worst chair, every second): up to
  the pace's granularity is the design; a lag that grows means the machine is saturated.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import resource
import signal
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from chair.mqtt.reconnect import keep_connected
from chair.mqtt.settings import MqttSettings

log = logging.getLogger("chair.fleet.sim")

ROOT = Path(__file__).resolve().parents[2]
"""The checkout, for the workers' PYTHONPATH (as `chair.bench.board_process` does)."""

REPLY_TIMEOUT_S = 30.0
"""A command without a reply after this long counts as lost."""
CONNECT_TIMEOUT_S = 60.0
"""How long past its place in the connection ramp a chair may take to come online."""
WORKER_EXIT_S = 180.0
"""Longest wait for a worker to stop its chairs (each settles its session first) and exit."""
REPORT_S = 1.0
"""How often each worker reports its figures (and the operator samples the lag), s."""


@dataclass(frozen=True)
class FleetOptions:
    """What `chair fleet-sim` runs (docs/fleet-sim.md, Options)."""

    chairs: int
    minutes: float = 5.0
    """How long the fleet runs (wall minutes), sessions and all; then what runs is stopped."""
    workers: int = 0
    """Worker processes (0: the CPU count), never more than chairs."""
    program: str = "relax"
    session_minutes: float | None = None
    """Every session's length (None: the program's own)."""
    speed: float = 1.0
    pace_s: float = 0.2
    """A chair's clock runs in chunks of this much wall time (docs/fleet-sim.md, Time). 0.2 s
    wakes each chair half as often as 0.1 s; in alternating runs of 1000 chairs it cost less
    CPU and answered faster, but the benchmark's ladder did not confirm it (Benchmark, run 5)."""
    telemetry_hz: float = 1.0
    heartbeat_s: float = 30.0
    busy: float = 1.0
    """The share of chairs that run sessions (the rest idle, sending heartbeats)."""
    gap_s: float = 10.0
    """A busy chair's pause between sessions (±50 %)."""
    probe_s: float = 10.0
    """Each chair is asked its `status` about this often (0: never)."""
    ramp_s: float | None = None
    """The first sessions start spread over this (None: a quarter of the run, at most 60 s;
    `chair fleet-sim`'s default is a session's whole cycle)."""
    connect_ramp_s: float | None = None
    """The chairs start (and connect) spread over this (None: 20 ms a chair, at most 20 s)."""
    id_prefix: str = "sim-"
    seed: int = 0
    config_path: str | None = None
    state_dir: str | None = None
    identities: str | None = None
    """Each chair's own certificate and key here (`identity_files`); None: the broker
    options' credentials for every chair."""
    discovery: bool = False
    keep_telemetry: bool = False
    drain_s: float = 300.0
    """After the run, the longest wait for the stopped sessions to finish."""
    log_level: str = "warning"
    profile: str | None = None
    """Profile each worker (cProfile) into this path + ``.<worker>`` (docs/fleet-sim.md)."""

    @property
    def n_workers(self) -> int:
        return max(1, min(self.chairs, self.workers or os.cpu_count() or 1))

    @property
    def run_s(self) -> float:
        return self.minutes * 60.0

    @property
    def session_ramp_s(self) -> float:
        return self.ramp_s if self.ramp_s is not None else min(60.0, self.run_s / 4)

    @property
    def chair_ramp_s(self) -> float:
        if self.connect_ramp_s is not None:
            return self.connect_ramp_s
        return min(20.0, 0.02 * self.chairs)

    def chair_id(self, k: int) -> str:
        return f"{self.id_prefix}{k}"


def identity_files(directory: str | Path, chair_id: str) -> tuple[Path, Path]:
    """A chair's certificate and key as `chair provision CHAIR_ID --out DIR/CHAIR_ID` writes
    them (its default `--out` is the CA's ``chairs/CHAIR_ID``): ``DIR/<id>/<id>.crt``, ``.key``."""
    d = Path(directory) / chair_id
    return d / f"{chair_id}.crt", d / f"{chair_id}.key"


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile (nearest rank) of `values`, rounded to µs in ms; 0 when empty."""
    if not values:
        return 0.0
    s = sorted(values)
    return round(s[min(len(s) - 1, max(0, round(q * len(s)) - 1))], 3)


@dataclass
class _Worker:
    index: int
    proc: asyncio.subprocess.Process
    chairs: int
    report: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] | None = None
    reader: asyncio.Task[None] | None = None


@dataclass
class _Command:
    sent: float
    action: str
    ms: float | None = None
    ok: bool | None = None
    code: str | None = None


class FleetSim:
    """One run of the fleet: `await FleetSim(settings, options).run()` → the report (§7)."""

    def __init__(
        self,
        settings: MqttSettings,
        options: FleetOptions,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.opt = options
        self.progress = progress
        self.client_id = f"fleet-sim-{uuid.uuid4().hex[:8]}"
        self.prefix = settings.prefix
        self.ids = [options.chair_id(k) for k in range(options.chairs)]
        self.online: dict[str, asyncio.Event] = {}
        self.ever_online: set[str] = set()
        self.started: set[str] = set()
        self.finished: set[str] = set()
        self.completed = 0
        self.commands: list[_Command] = []
        self.lost = 0
        self.received = 0
        self.received_by_kind: Counter[str] = Counter()
        self.received_at_deadline = 0
        self.lag_max_ms = 0.0
        self.lag_chair: str | None = None
        self.lag_series: list[tuple[float, float]] = []
        self.workers: list[_Worker] = []
        self.phase = "starting"
        self._pending: dict[str, tuple[asyncio.Future[tuple[float, bytes]], _Command]] = {}
        self._finish: dict[str, asyncio.Future[None]] = {}
        self._sessions: dict[str, str] = {}
        """chair id → the session it runs now (from its `start` reply)."""
        self._seq = itertools.count(1)
        self._client: aiomqtt.Client | None = None
        """The operator's connection while it is up (None between connections)."""
        self._operator_up = asyncio.Event()
        self._closing = asyncio.Event()
        self.operator_connections = 0
        self._t0 = 0.0
        self._deadline = 0.0
        self._end_early = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- the run -----------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        self.online = {cid: asyncio.Event() for cid in self.ids}
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._interrupt)
                installed.append(sig)
        cpu0, children0 = _own_cpu(), _cpu(resource.RUSAGE_CHILDREN)
        s = self.settings
        link = asyncio.create_task(
            keep_connected(
                self._connection,
                stopping=self._closing,
                connected=self._operator_up,
                reconnect_min_s=s.reconnect_min_s,
                reconnect_max_s=s.reconnect_max_s,
                log=log,
            ),
            name="fleet-operator",
        )
        try:
            up = asyncio.create_task(self._operator_up.wait())
            await asyncio.wait({link, up}, return_when=asyncio.FIRST_COMPLETED)
            up.cancel()
            if link.done():
                link.result()  # the first connection failed: MqttError, before any chair starts
            report = await self._run()
        finally:
            self._closing.set()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError, TimeoutError):
                await asyncio.wait_for(link, 10.0)
            await self._kill_workers()
            for sig in installed:
                loop.remove_signal_handler(sig)
        report["driver_cpu_s"] = round(_own_cpu() - cpu0, 3)
        # the workers' CPU as the kernel counted it once they had exited and were waited for
        # (RUSAGE_CHILDREN); their own last reports when that is not to be had
        children = _cpu(resource.RUSAGE_CHILDREN) - children0
        report["workers_cpu_s_reported"] = report["cpu_s"]
        if children > 0:
            report["cpu_s"] = round(children, 3)
            hours = report["chairs"] * report["wall_s"] / 3600.0
            report["cpu_s_per_chair_hour"] = round(children / hours, 2)
        return report

    def _interrupt(self) -> None:
        """Ctrl-C: end the run now (sessions are stopped, chairs go offline); a second one
        ends it without waiting."""
        if self._end_early.is_set():
            for t in list(self._tasks):
                t.cancel()
            for w in self.workers:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.kill()
            return
        self._end_early.set()

    async def _run(self) -> dict[str, Any]:
        opt = self.opt
        self._t0 = time.monotonic()
        self._deadline = self._t0 + opt.run_s
        await self._start_workers()
        rng = random.Random(opt.seed)
        busy = set(rng.sample(self.ids, round(opt.busy * len(self.ids))))
        operators = [
            self._spawn(self._operate(k, cid in busy, random.Random(f"{opt.seed}/{cid}")))
            for k, cid in enumerate(self.ids)
        ]
        prober = self._spawn(self._probe())
        ticker = self._spawn(self._tick())
        self.phase = "running"
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._end_early.wait(), self._deadline - time.monotonic())
        self._deadline = min(self._deadline, time.monotonic())
        self.received_at_deadline = self.received
        published_at_deadline = sum(w.report.get("published", 0) for w in self.workers)
        self.phase = "stopping"
        prober.cancel()
        await asyncio.wait(operators, timeout=opt.drain_s + REPLY_TIMEOUT_S)
        for t in operators:
            t.cancel()
        self.phase = "closing"
        t_close = time.monotonic()
        await self._stop_workers()
        t_end = time.monotonic()
        ticker.cancel()
        return self._report(t_end, t_close, published_at_deadline)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- the workers ---------------------------------------------------------------------------

    async def _start_workers(self) -> None:
        opt = self.opt
        mqtt = self.settings.model_dump(mode="json", exclude={"password", "password_file"})
        if self.settings.password is not None:
            mqtt["password"] = self.settings.password.get_secret_value()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        n = opt.n_workers
        for w in range(n):
            mine = [(cid, opt.seed * 1_000_003 + k) for k, cid in enumerate(self.ids) if k % n == w]
            spec = {
                "worker": w,
                "chairs": mine,
                "mqtt": mqtt,
                "config": opt.config_path,
                "speed": opt.speed,
                "pace_s": opt.pace_s,
                "telemetry_hz": opt.telemetry_hz,
                "heartbeat_s": opt.heartbeat_s,
                "discovery": opt.discovery,
                "state_dir": opt.state_dir,
                "identities": opt.identities,
                "keep_telemetry": opt.keep_telemetry,
                "ramp_s": opt.chair_ramp_s,
                "report_s": REPORT_S,
                "log_level": opt.log_level,
                "profile": opt.profile,
            }
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "chair.fleet.sim_worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,  # a Ctrl-C is ours to handle: we stop them in order
            )
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(spec).encode() + b"\n")
            await proc.stdin.drain()
            worker = _Worker(w, proc, len(mine))
            worker.reader = asyncio.create_task(self._worker_lines(worker))
            self.workers.append(worker)

    async def _worker_lines(self, worker: _Worker) -> None:
        assert worker.proc.stdout is not None
        async for raw in worker.proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                log.warning("worker %d: %r", worker.index, raw[:200])
                continue
            worker.report = line
            if line.get("final"):
                worker.final = line
            elif self.phase in ("starting", "running", "stopping"):
                lag = float(line.get("lag_max_ms", 0.0))
                if lag > self.lag_max_ms:
                    self.lag_max_ms, self.lag_chair = lag, line.get("lag_chair")
        if worker.final is None:  # its chairs are gone: say so now, not only in the report
            code = await worker.proc.wait()
            log.error("worker %d exited (code %s) without its final report", worker.index, code)

    async def _stop_workers(self) -> None:
        for w in self.workers:
            if w.proc.stdin is not None and not w.proc.stdin.is_closing():
                with contextlib.suppress(ConnectionError):
                    w.proc.stdin.write(b"stop\n")
                    await w.proc.stdin.drain()
                w.proc.stdin.close()
        waits = [asyncio.create_task(w.proc.wait()) for w in self.workers]
        if waits:
            await asyncio.wait(waits, timeout=WORKER_EXIT_S)
        for w in self.workers:
            if w.reader is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(w.reader, 5.0)

    async def _kill_workers(self) -> None:
        for w in self.workers:
            if w.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.kill()
                await w.proc.wait()
            if w.reader is not None and not w.reader.done():
                w.reader.cancel()

    # ---- the operator ------------------------------------------------------------------------

    def _operator_client(self) -> aiomqtt.Client:
        s = self.settings
        client = aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password.get_secret_value() if s.password is not None else None,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=True,
            keepalive=s.keepalive_s,
            tls_context=s.ssl_context(),
            timeout=30.0,
            max_queued_incoming_messages=1_000_000,
            max_inflight_messages=10_000,
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )
        client.pending_calls_threshold = 1_000_000
        return client

    async def _connection(self, failures: int) -> float | None:
        """One connection of the operator's, from connect to loss (`keep_connected` makes the
        next): subscribed to every chair's topics, reading until the connection is lost or the
        run is over; how long it was up. The first one failing raises (a broker not to be
        reached ends the run before any chair starts); a later one lost is made again with the
        chairs' back-off: a broker restart costs the operator what was said while it was away
        (and the commands sent meanwhile, counted lost), not the run."""
        client = self._operator_client()
        up_since: float | None = None
        try:
            async with client:
                up_since = time.monotonic()
                options = SubscribeOptions(
                    qos=1, noLocal=True, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND
                )
                await client.subscribe(f"{self.prefix}/+/#", options=options)
                if self.operator_connections:
                    log.warning("the operator is back on the broker (after %d failures)", failures)
                self.operator_connections += 1
                self._client = client
                self._operator_up.set()
                reader = asyncio.create_task(self._read(client), name="fleet-read")
                closing = asyncio.create_task(self._closing.wait())
                try:
                    await asyncio.wait({reader, closing}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    self._client = None
                    self._operator_up.clear()
                    for task in (reader, closing):
                        task.cancel()
                    await asyncio.gather(reader, closing, return_exceptions=True)
                if reader.done() and not reader.cancelled() and reader.exception() is not None:
                    raise reader.exception()  # type: ignore[misc]
        except aiomqtt.MqttError as e:
            if not self.operator_connections:
                raise
            log.warning("the operator lost the broker (%s); connecting again", e)
        return None if up_since is None else time.monotonic() - up_since

    async def _read(self, client: aiomqtt.Client) -> None:
        cut = len(self.prefix) + 1
        async for msg in client.messages:
            now = time.monotonic()
            self.received += 1
            chair_id, _, kind = msg.topic.value[cut:].partition("/")
            self.received_by_kind[kind.split("/", 1)[0]] += 1
            if kind in ("telemetry", "state"):
                continue
            payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
            try:
                if kind == "availability":
                    self._availability(chair_id, payload)
                elif kind == "event":
                    self._event(chair_id, payload)
                elif kind == "reply" or kind.startswith("reply/"):
                    self._reply(msg, payload, now)
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                log.warning("%s: %s", msg.topic.value, e)

    def _availability(self, chair_id: str, payload: bytes) -> None:
        ev = self.online.get(chair_id)
        if ev is None:
            return
        if payload == b"online":
            self.ever_online.add(chair_id)
            ev.set()
        else:
            ev.clear()

    def _event(self, chair_id: str, payload: bytes) -> None:
        if chair_id not in self.online:
            return
        e = json.loads(payload)
        name, sid = e.get("event"), e.get("session_id")
        if name == "session_started" and sid:
            self.started.add(sid)
        elif name == "session_finished" and sid and sid not in self.finished:
            self.finished.add(sid)
            if e.get("completed"):
                self.completed += 1
            fut = self._finish.get(sid)
            if fut is not None and not fut.done():
                fut.set_result(None)

    def _reply(self, msg: aiomqtt.Message, payload: bytes, now: float) -> None:
        corr = getattr(msg.properties, "CorrelationData", None) if msg.properties else None
        key = bytes(corr).decode() if corr else json.loads(payload).get("id")
        entry = self._pending.pop(key, None) if isinstance(key, str) else None
        if entry is not None and not entry[0].done():
            entry[0].set_result((now, payload))

    async def command(self, chair_id: str, action: str, **fields: Any) -> dict[str, Any] | None:
        """Send one command as an operator does (MQTT 5, a response topic of ours, correlation
        data) and wait for its reply; None when none came (counted lost)."""
        client = self._client
        if client is None:  # between two connections of the operator's: lost, as on the wire
            self.lost += 1
            return None
        cmd_id = f"{self.client_id}-{next(self._seq)}"
        base = f"{self.prefix}/{chair_id}"
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = f"{base}/reply/{self.client_id}"
        props.CorrelationData = cmd_id.encode()
        payload = json.dumps({"id": cmd_id, "action": action, **fields})
        fut: asyncio.Future[tuple[float, bytes]] = asyncio.get_running_loop().create_future()
        record = _Command(time.monotonic(), action)
        self._pending[cmd_id] = (fut, record)
        try:
            await client.publish(f"{base}/cmd", payload, qos=1, properties=props)
            t, data = await asyncio.wait_for(fut, REPLY_TIMEOUT_S)
        except (TimeoutError, aiomqtt.MqttError):
            self.lost += 1
            return None
        finally:
            self._pending.pop(cmd_id, None)
        record.ms = (t - record.sent) * 1000.0
        reply: dict[str, Any] = json.loads(data)
        record.ok = bool(reply.get("ok"))
        record.code = None if record.ok else (reply.get("error") or {}).get("code")
        self.commands.append(record)
        return reply

    async def _until(self, fut: asyncio.Future[Any] | asyncio.Event, until: float) -> bool:
        """Wait for `fut` until the monotonic time `until`; whether it came."""
        try:
            async with asyncio.timeout_at(until):
                await (fut.wait() if isinstance(fut, asyncio.Event) else asyncio.shield(fut))
        except TimeoutError:
            return False
        return True

    async def _sleep_until(self, until: float) -> None:
        """Sleep until `until` or the end of the run, whichever comes first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(min(until, self._deadline)):
                await self._end_early.wait()

    def _running(self) -> bool:
        return time.monotonic() < self._deadline and not self._end_early.is_set()

    async def _operate(self, k: int, busy: bool, rng: random.Random) -> None:
        """One chair's operator: sessions back to back (a busy chair) while the run lasts, then
        a stop for the session still running, and its end awaited."""
        opt = self.opt
        chair_id = self.ids[k]
        due = self._t0 + opt.chair_ramp_s * k / max(len(self.ids), 1) + CONNECT_TIMEOUT_S
        if not await self._until(self.online[chair_id], max(due, self._deadline)):
            return
        if not busy:
            return
        await self._sleep_until(time.monotonic() + rng.uniform(0, opt.session_ramp_s))
        start: dict[str, Any] = {"program": opt.program}
        if opt.session_minutes is not None:
            start["minutes"] = opt.session_minutes
        sid: str | None = None
        while self._running():
            reply = await self.command(chair_id, "start", **start)
            if reply is None or not reply.get("ok"):
                await self._sleep_until(time.monotonic() + opt.gap_s)
                continue
            sid = reply["state"].get("session_id")
            if not sid:
                continue
            fut = self._finish.setdefault(sid, asyncio.get_running_loop().create_future())
            if sid in self.finished and not fut.done():
                fut.set_result(None)
            self._sessions[chair_id] = sid
            if not await self._until(fut, self._deadline):
                break  # the run is over with the session still under way
            sid = None
            await self._sleep_until(time.monotonic() + opt.gap_s * rng.uniform(0.5, 1.5))
        if sid is None or sid in self.finished:
            return
        # the end of the day: stop what still runs (spread over a few seconds, as people do)
        await asyncio.sleep(rng.uniform(0, min(5.0, 0.005 * len(self.ids))))
        if sid not in self.finished:
            await self.command(chair_id, "stop")
        await self._until(self._finish[sid], time.monotonic() + opt.drain_s)

    async def _probe(self) -> None:
        """Ask every chair its `status` about every `probe_s`, one chair after the other."""
        opt = self.opt
        if opt.probe_s <= 0:
            return
        interval = opt.probe_s / len(self.ids)
        next_t = time.monotonic()
        for chair_id in itertools.cycle(self.ids):
            next_t += interval
            delay = next_t - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:
                next_t = time.monotonic()  # fell behind: skip rather than burst
            if self.online[chair_id].is_set():
                self._spawn(self.command(chair_id, "status"))

    # ---- figures -----------------------------------------------------------------------------

    async def _tick(self) -> None:
        last_t, last_n = time.monotonic(), self.received
        last_cpu = 0.0
        while True:
            await asyncio.sleep(REPORT_S)
            now = time.monotonic()
            cpu = sum(w.report.get("cpu_s", 0.0) for w in self.workers)
            lag = max((w.report.get("lag_max_ms", 0.0) for w in self.workers), default=0.0)
            self.lag_series.append((now - self._t0, lag))
            if self.progress is not None:
                snap = self.snapshot()
                snap["msgs_per_s_now"] = round((self.received - last_n) / (now - last_t), 1)
                snap["workers_cpu_pct"] = round(100.0 * (cpu - last_cpu) / (now - last_t), 1)
                snap["lag_now_ms"] = lag
                self.progress(snap)
            last_t, last_n, last_cpu = now, self.received, cpu

    def snapshot(self) -> dict[str, Any]:
        """The run so far, for a progress display (reply times: the last 5000 commands)."""
        ms = [c.ms for c in self.commands[-5000:] if c.ms is not None]
        return {
            "phase": self.phase,
            "elapsed_s": round(time.monotonic() - self._t0, 1),
            "run_s": self.opt.run_s,
            "chairs": self.opt.chairs,
            "workers": len(self.workers),
            "created": sum(w.report.get("chairs", 0) for w in self.workers),
            "connected": len(self.ever_online),
            "online": sum(1 for e in self.online.values() if e.is_set()),
            "in_session": sum(w.report.get("in_session", 0) for w in self.workers),
            "sessions_started": len(self.started),
            "sessions_finished": len(self.finished),
            "commands": len(ms),
            "cmd_reply_p50_ms": percentile(ms, 0.50),
            "cmd_reply_p99_ms": percentile(ms, 0.99),
            "lag_max_ms": self.lag_max_ms,
            "cpu_s": round(sum(w.report.get("cpu_s", 0.0) for w in self.workers), 3),
        }

    def _report(self, t_end: float, t_close: float, published_at_deadline: int) -> dict[str, Any]:
        opt = self.opt
        run_s = max(1e-9, self._deadline - self._t0)
        ms = [c.ms for c in self.commands if c.ms is not None]
        by_action: dict[str, list[float]] = {}
        for c in self.commands:
            if c.ms is not None:
                by_action.setdefault(c.action, []).append(c.ms)
        refused = Counter(f"{c.action}:{c.code}" for c in self.commands if c.ok is False)
        finals = [w.final or w.report for w in self.workers]
        cpu_s = sum(float(f.get("cpu_s", 0.0)) for f in finals)
        wall_s = t_end - self._t0
        lags = [lag for _, lag in self.lag_series]
        half = len(lags) // 2
        return {
            "chairs": opt.chairs,
            "connected": len(self.ever_online),
            "sessions_started": len(self.started),
            "sessions_finished": len(self.finished),
            "msgs_per_s": round(self.received_at_deadline / run_s, 1),
            "cmd_reply_p50_ms": percentile(ms, 0.50),
            "cmd_reply_p99_ms": percentile(ms, 0.99),
            "cpu_s": round(cpu_s, 3),
            # ours (docs/fleet-sim.md, The report)
            "workers": len(self.workers),
            "minutes": round(run_s / 60.0, 3),
            "wall_s": round(wall_s, 1),
            "close_s": round(t_end - t_close, 1),
            "speed": opt.speed,
            "pace_ms": round(opt.pace_s * 1000.0, 1),
            "program": opt.program,
            "session_minutes": opt.session_minutes,
            "sessions_completed": self.completed,
            "commands": len(ms),
            "commands_lost": self.lost,
            "commands_refused": dict(sorted(refused.items())),
            "cmd_reply_ms_by_action": {
                a: {"n": len(v), "p50": percentile(v, 0.5), "p99": percentile(v, 0.99)}
                for a, v in sorted(by_action.items())
            },
            "msgs_published": int(sum(int(f.get("published", 0)) for f in finals)),
            "msgs_received": self.received,
            "msgs_published_per_s": round(published_at_deadline / run_s, 1),
            "msgs_received_by_topic": dict(sorted(self.received_by_kind.items())),
            "lag_max_ms": self.lag_max_ms,
            "lag_max_chair": self.lag_chair,
            "lag_max_ms_first_half": max(lags[:half], default=0.0),
            "lag_max_ms_second_half": max(lags[half:], default=0.0),
            "cpu_s_per_chair_hour": round(cpu_s / (opt.chairs * wall_s / 3600.0), 2),
            "worker_rss_mb": [f.get("rss_mb") for f in finals],
            "chairs_failed": int(sum(int(f.get("failed", 0)) for f in finals)),
        }


def _cpu(who: int) -> float:
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


def _own_cpu() -> float:
    return _cpu(resource.RUSAGE_SELF)
