"""One worker process of `chair fleet-sim` (docs/fleet-sim.md): many simulated chairs in one
asyncio event loop, each served exactly as `chair serve` serves one (`chair.cli.serve.serve_chair`):
its own `Controller` (core, plant, session), `CommandDesk` and `MqttBridge` with its own chair id,
client id and last will. The chairs' clocks are virtual time paced to the wall clock with a
coarse granularity (`CoreDriver(pace_granularity_s=...)`), so a chair costs what its ticks cost.

The fleet-sim process starts it as ``python -m chair.fleet.sim_worker`` and talks over pipes:

- stdin, first line: the spec (JSON, `WorkerSpec`); then ``stop`` (or end of file) stops every
  chair as SIGTERM stops `chair serve` (a session in progress settles, ``offline`` goes out);
- stdout: one JSON line every `report_s` (`WorkerReport`), and a last one with ``"final": true``.

SIGINT is ignored: a Ctrl-C in the terminal reaches the fleet-sim process, which stops its
workers in order. Logs go to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import logging
import random
import resource
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chair.fleet.sim import REPORT_S, FleetOptions, identity_files
from chair.lifecycle import MOVING

log = logging.getLogger("chair.fleet.sim")


class WorkerSpec(BaseModel):
    """What one worker runs (sent by the fleet-sim process as the first line of stdin)."""

    model_config = ConfigDict(extra="forbid")

    worker: int = 0
    chairs: list[tuple[str, int]]
    """(chair id, seed) of every chair this worker hosts."""
    mqtt: dict[str, Any]
    """`MqttSettings` fields shared by the chairs (the password in clear: a pipe, not argv)."""
    config: str | None = None
    """The chair config (TOML) path; None: the reference chair."""
    speed: float = Field(default=FleetOptions.speed, gt=0)
    pace_s: float = Field(default=FleetOptions.pace_s, gt=0, le=1.0)
    idle_step_s: float = Field(default=1.0, gt=0, le=10.0)
    """Between sessions a chair reads its state afresh this often (`chair serve`: 0.1 s);
    commands and core events still wake it at once."""
    telemetry_hz: float = Field(default=FleetOptions.telemetry_hz, ge=0, le=100)
    heartbeat_s: float = Field(default=FleetOptions.heartbeat_s, ge=0, le=60)
    discovery: bool = FleetOptions.discovery
    state_dir: str | None = None
    identities: str | None = None
    """Each chair's own certificate and key here (`chair.fleet.sim.identity_files`), and no
    user name or password: the broker options' are the operator's."""
    keep_telemetry: bool = FleetOptions.keep_telemetry
    ramp_s: float = Field(default=0.0, ge=0)
    """The chairs start evenly spread over this many seconds."""
    report_s: float = Field(default=REPORT_S, gt=0)
    log_level: str = FleetOptions.log_level
    profile: str | None = None
    """Profile the worker (cProfile) and write its statistics to this path + ``.<worker>``."""


@dataclass
class SimChair:
    """One chair of the worker: its controller, its bridge (once made), its serving task."""

    chair_id: str
    controller: Any
    bridge: Any = None
    task: asyncio.Task[int] | None = None
    error: str | None = None


@dataclass
class Worker:
    spec: WorkerSpec
    chairs: list[SimChair] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    failed: int = 0

    async def start_chairs(self) -> None:
        """Start the chairs, evenly spread over the ramp (connections, first announcements)."""
        from chair.cli.serve import serve_chair
        from chair.controller import Controller
        from chair.mqtt.settings import MqttSettings
        from core_rt.config import load_config

        spec = self.spec
        config = load_config(spec.config)
        n = len(spec.chairs)
        t0 = time.monotonic()
        for i, (chair_id, seed) in enumerate(spec.chairs):
            if self.stop.is_set():
                return
            due = t0 + spec.ramp_s * i / max(n, 1)
            if due > time.monotonic():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), due - time.monotonic())
                if self.stop.is_set():
                    return
            rng = random.Random(seed)
            body = config.body
            db = None if spec.state_dir is None else Path(spec.state_dir) / f"{chair_id}.db"
            own: dict[str, Any] = {}
            if spec.identities is not None:
                cert, key = identity_files(spec.identities, chair_id)
                own = {"cert_file": cert, "key_file": key, "username": None, "password": None}
            try:
                settings = MqttSettings.model_validate(
                    {
                        **spec.mqtt,
                        **own,
                        "chair_id": chair_id,
                        "client_id": None,
                        "telemetry_hz": spec.telemetry_hz,
                        "state_interval_s": spec.heartbeat_s,
                        "discovery": spec.discovery,
                    }
                )
                controller = Controller.create(
                    config,
                    hardware="sim",
                    speed=spec.speed,
                    seed=seed,
                    body_height_cm=round(rng.uniform(body.height_min_cm, body.height_max_cm), 1),
                    db=db,
                    pace_granularity_s=spec.pace_s,
                    keep_telemetry=spec.keep_telemetry,
                )
            except ValueError as e:
                log.error("chair %s: %s", chair_id, e)
                self.failed += 1
                continue
            controller.idle_step_ns = round(spec.idle_step_s * 1e9)
            chair = SimChair(chair_id, controller)

            def made(bridge: Any, chair: SimChair = chair) -> None:
                chair.bridge = bridge

            chair.task = asyncio.create_task(
                serve_chair(
                    controller, settings, config, stop=self.stop, signals=False, on_bridge=made
                ),
                name=f"chair-{chair_id}",
            )
            chair.task.add_done_callback(functools.partial(self._ended, chair))
            self.chairs.append(chair)

    def _ended(self, chair: SimChair, task: asyncio.Task[int]) -> None:
        if task.cancelled() or (self.stop.is_set() and task.exception() is None):
            return
        e = task.exception()
        chair.error = "ended" if e is None else f"{type(e).__name__}: {e}"
        self.failed += 1
        log.error("chair %s stopped serving: %s", chair.chair_id, chair.error)

    def report(self, final: bool = False) -> dict[str, Any]:
        """This worker's figures now; the lag window restarts."""
        lag_ns, lag_chair = 0, None
        in_session = 0
        for c in self.chairs:
            driver = c.controller.driver
            lag = max(driver.stats.lag_max_ns, driver.lag_ns())
            driver.stats.lag_max_ns = 0
            if lag > lag_ns:
                lag_ns, lag_chair = lag, c.chair_id
            if c.controller.state_name in MOVING:
                in_session += 1
        ru = resource.getrusage(resource.RUSAGE_SELF)
        bridges = [c.bridge for c in self.chairs if c.bridge is not None]
        return {
            "worker": self.spec.worker,
            "t": time.time(),
            "chairs": len(self.chairs),
            "failed": self.failed,
            "connected": sum(1 for b in bridges if b.connected.is_set()),
            "published": sum(b.published for b in bridges),
            "in_session": in_session,
            "lag_max_ms": round(lag_ns / self.spec.speed / 1e6, 1),
            "lag_chair": lag_chair,
            "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
            "rss_mb": round(ru.ru_maxrss / 1024, 1),
            "final": final,
        }

    async def close(self, timeout_s: float) -> None:
        """Stop every chair (a session settles, ``offline`` goes out) and wait for them."""
        self.stop.set()
        tasks = [c.task for c in self.chairs if c.task is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for t in pending:
            t.cancel()
        if pending:
            log.warning("%d chair(s) did not stop within %g s", len(pending), timeout_s)
            await asyncio.wait(pending, timeout=10)


def _emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def run(spec: WorkerSpec, commands: asyncio.StreamReader) -> int:
    """Serve the spec's chairs until ``stop`` (or the end of `commands`); report meanwhile."""
    worker = Worker(spec)

    async def listen() -> None:
        while True:
            line = await commands.readline()
            if not line or line.strip() == b"stop":
                worker.stop.set()
                return

    async def reports() -> None:
        while not worker.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.stop.wait(), spec.report_s)
            if not worker.stop.is_set():
                _emit(worker.report())

    listener = asyncio.create_task(listen())
    reporter = asyncio.create_task(reports())
    try:
        await worker.start_chairs()
        await worker.stop.wait()
    finally:
        from chair.cli.serve import SETTLE_TIMEOUT_S

        await worker.close(SETTLE_TIMEOUT_S + 30.0)
        for t in (listener, reporter):
            t.cancel()
        await asyncio.gather(listener, reporter, return_exceptions=True)
    _emit(worker.report(final=True))
    return 0


def _quiet_closed_sockets(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """aiomqtt asks the loop to watch a socket for writing from paho's callback; when hundreds
    of chairs disconnect at once, some of those requests run after their socket has closed
    (EBADF): nothing is lost, so say it at debug level; anything else as asyncio would."""
    exc = context.get("exception")
    handle = repr(context.get("handle"))
    if isinstance(exc, OSError) and exc.errno == errno.EBADF and "add_writer" in handle:
        log.debug("a write watch on a closed socket: %s", exc)
        return
    loop.default_exception_handler(context)


async def _main() -> int:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_quiet_closed_sockets)
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    line = await stdin.readline()
    if not line:
        return 1
    spec = WorkerSpec.model_validate_json(line)
    logging.basicConfig(
        level=spec.log_level.upper(),
        format=f"%(asctime)s %(levelname)s worker {spec.worker} %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if spec.profile is None:
        return await run(spec, stdin)
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        return await run(spec, stdin)
    finally:
        profiler.disable()
        profiler.dump_stats(f"{spec.profile}.{spec.worker}")


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the fleet-sim process stops us in order
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # a socket and an eventfd a chair
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return asyncio.run(_main())


if __name__ == "__main__":
    raise SystemExit(main())
