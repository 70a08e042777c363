"""The seam between asyncio and the real-time core: pacing, heartbeats, events and telemetry.

Three pacings run the very same tick code (`core_rt.core.Core`):

- ``fast``: virtual time, as fast as possible (`Core.run_until` in chunks);
- ``paced``: virtual time kept at ``speed`` × the wall clock (``--speed 60`` = a minute a second);
- ``realtime``: the core's native thread on absolute CLOCK_MONOTONIC deadlines; asyncio is woken
  through the core's eventfd (`loop.add_reader`), never by polling.

`CoreDriver.advance(until_ns)` returns as soon as the core has reached ``until_ns``, the core has
events for us, or someone called `interrupt()`. The driver feeds the core's controller watchdog:
in virtual time at least every ``heartbeat_ms`` of core time, in real time from its own task.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from core_rt.config import ChairConfig
from core_rt.core import Core, CoreEvent, Telemetry

Pacing = Literal["fast", "paced", "realtime"]
PACE_GRANULARITY_S = 0.002
"""Shortest wall-clock sleep of the paced clock: at high speeds it runs the core in chunks of
at least this much wall time rather than spinning tick by tick. A driver may be given a coarser
one (`CoreDriver(pace_granularity_s=...)`): `chair fleet-sim` runs hundreds of chairs in one
event loop and wakes each every 100 ms, not every 2 ms; the core still runs every tick of the
virtual time, and a command still interrupts the sleep at once (docs/fleet-sim.md)."""
YIELD_EVERY_CHUNKS = 64
"""A virtual-time run gives the event loop a turn at least every this many chunks of ticks."""


@dataclass
class DriverStats:
    advances: int = 0
    chunks: int = 0
    lag_max_ns: int = 0
    """Paced: the most core time owed to the wall clock when the driver took the core up (the
    sleep's granularity plus any lateness of the event loop); whoever reads it may reset it."""


def keep_off_rt_cpu(config: ChairConfig) -> None:
    """Move the calling thread (and the threads it starts later) off the real-time loop's CPU,
    so the daemon's own work (MQTT, JSON, asyncio) never competes with the tick for it."""
    import os

    cpu = config.loop.rt_cpu_resolved()
    others = set(os.sched_getaffinity(0)) - {cpu}
    if cpu >= 0 and others:
        os.sched_setaffinity(0, others)


class CoreDriver:
    """Runs one `Core` in one pacing and hands its events and telemetry to the session."""

    def __init__(
        self,
        core: Core,
        config: ChairConfig,
        pacing: Pacing = "fast",
        speed: float = 60.0,
        rt_priority: int | None = None,
        pace_granularity_s: float = PACE_GRANULARITY_S,
    ) -> None:
        if pacing == "paced" and not (0 < speed <= 1e6):
            raise ValueError(f"speed must be in (0, 1e6], got {speed}")
        if not 0 < pace_granularity_s <= 1.0:
            raise ValueError(f"pace_granularity_s must be in (0, 1], got {pace_granularity_s}")
        self.core = core
        self.config = config
        self.pacing: Pacing = pacing
        self.speed = speed
        self.pace_granularity_s = pace_granularity_s
        self.rt_priority = rt_priority or config.loop.rt_priority
        self.heartbeat_ns = int(config.loop.heartbeat_ms * 1e6)
        self.period_ns = core.period_ns
        self.stats = DriverStats()
        self.telemetry_sinks: list[Callable[[list[Telemetry]], None]] = []
        self._wake = asyncio.Event()
        self._hb_task: asyncio.Task[None] | None = None
        self._reader = False
        self._pace_origin: tuple[float, int] | None = None
        self._timers: list[tuple[int, int, Callable[[], None]]] = []
        self._timer_seq = 0
        self.loop_outcome: dict[str, Any] = {}

    # ---- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self.pacing == "realtime":
            self.loop_outcome = self.core.start_realtime(
                self.rt_priority, self.config.loop.rt_cpu_resolved()
            )
            loop = asyncio.get_running_loop()
            loop.add_reader(self.core.fileno(), self._on_eventfd)
            self._reader = True
            self._hb_task = asyncio.create_task(self._heartbeat(), name="core-heartbeat")
        self.core.heartbeat()

    async def close(self) -> None:
        if self._hb_task is not None:
            self._hb_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._hb_task
            self._hb_task = None
        if self._reader:
            asyncio.get_running_loop().remove_reader(self.core.fileno())
            self._reader = False
        if self.core.realtime:
            self.core.stop_realtime()
        self._deliver()

    async def _heartbeat(self) -> None:
        period = self.config.loop.heartbeat_ms / 1000.0
        while True:
            self.core.heartbeat()
            self._deliver_telemetry()
            await asyncio.sleep(period)

    def _on_eventfd(self) -> None:
        self.core.clear_wakeup()
        self._wake.set()

    # ---- time ------------------------------------------------------------------------------

    def now_ns(self) -> int:
        """Core time now (ns)."""
        return int(self.core.core_time_ns())

    def call_at(self, t_ns: int, fn: Callable[[], None]) -> None:
        """Call `fn` when core time reaches `t_ns` (virtual time: exactly at that tick).
        Used to script requests at given session times (tests, `--fault estop@60s`)."""
        import heapq

        self._timer_seq += 1
        heapq.heappush(self._timers, (t_ns, self._timer_seq, fn))
        self.interrupt()

    def _fire_timers(self) -> bool:
        import heapq

        fired = False
        now = self.now_ns()
        while self._timers and self._timers[0][0] <= now:
            _, _, fn = heapq.heappop(self._timers)
            fn()
            fired = True
        return fired

    def interrupt(self) -> None:
        """Make a pending `advance` return now (a command arrived)."""
        self._wake.set()

    async def advance(self, until_ns: int) -> list[CoreEvent]:
        """Run the core towards `until_ns`; return its events (maybe none) when it gets there,
        when it has events, or when interrupted."""
        self.stats.advances += 1
        if self.pacing == "realtime":
            return await self._advance_realtime(until_ns)
        return await self._advance_virtual(until_ns)

    async def _advance_virtual(self, until_ns: int) -> list[CoreEvent]:
        core = self.core
        while True:
            now = core.now_ns
            if now >= until_ns:
                return self._deliver()
            target = min(until_ns, now + self.heartbeat_ns)
            if self._timers:
                target = min(target, max(self._timers[0][0], now + 1))
            if self.pacing == "paced":
                limit = self._clock_limit_ns()
                if limit - now > self.stats.lag_max_ns:
                    self.stats.lag_max_ns = limit - now
                target = min(target, limit)
                if target <= now:
                    # the next tick is not due yet: sleep until it is, or until interrupted
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._due_in_s(now)):  # never eats a cancel
                            await self._wake.wait()
                    if self._wake.is_set():
                        self._wake.clear()
                        return self._deliver()
                    continue
            core.heartbeat()
            core.run_until(target)
            self.stats.chunks += 1
            events = self._deliver()
            if self._timers and self._fire_timers():
                self._wake.clear()
                return events
            if events:
                return events
            if self.pacing == "paced" and self._wake.is_set():
                self._wake.clear()
                return events
            if self.stats.chunks % YIELD_EVERY_CHUNKS == 0:
                # let other tasks breathe: in a fast run, and in a paced one that has fallen
                # behind its clock (a loaded machine), which would otherwise never wait
                await asyncio.sleep(0)

    # ---- the paced clock -------------------------------------------------------------------

    def _clock_limit_ns(self) -> int:
        """How far core time may run now: `speed` × the wall time since the pace was anchored."""
        wall = time.monotonic()
        if self._pace_origin is None:
            self._pace_origin = (wall, self.core.now_ns)
        w0, c0 = self._pace_origin
        return c0 + int((wall - w0) * self.speed * 1e9)

    def _due_in_s(self, now_ns: int) -> float | None:
        """Wall seconds until the tick after `now_ns` is due, at least the pace's granularity
        (None: only an interrupt moves the clock on)."""
        if self._pace_origin is None:
            return self.pace_granularity_s
        w0, c0 = self._pace_origin
        due = w0 + (now_ns + self.period_ns - c0) / (self.speed * 1e9)
        return max(self.pace_granularity_s, due - time.monotonic())

    def lag_ns(self) -> int:
        """Paced: how far core time trails the wall clock's schedule at this moment (0 before
        the pace is anchored). Up to the pace's granularity is the design; more is lateness."""
        if self._pace_origin is None:
            return 0
        w0, c0 = self._pace_origin
        ahead = c0 + int((time.monotonic() - w0) * self.speed * 1e9)
        return max(0, ahead - int(self.core.now_ns))

    def re_anchor(self) -> None:
        """Pace from here on without catching up on the wall time that passed (after a hold)."""
        self._pace_origin = None

    async def _advance_realtime(self, until_ns: int) -> list[CoreEvent]:
        while True:
            if self._timers:
                if self._fire_timers():
                    return self._deliver()
                until_ns = min(until_ns, self._timers[0][0])
            events = self._deliver()
            if events:
                return events
            now = self.now_ns()
            if now >= until_ns:
                return events
            self._wake.clear()
            timeout = (until_ns - now) / 1e9
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that lands
                # as the wake-up does, and the controller's runner would never stop
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                continue
            events = self._deliver()
            if events or not self._wake.is_set():
                return events
            return events

    # ---- outputs ---------------------------------------------------------------------------

    def _deliver(self) -> list[CoreEvent]:
        self._deliver_telemetry()
        return self.core.drain_events()

    def _deliver_telemetry(self) -> None:
        records = self.core.drain_telemetry()
        if records:
            for sink in self.telemetry_sinks:
                sink(records)
